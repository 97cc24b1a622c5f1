"""The run directory: what a run leaves behind, each file written atomically.

::

    RUN_DIR/
      distilled.pt     images, labels, learned lr, class names, normalisation (DistilledSet.save)
      grid.png         the images, de-normalised, >= 64 px cells, rows of <= 10 per class, class names left
      metrics.json     {"metrics": {"<plugin>/<name>": value, ...}}
      manifest.json    versions, plugins, resolved config, seed, topology, per-stage time and memory
      run.log          the log lines of the run
      tm_log.json      per-iteration loss, experts, start epoch, syn_lr (distill = "tm" only)
      checkpoints/     initial.pt and the newest tm-<iteration>.pt files, for `dd run --resume`
      eval-<stamp>.json  each `dd eval RUN_DIR`'s metrics
      errors/          process-<i>.json: each failed process's error (multi-process runs only)

``manifest.json`` records the process writing it (pid, host, start time) and a heartbeat (rewritten at each
stage boundary), so that :func:`run_liveness` tells a run that is still going from one whose process died.
``distilled.pt`` (and ``grid.png``, ``tm_log.json``) are written as soon as the set is distilled, before
evaluation. A fresh run starts in a new or empty folder; ``--overwrite`` first deletes everything in a
folder that holds a run (:func:`prepare_out_dir`); only ``dd run --resume`` reads what a folder holds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ddcore.atomic import atomic_path, write_json
from ddcore.data.base import denormalize
from ddcore.distilled import DistilledSet
from ddcore.errors import DDError

DISTILLED_FILE = "distilled.pt"
GRID_FILE = "grid.png"
METRICS_FILE = "metrics.json"
MANIFEST_FILE = "manifest.json"
LOG_FILE = "run.log"
CHECKPOINT_DIR = "checkpoints"
INITIAL_FILE = "initial.pt"
#: What the run had recorded (``ctx.records``) and timed (stages) when the initial set was saved, so that a
#: resumed run, which reloads the initial set instead of selecting again, reports them too.
INITIAL_RECORDS_FILE = "initial-records.json"
#: ``errors/process-<i>.json``: the error of process ``i`` of a multi-process run (:func:`write_process_error`).
ERRORS_DIR = "errors"


def class_grid(distilled: DistilledSet, pad: int = 2, min_cell: int = 64, *, max_cols: int = 10, max_side: int = 4096,
               labels: bool = True) -> torch.Tensor:  # fmt: skip
    """The picture of ``distilled``: per class a block of rows (at most ``max_cols`` images each), its name
    on the left, on white. ``-> [C, height, width]`` float32 in ``[0, 1]`` (``C``: the images' channels).

    Images are de-normalised (``mean``/``std``), clamped to ``[0, 1]`` and enlarged by an integer factor
    (nearest) to at least ``min_cell`` pixels; soft labels are placed by their argmax. The picture stays
    within ``max_side`` pixels a side (several columns of classes, then the first images of each class, with
    a note); :mod:`ddcore.grid` has the layout rules.
    """
    from ddcore.grid import draw_grid

    images = denormalize(distilled.images.detach().float().cpu(), distilled.mean, distilled.std).clamp(0, 1)
    return draw_grid(images, distilled.hard_labels(), distilled.class_names, pad=pad, min_cell=min_cell,
                     max_cols=max_cols, max_side=max_side, show_labels=labels)  # fmt: skip


def save_grid(distilled: DistilledSet, path: str | os.PathLike) -> None:
    """Write :func:`class_grid` as a PNG (grey ``L`` or ``RGB``), atomically (zlib level 1: a 4096 px grid of
    noisy images takes a third of the default level's time, for a file a few percent larger)."""
    grid = class_grid(distilled)
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0], mode="L") if array.shape[2] == 1 else Image.fromarray(array, mode="RGB")
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", compress_level=1)


