"""The offline miniature: same digits and split as ``digits``, deterministic, the hard digit small."""

from __future__ import annotations

import torch

from ddcore import DatasetOptions
from ddcore.data.digits import load_digits_dataset
from ddcore_compdd.mini import make_hard, place
from ddcore_compdd.minidata import load_mini


def test_mini_easy_is_digits_filling_the_frame():
    easy = load_mini("easy", DatasetOptions())
    digits = load_digits_dataset(DatasetOptions())
    assert easy.name == "compdd/mini-easy" and easy.image_shape == (1, 32, 32)
    assert easy.train.targets == digits.train.targets and easy.test.targets == digits.test.targets
    torch.testing.assert_close(easy.denormalize(easy.train.images), digits.denormalize(digits.train.images), atol=1e-5, rtol=0)


def test_mini_hard_is_deterministic_with_the_same_labels():
    first, second = load_mini("hard", DatasetOptions()), load_mini("hard", DatasetOptions())
    easy = load_mini("easy", DatasetOptions())
    assert torch.equal(first.train.images, second.train.images) and torch.equal(first.test.images, second.test.images)
    assert first.train.targets == easy.train.targets
    assert (len(first.train), len(first.test)) == (1437, 360)
    assert not torch.equal(first.train.images[:5], easy.train.images[:5])


def test_the_hard_digit_is_small_and_the_clutter_dimmer():
    """Clutter never exceeds 0.4 and each digit peaks at 1, so pixels above 0.6 belong to the digit:
    their bounding box is at most 55% of the side (plus a pixel of bilinear spread each way)."""
    digits = torch.zeros(6, 1, 8, 8)
    digits[:, :, 1:7, 2:6] = torch.rand(6, 1, 6, 4, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    images = make_hard(digits, 32, seed=3)
    assert images.shape == (6, 1, 32, 32) and images.min() >= 0 and images.max() <= 1
    for image in images[:, 0]:
        rows, cols = torch.nonzero(image > 0.6, as_tuple=True)
        assert len(rows) > 0
        assert rows.max() - rows.min() + 1 <= 20 and cols.max() - cols.min() + 1 <= 20
        assert (image > 0.02).float().mean() > (image > 0.6).float().mean()  # there is clutter around it


def test_place_draws_a_scaled_copy_at_the_centre():
    canvas = place(torch.ones(1, 1, 4, 4), torch.tensor([0.5]), torch.zeros(1, 2), torch.zeros(1), 16)
    inside, outside = canvas[0, 0, 5:11, 5:11], canvas[0, 0].clone()
    outside[3:13, 3:13] = 0
    assert inside.min() == 1 and outside.abs().max() == 0  # the 8 px box, its edge softened by bilinear sampling
