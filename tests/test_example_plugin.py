"""The third-party example, installed non-editable like any outside package (the README's test command does it).

These run the real ``dd`` console script of this environment in a subprocess, so they see exactly
what a user sees after ``pip install ./examples/dd-herding``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

DD = [sys.executable, "-m", "ddcore_cli"]


def installed_non_editable() -> bool:
    try:
        dist = distribution("dd-herding")
    except PackageNotFoundError:
        return False
    direct_url = dist.read_text("direct_url.json")
    return not (direct_url and json.loads(direct_url).get("dir_info", {}).get("editable"))


def test_example_is_installed_as_a_real_package():
    assert installed_non_editable(), "install it first: pip install ./examples/dd-herding (see README)"


def test_dd_plugins_json_lists_the_example():
    proc = subprocess.run([*DD, "plugins", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    herding = rows["herding"]
    assert herding["distribution"] == "dd-herding" and herding["version"] == "0.1.0"
    assert herding["hooks"] == ["dd_select"] and herding["status"] == "ok" and herding["source"] == "entry-point"


@pytest.mark.slow
def test_dd_run_with_the_example_plugin(tmp_path: Path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [*DD, "run", "--plugin", "herding", "--ipc", "2", "--eval-runs", "1", "--eval-epochs", "2",
         "--set", "eval.width=8", "--set", 'plugin.herding.space="pixels-pooled"', "--workers", "0",
         "--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    herding = next(p for p in manifest["plugins"] if p["name"] == "herding")
    assert herding["distribution"] == "dd-herding" and herding["hooks"] == ["dd_select"]
    assert manifest["config"]["plugin"] == {"herding": {"space": "pixels-pooled"}}
    select_calls = manifest["hook_calls"]["dd_select"]
    assert list(select_calls) == ["herding"]  # herding answered; the built-in random-real was never asked
    assert set(select_calls["herding"]) == {"calls", "seconds"} and select_calls["herding"]["calls"] == 1
    assert 0 < select_calls["herding"]["seconds"] <= manifest["wall_seconds"]
    import torch

    distilled = torch.load(out / "distilled.pt", weights_only=True)
    assert distilled["meta"]["selected_by"] == "herding"
    assert distilled["labels"].tolist() == [c for c in range(10) for _ in range(2)]