def save_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> None:
    write_json(path, {"metrics": metrics})


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON artifact; missing or corrupt files are a one-line :class:`DDError`."""
    if not path.is_file():
        raise DDError(f"{path} does not exist; is {path.parent} a run directory written by `dd run`?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DDError(f"{path} is not a readable {what} ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise DDError(f"{path} is not a {what} (expected a JSON object)")
    return data


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a ddcore run: a ``manifest.json`` that is a JSON object with ``format`` and ``status``."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "format" in data and "status" in data


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` a fresh run may not use, without writing anything.

    A fresh run starts in a new or empty folder, or, with ``overwrite``, in a folder that holds a
    ddcore run (its ``manifest.json``), whose whole content :func:`prepare_out_dir` then deletes. Raises
    a one-line :class:`DDError` naming ``--out`` for a file, a folder holding another run (without
    ``overwrite``) and a non-empty folder that holds no run (never deleted, even with ``overwrite``).
    """
    if out.exists() and not out.is_dir():
        raise DDError(f"--out {out} is a file, not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not holds_run(out):
        raise DDError(f"--out {out} is a non-empty folder that holds no ddcore run (no manifest.json); choose a new or empty --out")
    if not overwrite:
        raise DDError(f"--out {out} already holds a run; choose another --out, pass --overwrite to replace it, or --resume {out} to continue it")


def prepare_out_dir(out: Path, overwrite: bool) -> Path:
    """Create ``out`` empty and prove it writable; refuse to mix two runs in one directory.

    With ``overwrite``, a folder holding a ddcore run is emptied first (every file and folder in it:
    ``checkpoints/``, ``tm_log.json``, ``eval-*.json``, ...), so that nothing of the old run is read or
    left behind. Raises a :class:`DDError` naming ``--out`` as :func:`check_out_dir` does, or when the
    folder cannot be emptied, created or written.
    """
    from ddcore.storage import probe_dir

    check_out_dir(out, overwrite)
    try:
        if out.is_dir():
            for child in out.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
    except OSError as exc:
        raise DDError(f"--out {out} is not writable: {exc.strerror or exc}") from None
    return probe_dir(out, "--out")


def probe_out_dir(out: Path) -> Path:
    """Prove that an existing run directory (``dd run --resume``) is writable; a one-line
    :class:`~ddcore.storage.StorageError` if not (:func:`ddcore.storage.probe_dir`)."""
    from ddcore.storage import probe_dir

    return probe_dir(out, "--resume", fix="check the run directory's permissions")


# ----------------------------------------------------------------------------------------------
# Which process writes the run, and whether it still lives
# ----------------------------------------------------------------------------------------------


def process_identity() -> dict[str, Any]:
    """``{"pid", "host", "started"}`` of this process (``started``: its start time, seconds since the epoch,
    so that a later process given the same pid is not mistaken for it)."""
    import psutil

    return {"pid": os.getpid(), "host": socket.gethostname(), "started": round(psutil.Process().create_time(), 3)}


def run_liveness(manifest: dict[str, Any]) -> tuple[str, str]:
    """Whether the process a ``running`` manifest names is alive: ``("alive" | "dead" | "unknown", detail)``.

    ``dead``: on this host, no process has the recorded pid, or the one that has it started at another time.
    ``unknown``: the manifest names no process (an older ddcore) or another host (``detail`` says which, and
    when the run last wrote its heartbeat).
    """
    import psutil

    process = manifest.get("process") or {}
    pid, host, started = process.get("pid"), process.get("host"), process.get("started")
    beat = manifest.get("heartbeat_at")
    if not isinstance(pid, int) or not host:
        return "unknown", "the manifest names no process"
    if host != socket.gethostname():
        return "unknown", f"process {pid} on host {host}" + (f", last heartbeat {beat}" if beat else "")
    try:
        current = psutil.Process(pid)
        same = started is None or abs(current.create_time() - float(started)) < 1.0
    except psutil.NoSuchProcess:
        same = False
    except psutil.AccessDenied:  # pragma: no cover - another user's process: it exists
        same = True
    if not same:
        return "dead", f"the process {pid} ended without finishing"
    return "alive", f"process {pid} on {host}" + (f", last heartbeat {beat}" if beat else "")


# ----------------------------------------------------------------------------------------------
# Errors of the processes of a multi-process run
# ----------------------------------------------------------------------------------------------


def write_process_error(run_dir: Path, process: int, record: dict[str, Any]) -> Path:
    """Write ``record`` (``{"process", "error", "type", "user_error", "collective", "stage", ...}``) to
    ``run_dir/errors/process-<process>.json``, atomically."""
    path = run_dir / ERRORS_DIR / f"process-{process}.json"
    write_json(path, {**record, "process": process, **process_identity(), "at": time.time()})
    return path


def read_process_errors(run_dir: Path) -> list[dict[str, Any]]:
    """Every readable ``errors/process-<i>.json`` of ``run_dir``, by process index (unreadable files are skipped)."""
    found = []
    for path in sorted((run_dir / ERRORS_DIR).glob("process-*.json")) if (run_dir / ERRORS_DIR).is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue  # being written by a process that died, or damaged
        if isinstance(data, dict) and isinstance(data.get("process"), int):
            found.append({**data, "file": str(path)})
    return sorted(found, key=lambda record: record["process"])


def root_cause(records: list[dict[str, Any]], exclude: int | None = None) -> dict[str, Any] | None:
    """The first process error (lowest index, not ``exclude``) that is not a lost connection to a peer."""
    for record in records:
        if record["process"] != exclude and not record.get("collective"):
            return record
    return None
