"""The run context handed to every hook: the environment of one run, never a global."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ddcore.errors import PluginError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from ddcore.config import RunConfig
    from ddcore.data.base import ImageDataset
    from ddcore.distilled import DistilledSet
    from ddcore.tm.experts import ExpertBuffer
    from ddcore.hooks import Hooks
    from ddcore.models import ModelSpec
    from ddcore.reporting import Reporter


def derive_seed(seed: int, *keys: Any) -> int:
    """A 63-bit seed from ``seed`` and any keys, the same on every machine and process.

    >>> derive_seed(0, "eval", 1) == derive_seed(0, "eval", 1) != derive_seed(0, "eval", 2)
    True
    """
    text = "/".join([str(seed), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


@dataclass
class RunContext:
    """What a hook needs from the run besides the data it operates on.

    Attributes:
        config: the validated :class:`~ddcore.config.RunConfig`.
        accelerator: the run's ``accelerate.Accelerator`` (built by the core only).
        generator: a CPU ``torch.Generator`` seeded with ``config.seed``; use it (or
            :meth:`derive_generator`) instead of global random state.
        hooks: the hook facade, for plugins that need to call other hooks' combination rules.
        reporter: progress bars and log lines (quiet on non-main processes).
        out_dir: the run directory (``None`` for in-memory re-evaluation).
        cache_dir: where experts, teachers and other reusable products are cached.
        dataset: the run's dataset once built.
        model_spec: the run's network (the resolved ``[eval]`` model: experts, matcher, evaluator), once
            the dataset is built.
        initial: the :class:`~ddcore.distilled.DistilledSet` the distiller starts from (images
            ``[N, C, H, W]``, labels ``[N]`` or ``[N, K]``), set by the pipeline as soon as it exists (also
            when a run is resumed or re-evaluated); ``None`` before. For ``distill = "none"`` it is the
            distilled set itself.
        experts: the run's expert trajectories (:class:`~ddcore.tm.experts.ExpertBuffer`) once a strategy
            has loaded or trained them, else ``None``.
        distill_calls: the weighting hooks the run's distiller calls (``("dd_pixel_weights", ...)``; empty
            for ``distill = "none"``), so a plugin can tell a hook that will never be called.
        stash: a scratch dict shared by plugins during one run (not saved).
        records: what plugins :meth:`record` for the manifest (resolved settings, cache keys, ...).
    """

    config: "RunConfig"
    accelerator: "Accelerator"
    generator: torch.Generator
    hooks: "Hooks"
    reporter: "Reporter"
    cache_dir: Path
    out_dir: Path | None = None
    dataset: "ImageDataset | None" = None
    model_spec: "ModelSpec | None" = None
    initial: "DistilledSet | None" = None
    experts: "ExpertBuffer | None" = None
    distill_calls: tuple[str, ...] = ()
    plugin_options: dict[str, Any] = field(default_factory=dict)
    stash: dict[str, Any] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    @property
    def process_index(self) -> int:
        return self.accelerator.process_index

    def plugin_config(self, name: str) -> Any:
        """The validated options of plugin ``name`` (its ``config_class`` instance)."""
        if name not in self.plugin_options:
            raise PluginError(f"no options are known for plugin {name!r}; is it active and does it declare config_class?")
        return self.plugin_options[name]

    def record(self, key: str, value: Any) -> None:
        """Keep ``value`` (JSON-able) under ``records[key]`` in the run's manifest."""
        self.records[key] = value

    def derive_seed(self, *keys: Any) -> int:
        """A seed for one purpose (``ctx.derive_seed("eval", repeat)``), independent of process count."""
        return derive_seed(self.config.seed, *keys)

    def derive_generator(self, *keys: Any) -> torch.Generator:
        """A fresh CPU generator seeded with :meth:`derive_seed`."""
        return torch.Generator().manual_seed(self.derive_seed(*keys))
