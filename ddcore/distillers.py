"""Distillers: the algorithms that turn the initial set into the distilled one, registered by name.

A plugin registers a distiller through :func:`ddcore.hookspecs.dd_register_distillers`; the built-in
trajectory matcher registers as ``tm`` through the same hook (:mod:`ddcore.tm.plugin`), and ``none``
(selection only) is the core's default. ``distill = "NAME"`` (``--distill NAME``) picks one; its options
live in the top-level table ``[NAME]`` of the run config, validated against the ``config_class`` it
registered. The run pipeline calls, in order::

    distiller = factory(ctx, options)          # after the plugins and the config are validated
    distiller.check()                          # after the dataset is built, before any file is written
    distiller.label_kind(initial_kind)         # "hard" / "soft" / None: checked against eval.labels, before any file
    distiller.initial_set(session)             # None: dd_select + dd_initialize build it (the default)
    distiller.distill(initial, session)        # returns the distilled set

:class:`DistillSession` gives a distiller its checkpoints (with every plugin's state inside,
:func:`ddcore.hookspecs.dd_state_dict`), the periodic evaluation and the run's extra artifacts.
"""

from __future__ import annotations

import difflib
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ddcore.errors import ConfigError, DDError, PluginError

if TYPE_CHECKING:
    from ddcore.context import RunContext
    from ddcore.distilled import DistilledSet

#: The hooks a distiller may call in its steps; a plugin implementing some of them needs a distiller that calls one.
DISTILL_HOOKS = ("dd_pixel_weights", "dd_supervision_weights")
NONE = "none"
CHECKPOINT_FORMAT = 2
CHECKPOINTS_KEPT = 2


class Distiller:
    """Base class of a distiller (subclass it; only :meth:`distill` is required).

    Args:
        ctx: the run context (``ctx.dataset`` is built before :meth:`check` is called).
        options: the validated ``[NAME]`` table (an instance of the registered ``config_class``, or
            ``None`` when the distiller registered none).
    """

    #: Truthy when :meth:`initial_set` builds the initial set itself, so that plugins answering
    #: ``dd_select`` / ``dd_initialize`` would be ignored (the run refuses them before any work); a string
    #: names the option responsible in that message (``"tm.init = 'correct'"``).
    replaces_selection: bool | str = False

    def __init__(self, ctx: "RunContext", options: Any) -> None:
        self.ctx = ctx
        self.options = options

    def check(self) -> None:
        """Refuse what cannot work, before any file is written (raise :class:`~ddcore.ConfigError`)."""

    def label_kind(self, initial: str | None) -> str | None:
        """The labels the distilled set will have, declared before any work: ``"hard"`` (``[N]``),
        ``"soft"`` (``[N, K]``), or ``None`` when that cannot be told before the run (the default).

        ``initial`` is the kind the initial set from ``dd_select`` / ``dd_initialize`` will have
        (``"hard"`` with the built-in initialisation, ``None`` when a plugin initialises). The pipeline
        refuses ``eval.labels = "soft"`` (``--labels soft``) for a declared ``"hard"`` before any file is
        written; override this when the distiller's options decide it.
        """
        return None

    def initial_set(self, session: "DistillSession") -> "DistilledSet | None":
        """The initial set, when the distiller builds it itself (else ``None``: selection and initialisation hooks)."""
        return None

    def distill(self, initial: "DistilledSet", session: "DistillSession") -> "DistilledSet":  # pragma: no cover
        """Refine ``initial`` (images ``[N, C, H, W]``, labels ``[N]`` or ``[N, K]``) and return the distilled set."""
        raise NotImplementedError


@dataclass(frozen=True)
class DistillerEntry:
    """One registered distiller."""

    name: str
    factory: Callable[["RunContext", Any], Distiller]
    plugin: str
    config_class: type | None = None
    calls: tuple[str, ...] = ()
    description: str = ""
    #: ``configure(table, dataset_family, ipc) -> table``: fills defaults (presets) before validation.
    configure: Callable[[Mapping[str, Any], str, int], Mapping[str, Any]] | None = None


