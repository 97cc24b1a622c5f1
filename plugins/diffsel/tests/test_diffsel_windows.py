"""Stage-I geometry: window scores from one map, overlap-limited picks, exact crops."""

import torch

from ddcore_diffsel.windows import best_windows, box_iou, box_means, crop_resize, square_windows, window_grid


def test_box_means_equal_brute_force_means_of_every_window():
    maps = torch.randn(3, 12, 10, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[0, 0, 4, 4], [3, 5, 4, 5], [8, 6, 4, 4], [0, 0, 12, 10]])
    expected = torch.stack([maps[:, t : t + h, l : l + w].mean(dim=(1, 2)) for t, l, h, w in boxes.tolist()], dim=1)
    torch.testing.assert_close(box_means(maps, boxes), expected)


def test_windows_cover_the_border_and_stay_inside():
    assert window_grid(10, 4, 4).tolist() == [0, 4, 6]  # the last window is border-aligned
    boxes = square_windows(10, 10, 4, 4)
    assert len(boxes) == 9
    assert (boxes[:, 0] + boxes[:, 2] <= 10).all() and (boxes[:, 1] + boxes[:, 3] <= 10).all()


def test_best_windows_respect_the_overlap_limit_and_take_the_best_first():
    boxes = square_windows(8, 8, 4, 1)  # 25 windows, heavily overlapping
    maps = torch.zeros(2, 8, 8)
    maps[0, 0:4, 0:4] = 5.0  # image 0: hot top-left block, warm bottom-right block
    maps[0, 4:8, 4:8] = 3.0
    maps[1, 2:6, 2:6] = 1.0  # image 1: one warm centre block
    picked, scores = best_windows(box_means(maps, boxes), boxes, 2, max_iou=0.2)
    chosen = boxes[picked[0]]
    assert chosen[0].tolist() == [0, 0, 4, 4] and chosen[1].tolist() == [4, 4, 4, 4]
    assert scores[0].tolist() == [5.0, 3.0]
    assert boxes[picked[1, 0]].tolist() == [2, 2, 4, 4]
    for b in range(2):
        assert box_iou(boxes[picked[b, 0]], boxes[picked[b, 1]].unsqueeze(0)).item() < 0.2


def test_best_windows_mark_missing_picks_when_nothing_qualifies():
    boxes = torch.tensor([[0, 0, 4, 4]])
    picked, scores = best_windows(torch.tensor([[1.0]]), boxes, 2, max_iou=0.5)
    assert picked.tolist() == [[0, -1]] and scores[0, 1] == float("-inf")


def test_crop_resize_is_exact_at_cell_size_and_averages_when_shrinking():
    images = torch.arange(2 * 64, dtype=torch.float32).view(2, 1, 8, 8)
    boxes = torch.tensor([[1, 2, 4, 4], [4, 0, 4, 4]])
    torch.testing.assert_close(crop_resize(images, boxes, 4)[0, 0], images[0, 0, 1:5, 2:6])
    torch.testing.assert_close(crop_resize(images, boxes, 4)[1, 0], images[1, 0, 4:8, 0:4])
    shrunk = crop_resize(images[:1], torch.tensor([[0, 0, 8, 8]]), 4)
    torch.testing.assert_close(shrunk[0, 0, 0, 0], images[0, 0, 0:2, 0:2].mean())
