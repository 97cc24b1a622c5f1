"""DAE: the soft mask's exact values on hand-made activation maps."""

from __future__ import annotations

import pytest
import torch

from ddcore_edf.dae import last_refresh, soft_mask, thresholds

#: One 2x3 map with mean 0.5 and one constant map.
MAPS = torch.tensor(
    [
        [[0.0, 0.2, 0.5], [0.6, 0.7, 1.0]],
        [[0.3, 0.3, 0.3], [0.3, 0.3, 0.3]],
    ]
)


def test_threshold_by_each_images_mean():
    mask = soft_mask(MAPS, beta=1.0)
    assert mask.shape == (2, 1, 2, 3)
    expected = torch.tensor(
        [
            [[1.0, 1.0, 1.5], [1.6, 1.7, 2.0]],  # mean 0.5: 0.5 itself counts as active (>=)
            [[1.3, 1.3, 1.3], [1.3, 1.3, 1.3]],  # every pixel equals its mean: all active
        ]
    )
    torch.testing.assert_close(mask[:, 0], expected)


def test_fixed_threshold_and_beta():
    mask = soft_mask(MAPS, beta=2.0, act_threshold=0.6)
    expected = torch.tensor(
        [
            [[1.0, 1.0, 1.0], [2.6, 2.7, 3.0]],
            [[1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],  # 0.3 < 0.6: nothing active, the gradient is unchanged
        ]
    )
    torch.testing.assert_close(mask[:, 0], expected)
    torch.testing.assert_close(thresholds(MAPS, 0.6).flatten(), torch.tensor([0.6, 0.6]))
    torch.testing.assert_close(thresholds(MAPS).flatten(), torch.tensor([0.5, 0.3]))


def test_mask_broadcasts_over_channels_of_the_gradient():
    grad = torch.arange(2 * 3 * 2 * 3, dtype=torch.float32).view(2, 3, 2, 3)  # [N, C, H, W]
    mask = soft_mask(MAPS, beta=1.0)
    weighted = grad * mask
    for channel in range(3):
        torch.testing.assert_close(weighted[:, channel], grad[:, channel] * mask[:, 0])
    assert torch.equal(soft_mask(MAPS.unsqueeze(1), beta=1.0), mask)  # [N, 1, H, W] maps are accepted too


def test_bad_map_shape_is_refused():
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        soft_mask(torch.zeros(4, 4), beta=1.0)


def test_refresh_schedule():
    assert [last_refresh(step, 3) for step in range(8)] == [0, 0, 0, 3, 3, 3, 6, 6]