class DistillerRegistry:
    """Distiller names -> entries, with the plugin that registered each; ``none`` is always there."""

    def __init__(self) -> None:
        self.entries: dict[str, DistillerEntry] = {
            NONE: DistillerEntry(NONE, _no_distiller, "core", description="selection only: the initial set as it is")
        }

    def registrar(self, plugin: str) -> Callable[..., None]:
        """The ``register(name, factory, *, config_class=None, calls=(), description="", configure=None)`` callback."""

        def register(
            name: str,
            factory: Callable[["RunContext", Any], Distiller],
            *,
            config_class: type | None = None,
            calls: Sequence[str] = (),
            description: str = "",
            configure: Callable[[Mapping[str, Any], str, int], Mapping[str, Any]] | None = None,
        ) -> None:
            if not isinstance(name, str) or not name or name != name.strip() or name != name.lower():
                raise PluginError(f"distiller names must be non-empty lower-case strings, got {name!r}", plugin=plugin)
            if name in self.entries:
                other = self.entries[name].plugin
                raise PluginError(
                    f'distiller "{name}" is registered by both "{other}" and "{plugin}"; deactivate one of them',
                    plugin=plugin,
                )
            if not callable(factory):
                raise PluginError(f'distiller "{name}": the factory is not callable ({factory!r})', plugin=plugin)
            unknown = [hook for hook in calls if hook not in DISTILL_HOOKS]
            if unknown:
                raise PluginError(
                    f'distiller "{name}" says it calls {", ".join(unknown)}; a distiller can call {", ".join(DISTILL_HOOKS)}',
                    plugin=plugin,
                )
            if config_class is not None and not hasattr(config_class, "__dataclass_fields__"):
                raise PluginError(f'distiller "{name}": config_class must be a dataclass', plugin=plugin)
            self.entries[name] = DistillerEntry(name, factory, plugin, config_class, tuple(calls), description, configure)

        return register

    def names(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, name: str) -> DistillerEntry:
        """The entry for ``name``; an unknown name lists the registered ones (one-line :class:`ConfigError`)."""
        if name not in self.entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            raise ConfigError(
                f'unknown distiller "{name}" (option --distill).{hint} Registered: {", ".join(self.names())}{_plugin_hint(name)}'
            )
        return self.entries[name]


def _plugin_hint(name: str) -> str:
    """``"; ... add --plugin NAME"`` when an installed, inactive plugin has that name (it may register the distiller)."""
    from ddcore.plugins import installed_entry_points

    return f"; if plugin '{name}' registers it, add --plugin {name}" if name in installed_entry_points() else ""


class SelectionOnly(Distiller):
    """``distill = "none"``: the initial set is the distilled set (its labels are the initial set's)."""

    def label_kind(self, initial: str | None) -> str | None:
        return initial

    def distill(self, initial: "DistilledSet", session: "DistillSession") -> "DistilledSet":
        return initial


def _no_distiller(ctx: "RunContext", options: Any) -> Distiller:
    return SelectionOnly(ctx, options)


def resolve_distiller(config: Any, registry: DistillerRegistry, dataset_family: str) -> DistillerEntry:
    """Validate the run's distiller tables against the registry; sets ``config.distill_options``.

    Every top-level table in ``config.tables`` must be the chosen distiller's: an unknown table, or
    another distiller's (``[tm]`` with ``distill = "none"``: its options would be silently ignored), is a
    one-line :class:`ConfigError` naming the table. The chosen distiller's table is filled by its
    ``configure`` (presets; ``dataset_family`` is the dataset's preset family or its name) and validated
    into its ``config_class``.
    """
    from ddcore.config import from_mapping

    entry = registry.entry(config.distill)
    for name, table in config.tables.items():
        if name not in registry.entries or name == NONE:
            distillers = ", ".join(n for n in registry.names() if n != NONE) or "none registered"
            raise ConfigError(
                f"unknown config table [{name}]: it is neither a core table nor a registered distiller's "
                f"(distillers: {distillers}){_plugin_hint(name)}"
            )
        if name != entry.name:  # options that would be silently ignored
            raise ConfigError(
                f"config table [{name}] holds options of distiller '{name}', but the run has distill = "
                f"'{entry.name}'; pass --distill {name}, or drop the table"
            )
        if registry.entries[name].config_class is None and table:
            raise ConfigError(f"config table [{name}]: distiller '{name}' takes no options")
    table = dict(config.tables.get(entry.name, {}))
    if entry.configure is not None:
        table = dict(entry.configure(table, dataset_family, config.ipc))
    config.distill_options = from_mapping(entry.config_class, table, prefix=f"{entry.name}.") if entry.config_class else None
    config.tables = {}
    return entry


