"""A trajectory-matching run killed part-way continues with --resume and ends exactly as an uninterrupted run."""

from __future__ import annotations

import json

import pytest
import torch

from core_support import assert_cli_error, write_plugin_file
from ddcore.errors import PluginCrash
from ddcore.runner import resume_run, run
from ddcore.distillers import checkpoint_paths
from ddcore.testing import InterruptAt


def config(tmp_path, out: str) -> dict:
    return {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(tmp_path / out), "cache_dir": str(tmp_path / "cache"),
        "tm": {"iterations": 6, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 2},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 1, "epochs": 1, "width": 8},
    }  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tm")
    return tmp_path, run(config(tmp_path, "whole"))


def test_resume_ends_with_the_same_distilled_set(uninterrupted):
    tmp_path, whole = uninterrupted
    with pytest.raises(PluginCrash, match="killed at 3"):
        run(config(tmp_path, "cut"), [InterruptAt(at=3)])
    cut = tmp_path / "cut"
    assert json.loads((cut / "manifest.json").read_text())["status"] == "failed"
    assert [p.name for p in checkpoint_paths(cut / "checkpoints", "tm")] == ["tm-00000002.pt"]
    assert (cut / "checkpoints" / "initial.pt").exists() and not (cut / "distilled.pt").exists()
    resumed = resume_run(cut)
    assert torch.equal(resumed.distilled.images, whole.distilled.images)
    assert resumed.distilled.lr == whole.distilled.lr
    assert resumed.metrics == whole.metrics
    assert json.loads((cut / "tm_log.json").read_text()) == json.loads((whole.out_dir / "tm_log.json").read_text())
    assert [p.name for p in checkpoint_paths(cut / "checkpoints", "tm")] == ["tm-00000006.pt", "tm-00000004.pt"]


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(uninterrupted):
    tmp_path, whole = uninterrupted
    with pytest.raises(PluginCrash):
        run(config(tmp_path, "damaged"), [InterruptAt(at=5)])
    folder = tmp_path / "damaged" / "checkpoints"
    newest, previous = checkpoint_paths(folder, "tm")
    assert (newest.name, previous.name) == ("tm-00000004.pt", "tm-00000002.pt")
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a full disk
    resumed = resume_run(tmp_path / "damaged")
    assert torch.equal(resumed.distilled.images, whole.distilled.images)


def test_resume_refuses_complete_runs_and_extra_options(uninterrupted, cli):
    tmp_path, whole = uninterrupted
    assert_cli_error(cli("run", "--resume", whole.out_dir), "holds a complete run")
    assert_cli_error(cli("run", "--resume", whole.out_dir, "--ipc", "3"), "holds a complete run", "dd eval")  # options: tests/test_stale_state.py
    assert_cli_error(cli("run", "--resume", tmp_path / "nowhere"), "is not a directory")


def _toml(tmp_path, out: str) -> str:
    path = tmp_path / f"{out}.toml"
    path.write_text(
        f'ipc = 1\nworkers = 0\ndistill = "tm"\nout = "{tmp_path / out}"\ncache_dir = "{tmp_path / "cache"}"\n'
        "[tm]\niterations = 8\nsyn_steps = 2\nmax_start_epoch = 2\ncur_max_start_epoch = 1\ncheckpoint_every = 1\n"
        "[experts]\nnum = 2\nbatch_size = 512\n[eval]\nruns = 1\nepochs = 1\nwidth = 8\n"
    )
    return str(path)


#: A local plugin file for the SIGKILL test: with DD_TEST_HOLD_AT set, the run writes a marker file and
#: blocks inside that iteration, so the test kills it at a known point (checkpoints of every earlier
#: iteration written, the run unable to finish first). Without the variable it does nothing (the resume).
HOLD_PLUGIN = """
import os
import time
from pathlib import Path

from ddcore import hookimpl


@hookimpl
def dd_pixel_weights(ctx, images, labels, step):
    if os.environ.get("DD_TEST_HOLD_AT") == str(step):
        Path(os.environ["DD_TEST_HOLD_MARKER"]).write_text(str(os.getpid()))
        time.sleep(3600)
    return None
"""


@pytest.mark.slow
def test_a_process_killed_with_sigkill_resumes_to_the_same_result(tmp_path):
    """A real `dd run` process is SIGKILLed inside iteration 3; `dd run --resume` finishes it identically.

    Race-free: the run holds itself inside iteration 3 (after writing the checkpoints of iterations 2
    and 3) and signals that through a marker file; only then is it killed, so it can neither finish
    first nor be caught before its checkpoints exist, however fast or slow the machine.
    """
    import os
    import signal
    import subprocess
    import sys
    import time

    hold = write_plugin_file(tmp_path, "hold", HOLD_PLUGIN)
    dd = [sys.executable, "-m", "ddcore_cli", "run", "--quiet"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DD_TEST_HOLD")}
    subprocess.run([*dd, "--config", _toml(tmp_path, "whole"), "--plugin", hold], check=True, capture_output=True, env=env)
    marker, log = tmp_path / "held", tmp_path / "cut.stderr"
    with log.open("wb") as stderr:
        held = {**env, "DD_TEST_HOLD_AT": "3", "DD_TEST_HOLD_MARKER": str(marker)}
        process = subprocess.Popen([*dd, "--config", _toml(tmp_path, "cut"), "--plugin", hold],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=held)  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert marker.exists(), f"the run never reached iteration 3 (exit {process.poll()}):\n{log.read_text()[-3000:]}"
            assert process.poll() is None  # held: it cannot have ended
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(timeout=60) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    cut = tmp_path / "cut"
    assert [p.name for p in checkpoint_paths(cut / "checkpoints", "tm")] == ["tm-00000003.pt", "tm-00000002.pt"]
    assert not (cut / "distilled.pt").exists()
    assert json.loads((cut / "manifest.json").read_text())["status"] == "running"  # killed: no chance to record it
    resumed = subprocess.run([*dd, "--resume", str(cut)], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    from ddcore.distilled import DistilledSet

    whole, cut_set = (DistilledSet.load(tmp_path / name / "distilled.pt") for name in ("whole", "cut"))
    assert torch.equal(cut_set.images, whole.images) and cut_set.lr == whole.lr
    assert json.loads((cut / "tm_log.json").read_text()) == json.loads((tmp_path / "whole" / "tm_log.json").read_text())
    assert json.loads((cut / "manifest.json").read_text())["status"] == "complete"
