"""Issue 13 kind 1: a fresh run never reads or leaves anything of an earlier run in its directory.

``--overwrite`` empties a folder holding a ddcore run before any work (and refuses any other non-empty
folder); only ``--resume`` continues a run, and only with the fingerprint (config, plugins, data) of the
run that saved what it continues from.
"""

from __future__ import annotations

import json

import pytest
import torch

from core_support import assert_cli_error
from ddcore.distilled import DistilledSet
from ddcore.distillers import checkpoint_paths
from ddcore.errors import ConfigError, DDError, PluginCrash
from ddcore.runner import resume_run, run
from ddcore.testing import InterruptAt

TM = {"syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 2}


def tm_config(tmp_path, out: str, *, ipc: int = 1, iterations: int = 4, seed: int = 0, runs: int = 0) -> dict:
    return {
        "ipc": ipc, "seed": seed, "workers": 0, "distill": "tm", "out": str(tmp_path / out),
        "cache_dir": str(tmp_path / "cache"), "tm": {**TM, "iterations": iterations},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": runs, "epochs": 1, "width": 8},
    }  # fmt: skip


@pytest.fixture(scope="module")
def tm_run(tmp_path_factory):
    """A finished IPC-1 tm run (4 iterations), with a stray eval-*.json as `dd eval` would leave."""
    tmp_path = tmp_path_factory.mktemp("stale")
    result = run(tm_config(tmp_path, "A"))
    (result.out_dir / "eval-20000101-000000.json").write_text('{"metrics": {"eval/acc_mean": 99.0}}')
    return tmp_path, result


def copy_run(tmp_path, source, name: str):
    import shutil

    target = tmp_path / name
    shutil.copytree(source, target)
    return target


def test_overwrite_with_another_ipc_replaces_the_run_completely(tm_run, tmp_path):
    base, first = tm_run
    out = copy_run(tmp_path, first.out_dir, "A")
    config = {**tm_config(base, "unused", ipc=2, iterations=3, seed=1), "out": str(out), "overwrite": True}
    second = run(config)
    assert second.distilled.images.shape[0] == 20  # ipc 2 x 10 classes, not the old IPC-1 set
    assert DistilledSet.load(out / "distilled.pt").images.shape[0] == 20
    log = json.loads((out / "tm_log.json").read_text())
    assert [row["iteration"] for row in log] == [0, 1, 2]  # started at 0, never "resumed at iteration 4"
    assert [p.name for p in checkpoint_paths(out / "checkpoints", "tm")] == ["tm-00000003.pt", "tm-00000002.pt"]
    assert not list(out.glob("eval-*.json"))
    text = (out / "run.log").read_text()
    assert "resuming" not in text and text.count("stage dataset: started") == 1  # the old run.log is gone
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["name"], manifest["seed"], manifest["resumed"]) == ("digits-ipc2", 1, False)


def test_overwrite_with_distill_none_leaves_no_tm_files(tm_run, tmp_path, cli, tiny_run_args):
    _, first = tm_run
    out = copy_run(tmp_path, first.out_dir, "A")
    assert (out / "tm_log.json").exists() and (out / "checkpoints").is_dir()
    code, _, err = cli(*tiny_run_args("--quiet", "--overwrite", out=out))
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["distilled.pt", "grid.png", "manifest.json", "metrics.json", "run.log"]
    assert json.loads((out / "manifest.json").read_text())["config"]["distill"] == "none"


def test_out_that_holds_no_run_is_never_deleted(tmp_path, cli, tiny_run_args):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("keep me")
    for extra in ((), ("--overwrite",)):
        assert_cli_error(cli(*tiny_run_args("--quiet", *extra, out=folder)), f"--out {folder}", "holds no ddcore run")
        assert sorted(p.name for p in folder.iterdir()) == ["thesis.tex"]


def test_a_run_without_overwrite_is_refused_before_any_work(tm_run, tmp_path, cli, tiny_run_args):
    _, first = tm_run
    out = copy_run(tmp_path, first.out_dir, "A")
    before = sorted(p.name for p in out.rglob("*"))
    assert_cli_error(cli(*tiny_run_args("--quiet", out=out)), "already holds a run", "--overwrite", "--resume")
    assert sorted(p.name for p in out.rglob("*")) == before


@pytest.fixture(scope="module")
def cut_run(tm_run):
    """A tm run stopped inside iteration 3 (checkpoint of iteration 2 written)."""
    base, _ = tm_run
    with pytest.raises(PluginCrash, match="killed at 3"):
        run(tm_config(base, "cut"), [InterruptAt(at=3)])
    return base / "cut"


def test_resume_refuses_an_option_that_shapes_the_set(cut_run, tmp_path, cli):
    out = copy_run(tmp_path, cut_run, "cut")
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert_cli_error(cli("run", "--resume", out, "--set", "tm.iterations=9", "-q"), "tm.iterations", "the run has 4, now 9")
    assert_cli_error(cli("run", "--resume", out, "--seed", "1", "-q"), "seed", "--seed")
    assert_cli_error(cli("run", "--resume", out, "--eval-runs", "1", "-q"), "eval.runs", "before it is distilled")
    assert_cli_error(cli("run", "--resume", out, "--overwrite", "-q"), "--overwrite cannot be combined with --resume")
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # nothing written, nothing deleted


def test_resume_refuses_a_checkpoint_of_another_run(cut_run, tmp_path, tm_run):
    base, _ = tm_run
    with pytest.raises(PluginCrash, match="killed at 3"):
        run(tm_config(base, "cut-seed1", seed=1), [InterruptAt(at=3)])
    out = copy_run(tmp_path, cut_run, "cut")
    [own] = checkpoint_paths(out / "checkpoints", "tm")
    [other] = checkpoint_paths(base / "cut-seed1" / "checkpoints", "tm")
    own.write_bytes(other.read_bytes())  # a checkpoint of the seed-1 run in the seed-0 run's folder
    with pytest.raises(ConfigError, match=r"checkpoint .*tm-00000002.pt was written by a run with another seed \(the run has 1, now 0"):
        resume_run(out)


def test_resume_refuses_changed_data(cut_run, tmp_path):
    out = copy_run(tmp_path, cut_run, "cut")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["fingerprint"]["data.fingerprint"] = "0123456789abcdef"  # as if the images had been rewritten since
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"data.fingerprint .*the data \(--data-root / --dataset\)"):
        resume_run(out)


def test_resume_continues_only_its_own_run(cut_run, tmp_path, tm_run):
    """The resumed cut run ends exactly where the uninterrupted one (same config) does."""
    base, _ = tm_run
    whole = run(tm_config(base, "whole"))
    out = copy_run(tmp_path, cut_run, "cut")
    resumed = resume_run(out)
    assert torch.equal(resumed.distilled.images, whole.distilled.images)
    manifest = json.loads((out / "manifest.json").read_text())
    assert (manifest["status"], manifest["resumed"], manifest["finished"]) == ("complete", True, ["initial", "distilled"])


def test_resume_of_a_complete_run_points_to_dd_eval(tm_run):
    _, first = tm_run
    with pytest.raises(DDError, match="complete run; there is nothing to resume .*dd eval"):
        resume_run(first.out_dir)
