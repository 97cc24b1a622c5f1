"""Discriminative Area Enhancement (DAE): EDF's per-pixel weight on the synthetic images' gradient.

From the activation maps ``M`` (Grad-CAM of each synthetic image for its own class, in ``[0, 1]``),
the soft mask of image ``i`` is::

    tau_i   = act_threshold            if act_threshold > 0
              mean over pixels of M_i  otherwise
    W_i(p)  = M_i(p) + beta            where M_i(p) >= tau_i
              1                        elsewhere

so discriminative (high-activation) pixels receive a larger update, the rest an unchanged one. The
maps are recomputed every ``interval`` matching iterations (and at iteration 0) and reused in between.
"""

from __future__ import annotations

import torch


def soft_mask(maps: torch.Tensor, beta: float, act_threshold: float = 0.0) -> torch.Tensor:
    """EDF's soft mask, one tensor expression for the whole batch.

    Args:
        maps: activation maps ``[N, H, W]`` (or ``[N, 1, H, W]``), normalised to ``[0, 1]`` per image.
        beta: added to the activation where it reaches the threshold (the release: 1.0; 2.0 for ImageWoof).
        act_threshold: a fixed threshold in ``(0, 1]``; ``0`` uses each image's mean activation.

    Shape: ``maps [N, H, W]`` -> ``[N, 1, H, W]`` float, broadcast over channels when it multiplies
    ``images.grad [N, C, H, W]``.

    A 2x2 map with mean 0.5 (threshold by mean), then with a fixed threshold 0.8:

    >>> m = torch.tensor([[[0.0, 0.4], [0.6, 1.0]]])
    >>> soft_mask(m, beta=1.0)
    tensor([[[[1.0000, 1.0000],
              [1.6000, 2.0000]]]])
    >>> soft_mask(m, beta=1.0, act_threshold=0.8)
    tensor([[[[1., 1.],
              [1., 2.]]]])
    """
    if maps.ndim == 4:
        maps = maps.squeeze(1)
    if maps.ndim != 3:
        raise ValueError(f"maps must be [N, H, W] or [N, 1, H, W], got {tuple(maps.shape)}")
    tau = thresholds(maps, act_threshold)  # [N, 1, 1]
    return torch.where(maps >= tau, maps + beta, torch.ones_like(maps)).unsqueeze(1)


def thresholds(maps: torch.Tensor, act_threshold: float = 0.0) -> torch.Tensor:
    """``tau`` per image: ``act_threshold`` if it is > 0, else the image's mean activation.

    Shape: ``maps [N, H, W]`` -> ``[N, 1, 1]``.

    >>> thresholds(torch.tensor([[[0.0, 1.0]], [[0.2, 0.2]]])).flatten().tolist()
    [0.5, 0.20000000298023224]
    """
    if act_threshold > 0:
        return torch.full_like(maps[:, :1, :1], act_threshold)
    return maps.mean(dim=(1, 2), keepdim=True)


def last_refresh(step: int, interval: int) -> int:
    """The iteration whose maps are in use at ``step``.

    >>> [last_refresh(s, 50) for s in (0, 49, 50, 120)]
    [0, 0, 50, 100]
    """
    return step - step % interval
