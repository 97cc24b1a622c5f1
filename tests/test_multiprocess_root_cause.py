"""Issue 14 kind 2: under ``torchrun --nproc_per_node 2``, the run directory records the root cause from the
process where it happened, not the main process's "Connection closed by peer".

A local plugin fails only on process 1 (as a corrupt training image read only there would). Process 1 writes
its error to ``RUN/errors/process-1.json`` before it exits; process 0, whose next collective then fails,
waits for that file and records the root cause in the manifest's ``error`` and on the console, exiting with
status 2 (the root cause is a :class:`ddcore.PluginError`, a problem the user can fix).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core_support import DISTRIBUTED_ENV, write_plugin_file

LAUNCH_TIMEOUT_S = 240

FAILS_ON_PROCESS_1 = """
from ddcore import PluginError, hookimpl

name = "onlyone"


@hookimpl
def dd_evaluate(ctx, distilled):
    if ctx.process_index == 1:
        raise PluginError("corrupt training image train/7.png (cannot identify image file)")
    return None
"""


def launch(args: list, cwd) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ddcore_cli", *map(str, args)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    try:
        return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"two-process run did not finish in {LAUNCH_TIMEOUT_S} s (deadlock?)\n{exc.stderr or ''}")


@pytest.mark.slow
@pytest.mark.multiprocess
def test_the_run_directory_names_the_process_that_failed_and_why(tmp_path, cli):
    plugin = write_plugin_file(tmp_path, "onlyone", FAILS_ON_PROCESS_1)
    out = tmp_path / "run"
    proc = launch(["run", "--cpu", "--ipc", "1", "--workers", "0", "--quiet", "--eval-runs", "1", "--eval-epochs", "1",
                   "--set", "eval.width=8", "--plugin", plugin, "--cache-dir", tmp_path / "cache", "--out", out], tmp_path)  # fmt: skip
    assert proc.returncode != 0, proc.stderr[-4000:]

    # Process 1 left its own error, traceback included.
    own = json.loads((out / "errors" / "process-1.json").read_text())
    assert own["process"] == 1 and own["user_error"] is True and own["collective"] is False
    assert "corrupt training image train/7.png" in own["error"] and "Traceback" in own["traceback"]

    # The main process's manifest names process 1 and its error, not the lost connection.
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("process 1: ") and "corrupt training image train/7.png" in manifest["error"]
    assert "connection closed" not in manifest["error"].lower()
    assert "process 1 failed" in proc.stderr and "corrupt training image" in proc.stderr
    assert "root cause: process 1 failed" in (out / "run.log").read_text()

    # `dd show` says so too.
    code, printed, err = cli("show", out, "--json")
    assert code == 0, err
    assert "process 1: Error [onlyone]: corrupt training image" in json.loads(printed)["state"]


# ----------------------------------------------------------------------------------------------
# The main process's side, in this process (fast): a collective that lost its peer
# ----------------------------------------------------------------------------------------------


class TwoProcesses:
    """What the pipeline asks of the Accelerator, for process ``index`` of two."""

    def __init__(self, index: int):
        self.num_processes, self.process_index, self.is_main_process = 2, index, index == 0
        self.distributed_type, self.device, self.mixed_precision = "MULTI_CPU", "cpu", "no"


def lost_peer() -> Exception:
    """The main process's error when process 1 exited during the evaluation's gather (as gloo words it)."""
    from ddcore.errors import PluginCrash

    cause = RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:29500")
    crash = PluginCrash("dd_evaluate", "eval", None, cause)
    crash.__cause__ = cause
    return crash


@pytest.fixture
def main_process(tmp_path, monkeypatch):
    import ddcore.runner as runner
    from ddcore.runner import Pipeline

    monkeypatch.setattr(runner, "PEER_ERROR_WAIT_S", 0.5)
    pipeline = Pipeline({"ipc": 1, "workers": 0, "eval": {"runs": 0}, "cache_dir": str(tmp_path / "cache"),
                         "out": str(tmp_path / "run")}, write=True)  # fmt: skip
    pipeline.ctx.out_dir = tmp_path / "run"
    pipeline.ctx.out_dir.mkdir()
    pipeline.ctx.accelerator = TwoProcesses(0)
    return pipeline


def test_the_main_process_reports_the_peer_error_instead_of_the_lost_connection(main_process, tmp_path):
    from ddcore import artifacts
    from ddcore.runner import PeerFailure, is_collective_failure

    artifacts.write_process_error(tmp_path / "run", 1, {"error": "PluginCrash: dd_select: plugin \"x\" raised ValueError: bad",
                                                       "user_error": False, "collective": False})  # fmt: skip
    own = lost_peer()
    assert is_collective_failure(own)
    failure = main_process._record_process_error(own)
    assert isinstance(failure, PeerFailure) and failure.exit_code == 1  # the root cause is a bug, not the user's to fix
    assert str(failure).startswith('process 1 failed: PluginCrash: dd_select: plugin "x" raised ValueError: bad')
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("process 1: PluginCrash: dd_select")
    mine = json.loads((tmp_path / "run" / "errors" / "process-0.json").read_text())
    assert mine["collective"] is True and "Connection closed by peer" in mine["error"]


def test_without_a_peer_error_file_the_own_error_stands(main_process, tmp_path):
    assert main_process._record_process_error(lost_peer()) is None  # after waiting PEER_ERROR_WAIT_S
    assert (tmp_path / "run" / "errors" / "process-0.json").is_file()


def test_an_error_of_the_main_process_itself_is_its_own_root_cause(main_process, tmp_path):
    from ddcore.artifacts import write_process_error
    from ddcore.errors import ConfigError

    write_process_error(tmp_path / "run", 1, {"error": "RuntimeError: Connection closed by peer", "collective": True})
    assert main_process._record_process_error(ConfigError("bad option --ipc")) is None


def test_other_processes_only_write_their_own_file(main_process, tmp_path):
    main_process.ctx.accelerator = TwoProcesses(1)
    assert main_process._record_process_error(lost_peer()) is None
    assert (tmp_path / "run" / "errors" / "process-1.json").is_file()
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_an_earlier_attempts_error_file_is_not_taken_for_the_root_cause(main_process, tmp_path):
    """A resumed run's folder may hold the errors of the attempt before: written before this one started."""
    stale = {"process": 1, "error": "Error: an old failure", "user_error": True, "collective": False, "at": main_process.started - 3600}
    (tmp_path / "run" / "errors").mkdir()
    (tmp_path / "run" / "errors" / "process-1.json").write_text(json.dumps(stale))
    assert main_process._record_process_error(lost_peer()) is None
