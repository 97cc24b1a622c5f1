"""End to end: dd-dm installed as a real package (non-editable, as CI does), run by ddcore and by ``dd``."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
import torch

import ddcore
from ddcore.testing import InterruptAt

DD = [sys.executable, "-m", "ddcore_cli"]
TINY_EVAL = {"runs": 1, "epochs": 1, "width": 8, "batch_size": 64}
#: A few DM iterations on small real batches: the cheapest real run.
TINY_DM = {"iterations": 4, "batch_real": 8, "checkpoint_every": 2}


def dd(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*DD, *args], capture_output=True, text=True, timeout=timeout)


def run_config(tmp_path: Path, out: str, **dm) -> dict:
    return {"dataset": "digits", "ipc": 1, "workers": 0, "plugins": ["dm"], "distill": "dm", "eval": TINY_EVAL,
            "out": str(tmp_path / out), "cache_dir": str(tmp_path / "cache"), "dm": {**TINY_DM, **dm}}  # fmt: skip


def test_installed_as_a_real_package() -> None:
    try:
        dist = distribution("dd-dm")
    except PackageNotFoundError:
        pytest.fail("install it first: pip install ./examples/dd-dm")
    direct_url = dist.read_text("direct_url.json")
    assert not (direct_url and json.loads(direct_url).get("dir_info", {}).get("editable")), "install it non-editable"
    assert [ep.value for ep in dist.entry_points if ep.group == "ddcore" and ep.name == "dm"] == ["dd_dm.plugin"]


@pytest.mark.slow
def test_dd_plugins_lists_dm() -> None:
    proc = dd("plugins", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["dm"]["distribution"] == "dd-dm" and rows["dm"]["hooks"] == ["dd_register_distillers"]
    assert rows["dm"]["status"] == "ok"


@pytest.mark.slow
def test_run_writes_the_distilled_set(tmp_path: Path) -> None:
    result = ddcore.run(run_config(tmp_path, "run", eval_every=2))
    out = result.out_dir
    saved = ddcore.DistilledSet.load(out / "distilled.pt")
    assert saved.meta["distilled_by"] == "dm" and saved.meta["selected_by"] == "random-real"
    assert saved.images.shape == (10, 1, 32, 32) and saved.labels.tolist() == list(range(10))
    initial = ddcore.DistilledSet.load(out / "checkpoints" / "initial.pt")
    assert not torch.equal(saved.images, initial.images)
    log = json.loads((out / "dm_log.json").read_text())
    assert [row["iteration"] for row in log] == [0, 1, 2, 3] and all(row["loss"] > 0 for row in log)
    assert [("val_acc" in row) for row in log] == [False, True, False, True]  # dm.eval_every = 2: logged only
    assert sorted(p.name for p in (out / "checkpoints").glob("dm-*.pt")) == ["dm-00000002.pt", "dm-00000004.pt"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["records"]["distiller"] == {"name": "dm", "plugin": "dm", "calls": ["dd_pixel_weights"], "not_called": {}}
    record = manifest["records"]["dm"]
    assert record["options"]["lr_img"] == 1.0 and record["iterations"] == 4  # lr_img = ipc, filled by configure
    assert record["embed"]["width"] == 8  # the run's network: the [eval] model
    assert manifest["config"]["dm"]["lr_img"] == 1.0 and manifest["config"]["dm"]["batch_real"] == 8
    assert "eval/acc_mean" in result.metrics


@pytest.mark.slow
def test_a_killed_run_resumes_bit_identically(tmp_path: Path) -> None:
    from ddcore.errors import PluginCrash
    from ddcore.runner import resume_run

    whole = ddcore.run(run_config(tmp_path, "whole", iterations=6))
    with pytest.raises(PluginCrash, match="killed at 3"):
        ddcore.run(run_config(tmp_path, "cut", iterations=6), [InterruptAt(at=3)])
    cut = tmp_path / "cut"
    assert json.loads((cut / "manifest.json").read_text())["status"] == "failed"
    assert [p.name for p in (cut / "checkpoints").glob("dm-*.pt")] == ["dm-00000002.pt"]
    resumed = resume_run(cut)
    assert torch.equal(resumed.distilled.images, whole.distilled.images)
    assert json.loads((cut / "dm_log.json").read_text()) == json.loads((tmp_path / "whole" / "dm_log.json").read_text())


@pytest.mark.slow
def test_dd_run_with_edf_applies_its_cam_mask_to_dm(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = dd(
        "run", "--plugin", "dm", "--plugin", "edf", "--distill", "dm", "--ipc", "1", "--workers", "0",
        "--eval-runs", "1", "--eval-epochs", "1", "--set", "eval.width=8",
        "--set", "dm.iterations=3", "--set", "dm.batch_real=8", "--set", "dm.checkpoint_every=0",
        "--set", "plugin.edf.interval=2", "--set", 'plugin.edf.cam_method="gradcam"',
        "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)["metrics"]
    assert metrics["edf/cam_refreshes"] == 2  # iterations 0 and 2 of 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"]["distiller"]["not_called"] == {"edf": ["dd_supervision_weights"]}
    assert manifest["records"]["edf"]["applied"] == {"dae": True, "cpd": False}  # CPD does not apply to DM
    calls = manifest["hook_calls"]
    assert calls["dd_pixel_weights"]["edf"]["calls"] == 3
    assert "edf" not in calls.get("dd_supervision_weights", {})


@pytest.mark.slow
def test_distill_dm_without_the_plugin_is_a_one_line_error(tmp_path: Path) -> None:
    proc = dd("run", "--distill", "dm", "--ipc", "1", "--eval-runs", "0", "--cache-dir", str(tmp_path),
              "--out", str(tmp_path / "run"), timeout=300)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith('Error: unknown distiller "dm" (option --distill). Registered: none, ')
    assert lines[0].endswith("if plugin 'dm' registers it, add --plugin dm")
    assert not (tmp_path / "run").exists()
