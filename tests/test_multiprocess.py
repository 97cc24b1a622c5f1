"""A real two-process ``dd run`` (gloo on the CPU), checked against a single-process run.

The processes are started by ``python -m torch.distributed.run --standalone`` (torchrun: a free
rendezvous port, so parallel test sessions do not collide) with ``ACCELERATE_USE_CPU=1`` and
``--cpu``: on a machine without a GPU, accelerate only joins the processes into one gloo group when
it is told to run on the CPU; otherwise each process silently runs alone (``num_processes == 1``).
``accelerate launch --cpu --num_processes 2`` is no substitute: it starts a single process.

Evaluation repeats are seeded per repeat (``derive_seed(seed, "eval", kind, r)``), so the two-process
accuracies must equal the single-process ones exactly, not just closely. See docs/multiprocess.md.
Two-process trajectory matching and expert training are checked against references computed in one
process in ``test_multiprocess_exact.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

SEED = 3
IPC = 1
RUNS = 3  # with the random baseline: 6 jobs, dealt 0,1,0,1,0,1 over the two processes
EPOCHS = 3
WIDTH = 8
LAUNCH_TIMEOUT_S = 240

#: variables of an enclosing distributed launch that must not leak into the one we start.
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def _reset_accelerate_state() -> None:
    """Forget any Accelerator state an earlier test left in this process (it is a singleton)."""
    try:
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    except (ImportError, AttributeError):  # pragma: no cover - private API of accelerate
        pass


def _launch_two_processes(tmp_path):
    out = tmp_path / "run2"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ddcore_cli", "run",
        "--cpu", "--dataset", "digits", "--ipc", str(IPC), "--seed", str(SEED),
        "--eval-runs", str(RUNS), "--eval-epochs", str(EPOCHS), "--baseline", "random",
        "--set", f"eval.width={WIDTH}", "--set", "workers=0",
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--json",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run(
            command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:  # a deadlock in a collective, most likely
        pytest.fail(f"two-process run did not finish in {LAUNCH_TIMEOUT_S} s (deadlock?)\n{exc.stderr or ''}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    return out, proc


def _single_process_reference(tmp_path):
    import torch

    from ddcore import run

    config = {
        "dataset": "digits",
        "ipc": IPC,
        "seed": SEED,
        "cpu": True,
        "workers": 0,
        "cache_dir": str(tmp_path / "cache"),
        "eval": {"runs": RUNS, "epochs": EPOCHS, "width": WIDTH, "baseline": ["random"]},
    }
    threads = torch.get_num_threads()
    _reset_accelerate_state()
    torch.set_num_threads(1)  # as in the launched processes (OMP_NUM_THREADS=1)
    try:
        return run(config, write=False)
    finally:
        torch.set_num_threads(threads)
        _reset_accelerate_state()


def test_two_process_run_is_complete_and_matches_single_process(tmp_path):
    out, proc = _launch_two_processes(tmp_path)

    # Only the main process prints: stdout is exactly one JSON document.
    printed = json.loads(proc.stdout)
    assert printed["out_dir"] == str(out)

    # Only the main process writes: a complete run directory, no leftover temporary files.
    names = {p.name for p in out.iterdir()}
    assert {"distilled.pt", "grid.png", "metrics.json", "manifest.json"} <= names
    assert not [n for n in names if n.endswith(".tmp")], names

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete", manifest.get("error")
    assert manifest["error"] is None
    assert manifest["accelerate"]["num_processes"] == 2
    assert manifest["accelerate"]["process_index"] == 0
    assert manifest["accelerate"]["distributed_type"].endswith("MULTI_CPU")

    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics == printed["metrics"]
    # Both processes trained networks: repeats are dealt round-robin over the 6 jobs.
    assert metrics["eval/acc_runs_process"] == [0, 1, 0]
    assert metrics["eval/random_real_acc_runs_process"] == [1, 0, 1]
    assert set(metrics["eval/acc_runs_process"]) == {0, 1}

    # Same seed, one process: the same distilled set and exactly the same accuracies.
    single = _single_process_reference(tmp_path)
    assert single.manifest["accelerate"]["num_processes"] == 1
    assert single.metrics["eval/acc_runs_process"] == [0] * RUNS
    for key in ("eval/acc_runs", "eval/acc_mean", "eval/acc_std", "eval/random_real_acc_runs", "eval/random_real_acc_mean"):
        assert metrics[key] == single.metrics[key], key

    import torch

    from ddcore.distilled import DistilledSet

    saved = DistilledSet.load(out / "distilled.pt")
    assert torch.equal(saved.images, single.distilled.images)
    assert torch.equal(saved.labels, single.distilled.labels)
