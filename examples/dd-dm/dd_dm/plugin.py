"""The ddcore plugin: registers distiller ``dm`` (Distribution Matching). Loaded as ``--plugin dm``.

    dd run --plugin dm --distill dm --ipc 10 [--set dm.iterations=2000]

Options go in the run config's top-level ``[dm]`` table (:class:`~dd_dm.config.DMConfig`), validated by
ddcore before any work. DM calls ``dd_pixel_weights`` in every step, so ``--plugin edf`` adds EDF's
Grad-CAM mask to its image gradient; it never calls ``dd_supervision_weights`` (EDF's CPD has no
per-element matching loss to act on here), which ddcore records as not called.
"""

from __future__ import annotations

from typing import Callable

from ddcore import hookimpl
from dd_dm.config import DMConfig

PLUGIN_NAME = "dm"
#: The name ddcore registers this module under when it is passed as an object: ``ddcore.run(..., plugins=[plugin])``.
name = PLUGIN_NAME


@hookimpl
def dd_register_distillers(register: Callable[..., None]) -> None:
    from dd_dm.distiller import CALLS, NAME, DMDistiller

    register(
        NAME, DMDistiller, config_class=DMConfig, calls=CALLS,
        description="distribution matching (DM, Zhao & Bilen 2023): class-mean embeddings under random networks",
    )  # fmt: skip