def check_distill_hooks(pm: Any, registry: DistillerRegistry, entry: DistillerEntry) -> dict[str, list[str]]:
    """Refuse a plugin whose distillation hooks the chosen distiller never calls (before any work).

    Returns ``{plugin: [hooks it implements that the distiller does not call]}`` for plugins the distiller
    calls only in part (recorded in the manifest; such a plugin's other hooks stay silent).
    """
    partly: dict[str, list[str]] = {}
    for info in pm.plugin_infos():
        implemented = [hook for hook in DISTILL_HOOKS if hook in info.hooks]
        if not implemented:
            continue
        called = [hook for hook in implemented if hook in entry.calls]
        if not called:
            callers = sorted(name for name, other in registry.entries.items() if any(h in other.calls for h in implemented))
            choice = f"; distillers that call them: {', '.join(callers)} (option --distill)" if callers else ""
            raise ConfigError(
                f"plugin '{info.name}' answers {', '.join(implemented)}, which distiller '{entry.name}' never calls{choice}"
            )
        if len(called) < len(implemented):
            partly[info.name] = [hook for hook in implemented if hook not in called]
    return partly


# ----------------------------------------------------------------------------------------------
# Several processes
# ----------------------------------------------------------------------------------------------


def average_across_processes(ctx: "RunContext", tensors: Sequence[Any]) -> None:
    """Replace each tensor (a gradient) by its mean over the Accelerate processes, in place; ``None`` entries are
    skipped; a no-op for one process. Call it on every process, with the same list, before the optimiser steps,
    so that every process keeps identical synthetic images (the built-in ``tm`` and ``examples/dd-dm`` do)."""
    if ctx.num_processes == 1:
        return
    for tensor in tensors:
        if tensor is not None:
            tensor.copy_(ctx.accelerator.reduce(tensor.contiguous(), reduction="mean"))


def mean_across_processes(ctx: "RunContext", value: float) -> float:
    """``value`` (a loss) averaged over the Accelerate processes; ``value`` itself for one process."""
    if ctx.num_processes == 1:
        return value
    import torch

    return float(ctx.accelerator.reduce(torch.tensor([value], device=ctx.device), reduction="mean"))


# ----------------------------------------------------------------------------------------------
# What the pipeline hands a distiller
# ----------------------------------------------------------------------------------------------


def checkpoint_paths(folder: Path, name: str) -> list[Path]:
    """``<name>-<step>.pt`` files in ``folder``, newest first."""
    found = []
    for path in folder.glob(f"{name}-*.pt"):
        number = path.stem[len(name) + 1 :]
        if number.isdigit():
            found.append((int(number), path))
    return [path for _, path in sorted(found, reverse=True)]


