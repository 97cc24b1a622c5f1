"""Built-in plugin ``random-real``: ``ipc`` random real training images per class (the default selection)."""

from __future__ import annotations

import torch

from ddcore.distilled import Selection
from ddcore.hookspecs import hookimpl


def random_per_class(by_class: list[list[int]], ipc: int, generator: torch.Generator) -> list[int]:
    """``ipc`` distinct positions drawn from each class's list, class-major.

    >>> random_per_class([[0, 1, 2], [3, 4]], 2, torch.Generator().manual_seed(0))
    [2, 0, 4, 3]
    """
    chosen: list[int] = []
    for indices in by_class:
        order = torch.randperm(len(indices), generator=generator)[:ipc]
        chosen.extend(indices[i] for i in order.tolist())
    return chosen


@hookimpl(trylast=True)
def dd_select(ctx, dataset, ipc):
    generator = ctx.derive_generator("select", "random-real")
    chosen = random_per_class(dataset.indices_by_class("train"), ipc, generator)
    images, labels = dataset.load("train", chosen)
    return Selection(images=images, labels=labels, indices=torch.tensor(chosen), meta={"method": "random-real"})
