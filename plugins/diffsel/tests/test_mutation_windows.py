"""Tests added by mutation testing (bench/mutation.py, docs/mutation.md) for ddcore_diffsel.windows."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ddcore_diffsel.windows import best_windows, box_iou, crop_resize, window_grid


def test_window_grid_edges():
    assert window_grid(8, 4, 1).tolist() == [0, 1, 2, 3, 4]
    assert window_grid(5, 2, 0).tolist() == [0, 1, 2, 3]  # stride 0 counts as 1
    assert window_grid(4, 4, 2).tolist() == [0]  # window == size: one start
    assert window_grid(4, 2, 2).tolist() == [0, 2]  # the last start already hits the border
    assert window_grid(3, 1, 5).tolist() == [0, 2]  # a one-pixel window fits
    with pytest.raises(ValueError, match=r"^window 0 does not fit in 3 pixels$"):
        window_grid(3, 0, 1)
    with pytest.raises(ValueError, match=r"^window 4 does not fit in 3 pixels$"):
        window_grid(3, 4, 1)


def _iou_reference(a, b):
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, bottom - top) * max(0, right - left)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_box_iou_of_non_square_boxes_matches_the_definition():
    box = [1, 2, 3, 5]  # top 1, left 2, height 3, width 5
    others = [[0, 0, 2, 4], [2, 3, 6, 1], [1, 2, 3, 5], [5, 0, 2, 9], [0, 8, 9, 2], [3, 6, 1, 1], [0, 0, 9, 3], [0, 5, 9, 5], [2, 0, 1, 9]]
    got = box_iou(torch.tensor(box), torch.tensor(others)).tolist()
    assert got == pytest.approx([_iou_reference(box, o) for o in others])
    # hand-checked: [0,0,2,4] overlaps rows 1..2 x cols 2..4 -> 1*2 = 2; union 15 + 8 - 2 = 21
    assert got[0] == pytest.approx(2 / 21)
    assert got[3] == 0.0 and got[4] == 0.0  # disjoint in one axis only


def test_best_windows_suppresses_an_iou_equal_to_the_limit_and_keeps_dtype():
    boxes = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 1], [2, 2, 2, 2]])  # IoU(0, 1) = 2 / 4 = 0.5 exactly
    scores = torch.tensor([[3.0, 2.0, 1.0]], dtype=torch.float64)
    picked, picked_scores = best_windows(scores, boxes, 2, 0.5)
    assert picked.tolist() == [[0, 2]]
    assert picked_scores.dtype == torch.float64 and picked.dtype == torch.int64
    assert picked_scores.tolist() == [[3.0, 1.0]]
    picked, picked_scores = best_windows(scores, boxes, 3, 0.5)  # only two qualify
    assert picked.tolist() == [[0, 2, -1]]
    assert picked_scores[0, 2].item() == float("-inf")


def test_crop_resize_of_an_empty_batch():
    out = crop_resize(torch.zeros(0, 3, 5, 5), torch.zeros(0, 4, dtype=torch.long), 2)
    assert out.shape == (0, 3, 2, 2)


def test_crop_resize_averages_every_row_of_a_tall_box():
    # rows y**2, constant along x: a 12 x 4 box resized to 4 x 4 has 3-row bins; sampling every
    # row of a bin (sampling ratio ceil(12 / 4) = 3, from the box's height) gives the exact mean.
    rows = torch.arange(12.0) ** 2
    image = rows.view(1, 1, 12, 1).expand(1, 1, 12, 6).contiguous().double()
    out = crop_resize(image, torch.tensor([[0, 1, 12, 4]]), 4)
    expected = F.avg_pool1d(rows.view(1, 1, 12), 3).view(4, 1).expand(4, 4).double()
    assert out.dtype == torch.float64
    assert torch.allclose(out[0, 0], expected)


def test_crop_resize_samples_both_axes_at_the_larger_sides_ratio():
    # columns x**2, constant along y; a 12 x 4 box -> 4 x 4: sampling ratio 3 on both axes, so each
    # one-pixel-wide column bin is sampled at c - 1/3, c, c + 1/3 (bilinear): (7 f(c) + f(c-1) + f(c+1)) / 9
    # = c**2 + 2/9 for f = x**2.
    cols = torch.arange(6.0) ** 2
    image = cols.view(1, 1, 1, 6).expand(1, 1, 12, 6).contiguous().double()
    out = crop_resize(image, torch.tensor([[0, 1, 12, 4]]), 4)
    expected = (torch.arange(1.0, 5.0) ** 2 + 2 / 9).double().view(1, 4).expand(4, 4)
    assert torch.allclose(out[0, 0], expected)
