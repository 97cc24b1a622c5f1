"""Herding selection (Welling 2009) as pure tensor functions; no ddcore needed here.

Herding picks, one at a time, the item that keeps the running mean of the picked features closest
to the mean of all features. Pick ``k`` (from 1) minimises over the items not yet picked::

    || mu - (x_1 + ... + x_{k-1} + x) / k ||   ==   || (k * mu - (x_1 + ... + x_{k-1})) - x || / k

so each pick is a nearest-neighbour query against a moving target, one batched distance computation
over all candidates per pick.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F

FeatureSpace = Literal["pixels", "pixels-pooled"]
FEATURE_SPACES: tuple[str, ...] = get_args(FeatureSpace)


def image_features(images: torch.Tensor, space: FeatureSpace = "pixels") -> torch.Tensor:
    """The feature vector herding matches, one row per image.

    ``"pixels"``: the flattened normalised image. ``"pixels-pooled"``: the image 2x2 average-pooled
    first (a quarter of the dimensions; odd edges are dropped), then flattened.

    Shape: ``images [N, C, H, W]`` -> ``[N, D]`` float32 with ``D = C*H*W`` (``C*(H//2)*(W//2)`` pooled).

    >>> image_features(torch.arange(16.0).view(1, 1, 4, 4), "pixels-pooled")
    tensor([[ 2.5000,  4.5000, 10.5000, 12.5000]])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got {tuple(images.shape)}")
    if space == "pixels-pooled":
        images = F.avg_pool2d(images, kernel_size=2)
    elif space != "pixels":
        raise ValueError(f"unknown feature space {space!r}; choose from {', '.join(FEATURE_SPACES)}")
    return images.flatten(start_dim=1).float()


def herding_order(features: torch.Tensor, k: int) -> torch.Tensor:
    """The first ``k`` herding picks among ``N`` items, in pick order, without repeats.

    Deterministic: no randomness, and ties go to the lowest position.

    Shape: ``features [N, D]`` -> ``[k]`` int64 positions into ``features`` (on its device).

    A class whose (one-pixel) images are 0, 1, 2 and 10 has mean 3.25: herding picks 2 (closest),
    then 1 (running mean 1.5), then 10 (running mean 4.33), where "closest to the mean" would pick 0:

    >>> herding_order(torch.tensor([[0.0], [1.0], [2.0], [10.0]]), 3)
    tensor([2, 1, 3])
    """
    if features.ndim != 2:
        raise ValueError(f"features must be [N, D], got {tuple(features.shape)}")
    n = features.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"cannot pick {k} of {n} items")
    if not features.is_floating_point():
        features = features.float()
    # The mean and the running sum are kept in float64 (MPS has none): k*mu - sum cancels, so
    # rounding errors would grow with k.
    exact = torch.float32 if features.device.type == "mps" else torch.float64
    mean = features.mean(dim=0, dtype=exact)  # [D]
    picked_sum = torch.zeros_like(mean)  # [D]
    available = torch.ones(n, dtype=torch.bool, device=features.device)  # [N]
    order = torch.empty(k, dtype=torch.long, device=features.device)
    for step in range(k):
        target = ((step + 1) * mean - picked_sum).to(features.dtype)  # [D]: the x that would hit mu exactly
        distances = (features - target).square().sum(dim=1)  # [N]
        distances = distances.masked_fill(~available, float("inf"))
        best = torch.argmin(distances)  # first minimum: ties -> lowest position
        order[step] = best
        available[best] = False
        picked_sum += features[best].to(exact)
    return order
