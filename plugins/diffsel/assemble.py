"""Assembly: one class's winner patches -> its distilled images (factor x factor stitching).

Pure tensor functions. Cells are numbered row-major: cell ``k`` of a ``f x f`` grid is at row
``k // f``, column ``k % f``.
"""

from __future__ import annotations

import torch


def placement_order(scores: torch.Tensor, assembly: str) -> torch.Tensor:
    """The order winners are laid out in: ``rded`` by score (best first, stable), ``prefix`` as they entered.

    Shape: ``scores [K]`` (in entry order) -> ``[K]`` int64 permutation.

    >>> placement_order(torch.tensor([0.2, 0.9, 0.5]), "rded")
    tensor([1, 2, 0])
    """
    if assembly == "prefix":
        return torch.arange(scores.shape[0])
    if assembly == "rded":
        return torch.tensor(sorted(range(scores.shape[0]), key=lambda i: (-float(scores[i]), i)), dtype=torch.long)
    raise ValueError(f"unknown assembly {assembly!r}")


def cell_sources(ipc: int, factor: int, assembly: str) -> torch.Tensor:
    """Which winner (in placement order) fills cell ``k`` of image ``q``.

    ``rded``: winner ``k * ipc + q`` (as RDED); ``prefix``: winner ``q * factor^2 + k``, so image ``q``
    uses winners of its own and a larger ``ipc`` only adds images.

    Shape: ``-> [ipc, factor^2]`` int64.

    >>> cell_sources(2, 2, "rded").tolist()
    [[0, 2, 4, 6], [1, 3, 5, 7]]
    >>> cell_sources(2, 2, "prefix").tolist()
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    cells = factor * factor
    q = torch.arange(ipc).view(-1, 1)
    k = torch.arange(cells).view(1, -1)
    if assembly == "rded":
        return k * ipc + q
    if assembly == "prefix":
        return q * cells + k
    raise ValueError(f"unknown assembly {assembly!r}")


def stitch(patches: torch.Tensor, ipc: int, factor: int, assembly: str = "rded") -> torch.Tensor:
    """Tile ``ipc * factor^2`` patches (in placement order) into ``ipc`` images of ``factor x factor`` cells.

    Shape: ``patches [ipc * f^2, C, s, s]`` -> ``[ipc, C, f*s, f*s]``.

    >>> p = torch.arange(8.0).view(8, 1, 1, 1)
    >>> stitch(p, 2, 2)[1, 0]
    tensor([[1., 3.],
            [5., 7.]])
    """
    n, c, s, _ = patches.shape
    if n != ipc * factor * factor:
        raise ValueError(f"stitching {ipc} images of {factor}x{factor} cells needs {ipc * factor * factor} patches, got {n}")
    grid = patches[cell_sources(ipc, factor, assembly).reshape(-1)].view(ipc, factor, factor, c, s, s)
    return grid.permute(0, 3, 1, 4, 2, 5).reshape(ipc, c, factor * s, factor * s)


def zoom(patches: torch.Tensor, factor: int) -> torch.Tensor:
    """Cell-size patches -> image-size views, each pixel repeated ``factor x factor`` (lossless; :func:`unzoom` inverts).

    Shape: ``[M, C, s, s]`` -> ``[M, C, f*s, f*s]``.
    """
    return patches if factor == 1 else patches.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)


def unzoom(views: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse of :func:`zoom` (the top-left pixel of each ``factor x factor`` block, exact).

    Shape: ``[M, C, f*s, f*s]`` -> ``[M, C, s, s]``.

    >>> x = torch.randn(2, 3, 4, 4); torch.equal(unzoom(zoom(x, 2), 2), x)
    True
    """
    return views if factor == 1 else views[..., ::factor, ::factor].contiguous()
