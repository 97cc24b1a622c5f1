"""Discriminative Area Enhancement (DAE): EDF's per-pixel weight on the synthetic images' gradient.

From the activation maps ``M`` (Grad-CAM of each synthetic image for its own class, in ``[0, 1]``),
the soft mask of image ``i`` is::

    tau_i   = act_threshold            if act_threshold > 0
              mean over pixels of M_i  otherwise
    W_i(p)  = M_i(p) + beta            where M_i(p) >= tau_i and M_i(p) > 0
              1                        elsewhere

so discriminative (high-activation) pixels receive a larger update, the rest an unchanged one. The
maps are recomputed every ``interval`` matching iterations (and at iteration 0) and reused in between.

**An all-zero map** (no positive evidence for the class anywhere: Grad-CAM's ReLU removed everything,
or the map was constant, which min-max normalisation turns into zeros) says nothing about where the
class is. Taken literally, the mean threshold is 0 and every pixel would pass ``M >= tau``, giving
``W = beta`` everywhere: a uniform change of the step size (by ``beta``; zero for ``beta = 0``) that
DAE never meant, and the release's CAM library would divide by zero on such a map. The condition
``M > 0`` makes it weight 1 everywhere instead: no emphasis, the plain matching gradient, exactly what
the image gets outside its discriminative area. It changes nothing for any other map (with a mean
threshold, ``tau > 0`` already implies ``M > 0``; a fixed threshold is ``> 0``). :func:`empty_maps` counts
such maps; EDF records the count per refresh (``records.edf.empty_maps``, metric ``edf/empty_maps``).
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

    A 2x2 map with mean 0.5 (threshold by mean), then with a fixed threshold 0.8, then an all-zero map
    (no evidence: weight 1 everywhere, not ``beta``):

    >>> m = torch.tensor([[[0.0, 0.4], [0.6, 1.0]]])
    >>> soft_mask(m, beta=1.0)
    tensor([[[[1.0000, 1.0000],
              [1.6000, 2.0000]]]])
    >>> soft_mask(m, beta=1.0, act_threshold=0.8)
    tensor([[[[1., 1.],
              [1., 2.]]]])
    >>> soft_mask(torch.zeros(1, 2, 2), beta=2.0)
    tensor([[[[1., 1.],
              [1., 1.]]]])
    """
    if maps.ndim == 4:
        maps = maps.squeeze(1)
    if maps.ndim != 3:
        raise ValueError(f"maps must be [N, H, W] or [N, 1, H, W], got {tuple(maps.shape)}")
    return torch.where(emphasised(maps, act_threshold), maps + beta, torch.ones_like(maps)).unsqueeze(1)


def emphasised(maps: torch.Tensor, act_threshold: float = 0.0) -> torch.Tensor:
    """The pixels DAE emphasises: ``M >= tau`` and ``M > 0`` (an all-zero map has none; module docstring).

    Shape: ``maps [N, H, W]`` -> ``[N, H, W]`` bool.

    >>> emphasised(torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]])).tolist()
    [[[False, True]], [[False, False]]]
    """
    return (maps >= thresholds(maps, act_threshold)) & (maps > 0)


def empty_maps(maps: torch.Tensor) -> int:
    """How many maps hold no positive activation at all (weight 1 everywhere).

    >>> empty_maps(torch.tensor([[[0.0, 1.0]], [[0.0, 0.0]]]))
    1
    """
    return int((maps.flatten(1).amax(dim=1) <= 0).sum()) if maps.numel() else 0


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
