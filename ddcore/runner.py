"""The run pipeline: config -> plugins -> dataset -> select -> initialize -> (distill) -> evaluate -> artifacts.

:func:`run` is the in-process API (``ddcore.run``); ``dd run`` is a thin layer over it. Everything
that can be checked is checked before any work: the configuration, the plugins and their options,
the strategy choice, the dataset name, the output directory and ``ipc`` against the class sizes.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping, Sequence

from ddcore import artifacts, trackers
from ddcore.atomic import write_json
from ddcore.config import RunConfig, build_config, from_mapping
from ddcore.context import RunContext
from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.registry import DatasetRegistry
from ddcore.distilled import DistilledSet
from ddcore.distillers import NONE, Distiller, DistillerRegistry, DistillSession, check_distill_hooks, resolve_distiller
from ddcore.errors import ConfigError, DDError, PluginCrash, PluginError, attributed_to
from ddcore.hooks import Hooks
from ddcore.plugins import DDPluginManager, get_plugin_manager
from ddcore.reporting import Reporter
from ddcore.stages import StageRecorder
from ddcore.storage import StorageError, probe_dir

MANIFEST_FORMAT = 1
#: How long the main process of a multi-process run waits for the other processes' error files when it
#: lost its peers (a collective failed), to record the root cause instead of "Connection closed by peer".
PEER_ERROR_WAIT_S = 10.0
#: Words of the errors a collective raises when another process has gone (gloo, NCCL, torch.distributed).
COLLECTIVE_ERROR_WORDS = ("connection closed by peer", "connection reset by peer", "broken pipe", "gloo", "nccl",
                          "socket timeout", "timed out waiting", "connection refused")  # fmt: skip
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


def cache_location(config: RunConfig) -> tuple[Path, str, str]:
    """The run's cache folder, what chose it and how to change it, for messages:
    ``(path, "--cache-dir" | "DDCORE_CACHE" | "XDG_CACHE_HOME" | "the default cache folder", fix)``."""
    if config.cache_dir:
        return Path(config.cache_dir).expanduser(), "--cache-dir", "choose another --cache-dir"
    if os.environ.get("DDCORE_CACHE"):
        return default_cache_dir(), "DDCORE_CACHE", "set DDCORE_CACHE to a writable folder, or pass --cache-dir"
    if os.environ.get("XDG_CACHE_HOME"):
        return default_cache_dir(), "XDG_CACHE_HOME", "pass --cache-dir (or set DDCORE_CACHE)"
    return default_cache_dir(), "the default cache folder", "pass --cache-dir (or set DDCORE_CACHE)"


class PeerFailure(DDError):
    """Another process of a multi-process run failed first; this one then lost its peers.

    ``str(err)`` names the process, its error and the file holding its traceback; ``exit_code`` is 2 when the
    root cause is a problem the user can fix (a :class:`DDError` there), 1 otherwise (a bug).
    """

    def __init__(self, record: Mapping[str, Any], own: BaseException):
        self.record = dict(record)
        self.exit_code = 2 if record.get("user_error") else 1
        super().__init__(
            f"process {record['process']} failed: {record.get('error')} (see {record.get('file')}; this process "
            f"then lost its peers: {type(own).__name__})"
        )


class ProcessTerminated(BaseException):
    """SIGTERM reached a process of a multi-process run (``torchrun`` stops the others when one fails)."""


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what it was raised from) is a collective that failed because a peer went away."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ProcessTerminated) or type(current).__name__ in ("DistBackendError", "DistNetworkError"):
            return True
        if isinstance(current, RuntimeError) and any(w in str(current).lower() for w in COLLECTIVE_ERROR_WORDS):
            return True
        current = current.__cause__ or current.__context__
    return False


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
        resume: str | Path | None = None,
        given: Any = None,
    ):
        self.started = time.time()
        self.config = build_config(config)
        self.tracker_names = trackers.check_trackers(self.config.log_with) if write else []  # none for in-memory runs
        #: ``dd run --resume``: the run directory being continued (a fresh run reads nothing from its --out).
        self.resume_dir = Path(resume) if resume is not None else None
        #: ``dd eval --distilled`` (:mod:`ddcore.external`): ``given(ctx, dataset) -> DistilledSet``, called once the
        #: dataset is built and before anything is written; the set it returns is saved and evaluated (no select/distill).
        self.given = given
        self.resume_manifest: dict[str, Any] = read_run_manifest(self.resume_dir) if self.resume_dir is not None else {}
        #: Stages whose output is saved in the run directory: "initial" (checkpoints/initial.pt), "distilled".
        self.finished: list[str] = []
        self.fingerprint: dict[str, Any] | None = None
        self.distilled_records: list[str] | None = None  # record keys made before the set was distilled
        self.last_stage: str | None = None
        self._stop_on_sigterm = False
        # Every location the run writes, proved writable before any work (ddcore.storage): the cache folder
        # (each process: they may not share a file system), then the run directory (the main process).
        self.cache_dir, cache_option, cache_fix = cache_location(self.config)
        launched_together = int(os.environ.get("WORLD_SIZE", "1")) > 1  # then one process may probe in the other's folder
        probe_dir(self.cache_dir, cache_option, fix=cache_fix, keep=launched_together)  # else a refused run leaves no folder
        if write and int(os.environ.get("RANK", "0")) == 0:
            if self.resume_dir is not None:
                probe_dir(self.resume_dir, "--resume", fix="make the run directory writable, or start a new run with another --out")
            elif self.config.out:
                artifacts.check_out_dir(Path(self.config.out), self.config.overwrite)
                probe_dir(self.config.out, "--out", keep=False)  # leaves no folder behind
            else:
                probe_dir("runs", "--out (default: runs/)", keep=False)
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

        accelerator = Accelerator(cpu=self.config.cpu or not accelerator_available(), **trackers.accelerator_options(self.tracker_names))
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
            cache_dir=self.cache_dir,
            plugin_options=plugin_options,
            distill_calls=self.distiller_entry.calls,
        )
        self.stages = StageRecorder(on_event=self._stage_event)
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
        if accelerator.is_main_process and self.resume_dir is not None:
            chosen = [str(artifacts.probe_out_dir(self.resume_dir))]
            shutil.rmtree(self.resume_dir / artifacts.ERRORS_DIR, ignore_errors=True)  # an earlier attempt's errors
        elif accelerator.is_main_process:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
            out = Path(self.config.out) if self.config.out else Path("runs") / f"{stamp}-{run_name(self.config)}"
            chosen = [str(artifacts.prepare_out_dir(out, self.config.overwrite))]
        if accelerator.num_processes > 1:
            broadcast_object_list(chosen, from_process=0)
        return Path(chosen[0])

    def _stage_event(self, message: str) -> None:
        """A stage started or ended: a line in ``run.log`` and a heartbeat in the manifest (:meth:`heartbeat`)."""
        self.ctx.reporter.note(message)
        if message.startswith("stage ") and message.endswith(": started"):
            self.last_stage = message[len("stage ") : -len(": started")]
        self.heartbeat()

    def heartbeat(self) -> None:
        """Rewrite the ``running`` manifest with the time and the last stage (cheap; at stage boundaries), so that
        ``dd show`` can tell a live run from a dead one. Never fails the run: a write error is left to the next
        write that matters."""
        if self.ctx.out_dir is None or not self.ctx.is_main_process or not self.write:
            return
        try:
            self._write_manifest("running")
        except Exception:  # noqa: BLE001 - the writes that matter (stage ends, failure) report it
            pass

    def manifest(self, status: str, error: str | None = None) -> dict[str, Any]:
        ctx = self.ctx
        dataset = ctx.dataset
        return {
            "format": MANIFEST_FORMAT,
            "status": status,
            "error": error,
            "finished": list(self.finished),
            "failed_stage": self.stages.failed if status == "failed" else None,
            "process": artifacts.process_identity(),
            "heartbeat_at": datetime.now(timezone.utc).isoformat(),
            "last_stage": self.last_stage,
            "resumed": self.resume_dir is not None,
            "fingerprint": self.fingerprint,
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
            "distilled_records": self.distilled_records,
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
            zca=config.zca,
        )
        with self.stages.stage("dataset"):
            with self.ctx.accelerator.main_process_first():
                dataset = self.registry.build(config.dataset, options)
        from ddcore.data.split import carve_validation, split_record, validation_reason

        reason = validation_reason(config)  # a validation split, held out of train, when something selects
        if reason is not None:
            dataset = carve_validation(dataset, config.validation, config.seed)
        self.ctx.record("validation", split_record(dataset, config.validation, config.seed, reason))
        if self.given is None:  # a given set (dd eval --distilled) is checked by its reader
            check_ipc(config, dataset)
        self.ctx.dataset = dataset
        self.ctx.model_spec = self.model_spec()
        self.ctx.record("model", {**self.ctx.model_spec.__dict__, "image_size": dataset.image_shape[-1]})
        return dataset

    def session(self) -> DistillSession:
        """The services the distiller gets: checkpoints (resumed from the newest), periodic evaluation, artifacts."""
        ctx = self.ctx
        checkpoints = ctx.out_dir / artifacts.CHECKPOINT_DIR if ctx.out_dir is not None else None
        session = DistillSession(ctx, self.distiller_entry.name, checkpoints, self.periodic_evaluation, self.stages.stage,
                                 fingerprint=self.fingerprint, resuming=self.resume_dir is not None,
                                 heartbeat=self.heartbeat)  # fmt: skip
        session.load_latest()
        return session

    def initial_set(self, session: DistillSession) -> DistilledSet:
        """The distiller's own initial set, else ``dd_select`` then ``dd_initialize``; a resumed run reloads
        the initial set it saved instead."""
        ctx = self.ctx
        saved = ctx.out_dir / artifacts.CHECKPOINT_DIR / artifacts.INITIAL_FILE if ctx.out_dir else None
        if saved is not None and self.resume_dir is not None and saved.exists():  # a fresh run never reads one
            ctx.reporter.info(f"resuming: initial set from {saved}")
            records = saved.with_name(artifacts.INITIAL_RECORDS_FILE)
            self.check_fingerprint(artifacts.read_json(records, "initial records").get("fingerprint") if records.exists() else None, saved)
            if records.exists():
                before = artifacts.read_json(records, "initial records")
                ctx.records.update({k: v for k, v in before.get("records", {}).items() if k not in ctx.records})
                for name, stage in before.get("stages", {}).items():
                    self.stages.stages.setdefault(name, {**stage, "resumed": True})
            initial = DistilledSet.load(saved)
            from ddcore.datasig import require_same_data

            require_same_data(initial.signature(), ctx.dataset, what=f"the initial set {saved} of the run being resumed",
                              fix="resume on the data the run started from, or start afresh with --overwrite")  # fmt: skip
            return initial
        with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
            distilled = self.distiller.initial_set(session)
        if distilled is None:
            with self.stages.stage("select"):
                selection = self.hooks.select(ctx, ctx.dataset, self.config.ipc)
            with self.stages.stage("initialize"):
                distilled = self.hooks.initialize(ctx, selection)
        if saved is not None and self.config.distill != NONE and ctx.is_main_process:
            write_json(saved.with_name(artifacts.INITIAL_RECORDS_FILE),
                       {"records": ctx.records, "stages": self.stages.to_dict(), "fingerprint": self.fingerprint})  # fmt: skip
            distilled.save(saved, ctx.dataset)
        return distilled

    def model_spec(self):
        """The network of the experts, the matcher and the evaluator (the resolved ``[eval]`` model)."""
        from ddcore.presets import resolve_eval

        return resolve_eval(self.config.eval, self.ctx.dataset).model

    def periodic_evaluation(self, distilled: DistilledSet, runs: int = 1) -> float:
        """Mean **validation** accuracy of ``runs`` networks trained with the ``[eval]`` recipe (a distiller's
        periodic check, which may keep the best set): never the test split. Raises :class:`DDError` when the
        run carved no validation split (``ddcore.data.split``)."""
        from ddcore.builtin.evaluate import evaluate_once
        from ddcore.presets import resolve_eval

        if getattr(self.ctx.dataset, "val", None) is None:
            raise DDError(
                f'distiller "{self.distiller_entry.name}" asked for a periodic evaluation, but the run has no validation '
                "split to measure it on (the test split is never used to choose); set holdout = 'always' and validation > 0"
            )
        settings = resolve_eval(self.config.eval, self.ctx.dataset)
        return sum(evaluate_once(self.ctx, settings, distilled, "distilled", r, split="val") for r in range(runs)) / runs

    def distill(self, initial: DistilledSet, session: DistillSession) -> DistilledSet:
        """Run the chosen distiller; its errors name its plugin and say which checkpoint is left to resume from."""
        if self.config.distill == NONE:
            return initial
        try:
            with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
                distilled = self.distiller.distill(initial, session)
        except BaseException as exc:
            if self.stages.failed is None:  # a distiller that times no stage of its own
                self.stages.failed = "distill"
            if isinstance(exc, (DDError, PluginCrash)) and self.write and exc.args and isinstance(exc.args[0], str):
                exc.args = (f"{exc.args[0]} ({session.checkpoint_note()})", *exc.args[1:])
            raise
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

    # ------------------------------------------------------------------------------------------
    # Checks before any file is written
    # ------------------------------------------------------------------------------------------

    def check_labels(self) -> None:
        """Refuse ``eval.labels = "soft"`` (``--labels soft``) when the distiller declares hard labels
        (:meth:`ddcore.distillers.Distiller.label_kind`); one-line :class:`ConfigError`."""
        if self.config.eval.labels != "soft":
            return
        plugin_init = self.hooks.optional_implementers("dd_initialize") or self.distiller.replaces_selection
        initial = None if plugin_init else "hard"  # the built-in initialisation keeps the selection's hard labels
        if self.distiller.label_kind(initial) == "hard":
            name = self.distiller_entry.name
            why = "the selected images' hard labels" if name == NONE else f"hard labels (distiller '{name}' with these options)"
            raise ConfigError(
                f"--labels soft (eval.labels = 'soft') needs a set with soft labels, but this run's set will have {why}; "
                "pass --labels auto or --labels hard (or a distiller/initialisation that makes soft labels)"
            )

    def check_network(self) -> None:
        """Build the run's network on the meta device (no memory, no time) so that an image size it cannot take
        is refused before any work, naming ``--image-size`` and the network options."""
        if self.config.eval.runs == 0 and self.config.distill == NONE:
            return  # no network of the run's is ever built
        import torch

        from ddcore.models import build_model

        dataset, spec = self.ctx.dataset, self.ctx.model_spec
        channels, size, _ = dataset.image_shape
        try:
            with torch.device("meta"):
                build_model(spec, dataset.num_classes, channels, size)
        except ConfigError as exc:
            raise ConfigError(
                f"{exc}: the run's images are {size} px; change option --image-size, or the network "
                "(--eval-model, eval.depth)"
            ) from None
        except Exception:  # noqa: BLE001 - a layer the meta device cannot build: the real build reports it later
            pass

    def run_fingerprint(self) -> dict[str, Any]:
        """This run's :mod:`ddcore.run_fingerprint` (resolved config, re-activatable plugins, data signature)."""
        from ddcore.datasig import data_signature
        from ddcore.run_fingerprint import run_fingerprint

        plugins = [info.name for info in self.pm.plugin_infos() if info.source in ("entry-point", "file")]
        return run_fingerprint(self.config.to_dict(), plugins, data_signature(self.ctx.dataset))

    def check_fingerprint(self, saved: Any, what: Path, *, distilled: bool = False) -> None:
        """Refuse to continue from ``what`` when it was saved by a run with another fingerprint (one line)."""
        from ddcore.run_fingerprint import describe_difference, first_difference

        if self.fingerprint is None:
            return
        if not isinstance(saved, Mapping):
            raise ConfigError(f"{what} records no run fingerprint (an older ddcore, or a damaged run); "
                              "start afresh with --overwrite")  # fmt: skip
        key = first_difference(saved, self.fingerprint, distilled=distilled)
        if key is not None:
            later = "only eval.* options may change once the set is distilled" if distilled else (
                "nothing that shapes the distilled set may change before it is distilled")
            raise ConfigError(
                f"cannot resume from {what}: it was saved with another {describe_difference(key, saved, self.fingerprint)}; "
                f"{later} (start a new run with another --out, or --overwrite)"
            )

    def check_resume(self) -> None:
        """What a resumed run continues from: the stages its directory finished, checked against this run's
        fingerprint (the ``eval.*`` keys are free once the set is distilled)."""
        run_dir, manifest = self.resume_dir, self.resume_manifest
        files = {"initial": run_dir / artifacts.CHECKPOINT_DIR / artifacts.INITIAL_FILE, "distilled": run_dir / artifacts.DISTILLED_FILE}
        self.finished = [stage for stage in manifest.get("finished") or [] if stage in files and files[stage].is_file()]
        self.check_fingerprint(manifest.get("fingerprint"), run_dir / artifacts.MANIFEST_FILE, distilled="distilled" in self.finished)

    def log_resolved(self) -> None:
        """The resolved presets and options, for ``run.log``."""
        import json

        from ddcore.presets import resolve_eval

        reporter, config = self.ctx.reporter, self.config
        reporter.note(f"run {run_name(config)}: dataset {config.dataset}, ipc {config.ipc}, seed {config.seed}, "
                      f"distill {config.distill}, plugins {[i.name for i in self.pm.plugin_infos()]}")  # fmt: skip
        if config.distill_options is not None:
            reporter.note(f"resolved [{config.distill}]: {json.dumps(config.to_dict().get(config.distill), default=str)}")
        reporter.note(f"resolved [eval]: {json.dumps(resolve_eval(config.eval, self.ctx.dataset).to_dict(), default=str)}")

    # ------------------------------------------------------------------------------------------
    # Saved stages
    # ------------------------------------------------------------------------------------------

    def save_distilled(self, distilled: DistilledSet, session: DistillSession | None) -> None:
        """Save the distilled set (``distilled.pt``, ``grid.png``) and the distiller's artifacts as soon as the set
        exists, before evaluation; the manifest then records the ``distilled`` stage as finished."""
        ctx = self.ctx
        if ctx.out_dir is None:
            return
        if ctx.is_main_process:
            with self.stages.stage("artifacts"):
                distilled.save(ctx.out_dir / artifacts.DISTILLED_FILE, ctx.dataset)
                artifacts.save_grid(ctx.dataset.viewable(distilled), ctx.out_dir / artifacts.GRID_FILE)  # ZCA undone
                self.write_session_artifacts(session)
        self.finished = [*[s for s in self.finished if s != "distilled"], "distilled"]
        self.distilled_records = sorted(ctx.records)
        self._write_manifest("running")
        ctx.reporter.note(f"distilled set saved: {ctx.out_dir / artifacts.DISTILLED_FILE} ({distilled.images.shape[0]} images)")

    def write_session_artifacts(self, session: DistillSession | None) -> None:
        """The distiller's JSON artifacts (``tm_log.json``), as far as they go (also after a failure)."""
        if session is None or self.ctx.out_dir is None or not self.ctx.is_main_process:
            return
        for file_name, value in session.artifacts.items():
            write_json(self.ctx.out_dir / file_name, value)

    def load_distilled(self) -> DistilledSet:
        """A resumed run whose set is distilled: ``distilled.pt`` (checked against the data), and the initial set
        it started from (``checkpoints/initial.pt``; for ``distill = "none"`` the set itself) as ``ctx.initial``."""
        from ddcore.datasig import require_same_data

        ctx, run_dir = self.ctx, self.resume_dir
        path = run_dir / artifacts.DISTILLED_FILE
        fix = "resume on the data the run started from, or start afresh with --overwrite"
        distilled = DistilledSet.load(path)
        require_same_data(distilled.signature(), ctx.dataset, what=f"the distilled set {path} of the run being resumed", fix=fix)
        initial_path = run_dir / artifacts.CHECKPOINT_DIR / artifacts.INITIAL_FILE
        ctx.initial = distilled
        if "initial" in self.finished:
            ctx.initial = DistilledSet.load(initial_path)
            require_same_data(ctx.initial.signature(), ctx.dataset, what=f"the initial set {initial_path} of the run being resumed", fix=fix)
        before = self.resume_manifest
        kept = set(before.get("distilled_records") or [])
        ctx.records.update({k: v for k, v in (before.get("records") or {}).items() if k in kept and k not in ctx.records})
        for name, stage in (before.get("stages") or {}).items():
            if name != "evaluate":
                self.stages.stages.setdefault(name, {**stage, "resumed": True})
        self.distilled_records = sorted(ctx.records)
        ctx.reporter.info(f"resuming after distillation: the distilled set from {path}")
        return distilled

    def execute(self) -> RunResult:
        """Do the run; see :func:`run`. In a multi-process run, a failing process writes its error to
        ``RUN/errors/process-<i>.json`` and the main process records the root cause (:meth:`_record_process_error`)."""
        multi = self.ctx.num_processes > 1
        previous = self._catch_sigterm() if multi else None
        try:
            return self._execute()
        except BaseException as exc:
            self._stop_on_sigterm = False  # what follows (the error records) must not be cut short
            named = exc.naming(self.write_locations()) if isinstance(exc, StorageError) else exc  # the option to change
            replacement = self._record_process_error(named) if multi else None
            if replacement is not None:
                raise replacement from None
            if named is not exc:
                raise named from None
            raise
        finally:
            self.ctx.reporter.close()
            trackers.end(self.ctx)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def _catch_sigterm(self) -> Any:
        """``torchrun`` stops the other processes with SIGTERM when one fails: turn it into an exception (in the
        main thread only), so that this process still records what happened."""
        if threading.current_thread() is not threading.main_thread():
            return None

        def stop(signum: int, frame: Any) -> None:
            if self._stop_on_sigterm:
                self._stop_on_sigterm = False
                raise ProcessTerminated("stopped by SIGTERM (another process failed)")

        self._stop_on_sigterm = True
        return signal.signal(signal.SIGTERM, stop)

    def _errors_dir_run(self) -> Path | None:
        """The run directory the processes share, once known (``--out`` or ``--resume`` before it is broadcast)."""
        if self.ctx.out_dir is not None:
            return self.ctx.out_dir
        known = self.resume_dir or (Path(self.config.out) if self.config.out and self.write else None)
        return known if known is not None and known.is_dir() else None

    def _record_process_error(self, exc: BaseException) -> BaseException | None:
        """Write this process's error to ``RUN/errors/process-<i>.json``; on the main process, when ``exc`` is a
        collective that failed because a peer went away, wait up to :data:`PEER_ERROR_WAIT_S` for the other
        processes' files and return the :class:`PeerFailure` naming the root cause (also recorded in the
        manifest's ``error`` and ``run.log``). ``None``: ``exc`` is the error to report."""
        ctx = self.ctx
        run_dir = self._errors_dir_run()
        if run_dir is None:
            return None
        collective = is_collective_failure(exc)
        record = {
            "error": exc.cli_message() if isinstance(exc, DDError) else f"{type(exc).__name__}: {exc}",
            "type": type(exc).__name__,
            "user_error": isinstance(exc, DDError),
            "collective": collective,
            "stage": self.stages.failed or self.last_stage,
            "num_processes": ctx.num_processes,
            "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        }
        try:
            artifacts.write_process_error(run_dir, ctx.process_index, record)
        except (OSError, DDError):
            pass
        if not (ctx.is_main_process and collective):
            return None
        deadline = time.monotonic() + PEER_ERROR_WAIT_S

        def peer_cause() -> dict[str, Any] | None:  # this attempt's files only (the processes start together)
            records = [r for r in artifacts.read_process_errors(run_dir) if float(r.get("at") or 0) >= self.started - 5]
            return artifacts.root_cause(records, exclude=ctx.process_index)

        cause = peer_cause()
        while cause is None and time.monotonic() < deadline:
            time.sleep(0.2)
            cause = peer_cause()
        if cause is None:
            return None
        failure = PeerFailure(cause, exc)
        ctx.reporter.note(f"root cause: {failure}", level=logging.ERROR)
        if ctx.out_dir is not None and self.write:
            try:
                self._write_manifest("failed", f"process {cause['process']}: {cause.get('error')}")
            except Exception:  # noqa: BLE001 - reporting a failure must not replace it
                pass
        return failure

    def _execute(self) -> RunResult:
        ctx, hooks, reporter = self.ctx, self.hooks, self.ctx.reporter
        dataset = self.build_dataset()  # checks ipc against the class sizes before anything is written
        given = self.given(ctx, dataset) if self.given is not None else None  # checked against the dataset
        if given is None:
            self.check_labels()
        self.check_network()
        with attributed_to(f'distiller "{self.distiller_entry.name}"', self.distiller_entry.plugin):
            self.distiller.check()
        self.fingerprint = self.run_fingerprint()
        if self.resume_dir is not None:
            self.check_resume()
        if self.write:
            ctx.out_dir = self._out_dir()
            if ctx.is_main_process:
                reporter.attach_log_file(ctx.out_dir / artifacts.LOG_FILE)
        if self.resume_dir is not None:
            reporter.note(f"resuming {self.resume_dir} (finished: {', '.join(self.finished) or 'nothing'})")
        self.log_resolved()
        self._write_manifest("running")
        session: DistillSession | None = None
        try:
            trackers.start(ctx, run_name(self.config), self.config.to_dict())  # a failure is recorded as the run's
            reporter.info(
                f"dataset {dataset.name}: {len(dataset.train)} train / {len(dataset.test)} test images, "
                f"{dataset.num_classes} classes, {dataset.image_shape}"
            )
            if given is not None:
                distilled = given
                self.save_distilled(distilled, None)
            elif "distilled" in self.finished:
                distilled = self.load_distilled()
            else:
                session = self.session()
                distilled = self.initial_set(session)
                ctx.initial = distilled
                if self.config.distill != NONE and ctx.out_dir is not None and "initial" not in self.finished:
                    self.finished.append("initial")
                    self._write_manifest("running")
                reporter.info(
                    f"selected by {distilled.meta.get('selected_by')}, initialised by {distilled.meta.get('initialized_by')}: "
                    f"{distilled.images.shape[0]} images"
                )
                distilled = self.distill(distilled, session)
                self.save_distilled(distilled, session)
            with self.stages.stage("evaluate"):
                metrics = hooks.evaluate(ctx, distilled)
            if ctx.num_processes > 1:
                ctx.accelerator.wait_for_everyone()  # a process that failed after the last collective fails this run
            if ctx.out_dir is not None and ctx.is_main_process:
                artifacts.save_metrics(ctx.out_dir / artifacts.METRICS_FILE, metrics)
            trackers.log_final(ctx, metrics)
            reporter.note("results: " + (", ".join(f"{k} = {v}" for k, v in metrics.items() if not isinstance(v, (list, dict)))
                                         if metrics else "none (no evaluation)"))  # fmt: skip
            manifest = self._write_manifest("complete")
        except BaseException as exc:
            self._stop_on_sigterm = False
            if isinstance(exc, StorageError):
                exc = exc.naming(self.write_locations())
            message = f"{type(exc).__name__}: {exc}"
            if "distilled" not in self.finished:
                try:
                    self.write_session_artifacts(session)  # e.g. the loss history up to the failure
                except (OSError, DDError):
                    pass
            saved = " (the distilled set is saved: redo the evaluation with `dd eval` or `dd run --resume`)" if "distilled" in self.finished else ""
            reporter.note(f"error in stage {self.stages.failed or 'setup'}: {message}{saved}", level=logging.ERROR)
            try:
                self._write_manifest("failed", message)
            except (OSError, DDError) as unwritten:  # e.g. the disk is full: the original error is the one to report
                reporter.note(f"the manifest could not be marked failed: {unwritten}", level=logging.ERROR)
            if isinstance(exc, StorageError):
                raise exc from None
            raise
        return RunResult(ctx.out_dir, metrics, distilled, manifest, self.config)

    def write_locations(self) -> dict[str, Path]:
        """Where this run writes, by the option that chose each folder (for :class:`StorageError` messages)."""
        found: dict[str, Path] = {}
        if self.ctx.out_dir is not None:
            found["--out" if self.resume_dir is None else "run directory (--resume)"] = self.ctx.out_dir
        found["--cache-dir"] = self.cache_dir
        return found

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


def resume_run(
    run_dir: str | Path,
    plugins: Sequence[str | object] = (),
    *,
    quiet: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> RunResult:
    """Continue a run in ``run_dir`` from its last finished stage with its recorded config; ends as an
    uninterrupted run would.

    What is reloaded: ``distilled.pt`` when the distillation had finished (only the evaluation is redone),
    else ``checkpoints/initial.pt`` and the newest good checkpoint of the distiller. ``overrides`` (a config
    mapping, e.g. ``{"eval": {"labels": "hard"}}``) may change only what does not shape what is saved:
    ``eval.*`` once the set is distilled, and where the run reads or writes (``workers``, ``cache_dir``,
    ``data_root``, ``cpu``); anything else is a one-line :class:`ConfigError` naming the key, raised
    before any work (:mod:`ddcore.run_fingerprint`). Plugins given as objects must be passed again in
    ``plugins``.
    """
    from ddcore.config import deep_merge

    run_dir = Path(run_dir)
    manifest = read_run_manifest(run_dir)
    if manifest.get("status") == "complete":
        raise DDError(f"{run_dir} holds a complete run; there is nothing to resume (re-evaluate it with `dd eval {run_dir}`)")
    if manifest.get("status") == "running" and (manifest.get("process") or {}).get("pid") != os.getpid():
        state, detail = artifacts.run_liveness(manifest)
        if state == "alive":
            raise DDError(f"{run_dir} is still running ({detail}); wait for it to end, or stop it before resuming")
    overrides = dict(overrides or {})
    if overrides.get("out") and Path(str(overrides["out"])).resolve() == run_dir.resolve():
        overrides.pop("out")
    for key, flag in (("out", "--out"), ("overwrite", "--overwrite")):
        if overrides.get(key):
            raise ConfigError(f"{flag} cannot be combined with --resume, which continues {run_dir} in place; "
                              "drop one of them")  # fmt: skip
    recorded = recorded_config(manifest)
    if "distill" in overrides and overrides["distill"] != recorded.get("distill"):
        raise ConfigError(f"the distiller of a run cannot change on resume (the run used {recorded.get('distill')!r}, "
                          f"--distill asks for {overrides['distill']!r}); drop --distill, or start a new run "
                          "with another --out")  # fmt: skip
    if "plugins" in overrides:
        extra = overrides.pop("plugins")
        extra = [extra] if isinstance(extra, str) else list(extra)
        recorded["plugins"] = [*recorded["plugins"], *(p for p in extra if p not in recorded["plugins"])]
    config = {**deep_merge(recorded, overrides), "out": str(run_dir), "overwrite": False}
    return Pipeline(config, plugins, quiet=quiet, resume=run_dir).execute()


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
    require_distilled(run_dir, manifest)
    if int(os.environ.get("RANK", "0")) == 0:
        probe_dir(run_dir, "RUN_DIR", fix="make it writable (dd eval writes eval-<stamp>.json there)")
    distilled = DistilledSet.load(run_dir / artifacts.DISTILLED_FILE)
    recorded = recorded_config(manifest)
    pipeline = Pipeline(deep_merge(recorded, dict(overrides or {})), plugins, quiet=quiet, write=False)
    pipeline.ctx.out_dir = run_dir
    dataset = pipeline.build_dataset()
    from ddcore.datasig import check_signature, data_check_record

    saved = distilled.signature()  # classes in another order are remapped by name; other differences: one error
    perm = check_signature(saved, dataset, what=f"the distilled set of run {run_dir}",
                           fix="use data with the run's classes, image size and normalisation: --data-root, --set dataset=NAME, --set image_size=N")  # fmt: skip
    if perm is not None:
        distilled = distilled.remap(perm, dataset.class_names)
        pipeline.ctx.reporter.info(f"the data lists the run's classes in another order: labels remapped by name ({perm})")
    check = data_check_record(saved, dataset, perm)
    pipeline.ctx.record("data_check", check)
    if check["same_content"] is False:
        pipeline.ctx.reporter.info(f"note: the data's content differs from the run's (fingerprint {check['saved_fingerprint']}, now {check['fingerprint']})")
    pipeline.ctx.initial = saved_initial(run_dir, distilled, perm, dataset.class_names)
    with pipeline.stages.stage("evaluate"):
        metrics = pipeline.hooks.evaluate(pipeline.ctx, distilled)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path = run_dir / f"eval-{stamp}.json"
    if pipeline.ctx.is_main_process:
        write_json(path, {"metrics": metrics, "config": pipeline.config.to_dict(), "records": pipeline.ctx.records})
    return metrics, path


def require_distilled(run_dir: Path, manifest: Mapping[str, Any]) -> None:
    """Refuse a run directory without a distilled set, saying how far the run got and what to do (one line)."""
    if (run_dir / artifacts.DISTILLED_FILE).is_file() or "distilled" in (manifest.get("finished") or []):
        return  # there, or saved and gone since: loading it names the file
    status = manifest.get("status")
    if status == "complete":
        return
    where = f" in stage {manifest['failed_stage']}" if manifest.get("failed_stage") else ""
    state = {"running": "is still running, or was killed,", "failed": f"failed{where}"}.get(str(status), f"is {status}")
    if status == "running":
        liveness, detail = artifacts.run_liveness(dict(manifest))
        state = {"alive": f"is still running ({detail})", "dead": f"died ({detail})"}.get(liveness, state)
    raise DDError(
        f"{run_dir} holds no distilled set ({artifacts.DISTILLED_FILE}): the run {state} before its distillation "
        f"finished; continue it with `dd run --resume {run_dir}`"
    )


def saved_initial(run_dir: Path, distilled: DistilledSet, perm: Sequence[int] | None, class_names: Sequence[str]) -> DistilledSet:
    """The set a saved run's distiller started from (``checkpoints/initial.pt``, relabelled like ``distilled``
    by ``perm``), or ``distilled`` itself when none was saved (``distill = "none"``)."""
    path = run_dir / artifacts.CHECKPOINT_DIR / artifacts.INITIAL_FILE
    if not path.is_file():
        return distilled
    initial = DistilledSet.load(path)
    return initial.remap(perm, class_names) if perm is not None else initial
