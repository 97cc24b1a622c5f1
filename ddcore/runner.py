"""The run pipeline: config -> plugins -> dataset -> select -> initialize -> (distill) -> evaluate -> artifacts.

:func:`run` is the in-process API (``ddcore.run``); ``dd run`` is a thin layer over it. Everything
that can be checked is checked before any work: the configuration, the plugins and their options,
the strategy choice, the dataset name, the output directory and ``ipc`` against the class sizes.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Sequence

from ddcore import artifacts
from ddcore.atomic import write_json
from ddcore.config import RunConfig, build_config, from_mapping
from ddcore.context import RunContext
from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.registry import DatasetRegistry
from ddcore.distilled import DistilledSet
from ddcore.distillers import NONE, Distiller, DistillerRegistry, DistillSession, check_distill_hooks, resolve_distiller
from ddcore.errors import ConfigError, DDError, PluginError, attributed_to
from ddcore.hooks import Hooks
from ddcore.plugins import DDPluginManager, get_plugin_manager
from ddcore.reporting import Reporter
from ddcore.stages import StageRecorder

MANIFEST_FORMAT = 1
RECORDED_PACKAGES = ("ddcore", "torch", "torchvision", "accelerate", "pluggy", "kornia", "scikit-learn")


@dataclass
class RunResult:
    """What :func:`run` returns: the run directory, the metrics, the distilled set and the manifest."""

    out_dir: Path | None
    metrics: dict[str, Any]
    distilled: DistilledSet
    manifest: dict[str, Any]
    config: RunConfig = field(repr=False, default=None)  # type: ignore[assignment]


def default_cache_dir() -> Path:
    """``$DDCORE_CACHE``, else ``$XDG_CACHE_HOME/ddcore``, else ``~/.cache/ddcore``."""
    if os.environ.get("DDCORE_CACHE"):
        return Path(os.environ["DDCORE_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ddcore"


def accelerator_available() -> bool:
    """A GPU (CUDA or MPS) to run on; without one the Accelerator is built for the CPU, so that
    ``torchrun``-launched processes connect over gloo instead of each running alone."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


def run_name(config: RunConfig) -> str:
    return config.name or f"{config.dataset.replace('/', '-')}-ipc{config.ipc}"


def validate_plugin_options(pm: DDPluginManager, sections: Mapping[str, Any]) -> dict[str, Any]:
    """Each active plugin's ``[plugin.<name>]`` table, validated into its ``config_class``."""
    active = {info.name: pm.get_plugin(info.name) for info in pm.plugin_infos()}
    for name in sections:
        if name not in active:
            raise ConfigError(
                f"config table [plugin.{name}] is for a plugin that is not active; add it with --plugin {name}"
            )
    options: dict[str, Any] = {}
    for name, plugin in active.items():
        config_class = getattr(plugin, "config_class", None)
        section = sections.get(name, {})
        if config_class is None:
            if section:
                raise ConfigError(f"config table [plugin.{name}]: plugin '{name}' takes no options")
            continue
        options[name] = from_mapping(config_class, section, prefix=f"plugin.{name}.")
    return options


def check_run_requirements(pm: DDPluginManager, config: RunConfig) -> None:
    """Each active plugin's ``run_requirements`` (``{"ipc": 1}``: top-level config keys and the values the
    plugin needs) against the run's config; a mismatch is a one-line :class:`ConfigError`. (Which
    distillers call a plugin's weighting hooks is checked by the distiller registry.)"""
    for info in pm.plugin_infos():
        needs = getattr(pm.get_plugin(info.name), "run_requirements", None) or {}
        for key, value in needs.items():
            actual = getattr(config, key, None)
            if actual != value:
                flag = f"--{key} {value}" if key in ("distill", "dataset", "ipc") else f"--set {key}={value!r}"
                raise ConfigError(
                    f"plugin '{info.name}' needs {key} = {value!r}, but the run has {key} = {actual!r}; pass {flag}"
                )


