"""Experiment trackers through Accelerate's tracker API (``dd run --log-with tensorboard``).

A run names its trackers in the config key ``log_with`` (``--log-with NAME``, repeatable or a comma
list); none by default, and then nothing here imports a tracker package. The names are Accelerate's
(``accelerate.tracking.LOGGER_TYPE_TO_CLASS``: ``tensorboard``, ``wandb``, ``mlflow``, ``comet_ml``,
``aim``, ``clearml``, ``dvclive``, ``swanlab``, ``trackio``). The core builds the ``Accelerator`` with
``log_with`` (:func:`accelerator_options`) and, once the run directory exists, starts the trackers with
``Accelerator.init_trackers`` (:func:`start`): project ``ddcore``, the resolved config flattened to dotted
keys, local logs under ``RUN/trackers/`` (TensorBoard: ``RUN/trackers/ddcore/events.out.tfevents.*``).
What is logged (main process only, as ``Accelerator.log`` does):

* per distillation iteration, at ``step`` = the row's 0-based ``iteration`` of ``tm_log.json``
  (:func:`log_iteration`): ``tm/loss`` (the matching loss), ``tm/syn_lr``, ``tm/kept_fraction`` (share of
  parameters with non-zero supervision weight, e.g. EDF's CPD), ``tm/skipped`` (1 when the update was
  skipped), ``tm/val_acc`` (validation accuracy %, where ``tm.eval_every`` evaluated), and at step 0
  ``tm/initial_val_acc`` (the initial set's);
* the final metrics (:func:`log_final`): every finite number of ``metrics.json`` as ``final/<key>``, at the
  trackers' default step.

Plugins may log their own per-iteration values the same way: ``ctx.accelerator.log({...}, step=step)``.
Runs without a run directory (``ddcore.run(..., write=False)``, ``dd eval RUN_DIR``) start no trackers.
A resumed run appends to the same folder; rows logged after its last checkpoint are logged again, with
the same values (one seed, one result on CPU).
"""

from __future__ import annotations

import math
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ddcore.errors import ConfigError, DDError

if TYPE_CHECKING:
    from ddcore.context import RunContext

#: The folder of the run directory that the trackers' local logs go under.
TRACKERS_DIR = "trackers"
#: The project name handed to ``init_trackers`` (TensorBoard's subfolder, wandb's project).
PROJECT = "ddcore"
#: What to install for each of Accelerate's trackers (its import name, unless said here).
INSTALL = {"aim": "'aim<4'", "comet_ml": "comet-ml"}


def installed_trackers() -> set[str]:
    """Accelerate's tracker names whose package is importable here (``get_available_trackers``)."""
    from accelerate.tracking import get_available_trackers

    return {str(tracker) for tracker in get_available_trackers()}


