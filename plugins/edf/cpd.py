"""Common Pattern Dropout (CPD): EDF drops the lowest-loss part of the trajectory-matching supervision.

Over the ``P`` per-element matching losses ``l`` (all parameters of all layers, flattened), the
``K = floor(alpha * P)`` smallest are dropped, and the loss becomes::

    L = sum_{j in S} l_j / sum_{j in S} d_j         (S: the P - K elements kept)

with ``d`` the per-element start distances. As a supervision weight this is a 0/1 mask over the
``P`` elements (ddcore's matcher computes ``sum(w * l) / sum(w * d)``). ``alpha`` must lie in
``[0, 1)``: ``alpha = 1`` would drop everything (0 / 0).
"""

from __future__ import annotations

import math

import torch


def drop_count(num_elements: int, alpha: float) -> int:
    """``K = floor(alpha * P)``, the number of elements dropped.

    >>> drop_count(10, 0.25), drop_count(8, 0.375), drop_count(5, 0.0)
    (2, 3, 0)
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1), got {alpha}")
    return math.floor(alpha * num_elements)


def cpd_weights(losses: torch.Tensor, alpha: float) -> torch.Tensor:
    """0/1 weights that drop the ``floor(alpha * P)`` smallest losses; ties drop the lowest positions first.

    Shape: ``losses [P]`` -> ``[P]`` float, same dtype and device.

    >>> cpd_weights(torch.tensor([0.5, 0.1, 0.9, 0.3]), alpha=0.5)
    tensor([1., 0., 1., 0.])
    """
    if losses.ndim != 1:
        raise ValueError(f"losses must be [P], got {tuple(losses.shape)}")
    dropped = drop_count(losses.shape[0], alpha)
    weights = torch.ones_like(losses)
    if dropped:
        order = torch.argsort(losses, stable=True)  # ascending; equal losses keep their positions' order
        weights[order[:dropped]] = 0.0
    return weights


def cpd_loss(losses: torch.Tensor, distances: torch.Tensor, alpha: float) -> torch.Tensor:
    """The matching loss with CPD: ``sum`` of the kept losses over ``sum`` of the kept distances.

    Shape: ``losses, distances [P]`` -> scalar.

    >>> cpd_loss(torch.tensor([0.5, 0.1, 0.9, 0.3]), torch.tensor([1.0, 2.0, 3.0, 4.0]), alpha=0.5)
    tensor(0.3500)
    """
    weights = cpd_weights(losses.detach(), alpha)
    return (weights * losses).sum() / (weights * distances).sum()
