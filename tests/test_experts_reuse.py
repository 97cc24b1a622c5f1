"""`dd experts` trains exactly the experts `dd run --distill tm` wants: same recipe, same cache key.

The quick tests stop both commands where they ask for the experts (``ensure_experts`` replaced by a probe
that records the recipe and its cache key); the slow one trains with `dd experts`, then runs
`dd run --distill tm` on the same cache and checks that it trained nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ddcore.errors import DDError


class Stop(DDError):
    """Raised by the probe: the command asked for its experts (no training)."""


@pytest.fixture
def asked(monkeypatch) -> list[dict]:
    """Replaces ``ensure_experts``; every call appends ``{"key", "recipe"}`` and stops the command."""
    from ddcore.tm import experts as ex

    calls: list[dict] = []

    def probe(ctx, dataset, recipe, num_experts=None, *, data_root=None):
        key = ex.cache_key(ex.dataset_identity(dataset, data_root or ctx.config.data_root or None), recipe)
        calls.append({"key": key, "recipe": recipe})
        raise Stop(f"experts asked for: {key}")

    monkeypatch.setattr(ex, "ensure_experts", probe)
    return calls


def both(cli, asked, tmp_path: Path, experts_args: list, run_args: list) -> tuple[dict, dict]:
    cache = tmp_path / "cache"
    common = ["--workers", "0", "--cache-dir", cache, "--cpu"]
    code, _, err = cli("experts", "--quiet", *common, *experts_args)
    assert code == 2 and "experts asked for" in err, err
    code, _, err = cli("run", "--quiet", "--distill", "tm", "--eval-runs", "0", "--out", tmp_path / "run", "--overwrite", *common, *run_args)
    assert code == 2 and "experts asked for" in err, err
    assert len(asked) == 2
    return asked[0], asked[1]


def test_defaults_match_the_readme_job(cli, asked, tmp_path):
    """`dd experts --dataset digits` trains what `dd run --ipc 1 --distill tm` uses (the README's main job)."""
    ahead, run = both(cli, asked, tmp_path, ["--dataset", "digits"], ["--ipc", "1"])
    assert ahead["key"] == run["key"]
    recipe = run["recipe"]
    # digits-ipc1 preset: max_start_epoch 4 + expert_epochs 2; the [eval] network of digits; crop for digits
    assert recipe.epochs == 6 and recipe.num_experts == 5
    assert (recipe.model.name, recipe.model.width, recipe.model.depth) == ("convnet", 32, 3)
    assert (recipe.train.optimizer, recipe.train.schedule, recipe.train.augment) == ("sgd", "constant", "crop")


def test_ipc_picks_the_preset_and_the_epochs(cli, asked, tmp_path):
    ahead, run = both(cli, asked, tmp_path, ["--ipc", "50"], ["--ipc", "50"])
    assert ahead["key"] == run["key"] and run["recipe"].epochs == 8  # digits-ipc50: 6 + 2


def test_flags_and_config_file_match_the_run(cli, asked, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'dataset = "digits"\nipc = 10\nseed = 3\n[eval]\nwidth = 16\n'
        '[experts]\nnum = 2\nlr = 0.02\noptimizer = "adam"\n[tm]\nmax_start_epoch = 3\ncur_max_start_epoch = 1\n',
        encoding="utf-8",
    )
    ahead, run = both(cli, asked, tmp_path, ["--config", config], ["--config", config])
    assert ahead["key"] == run["key"]
    recipe = run["recipe"]
    assert recipe.epochs == 5 and recipe.seed == 3 and recipe.model.width == 16 and recipe.train.lr == 0.02
    asked.clear()
    flags, _ = both(cli, asked, tmp_path,
                    ["--seed", 3, "--width", 16, "--num-experts", 2, "--lr", 0.02, "--optimizer", "adam",
                     "--set", "tm.max_start_epoch=3", "--set", "tm.cur_max_start_epoch=1"],
                    ["--config", config])  # fmt: skip
    assert flags["key"] == run["key"]


def test_experts_shorter_than_the_window_are_refused(cli, tmp_path):
    code, _, err = cli("experts", "--epochs", 2, "--workers", 0, "--cache-dir", tmp_path / "cache", "--cpu")
    assert code == 2 and "tm.max_start_epoch" in err and "they have 2" in err, err


@pytest.mark.slow
def test_experts_trained_ahead_are_reused_by_the_run(cli, tmp_path):
    """`dd experts` then `dd run --distill tm` with the same cache: the run trains nothing."""
    cache = tmp_path / "cache"
    common = ["--workers", "0", "--cache-dir", cache, "--cpu", "--quiet"]
    code, out, err = cli("experts", "--dataset", "digits", "--num-experts", 1, "--width", 8, *common)
    assert code == 0, err
    assert "1 trained, 0 reused" in out and "6 epochs" in out
    files = sorted((cache / "experts").glob("*/*"))
    before = {path: path.stat().st_mtime_ns for path in files}
    code, _, err = cli("run", "--distill", "tm", "--ipc", 1, "--eval-runs", 0, "--out", tmp_path / "run", *common,
                       "--set", "eval.width=8", "--set", "experts.num=1", "--set", "tm.iterations=1", "--set", "tm.syn_steps=2")  # fmt: skip
    assert code == 0, err
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text(encoding="utf-8"))
    record = manifest["records"]["experts"]
    assert record["trained"] == [] and record["folder"] == str(files[0].parent)
    assert {path: path.stat().st_mtime_ns for path in sorted((cache / "experts").glob("*/*"))} == before