def known_trackers() -> list[str]:
    """Every tracker name Accelerate knows, installed or not."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS

    return sorted(LOGGER_TYPE_TO_CLASS)


def check_trackers(names: Sequence[str]) -> list[str]:
    """``names`` (config ``log_with``) if each is one of Accelerate's trackers and its package is installed.

    Raises:
        ConfigError: one line naming the tracker, the option ``--log-with`` and, for a missing package,
            the ``pip install`` that adds it. Imports nothing when ``names`` is empty.
    """
    if not names:
        return []
    known = known_trackers()
    for name in names:
        if name not in known:
            raise ConfigError(f"unknown tracker {name!r} (option --log-with, config key log_with); Accelerate's trackers: {', '.join(known)}")
    available = installed_trackers()
    for name in names:
        if name not in available:
            raise ConfigError(
                f"tracker {name!r} is not installed (option --log-with, config key log_with): pip install "
                f"{INSTALL.get(name, name)}, or drop it (--set 'log_with=[]' on --resume)"
            )
    return list(names)


def accelerator_options(names: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments for ``Accelerator(...)``: none without trackers, else ``log_with`` and a
    ``ProjectConfiguration`` whose folders :func:`start` points into the run directory (nothing is written
    before)."""
    if not names:
        return {}
    from accelerate.utils import ProjectConfiguration

    return {"log_with": list(names), "project_config": ProjectConfiguration(logging_dir=TRACKERS_DIR)}


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"eval": {"lr": 0.01}, "plugins": ["edf"]}`` -> ``{"eval.lr": 0.01, "plugins": "edf"}``: the scalars
    trackers take as hyper-parameters (lists become comma-joined strings, ``None`` is dropped).

    >>> flat_config({"eval": {"lr": 0.01, "baseline": []}, "plugins": ["edf", "x"], "name": None})
    {'eval.lr': 0.01, 'eval.baseline': '', 'plugins': 'edf,x'}
    """
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flat_config(value, f"{prefix}{key}."))
        elif isinstance(value, (list, tuple)):
            flat[f"{prefix}{key}"] = ",".join(map(str, value))
        elif value is not None:
            flat[f"{prefix}{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return flat


def start(ctx: "RunContext", run_name: str, config: Mapping[str, Any]) -> None:
    """Start the run's trackers (``Accelerator.init_trackers``) with their logs under ``RUN/trackers/`` and
    record them in the manifest (``records.trackers``). A no-op without trackers or a run directory.

    Raises:
        DDError: a tracker failed to start (e.g. not logged in), naming it and ``--log-with``.
    """
    accelerator = ctx.accelerator
    names = [str(tracker) for tracker in accelerator.log_with]
    if not names or ctx.out_dir is None:
        return
    folder = ctx.out_dir / TRACKERS_DIR
    accelerator.project_configuration.set_directories(str(ctx.out_dir))
    accelerator.project_configuration.logging_dir = str(folder)
    ctx.record("trackers", {"log_with": names, "dir": TRACKERS_DIR, "project": PROJECT, "versions": _versions(names)})
    init_kwargs = {"wandb": {"dir": str(folder), "name": run_name}, "mlflow": {"run_name": run_name},
                   "dvclive": {"dir": str(folder)}}  # fmt: skip
    if ctx.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
    try:
        accelerator.init_trackers(PROJECT, config=flat_config(config), init_kwargs={n: init_kwargs[n] for n in names if n in init_kwargs})
    except Exception as exc:  # noqa: BLE001 - a tracker's own failure (network, login), named for the user
        raise DDError(f"tracker {', '.join(names)} failed to start: {type(exc).__name__}: {exc}; fix its set-up or "
                      "drop it from --log-with") from exc  # fmt: skip


def _versions(names: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in names:
        try:
            found[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            found[name] = None
    return found


def iteration_values(row: Mapping[str, Any], initial_accuracy: float | None = None) -> dict[str, float]:
    """The tracker values of one ``tm_log.json`` row (see the module docstring).

    >>> iteration_values({"iteration": 0, "loss": 0.5, "syn_lr": 0.01, "kept": 1.0, "skipped": False, "val_acc": 80.0}, 70.0)
    {'tm/loss': 0.5, 'tm/syn_lr': 0.01, 'tm/kept_fraction': 1.0, 'tm/skipped': 0.0, 'tm/val_acc': 80.0, 'tm/initial_val_acc': 70.0}
    """
    values = {"tm/loss": float(row["loss"]), "tm/syn_lr": float(row["syn_lr"]), "tm/kept_fraction": float(row["kept"]),
              "tm/skipped": float(bool(row["skipped"]))}  # fmt: skip
    if row.get("val_acc") is not None:
        values["tm/val_acc"] = float(row["val_acc"])
    if row["iteration"] == 0 and initial_accuracy is not None:
        values["tm/initial_val_acc"] = float(initial_accuracy)
    return values


def log_iteration(ctx: "RunContext", row: Mapping[str, Any], initial_accuracy: float | None = None) -> None:
    """Log one matching iteration's row at ``step = row["iteration"]``; a no-op without trackers."""
    if ctx.accelerator.trackers:
        ctx.accelerator.log(iteration_values(row, initial_accuracy), step=int(row["iteration"]))


def log_final(ctx: "RunContext", metrics: Mapping[str, Any]) -> None:
    """Log every finite number of the run's metrics as ``final/<key>`` (lists and tables are left to
    ``metrics.json``); a no-op without trackers."""
    if not ctx.accelerator.trackers:
        return
    values = {f"final/{key}": float(value) for key, value in metrics.items()
              if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}  # fmt: skip
    if values:
        ctx.accelerator.log(values)


def end(ctx: "RunContext") -> None:
    """Close the trackers (``Accelerator.end_training``) when the run has any; call it on every process."""
    if ctx.accelerator.log_with:
        ctx.accelerator.end_training()


def logging_dir(run_dir: Path) -> Path:
    """Where a run's trackers wrote their local logs (TensorBoard's event files are in ``<this>/ddcore``)."""
    return Path(run_dir) / TRACKERS_DIR