@dataclass
class DistillSession:
    """The pipeline's services for one distillation (handed to :meth:`Distiller.distill`).

    Attributes:
        name: the distiller's name (checkpoint files are ``checkpoints/<name>-<step>.pt``).
        checkpoint_dir: where checkpoints go (``None``: an in-memory run, nothing is saved).
        resume_state: the distiller's own state from the newest readable checkpoint (``None``: a fresh
            start). The plugins' states saved with it are already restored (``dd_load_state_dict``).
        evaluate: ``evaluate(distilled, runs) -> accuracy %`` on the **validation split** carved from the
            training split (never the test split), networks trained with the ``[eval]`` recipe: for
            periodic evaluation and any choice among sets (see the top-level ``validation`` key).
        artifacts: ``{file name: JSON-able}`` written into the run directory as soon as the distillation
            ends, and also when it fails (so a distiller may register a list it keeps appending to, e.g.
            the loss history, and the rows up to a failure are kept).
        fingerprint: the run's :mod:`ddcore.run_fingerprint` (``{dotted key: value}``), saved in every
            checkpoint; a checkpoint whose fingerprint differs is never resumed from (``None``: not checked).
        resuming: ``True`` only for ``dd run --resume``: a fresh run never reads a checkpoint.
        last_checkpoint: the newest checkpoint written or resumed from (``None``: none exists yet).
    """

    ctx: "RunContext"
    name: str
    checkpoint_dir: Path | None
    evaluate: Callable[["DistilledSet", int], float]
    stage: Callable[[str], AbstractContextManager] = lambda name: nullcontext()
    resume_state: Any = None
    resume_step: int | None = None
    artifacts: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] | None = None
    resuming: bool = False
    last_checkpoint: Path | None = None
    #: Called after every checkpoint written (the runner refreshes the manifest's heartbeat, so that
    #: ``dd show`` keeps a long distillation "running" rather than "dead").
    heartbeat: Callable[[], None] = lambda: None

    def load_latest(self) -> None:
        """On a resume, find the newest readable checkpoint; restore the plugins' states and keep the distiller's.

        Raises :class:`ConfigError` (one line naming the first differing key) when that checkpoint was
        written by a run with another fingerprint (config, plugins or data), or by one that recorded none.
        """
        if not self.resuming or self.checkpoint_dir is None or not self.checkpoint_dir.is_dir():
            return
        import torch

        for path in checkpoint_paths(self.checkpoint_dir, self.name):
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a damaged file: fall back to the previous checkpoint
                continue
            if not isinstance(saved, dict) or saved.get("format") != CHECKPOINT_FORMAT or saved.get("distiller") != self.name:
                continue
            self._check_fingerprint(path, saved.get("fingerprint"))
            self.ctx.hooks.load_state_dicts(self.ctx, saved.get("plugins") or {})
            self.resume_state, self.resume_step = saved["state"], int(saved["step"])
            self.last_checkpoint = path
            return

    def _check_fingerprint(self, path: Path, saved: Any) -> None:
        if self.fingerprint is None:
            return
        from ddcore.run_fingerprint import describe_difference, first_difference

        if not isinstance(saved, dict):
            raise ConfigError(f"checkpoint {path} records no run fingerprint (an older ddcore wrote it); "
                              "start afresh with --overwrite")  # fmt: skip
        key = first_difference(saved, self.fingerprint)
        if key is not None:
            raise ConfigError(
                f"checkpoint {path} was written by a run with another {describe_difference(key, saved, self.fingerprint)}; "
                "resume with the run's own options and data, or start afresh with --overwrite"
            )

    def checkpoint_note(self) -> str:
        """What a failed distillation leaves to continue from, for error messages: the newest checkpoint
        (``"checkpoint checkpoints/tm-00000004.pt (step 4) is kept: dd run --resume RUN_DIR continues from it"``)
        or that none exists."""
        if self.checkpoint_dir is None:
            return "nothing was saved (an in-memory run)"
        if self.last_checkpoint is None:
            return f"no {self.name} checkpoint exists yet: a resume starts the distillation from the initial set"
        step = self.last_checkpoint.stem[len(self.name) + 1 :].lstrip("0") or "0"
        return (f"checkpoint {self.last_checkpoint.parent.name}/{self.last_checkpoint.name} (step {step}) is kept: "
                f"dd run --resume {self.checkpoint_dir.parent} continues from it")  # fmt: skip

    def save_checkpoint(self, step: int, state: Any) -> Path | None:
        """Save ``state`` with every plugin's state as ``<name>-<step>.pt`` (atomic; the newest two are kept).

        Call it on every process (a distiller's state may be gathered across them); the main process writes.
        ``state`` must load with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists, dicts.
        """
        plugins = self.ctx.hooks.state_dicts(self.ctx)
        if self.checkpoint_dir is None or not self.ctx.is_main_process:
            return None
        from ddcore.atomic import torch_save

        path = self.checkpoint_dir / f"{self.name}-{step:08d}.pt"
        torch_save({"format": CHECKPOINT_FORMAT, "distiller": self.name, "step": step, "state": state,
                    "plugins": plugins, "fingerprint": self.fingerprint}, path)  # fmt: skip
        self.last_checkpoint = path
        for old in checkpoint_paths(self.checkpoint_dir, self.name)[CHECKPOINTS_KEPT:]:
            old.unlink(missing_ok=True)
        self.heartbeat()
        return path

    def add_artifact(self, file_name: str, value: Any) -> None:
        """A JSON file for the run directory (``tm_log.json``), written by the main process as soon as the
        distillation ends or fails (``value`` may be a list the distiller keeps appending to)."""
        if "/" in file_name or not file_name.endswith(".json"):
            raise DDError(f"artifact names are plain '*.json' file names, got {file_name!r}")
        self.artifacts[file_name] = value
