"""Built-in plugin ``as-selected``: the selected images, unchanged, with hard labels (the default)."""

from __future__ import annotations

from ddcore.distilled import DistilledSet
from ddcore.hookspecs import hookimpl


@hookimpl(trylast=True)
def dd_initialize(ctx, selection):
    dataset = ctx.dataset
    return DistilledSet(
        images=selection.images.detach().clone(),
        labels=selection.labels.detach().clone(),
        class_names=list(dataset.class_names),
        mean=tuple(dataset.mean),
        std=tuple(dataset.std),
    )
