"""Registers the built-in trajectory matcher as distiller ``tm``, through the same hook as any plugin."""

from __future__ import annotations

from typing import Callable

from ddcore.hookspecs import hookimpl
from ddcore.tm.config import TMConfig


@hookimpl
def dd_register_distillers(register: Callable[..., None]) -> None:
    from ddcore.tm.distiller import CALLS, NAME, TrajectoryMatchingDistiller, configure

    register(
        NAME, TrajectoryMatchingDistiller, config_class=TMConfig, calls=CALLS, configure=configure,
        description="trajectory matching (MTT/DATM): unrolled students matched to cached expert trajectories",
    )  # fmt: skip
