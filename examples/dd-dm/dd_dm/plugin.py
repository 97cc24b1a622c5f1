"""The ddcore plugin: registers distiller ``dm`` (Distribution Matching). Loaded as ``--plugin dm``.

    dd run --plugin dm --distill dm --ipc 10 [--set dm.iterations=2000]

Options go in the run config's top-level ``[dm]`` table (:class:`~dd_dm.config.DMConfig`), validated by
ddcore before any work. DM calls ``dd_pixel_weights`` in every step, so ``--plugin edf`` adds EDF's
Grad-CAM mask to its image gradient; it never calls ``dd_supervision_weights`` (EDF's CPD has no
per-element matching loss to act on here), which ddcore records as not called.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from ddcore import hookimpl
from dd_dm.config import DMConfig

PLUGIN_NAME = "dm"
#: The name ddcore registers this module under when it is passed as an object: ``ddcore.run(..., plugins=[plugin])``.
name = PLUGIN_NAME


def configure(table: Mapping[str, Any], family: str, ipc: int) -> dict[str, Any]:
    """Fill ``dm.lr_img`` when the run leaves it unset: ``ipc`` (the reference's 1.0 per image of a class).

    The gradient on one synthetic image is ``1/ipc`` of its class's (the loss compares class means), and
    these defaults run 200 iterations where the reference runs 20000, so the step per image is kept
    the same at every IPC. An explicit ``dm.lr_img`` always wins; the resolved value is recorded.

    >>> configure({}, "digits", 10)["lr_img"], configure({"lr_img": 0.5}, "digits", 10)["lr_img"]
    (10.0, 0.5)
    """
    resolved = dict(table)
    resolved.setdefault("lr_img", float(ipc))
    return resolved


@hookimpl
def dd_register_distillers(register: Callable[..., None]) -> None:
    from dd_dm.distiller import CALLS, NAME, DMDistiller

    register(
        NAME, DMDistiller, config_class=DMConfig, calls=CALLS, configure=configure,
        description="distribution matching (DM, Zhao & Bilen 2023): class-mean embeddings under random networks",
    )  # fmt: skip
