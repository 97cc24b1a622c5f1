"""End to end on the embedded digits: artifacts, manifest, determinism, config precedence, show/eval."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from PIL import Image

from ddcore import run
from ddcore.plugins import BUILTIN_NAMES

TINY_EVAL = {"runs": 2, "epochs": 2, "width": 8, "baseline": ["random"]}


def tiny(tmp_path, **overrides):
    config = {"ipc": 2, "workers": 0, "eval": dict(TINY_EVAL), "out": str(tmp_path / "run"), "cache_dir": str(tmp_path / "c")}
    config.update(overrides)
    return config


def test_run_writes_a_complete_run_directory(tmp_path):
    result = run(tiny(tmp_path))
    out = result.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["distilled.pt", "grid.png", "manifest.json", "metrics.json", "run.log"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["seed"] == 0
    assert manifest["config"]["ipc"] == 2 and manifest["config"]["eval"]["epochs"] == 2
    assert {p["name"] for p in manifest["plugins"]} == set(BUILTIN_NAMES)
    assert all(p["hooks"] for p in manifest["plugins"])
    assert manifest["accelerate"]["num_processes"] == 1
    assert set(manifest["stages"]) == {"dataset", "select", "initialize", "evaluate", "artifacts"}
    assert all(s["seconds"] >= 0 and s["peak_rss_mib"] > 0 for s in manifest["stages"].values())
    assert manifest["versions"]["ddcore"] and manifest["versions"]["torch"]
    assert manifest["records"]["eval"]["model"]["width"] == 8
    assert manifest["hook_calls"]["dd_select"]["random-real"]["calls"] == 1
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics == result.metrics  # JSON round-trips floats exactly
    assert len(metrics["eval/acc_runs"]) == 2 and len(metrics["eval/random_real_acc_runs"]) == 2
    assert metrics["eval/acc_mean"] == pytest.approx(sum(metrics["eval/acc_runs"]) / 2)
    with Image.open(out / "grid.png") as grid:
        # 2 per class, 10 classes: 32 px digits enlarged to 64 px cells, class names in a margin on the left
        assert grid.size[1] == 10 * 66 + 2 and grid.size[0] > 2 * 66 + 2


def test_random_real_selection_is_class_major_distinct_and_real(tmp_path):
    result = run(tiny(tmp_path, ipc=3, eval={"runs": 0}), write=False)
    distilled = result.distilled
    assert distilled.labels.tolist() == [c for c in range(10) for _ in range(3)]
    assert distilled.meta == {"selected_by": "random-real", "initialized_by": "as-selected"}
    from ddcore.data.base import DatasetOptions
    from ddcore.data.digits import load_digits_dataset

    dataset = load_digits_dataset(DatasetOptions())
    # every distilled image is one real training image of its class
    for image, label in zip(distilled.images, distilled.labels):
        matches = (dataset.train.images - image).flatten(1).abs().sum(1) == 0
        assert matches.any() and dataset.train.labels[matches][0] == label


def test_same_seed_same_result_other_seed_other_selection(tmp_path):
    a = run(tiny(tmp_path), write=False)
    b = run(tiny(tmp_path), write=False)
    c = run(tiny(tmp_path, seed=1), write=False)
    assert torch.equal(a.distilled.images, b.distilled.images)
    assert a.metrics == b.metrics
    assert not torch.equal(a.distilled.images, c.distilled.images)


def test_random_baseline_matches_the_distilled_class_counts(tmp_path, monkeypatch):
    from ddcore.builtin import evaluate

    seen = []
    original = evaluate.tensor_batches

    def spy(images, labels, batch_size, generator):
        seen.append(Counter(labels.tolist()))
        return original(images, labels, batch_size, generator)

    monkeypatch.setattr(evaluate, "tensor_batches", spy)
    run(tiny(tmp_path, ipc=2, eval={**TINY_EVAL, "runs": 1}), write=False)
    assert seen == [Counter({c: 2 for c in range(10)})] * 2  # the distilled set, then the random subset


def test_learned_lr_is_used_by_the_evaluator(tmp_path, monkeypatch):
    from ddcore import DistilledSet, hookimpl
    from ddcore.builtin import evaluate

    class LearnsLr:
        name = "learns-lr"

        @hookimpl
        def dd_initialize(self, ctx, selection):
            d = ctx.dataset
            return DistilledSet(selection.images, selection.labels, d.class_names, d.mean, d.std, lr=0.123)

    recipes = []
    original = evaluate.train_network
    monkeypatch.setattr(evaluate, "train_network", lambda m, b, recipe, *a: (recipes.append(recipe), original(m, b, recipe, *a))[1])
    run(tiny(tmp_path, ipc=1, eval={"runs": 1, "epochs": 1, "width": 8}), [LearnsLr()], write=False)
    assert [r.lr for r in recipes] == [0.123]


def test_config_file_and_flags_flags_win(tmp_path, cli):
    config = tmp_path / "run.toml"
    config.write_text('ipc = 3\nseed = 4\nworkers = 0\n[eval]\nruns = 0\n')
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", "--config", config, "--ipc", "1", "--out", out, "--cache-dir", tmp_path / "c", "-q")
    assert code == 0, stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["ipc"] == 1 and manifest["config"]["seed"] == 4
    assert manifest["config"]["eval"]["runs"] == 0


def test_show_and_eval_of_a_saved_run(tmp_path, cli):
    result = run(tiny(tmp_path, eval={"runs": 1, "epochs": 1, "width": 8}))
    original_metrics = (result.out_dir / "metrics.json").read_bytes()
    code, stdout, _ = cli("show", result.out_dir)
    assert code == 0 and "complete" in stdout and "digits" in stdout and "eval/acc" in stdout
    code, stdout, stderr = cli("eval", result.out_dir, "--eval-runs", "2", "--baseline", "random", "-q")
    assert code == 0, stderr
    written = sorted(result.out_dir.glob("eval-*.json"))
    assert len(written) == 1
    metrics = json.loads(written[0].read_text())["metrics"]
    assert len(metrics["eval/acc_runs"]) == 2 and "eval/random_real_acc_mean" in metrics
    assert (result.out_dir / "metrics.json").read_bytes() == original_metrics


def test_in_memory_run_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run({"ipc": 1, "workers": 0, "eval": {"runs": 0}}, write=False)
    assert result.out_dir is None and list(tmp_path.iterdir()) == []


def test_trajectory_matching_run_end_to_end(tmp_path):
    """distill = "tm": experts are trained and cached, the images move, the log and records are written."""
    config = tiny(
        tmp_path, ipc=1, distill="tm",
        tm={"iterations": 3, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1},
        experts={"num": 2, "batch_size": 512}, eval={"runs": 1, "epochs": 1, "width": 8},
    )  # fmt: skip
    result = run(config)
    out = result.out_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"experts", "distill"} <= set(manifest["stages"])
    assert manifest["records"]["tm"]["iterations"] == 3 and manifest["records"]["experts"]["num_experts"] == 2
    log = json.loads((out / "tm_log.json").read_text())
    assert [row["iteration"] for row in log] == [0, 1, 2]
    assert result.distilled.meta["distilled_by"] == "tm" and result.distilled.lr is not None
    plain = {key: value for key, value in config.items() if key != "tm"}  # a [tm] table would be refused with distill none
    untouched = run({**plain, "distill": "none", "out": str(tmp_path / "plain")})
    assert not torch.equal(result.distilled.images, untouched.distilled.images)  # same selection, matched away
    again = run({**config, "out": str(tmp_path / "again")})  # experts now come from the cache
    assert manifest["records"]["experts"]["trained"] and not json.loads(
        (tmp_path / "again" / "manifest.json").read_text())["records"]["experts"]["trained"]
    assert torch.equal(again.distilled.images, result.distilled.images)


def test_window_beyond_the_experts_is_rejected_before_any_work(tmp_path):
    from ddcore.errors import ConfigError

    with pytest.raises(ConfigError, match="needs experts of at least 6 epochs, they have 3"):
        run(tiny(tmp_path, distill="tm", tm={"max_start_epoch": 5}, experts={"epochs": 3}))
    assert not (tmp_path / "run").exists()


def test_trajectory_matching_from_correctly_predicted_images_with_learned_soft_labels(tmp_path):
    config = tiny(
        tmp_path, ipc=1, distill="tm",
        tm={"iterations": 2, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "init": "correct",
            "learn_labels": True},
        experts={"num": 2, "batch_size": 512}, eval={"runs": 1, "epochs": 1, "width": 8},
    )  # fmt: skip
    result = run(config)
    distilled = result.distilled
    assert distilled.soft and distilled.labels.shape == (10, 10)
    assert distilled.meta["initialized_by"] == "correct"
    initial = torch.load(result.out_dir / "checkpoints" / "initial.pt", weights_only=True)
    assert not torch.equal(initial["labels"], distilled.labels)  # the soft labels were learned
    assert result.manifest["records"]["eval"]["labels"] == "auto"


def test_correct_initialisation_refuses_a_selection_plugin(tmp_path):
    from ddcore import hookimpl
    from ddcore.errors import ConfigError

    class Picks:
        name = "picks"

        @hookimpl
        def dd_select(self, ctx, dataset, ipc):
            return None

    with pytest.raises(ConfigError, match="tm.init = 'correct' builds the initial set itself, but picks"):
        run(tiny(tmp_path, distill="tm", tm={"init": "correct"}), [Picks()])
