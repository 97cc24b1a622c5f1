"""Issue 14 kind 1: ``dd show`` tells a dead run from a live one.

The manifest records the process writing it (pid, host, start time), a heartbeat and the last stage
started. A manifest left at ``running`` whose process is gone (no process with that pid on this host, or
one started at another time: the pid was reused) is reported dead, with the stage it reached and how to
continue; a live run is reported running, and ``dd run --resume`` refuses to continue it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

from ddcore import artifacts
from ddcore.errors import DDError
from ddcore.runner import resume_run


def dead_pid() -> int:
    """The pid of a process that has ended (reaped: no process has it now)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not psutil.pid_exists(child.pid)
    return child.pid


def write_manifest(run_dir, pid: int, *, host: str | None = None, started: float | None = None, finished=(), stage="distill"):
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": 1, "status": "running", "error": None, "finished": list(finished), "failed_stage": None,
        "process": {"pid": pid, "host": host or socket.gethostname(), "started": started if started is not None else time.time()},
        "heartbeat_at": "2026-11-30T12:00:00+00:00", "last_stage": stage, "config": {"dataset": "digits", "ipc": 1},
    }  # fmt: skip
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def status_line(cli, run_dir) -> str:
    code, out, err = cli("show", run_dir, "--json")
    assert code == 0, err
    return json.loads(out)["state"]  # the table of `dd show` shows the same line, wrapped


def test_a_running_manifest_whose_process_is_gone_is_dead(tmp_path, cli):
    pid = dead_pid()
    write_manifest(tmp_path / "run", pid)
    text = status_line(cli, tmp_path / "run")
    assert f"dead (the process {pid} ended without finishing; last stage distill" in text
    assert f"dd run --resume {tmp_path / 'run'}" in text
    assert not text.startswith("running")


def test_a_reused_pid_is_not_taken_for_the_run(tmp_path, cli):
    """This test's own pid, but the manifest says the process started a day earlier: another process."""
    write_manifest(tmp_path / "run", os.getpid(), started=psutil.Process().create_time() - 86400)
    assert f"dead (the process {os.getpid()} ended" in status_line(cli, tmp_path / "run")


def test_a_dead_run_with_a_distilled_set_offers_dd_eval(tmp_path, cli):
    write_manifest(tmp_path / "run", dead_pid(), finished=["initial", "distilled"], stage="evaluate")
    text = status_line(cli, tmp_path / "run")
    assert "last stage evaluate" in text and "distilled.pt saved" in text and f"dd eval {tmp_path / 'run'}" in text


def test_a_live_run_is_running(tmp_path, cli):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        started = psutil.Process(sleeper.pid).create_time()
        write_manifest(tmp_path / "run", sleeper.pid, started=started)
        text = status_line(cli, tmp_path / "run")
        assert f"running (process {sleeper.pid} on {socket.gethostname()}" in text and "dead" not in text
        assert "--resume" not in text  # a live run is not to be resumed
        with pytest.raises(DDError, match="is still running"):
            resume_run(tmp_path / "run")  # refused before anything is read or written
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"dead (the process {sleeper.pid} ended" in status_line(cli, tmp_path / "run")


def test_a_run_on_another_host_is_not_judged(tmp_path, cli):
    write_manifest(tmp_path / "run", dead_pid(), host="some-other-host")
    text = status_line(cli, tmp_path / "run")
    assert "running (or killed; process" in text and "some-other-host" in text and "dead" not in text


def test_dd_eval_of_a_dead_run_says_it_died(tmp_path, cli):
    pid = dead_pid()
    write_manifest(tmp_path / "run", pid)
    code, _, err = cli("eval", tmp_path / "run")
    assert code == 2 and f"died (the process {pid} ended without finishing)" in err and "--resume" in err


def test_the_manifest_records_its_process_and_a_heartbeat(run_tiny, tmp_path):
    result = run_tiny(write=True)
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["process"]["pid"] == os.getpid()
    assert manifest["process"]["host"] == socket.gethostname()
    assert abs(manifest["process"]["started"] - psutil.Process().create_time()) < 1
    assert manifest["last_stage"] == "evaluate"
    assert manifest["heartbeat_at"].startswith(time.strftime("%Y", time.gmtime()))
    assert artifacts.run_liveness({**manifest, "status": "running"})[0] == "alive"