def check_ipc(config: RunConfig, dataset: ImageDataset) -> None:
    counts = dataset.class_counts("train")
    smallest = min(counts)
    if config.ipc > smallest:
        name = dataset.class_names[counts.index(smallest)]
        raise ConfigError(
            f"ipc {config.ipc} exceeds the {smallest} training images of class {name!r} in {dataset.name} (option --ipc)"
        )


def accelerate_topology(accelerator) -> dict[str, Any]:
    return {
        "num_processes": accelerator.num_processes,
        "process_index": accelerator.process_index,
        "distributed_type": str(accelerator.distributed_type),
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
    }


def package_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in RECORDED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


class Pipeline:
    """One run, set up and validated; :meth:`execute` does the work. Use :func:`run` unless you need the parts."""

    def __init__(
        self,
        config: Mapping[str, Any] | RunConfig | None = None,
        plugins: Sequence[str | object] = (),
        *,
        quiet: bool = True,
        write: bool = True,
    ):
        self.started = time.time()
        self.config = build_config(config)
        self.pm = get_plugin_manager([*self.config.plugins, *plugins])
        self.hooks = Hooks(self.pm, select=self.config.select, initialize=self.config.initialize)
        plugin_options = validate_plugin_options(self.pm, self.config.plugin)
        check_run_requirements(self.pm, self.config)
        self.registry = self.hooks.register_datasets(DatasetRegistry())
        entry = self.registry.entry(self.config.dataset)  # unknown names fail here, before any work
        self.distillers = self.hooks.register_distillers(DistillerRegistry())
        self.distiller_entry = resolve_distiller(self.config, self.distillers, entry.presets or entry.name)
        self.partly_called = check_distill_hooks(self.pm, self.distillers, self.distiller_entry)
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        accelerator = Accelerator(cpu=self.config.cpu or not accelerator_available())
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if launched > 1 and accelerator.num_processes != launched:
            raise ConfigError(
                f"launched as {launched} processes, but accelerate joined {accelerator.num_processes}: "
                "pass --cpu (or set ACCELERATE_USE_CPU=1) so that the processes connect over gloo"
            )
        set_seed(self.config.seed)
        reporter = Reporter(quiet=quiet, enabled=accelerator.is_main_process)
        self.write = write
        import torch

        self.ctx = RunContext(
            config=self.config,
            accelerator=accelerator,
            generator=torch.Generator().manual_seed(self.config.seed),
            hooks=self.hooks,
            reporter=reporter,
            cache_dir=Path(self.config.cache_dir) if self.config.cache_dir else default_cache_dir(),
            plugin_options=plugin_options,
            distill_calls=self.distiller_entry.calls,
        )
        self.stages = StageRecorder()
        with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
            self.distiller = self.distiller_entry.factory(self.ctx, self.config.distill_options)
        if not isinstance(self.distiller, Distiller):
            raise PluginError(
                f'distiller "{self.distiller_entry.name}": the factory returned {type(self.distiller).__name__}, '
                "expected a ddcore.Distiller", plugin=self.distiller_entry.plugin,
            )  # fmt: skip
        if self.distiller.replaces_selection:
            taken = self.hooks.optional_implementers("dd_select") + self.hooks.optional_implementers("dd_initialize")
            if taken:
                reason = self.distiller.replaces_selection
                who = reason if isinstance(reason, str) else f"distiller '{self.distiller_entry.name}'"
                raise ConfigError(
                    f"{who} builds the initial set itself, but {', '.join(sorted(set(taken)))} answer "
                    "dd_select/dd_initialize; change that option or drop the plugin"
                )
        for plugin, hooks in self.partly_called.items():
            reporter.info(f"plugin '{plugin}': distiller '{self.distiller_entry.name}' never calls {', '.join(hooks)}")
        self.ctx.record("distiller", {"name": self.distiller_entry.name, "plugin": self.distiller_entry.plugin,
                                      "calls": list(self.distiller_entry.calls), "not_called": self.partly_called})  # fmt: skip

    def _out_dir(self) -> Path:
        """The main process decides and creates the run directory; the others learn its path."""
        from accelerate.utils import broadcast_object_list

        accelerator = self.ctx.accelerator
        chosen: list[Any] = [None]
        if accelerator.is_main_process:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path(self.config.out) if self.config.out else Path("runs") / f"{stamp}-{run_name(self.config)}"
            chosen = [str(artifacts.prepare_out_dir(out, self.config.overwrite))]
        if accelerator.num_processes > 1:
            broadcast_object_list(chosen, from_process=0)
        return Path(chosen[0])

    def manifest(self, status: str, error: str | None = None) -> dict[str, Any]:
        ctx = self.ctx
        dataset = ctx.dataset
        return {
            "format": MANIFEST_FORMAT,
            "status": status,
            "error": error,
            "name": run_name(self.config),
            "started_at": datetime.fromtimestamp(self.started, timezone.utc).isoformat(),
            "wall_seconds": round(time.time() - self.started, 3),
            "command": sys.argv,
            "versions": {**package_versions(), "python": platform.python_version()},
            "platform": platform.platform(),
            "plugins": [info.to_dict() for info in self.pm.plugin_infos()],
            "seed": self.config.seed,
            "config": self.config.to_dict(),
            "accelerate": accelerate_topology(ctx.accelerator),
            "dataset": None
            if dataset is None
            else {
                "name": dataset.name,
                "class_names": dataset.class_names,
                "image_shape": list(dataset.image_shape),
                "train_size": len(dataset.train),
                "test_size": len(dataset.test),
                "mean": list(dataset.mean),
                "std": list(dataset.std),
                "description": dataset.description,
            },
            "stages": self.stages.to_dict(),
            "hook_calls": self.hooks.stats_dict(),
            "records": ctx.records,
        }

    def _write_manifest(self, status: str, error: str | None = None) -> dict[str, Any]:
        manifest = self.manifest(status, error)
        if self.ctx.out_dir is not None and self.ctx.is_main_process:
            write_json(self.ctx.out_dir / artifacts.MANIFEST_FILE, manifest)
        return manifest

    def build_dataset(self) -> ImageDataset:
        config = self.config
        options = DatasetOptions(
            root=Path(config.data_root).expanduser() if config.data_root else None,
            image_size=config.image_size or None,
            workers=config.workers,
            cache_dir=self.ctx.cache_dir,
        )
        with self.stages.stage("dataset"):
            with self.ctx.accelerator.main_process_first():
                dataset = self.registry.build(config.dataset, options)
        check_ipc(config, dataset)
        self.ctx.dataset = dataset
        self.ctx.model_spec = self.model_spec()
        return dataset

    def session(self) -> DistillSession:
        """The services the distiller gets: checkpoints (resumed from the newest), periodic evaluation, artifacts."""
        ctx = self.ctx
        checkpoints = ctx.out_dir / artifacts.CHECKPOINT_DIR if ctx.out_dir is not None else None
        session = DistillSession(ctx, self.distiller_entry.name, checkpoints, self.periodic_evaluation, self.stages.stage)
        session.load_latest()
        return session

    def initial_set(self, session: DistillSession) -> DistilledSet:
        """The distiller's own initial set, else ``dd_select`` then ``dd_initialize``; a resumed run reloads
        the initial set it saved instead."""
        ctx = self.ctx
        saved = ctx.out_dir / artifacts.CHECKPOINT_DIR / artifacts.INITIAL_FILE if ctx.out_dir else None
        if saved is not None and saved.exists():
            ctx.reporter.info(f"resuming: initial set from {saved}")
            records = saved.with_name(artifacts.INITIAL_RECORDS_FILE)
            if records.exists():
                before = artifacts.read_json(records, "initial records")
                ctx.records.update({k: v for k, v in before.get("records", {}).items() if k not in ctx.records})
                for name, stage in before.get("stages", {}).items():
                    self.stages.stages.setdefault(name, {**stage, "resumed": True})
            return DistilledSet.load(saved)
        with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
            distilled = self.distiller.initial_set(session)
        if distilled is None:
            with self.stages.stage("select"):
                selection = self.hooks.select(ctx, ctx.dataset, self.config.ipc)
            with self.stages.stage("initialize"):
                distilled = self.hooks.initialize(ctx, selection)
        if saved is not None and self.config.distill != NONE and ctx.is_main_process:
            write_json(saved.with_name(artifacts.INITIAL_RECORDS_FILE), {"records": ctx.records, "stages": self.stages.to_dict()})
            distilled.save(saved)
        return distilled

    def model_spec(self):
        """The network of the experts, the matcher and the evaluator (the resolved ``[eval]`` model)."""
        from ddcore.presets import resolve_eval

        return resolve_eval(self.config.eval, self.ctx.dataset).model

    def periodic_evaluation(self, distilled: DistilledSet, runs: int = 1) -> float:
        """Mean test accuracy of ``runs`` networks trained with the ``[eval]`` recipe (a distiller's periodic check)."""
        from ddcore.builtin.evaluate import evaluate_once
        from ddcore.presets import resolve_eval

        settings = resolve_eval(self.config.eval, self.ctx.dataset)
        return sum(evaluate_once(self.ctx, settings, distilled, "distilled", r) for r in range(runs)) / runs

    def distill(self, initial: DistilledSet, session: DistillSession) -> DistilledSet:
        """Run the chosen distiller; its errors name its plugin."""
        if self.config.distill == NONE:
            return initial
        with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
            distilled = self.distiller.distill(initial, session)
        if not isinstance(distilled, DistilledSet):
            raise PluginError(
                f'distiller "{self.distiller_entry.name}" returned {type(distilled).__name__}, expected a ddcore.DistilledSet',
                plugin=self.distiller_entry.plugin,
            )
        try:
            distilled.validate()
        except ValueError as exc:
            raise PluginError(f'distiller "{self.distiller_entry.name}" returned an invalid set: {exc}',
                              plugin=self.distiller_entry.plugin) from exc  # fmt: skip
        return distilled

    def execute(self) -> RunResult:
        ctx, hooks, reporter = self.ctx, self.hooks, self.ctx.reporter
        dataset = self.build_dataset()  # checks ipc against the class sizes before anything is written
        with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
            self.distiller.check()
        if self.write:
            ctx.out_dir = self._out_dir()
            if ctx.is_main_process:
                reporter.attach_log_file(ctx.out_dir / artifacts.LOG_FILE)
        self._write_manifest("running")
        try:
            reporter.info(
                f"dataset {dataset.name}: {len(dataset.train)} train / {len(dataset.test)} test images, "
                f"{dataset.num_classes} classes, {dataset.image_shape}"
            )
            session = self.session()
            distilled = self.initial_set(session)
            reporter.info(
                f"selected by {distilled.meta.get('selected_by')}, initialised by {distilled.meta.get('initialized_by')}: "
                f"{distilled.images.shape[0]} images"
            )
            distilled = self.distill(distilled, session)
            with self.stages.stage("evaluate"):
                metrics = hooks.evaluate(ctx, distilled)
            if ctx.out_dir is not None and ctx.is_main_process:
                with self.stages.stage("artifacts"):
                    distilled.save(ctx.out_dir / artifacts.DISTILLED_FILE)
                    artifacts.save_grid(distilled, ctx.out_dir / artifacts.GRID_FILE)
                    artifacts.save_metrics(ctx.out_dir / artifacts.METRICS_FILE, metrics)
                    for file_name, value in session.artifacts.items():
                        write_json(ctx.out_dir / file_name, value)
            manifest = self._write_manifest("complete")
        except BaseException as exc:
            self._write_manifest("failed", f"{type(exc).__name__}: {exc}")
            raise
        finally:
            reporter.close()
        return RunResult(ctx.out_dir, metrics, distilled, manifest, self.config)


