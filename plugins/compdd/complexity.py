"""The Comp-DD image-complexity metric as pure tensor functions (no ddcore needed).

For an activation map ``M`` of an image, min-max normalised to ``[0, 1]``::

    complexity = 1 - #{(h, w) : M(h, w) >= threshold} / (H * W)

High complexity = few high-activation pixels = the discriminative region is small. A class's
complexity is the mean over its images; a category's hard subset is its most complex classes, the easy
subset its least complex ones. The paper writes ``>=``; the release compares strictly (``>``), which
``strict=True`` reproduces.
"""

from __future__ import annotations

import torch


def normalize_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Min-max normalise each map to ``[0, 1]``; a constant map becomes all zeros.

    Shape: ``[N, H, W]`` -> ``[N, H, W]`` float32.

    >>> normalize_maps(torch.tensor([[[2.0, 4.0], [6.0, 10.0]]]))
    tensor([[[0.0000, 0.2500],
             [0.5000, 1.0000]]])
    """
    flat = maps.float().flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > eps, (flat - low) / span.clamp_min(eps), torch.zeros_like(flat))
    return scaled.view_as(maps)


def image_complexity(maps: torch.Tensor, threshold: float = 0.5, *, strict: bool = False) -> torch.Tensor:
    """Per-image complexity of activation maps that are already min-max normalised to ``[0, 1]``.

    ``1 - (pixels with M >= threshold) / (H * W)`` (``M > threshold`` when ``strict``).

    Shape: ``maps [N, H, W]`` -> ``[N]`` float32 in ``[0, 1]``.

    >>> m = torch.tensor([[[1.0, 0.5], [0.2, 0.0]]])
    >>> image_complexity(m).tolist(), image_complexity(m, strict=True).tolist()
    ([0.5], [0.75])
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be [N, H, W], got {tuple(maps.shape)}")
    active = maps > threshold if strict else maps >= threshold
    return 1.0 - active.flatten(1).float().mean(dim=1)


def class_complexity(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean complexity per class; a class without images gets NaN.

    Shape: ``scores [N]``, ``labels [N]`` int64 in ``[0, num_classes)`` -> ``[num_classes]`` float32.

    >>> [round(v, 4) for v in class_complexity(torch.tensor([0.2, 0.4, 0.9]), torch.tensor([0, 0, 2]), 3).tolist()]
    [0.3, nan, 0.9]
    """
    labels = labels.long()
    sums = torch.zeros(num_classes).index_add_(0, labels, scores.float())
    counts = torch.zeros(num_classes).index_add_(0, labels, torch.ones_like(scores, dtype=torch.float32))
    return torch.where(counts > 0, sums / counts.clamp_min(1), torch.full_like(sums, float("nan")))


def easy_hard_split(scores: list[float], size: int) -> tuple[list[int], list[int]]:
    """Positions of the ``size`` least complex (easy) and ``size`` most complex (hard) entries.

    Easy is listed from the least complex up, hard from the most complex down; ties keep input
    order. With ``2 * size > len(scores)`` the two overlap (the caller decides whether to allow it).

    >>> easy_hard_split([0.6, 0.9, 0.5, 0.7], 2)
    ([2, 0], [1, 3])
    """
    if size < 1 or size > len(scores):
        raise ValueError(f"size must be in [1, {len(scores)}], got {size}")
    order = sorted(range(len(scores)), key=lambda i: (scores[i], i))
    hard = sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:size]
    return order[:size], hard
