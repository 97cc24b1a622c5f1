"""Experiment trackers through Accelerate (``dd run --log-with``) and the matching progress bar.

A short trajectory-matching run logs to TensorBoard offline; its event files are read back with
TensorBoard's own ``EventAccumulator`` and every value is compared with ``tm_log.json``, ``metrics.json``
and the manifest (TensorBoard stores scalars as float32, so each value is compared after that rounding).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from core_support import assert_cli_error
from ddcore import trackers
from ddcore.config import build_config
from ddcore.reporting import Reporter
from ddcore.run_fingerprint import run_fingerprint
from ddcore.runner import run
from ddcore_cli.run_cmd import merged_config


def tiny_tm(tmp_path, **extra) -> dict:
    return {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "cache"),
        "tm": {"iterations": 4, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 2,
               "eval_every": 2},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 1, "epochs": 1, "width": 8}, **extra,
    }  # fmt: skip


def f32(value: float) -> float:
    return float(np.float32(value))


def scalars(folder) -> dict[str, dict[int, float]]:
    """``{tag: {step: value}}`` of the TensorBoard event files directly in ``folder``."""
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = accumulator.EventAccumulator(str(folder))
    events.Reload()
    return {tag: {s.step: s.value for s in events.Scalars(tag)} for tag in events.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_runs_values(tmp_path, capsys, monkeypatch):
    pytest.importorskip("tensorboard")
    monkeypatch.setenv("COLUMNS", "200")  # the progress bar's last state, unwrapped
    result = run(tiny_tm(tmp_path, log_with=["tensorboard"]), quiet=False)
    out = result.out_dir
    log = json.loads((out / "tm_log.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    manifest = json.loads((out / "manifest.json").read_text())
    found = scalars(out / trackers.TRACKERS_DIR / trackers.PROJECT)

    steps = [row["iteration"] for row in log]
    assert steps == [0, 1, 2, 3]
    assert found["tm/loss"] == {row["iteration"]: f32(row["loss"]) for row in log}
    assert found["tm/syn_lr"] == {row["iteration"]: f32(row["syn_lr"]) for row in log}
    assert found["tm/kept_fraction"] == {row["iteration"]: f32(row["kept"]) for row in log}
    assert found["tm/skipped"] == {row["iteration"]: float(row["skipped"]) for row in log}
    evaluated = {row["iteration"]: f32(row["val_acc"]) for row in log if "val_acc" in row}
    assert sorted(evaluated) == [1, 3] and found["tm/val_acc"] == evaluated  # tm.eval_every = 2
    assert found["tm/initial_val_acc"] == {0: f32(manifest["records"]["tm"]["initial_val_accuracy"])}
    finals = {tag.removeprefix("final/"): values for tag, values in found.items() if tag.startswith("final/")}
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert "eval/acc_mean" in finals and set(finals) == set(numbers)
    assert all(list(finals[k].values()) == [f32(v)] for k, v in numbers.items())

    assert manifest["config"]["log_with"] == ["tensorboard"]
    assert manifest["records"]["trackers"]["log_with"] == ["tensorboard"]
    assert manifest["records"]["trackers"]["dir"] == "trackers"
    bar = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trajectory matching") and "4/4" in line]
    assert bar and f"loss {log[-1]['loss']:.4g}" in bar[-1] and f"syn_lr {log[-1]['syn_lr']:.4g}" in bar[-1]


def test_an_unknown_tracker_is_one_line_before_any_file(tmp_path, cli):
    out = tmp_path / "run"
    assert_cli_error(cli("run", "--log-with", "tensorbored", "--out", out, "--cache-dir", tmp_path / "c"),
                     "unknown tracker 'tensorbored'", "--log-with", "tensorboard, ")  # fmt: skip
    assert not out.exists()


def test_a_tracker_without_its_package_names_the_install(tmp_path, cli, monkeypatch):
    monkeypatch.setattr(trackers, "installed_trackers", lambda: set())
    out = tmp_path / "run"
    assert_cli_error(cli("run", "--log-with", "wandb", "--out", out, "--cache-dir", tmp_path / "c"),
                     "tracker 'wandb' is not installed", "pip install wandb", "--log-with")  # fmt: skip
    assert_cli_error(cli("run", "--log-with", "tensorboard,aim", "--out", out, "--cache-dir", tmp_path / "c"),
                     "tracker 'tensorboard' is not installed", "pip install tensorboard")  # fmt: skip
    assert not out.exists()


def test_log_with_takes_repeats_and_comma_lists():
    merged = merged_config(None, (), ("name=x",), log_with=("tensorboard, wandb", "tensorboard", "mlflow"))
    assert build_config(merged).log_with == ["tensorboard", "wandb", "mlflow"]
    assert build_config({"log_with": "wandb,tensorboard"}).log_with == ["wandb", "tensorboard"]
    assert build_config({}).log_with == [] and "log_with" not in merged_config(None, (), ())


def test_trackers_do_not_shape_a_run():
    """Resuming with other --log-with is allowed: the key is outside the run's fingerprint."""
    config = build_config({"log_with": ["tensorboard"]}).to_dict()
    assert "log_with" in config and "log_with" not in run_fingerprint(config, [], None)


def test_without_trackers_nothing_is_imported():
    code = textwrap.dedent("""
        import sys
        from ddcore.runner import Pipeline
        pipeline = Pipeline({"ipc": 1, "workers": 0, "eval": {"runs": 0}}, write=False)
        assert pipeline.ctx.accelerator.log_with == [] and pipeline.ctx.accelerator.trackers == []
        print(sorted(m for m in ("tensorboard", "torch.utils.tensorboard", "wandb", "mlflow") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_iteration_values_follow_the_row():
    row = {"iteration": 3, "loss": 0.25, "syn_lr": 0.02, "kept": 0.5, "skipped": True}
    assert trackers.iteration_values(row, 60.0) == {"tm/loss": 0.25, "tm/syn_lr": 0.02, "tm/kept_fraction": 0.5,
                                                    "tm/skipped": 1.0}  # fmt: skip
    first = trackers.iteration_values({**row, "iteration": 0, "val_acc": 71.5}, 60.0)
    assert first["tm/val_acc"] == 71.5 and first["tm/initial_val_acc"] == 60.0


def test_progress_bar_shows_the_latest_values():
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    with Reporter(console=console).progress("trajectory matching", total=2) as advance:
        advance(1, loss=0.912345, syn_lr=0.0100004)
        advance(1, loss=0.712345, syn_lr=0.0099)
    text = console.file.getvalue()
    assert "2/2" in text and "loss 0.7123  syn_lr 0.0099" in text and "0.9123" not in text
    quiet = Console(file=io.StringIO(), width=200)
    with Reporter(enabled=False, console=quiet).progress("trajectory matching", total=1) as advance:
        advance(1, loss=0.5, syn_lr=0.01)  # a non-main process: nothing at all
    assert quiet.file.getvalue() == ""
