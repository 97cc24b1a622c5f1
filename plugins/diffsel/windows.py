"""Candidate windows: every window of an image scored from one map, the best ones kept, patches cut.

Pure tensor functions, no ddcore needed. A box is ``(top, left, height, width)`` in pixels (int64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_grid(size: int, window: int, stride: int) -> torch.Tensor:
    """Top-left corners along one axis: ``0, stride, 2*stride, ...`` plus ``size - window`` if missed.

    Shape: ``-> [P]`` int64.

    >>> window_grid(8, 4, 3)
    tensor([0, 3, 4])
    """
    if not 0 < window <= size:
        raise ValueError(f"window {window} does not fit in {size} pixels")
    starts = list(range(0, size - window + 1, max(1, stride)))
    if starts[-1] != size - window:
        starts.append(size - window)
    return torch.tensor(starts, dtype=torch.long)


def square_windows(height: int, width: int, window: int, stride: int) -> torch.Tensor:
    """All square windows of side ``window`` at ``stride`` (border-aligned), row-major.

    Shape: ``-> [P, 4]`` int64 boxes ``(top, left, window, window)``.

    >>> square_windows(4, 4, 2, 2).tolist()
    [[0, 0, 2, 2], [0, 2, 2, 2], [2, 0, 2, 2], [2, 2, 2, 2]]
    """
    tops, lefts = window_grid(height, window, stride), window_grid(width, window, stride)
    grid_t, grid_l = torch.meshgrid(tops, lefts, indexing="ij")
    side = torch.full_like(grid_t.reshape(-1), window)
    return torch.stack([grid_t.reshape(-1), grid_l.reshape(-1), side, side], dim=1)


def box_means(maps: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Mean of each map inside each box, all at once from one integral image (a box filter).

    Shape: ``maps [B, H, W]``, ``boxes [P, 4]`` (shared by all maps) -> ``[B, P]``.

    >>> m = torch.arange(16.0).view(1, 4, 4)
    >>> box_means(m, torch.tensor([[0, 0, 2, 2], [2, 2, 2, 2], [0, 0, 4, 4]]))
    tensor([[ 2.5000, 12.5000,  7.5000]])
    """
    b, h, w = maps.shape
    integral = F.pad(maps.double().cumsum(1).cumsum(2), (1, 0, 1, 0))  # [B, H+1, W+1]
    flat = integral.reshape(b, -1)
    boxes = boxes.to(maps.device)
    top, left, height, width = boxes.unbind(1)
    bottom, right = top + height, left + width
    stride = w + 1

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat[:, y * stride + x]  # [B, P]

    sums = at(bottom, right) - at(top, right) - at(bottom, left) + at(top, left)
    return (sums / (height * width).to(sums.dtype)).to(maps.dtype)


def box_iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Intersection over union of ``box`` with each of ``boxes`` (pixel areas).

    Shape: ``box [..., 4]``, ``boxes [..., P, 4]`` -> ``[..., P]`` float.

    >>> box_iou(torch.tensor([0, 0, 2, 2]), torch.tensor([[0, 0, 2, 2], [1, 1, 2, 2], [2, 2, 2, 2]]))
    tensor([1.0000, 0.1429, 0.0000])
    """
    box = box.unsqueeze(-2)
    top = torch.maximum(box[..., 0], boxes[..., 0])
    left = torch.maximum(box[..., 1], boxes[..., 1])
    bottom = torch.minimum(box[..., 0] + box[..., 2], boxes[..., 0] + boxes[..., 2])
    right = torch.minimum(box[..., 1] + box[..., 3], boxes[..., 1] + boxes[..., 3])
    inter = ((bottom - top).clamp(min=0) * (right - left).clamp(min=0)).float()
    union = (box[..., 2] * box[..., 3] + boxes[..., 2] * boxes[..., 3]).float() - inter
    return inter / union


def best_windows(scores: torch.Tensor, boxes: torch.Tensor, k: int, max_iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's ``k`` highest-scoring windows, each overlapping the earlier picks by IoU < ``max_iou``.

    Greedy non-maximum suppression, batched over images. ``boxes`` is shared (``[P, 4]``) or per
    image (``[B, P, 4]``). When fewer than ``k`` windows qualify, the missing picks have index -1 and
    score ``-inf``.

    Shape: ``scores [B, P]`` -> ``(picked [B, k] int64 window positions, picked_scores [B, k])``.

    >>> s = torch.tensor([[3.0, 2.0, 1.0]])
    >>> best_windows(s, torch.tensor([[0, 0, 2, 2], [0, 1, 2, 2], [0, 2, 2, 2]]), 2, 0.3)
    (tensor([[0, 2]]), tensor([[3., 1.]]))
    """
    b, p = scores.shape
    if boxes.ndim == 2:
        boxes = boxes.unsqueeze(0).expand(b, p, 4)
    boxes = boxes.to(scores.device)
    live = scores.clone()
    picked = torch.full((b, k), -1, dtype=torch.long, device=scores.device)
    picked_scores = torch.full((b, k), float("-inf"), dtype=scores.dtype, device=scores.device)
    rows = torch.arange(b, device=scores.device)
    for step in range(k):
        best_score, best = live.max(dim=1)  # [B]
        valid = torch.isfinite(best_score)
        picked[:, step] = torch.where(valid, best, -1)
        picked_scores[:, step] = best_score
        overlap = box_iou(boxes[rows, best], boxes)  # [B, P]
        suppress = (overlap >= max_iou) & valid.unsqueeze(1)
        live = live.masked_fill(suppress, float("-inf"))
        live[rows[valid], best[valid]] = float("-inf")
    return picked, picked_scores


def crop_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Cut box ``i`` out of image ``i`` and resample it to ``size x size`` (bilinear, area-averaged).

    A box whose side equals ``size`` comes out pixel for pixel. Each output bin averages
    ``ceil(longer box side / size)`` squared bilinear samples, counted per box, so a patch does not
    depend on the other boxes cut with it (the batch size).

    Shape: ``images [B, C, H, W]``, ``boxes [B, 4]`` -> ``[B, C, size, size]``.

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> crop_resize(x, torch.tensor([[1, 2, 2, 2]]), 2)
    tensor([[[[ 6.,  7.],
              [10., 11.]]]])
    """
    from torchvision.ops import roi_align

    if images.shape[0] == 0:
        return images.new_zeros(0, images.shape[1], size, size)
    boxes = boxes.to(images.device)
    top, left, height, width = boxes.float().unbind(1)
    rois = torch.stack([torch.arange(len(boxes), device=images.device, dtype=images.dtype), left, top,
                        left + width, top + height], dim=1).to(images.dtype)  # fmt: skip
    sampling = torch.ceil(boxes[:, 2:].amax(1).float() / size).clamp(min=1).long()  # [B], per box
    out = images.new_empty(len(boxes), images.shape[1], size, size)
    for ratio in sampling.unique().tolist():  # roi_align takes one ratio per call: one call per distinct ratio
        rows = torch.nonzero(sampling == ratio).flatten()
        out[rows] = roi_align(images, rois[rows], output_size=(size, size), spatial_scale=1.0, sampling_ratio=ratio,
                              aligned=True)  # fmt: skip
    return out