def run(
    config: Mapping[str, Any] | RunConfig | None = None,
    plugins: Sequence[str | object] = (),
    *,
    quiet: bool = True,
    write: bool = True,
) -> RunResult:
    """Run the pipeline in this process and return its :class:`RunResult`.

    Args:
        config: a mapping shaped like the TOML config (``{"dataset": "digits", "ipc": 1, "eval": {...}}``)
            or a :class:`RunConfig`.
        plugins: extra plugins to activate after ``config["plugins"]``: entry-point names, paths to
            ``.py`` files, or plugin objects (instances, modules or classes with ``@hookimpl`` methods).
        quiet: no progress bars or info lines.
        write: ``False`` keeps everything in memory (no run directory).

    >>> result = run({"ipc": 1, "eval": {"runs": 0}}, write=False)  # doctest: +SKIP
    """
    return Pipeline(config, plugins, quiet=quiet, write=write).execute()


def read_run_manifest(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory (argument RUN_DIR)")
    return artifacts.read_json(run_dir / artifacts.MANIFEST_FILE, "run manifest")


def recorded_config(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A run's resolved config with its entry-point and file plugins re-requested (objects cannot be)."""
    recorded = dict(manifest.get("config") or {})
    plugins = [info for info in manifest.get("plugins", []) if info.get("source") in ("entry-point", "file")]
    recorded["plugins"] = [info["name"] if info["source"] == "entry-point" else info["value"] for info in plugins]
    reactivated = {info["name"] for info in plugins}
    recorded["plugin"] = {k: v for k, v in (recorded.get("plugin") or {}).items() if k in reactivated}
    return recorded


def resume_run(run_dir: str | Path, plugins: Sequence[str | object] = (), *, quiet: bool = True) -> RunResult:
    """Continue an interrupted run in ``run_dir`` with its recorded config; ends as an uninterrupted run would.

    The initial set and the newest good trajectory-matching checkpoint are reloaded from
    ``run_dir/checkpoints``. Plugins given as objects must be passed again in ``plugins``.
    """
    run_dir = Path(run_dir)
    manifest = read_run_manifest(run_dir)
    if manifest.get("status") == "complete":
        raise DDError(f"{run_dir} holds a complete run; there is nothing to resume")
    config = {**recorded_config(manifest), "out": str(run_dir), "overwrite": True}
    return Pipeline(config, plugins, quiet=quiet).execute()


def evaluate_saved_run(
    run_dir: str | Path,
    overrides: Mapping[str, Any] | None = None,
    plugins: Sequence[str | object] = (),
    *,
    quiet: bool = True,
) -> tuple[dict[str, Any], Path]:
    """Re-evaluate the distilled set saved in ``run_dir`` with its recorded config (``overrides`` win).

    The run's plugins are re-activated by name (entry points) or path (local files); the metrics are
    written to ``RUN_DIR/eval-<timestamp>.json`` (the run's own ``metrics.json`` is never touched).
    Returns ``(metrics, path written)``.
    """
    from ddcore.config import deep_merge

    run_dir = Path(run_dir)
    manifest = read_run_manifest(run_dir)
    distilled = DistilledSet.load(run_dir / artifacts.DISTILLED_FILE)
    recorded = recorded_config(manifest)
    pipeline = Pipeline(deep_merge(recorded, dict(overrides or {})), plugins, quiet=quiet, write=False)
    pipeline.ctx.out_dir = run_dir
    pipeline.build_dataset()
    with pipeline.stages.stage("evaluate"):
        metrics = pipeline.hooks.evaluate(pipeline.ctx, distilled)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = run_dir / f"eval-{stamp}.json"
    if pipeline.ctx.is_main_process:
        write_json(path, {"metrics": metrics, "config": pipeline.config.to_dict(), "records": pipeline.ctx.records})
    return metrics, path
