"""`dd compare`: grouping by method/dataset/IPC/protocol/settings, pairing by seed, the paired interval on
hand-computed numbers, skipped runs with reasons, JSON/CSV/PNG outputs, and two real runs per method."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest
from PIL import Image

from core_support import assert_cli_error
from ddcore.compare import compare_runs, find_runs

#: What the built-in evaluator records in the manifest (records["eval"]), as a runner writes it.
EVAL_RECORD = {
    "runs": 2, "model": {"name": "convnet", "width": 8, "depth": 3, "norm": "instancenorm"},
    "recipe": {"epochs": 2, "batch_size": 256, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005,
               "schedule": "step", "augment": "crop"},
    "labels": "auto", "use_learned_lr": True, "baseline": [], "test_batch_size": 500,
}  # fmt: skip


def fake_run(folder, *, seed, acc, distill="none", plugins=(), initial=None, ipc=1, dataset="digits", status="complete",
             settings=None, epochs=2, record=True):  # fmt: skip
    """A run directory with manifest.json and metrics.json laid out as ddcore.runner writes them."""
    folder.mkdir(parents=True)
    eval_record = json.loads(json.dumps(EVAL_RECORD))
    eval_record["recipe"]["epochs"] = epochs
    fingerprint = {"seed": seed, "dataset": dataset, "ipc": ipc, "distill": distill, "plugins": list(plugins),
                   "eval.runs": len(acc), "eval.epochs": epochs, "validation": 0.1, "data.fingerprint": f"f{seed}",
                   "data.image_shape": [1, 32, 32], **(settings or {})}  # fmt: skip
    manifest = {
        "format": 1, "status": status, "seed": seed, "name": folder.name,
        "config": {"seed": seed, "dataset": dataset, "ipc": ipc, "distill": distill, "eval": {"runs": len(acc)}},
        "plugins": [{"name": "eval", "source": "builtin"}] + [{"name": p, "source": "entry-point"} for p in plugins],
        "fingerprint": fingerprint, "dataset": {"image_shape": [1, 32, 32]},
        "records": {"eval": eval_record} if record else {},
    }  # fmt: skip
    metrics = {"eval/acc_mean": statistics.fmean(acc), "eval/acc_std": statistics.pstdev(acc), "eval/acc_runs": list(acc)}
    if initial is not None:
        metrics.update({"eval/initial_acc_mean": statistics.fmean(initial), "eval/initial_acc_runs": list(initial)})
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}, indent=2))
    return folder


@pytest.fixture
def three_seeds(tmp_path):
    """Baseline ``none`` (run means 70, 72, 74) and ``tm+edf`` (80, 81, 86) at seeds 0, 1, 2."""
    runs = tmp_path / "runs"
    for seed, acc in enumerate(([69.0, 71.0], [72.0, 72.0], [73.0, 75.0])):
        fake_run(runs / f"none-{seed}", seed=seed, acc=acc)
    for seed, acc in enumerate(([79.0, 81.0], [81.0, 81.0], [86.0, 86.0])):
        fake_run(runs / f"tm-{seed}", seed=seed, acc=acc, distill="tm", plugins=["edf"], initial=[60.0, 62.0])
    return runs


def test_paired_interval_over_seeds_matches_a_hand_computation(three_seeds):
    comparison = comparison_of(three_seeds)
    [family] = comparison.families
    assert family.baseline == "none" and [g.label for g in family.groups] == ["none", "tm+edf"]
    diff = family.differences["tm+edf"]
    assert diff.unit == "seeds" and diff.seeds == [0, 1, 2] and diff.pairs == 3
    # by hand: differences 10, 9, 12; mean 31/3; sample sd sqrt(14/6); t(0.975, 2 df) = 4.303
    mean, sd = 31 / 3, math.sqrt(((10 - 31 / 3) ** 2 + (9 - 31 / 3) ** 2 + (12 - 31 / 3) ** 2) / 2)
    assert sd == pytest.approx(math.sqrt(7 / 3))
    half = 4.303 * sd / math.sqrt(3)
    assert diff.result["mean"] == pytest.approx(mean)
    assert diff.result["ci95_low"] == pytest.approx(mean - half) and diff.result["ci95_high"] == pytest.approx(mean + half)
    assert diff.result["ci95_low"] == pytest.approx(6.5384, abs=1e-4) and diff.result["ci95_high"] == pytest.approx(14.1282, abs=1e-4)
    stats = {g.label: g.stats() for g in family.groups}
    pooled = [79, 81, 81, 81, 86, 86]
    assert stats["tm+edf"]["acc_mean"] == pytest.approx(sum(pooled) / 6)
    assert stats["tm+edf"]["acc_std"] == pytest.approx(math.sqrt(sum((v - 82.3333333) ** 2 for v in pooled) / 6), abs=1e-6)
    assert stats["tm+edf"]["seed_std"] == pytest.approx(math.sqrt(((80 - 247 / 3) ** 2 + (81 - 247 / 3) ** 2 + (86 - 247 / 3) ** 2) / 2))
    assert (stats["tm+edf"]["initial_acc_mean"], stats["tm+edf"]["initial_acc_std"]) == (61.0, 1.0)
    assert stats["none"]["initial_acc_mean"] is None and stats["none"]["acc_mean"] == 72.0


def test_one_common_seed_pairs_the_networks_and_says_so(tmp_path):
    fake_run(tmp_path / "a", seed=5, acc=[70.0, 75.0, 79.0])
    fake_run(tmp_path / "b", seed=5, acc=[80.0, 84.0, 90.0], distill="tm")
    fake_run(tmp_path / "c", seed=6, acc=[50.0, 52.0], distill="dm")
    [family] = comparison_of(tmp_path / "a", tmp_path / "b", tmp_path / "c").families
    tm, dm = family.differences["tm"], family.differences["dm"]
    assert tm.unit == "networks" and tm.seeds == [5] and tm.result["runs"] == [10.0, 9.0, 11.0]
    half = 4.303 * 1.0 / math.sqrt(3)  # differences 10, 9, 11: sd 1
    assert (tm.result["ci95_low"], tm.result["ci95_high"]) == (pytest.approx(10 - half), pytest.approx(10 + half))
    assert "evaluation noise only" in tm.note
    assert dm.unit == "none" and dm.result is None and "no seed in common" in dm.note


def test_groups_split_by_settings_protocol_ipc_and_dataset(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "a", seed=0, acc=[80.0], distill="tm", settings={"tm.iterations": 10})
    fake_run(runs / "b", seed=1, acc=[81.0], distill="tm", settings={"tm.iterations": 10, "zca": False})  # a newer key
    fake_run(runs / "c", seed=0, acc=[85.0], distill="tm", settings={"tm.iterations": 50})
    fake_run(runs / "d", seed=0, acc=[60.0], epochs=5)  # another protocol
    fake_run(runs / "e", seed=0, acc=[65.0], ipc=10)
    fake_run(runs / "f", seed=0, acc=[66.0], dataset="cifar10")
    comparison = comparison_of(runs)
    families = {(f.dataset, f.ipc, f.protocol.get("recipe.epochs")): f for f in comparison.families}
    assert set(families) == {("digits", 1, 2), ("digits", 1, 5), ("digits", 10, 2), ("cifar10", 1, 2)}
    tm = families[("digits", 1, 2)]
    assert [(g.label, g.seeds) for g in tm.groups] == [("tm [tm.iterations=10]", [0, 1]), ("tm [tm.iterations=50]", [0])]
    assert tm.baseline == "tm [tm.iterations=10]" and "first group" in tm.baseline_rule  # no `none` group here
    assert tm.differences["tm [tm.iterations=50]"].result["runs"] == [5.0]
    assert not comparison.skipped


def test_skipped_runs_are_listed_with_their_reason(cli, tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "good", seed=0, acc=[70.0])
    fake_run(runs / "twin", seed=0, acc=[71.0])
    fake_run(runs / "running", seed=1, acc=[70.0], status="running")
    fake_run(runs / "no-protocol", seed=2, acc=[70.0], record=False)
    fake_run(runs / "no-eval", seed=3, acc=[70.0])
    (runs / "no-eval" / "metrics.json").write_text(json.dumps({"metrics": {"edf/active_fraction": 0.4}}))
    fake_run(runs / "corrupt", seed=4, acc=[70.0])
    (runs / "corrupt" / "manifest.json").write_text('{"format": 1, "sta')
    (runs / "not-a-run").mkdir()  # a folder beside the runs: not a candidate
    code, out, err = cli("compare", runs)
    assert code == 0, err
    skipped = {line.split(":")[0].removeprefix("skipped "): line for line in out.splitlines() if line.startswith("skipped ")}
    assert set(skipped) == {str(runs / n) for n in ("twin", "running", "no-protocol", "no-eval", "corrupt")}
    assert "one run per seed" in skipped[str(runs / "twin")] and str(runs / "good") in skipped[str(runs / "twin")]
    assert "status 'running'" in skipped[str(runs / "running")]
    assert "does not record how its eval accuracies were measured" in skipped[str(runs / "no-protocol")]
    assert "no eval/acc_runs" in skipped[str(runs / "no-eval")]
    assert "not a readable run manifest" in skipped[str(runs / "corrupt")]
    code, out, err = cli("compare", runs, "--json", "-")
    assert code == 0, err
    assert {s["path"] for s in json.loads(out)["skipped"]} == set(skipped)


def test_inputs_that_are_no_runs_are_one_line_errors(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    assert_cli_error(cli("compare", tmp_path / "empty"), str(tmp_path / "empty"), "not a ddcore run directory")
    assert_cli_error(cli("compare", tmp_path / "file.txt"), "is a file", "not a ddcore run directory")
    assert_cli_error(cli("compare", tmp_path / "missing"), "does not exist")
    assert_cli_error(cli("compare", str(tmp_path / "runs-*")), "matches nothing")
    fake_run(tmp_path / "r", seed=0, acc=[70.0], status="failed")
    assert_cli_error(cli("compare", tmp_path / "r"), "no run to compare", "status 'failed'")


def test_outputs_json_csv_png_and_the_baseline_option(cli, three_seeds, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    assert_cli_error(cli("compare", three_seeds, "--baseline", "dm"), "--baseline 'dm' is no group", "none, tm+edf")
    assert_cli_error(cli("compare", three_seeds, "--json", "-", "--csv", "-"), "both write to stdout")
    assert_cli_error(cli("compare", three_seeds, "--png", tmp_path / "nowhere" / "c.png"), "--png", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written by a refused command

    code, out, err = cli("compare", str(three_seeds / "*"), "--baseline", "tm+edf", "--json", "-")
    assert code == 0, err
    [family] = json.loads(out)["families"]
    assert family["baseline"] == "tm+edf" and family["baseline_rule"] == "--baseline tm+edf"
    groups = {g["label"]: g for g in family["groups"]}
    assert groups["none"]["vs_baseline"]["mean"] == pytest.approx(-31 / 3) and groups["tm+edf"]["vs_baseline"] is None
    assert [r["seed"] for r in groups["none"]["runs"]] == [0, 1, 2] and groups["none"]["runs"][2]["acc_runs"] == [73.0, 75.0]

    code, out, err = cli("compare", three_seeds, "--csv", tmp_path / "c.csv", "--png", tmp_path / "c.png", "--json", tmp_path / "c.json")
    assert code == 0, err
    assert f"written (CSV): {tmp_path / 'c.csv'}" in out and "tm+edf" in out and "+10.33 [+6.54, +14.13]" in out
    rows = list(csv.DictReader(io.StringIO((tmp_path / "c.csv").read_text())))
    assert [r["group"] for r in rows] == ["none", "tm+edf"]
    tm = rows[1]
    assert (tm["runs"], tm["seeds"], tm["networks"], tm["pairs"], tm["pair_unit"], tm["baseline"]) == ("3", "0,1,2", "6", "3", "seeds", "none")
    assert float(tm["diff_ci95_low"]) == pytest.approx(6.5384, abs=1e-4) and float(tm["initial_acc_mean"]) == 61.0
    assert rows[0]["diff_mean"] == "" and float(rows[0]["acc_mean"]) == 72.0
    assert json.loads((tmp_path / "c.json").read_text())["families"][0]["groups"][1]["vs_baseline"]["pairs"] == 3
    with Image.open(tmp_path / "c.png") as image:
        image.verify()
    with Image.open(tmp_path / "c.png") as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size[0] > 200 and image.size[1] > 300


def test_compare_module_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, ddcore.compare; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_real_runs_two_seeds_per_method(cli, tmp_path):
    """Two tiny real runs per method (selection only, and the herding example plugin) at seeds 0 and 1."""
    from ddcore import run

    runs = tmp_path / "runs"
    for plugins in ((), ("herding",)):
        for seed in (0, 1):
            name = "+".join(["none", *plugins]) + f"-{seed}"
            config = {"ipc": 1, "seed": seed, "workers": 0, "eval": {"runs": 2, "epochs": 2, "width": 8},
                      "out": str(runs / name), "cache_dir": str(tmp_path / "cache")}  # fmt: skip
            run(config, plugins=list(plugins))
    means = {}
    for folder in sorted(runs.iterdir()):
        means[folder.name] = json.loads((folder / "metrics.json").read_text())["metrics"]["eval/acc_mean"]
    code, out, err = cli("compare", runs, "--json", "-")
    assert code == 0, err
    [family] = json.loads(out)["families"]
    assert family["baseline"] == "none" and [g["label"] for g in family["groups"]] == ["none", "none+herding"]
    diff = family["groups"][1]["vs_baseline"]
    by_hand = [means[f"none+herding-{s}"] - means[f"none-{s}"] for s in (0, 1)]
    half = 12.706 * statistics.stdev(by_hand) / math.sqrt(2)
    assert diff["unit"] == "seeds" and diff["seeds"] == [0, 1] and diff["runs"] == pytest.approx(by_hand)
    assert diff["mean"] == pytest.approx(statistics.fmean(by_hand))
    assert (diff["ci95_low"], diff["ci95_high"]) == (pytest.approx(diff["mean"] - half), pytest.approx(diff["mean"] + half))


def comparison_of(*paths, **options):
    found, skipped = find_runs([str(p) for p in paths])
    return compare_runs(found, skipped=skipped, **options)
