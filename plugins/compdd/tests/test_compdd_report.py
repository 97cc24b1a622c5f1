"""``dd compdd report`` and ``dd compdd build`` on hand-written inputs (no training)."""

from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner
from PIL import Image

from ddcore import DDError
from ddcore_compdd.commands import compdd_group
from ddcore_compdd.report import build_report, read_run


def fake_protocol(source):
    """What the evaluator ``source`` records (the digits preset for ``eval``, the miniature's Comp-DD protocol)."""
    batch, augment = (128, "dsa") if source == "compdd" else (256, "crop")
    return {"runs": 3, "model": {"name": "convnet", "width": 32, "depth": 3, "norm": "instancenorm"},
            "recipe": {"epochs": 300, "batch_size": batch, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9,
                       "weight_decay": 0.0005, "schedule": "step", "augment": augment},
            "labels": "auto", "use_learned_lr": True, "baseline": [], "test_batch_size": 500}  # fmt: skip


def fake_run(folder, dataset, runs, *, plugins=(), distill="none", ipc=1, name="", status="complete", source="compdd"):
    folder.mkdir(parents=True)
    manifest = {
        "status": status,
        "records": {"compdd/protocol" if source == "compdd" else source: fake_protocol(source)},
        "config": {"dataset": dataset, "ipc": ipc, "distill": distill, "name": name},
        "plugins": [{"name": "eval", "source": "builtin"}, {"name": "compdd", "source": "entry-point"}]
        + [{"name": p, "source": "entry-point"} for p in plugins],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    metrics = {f"{source}/acc_runs": runs, f"{source}/acc_mean": statistics.fmean(runs)}
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    return folder


def test_report_pairs_easy_and_hard_per_method_with_the_gap(tmp_path):
    runs = [
        fake_run(tmp_path / "a", "compdd/mini-easy", [80.0, 90.0]),
        fake_run(tmp_path / "b", "compdd/mini-hard", [40.0, 50.0, 60.0]),
        fake_run(tmp_path / "c", "compdd/mini-easy", [70.0], distill="tm", plugins=("edf",), source="eval"),
        fake_run(tmp_path / "d", "compdd/mini-hard", [30.0], distill="tm", plugins=("edf",)),
        fake_run(tmp_path / "e", "compdd/bird-hard", [20.0], ipc=10),
    ]
    result = CliRunner().invoke(compdd_group, ["report", *map(str, runs), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "| random real | 1 | 85.00 ± 5.00 | 50.00 ± 8.16 | +35.00 |" in result.output
    # easy by the built-in evaluator, hard by the Comp-DD protocol: two rows, no gap (issue 19, kind 2)
    assert "| edf (TM) | 1 | 70.00 ± n/a | — | — |" in result.output and "| edf (TM) | 1 | — | 30.00 ± n/a | — |" in result.output
    assert "edf (TM), IPC 1: not comparable" in result.output and "evaluator eval vs compdd" in result.output
    assert "### compdd/bird" in result.output and "| random real | 10 | — | 20.00 ± n/a | — |" in result.output
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["subsets"]["compdd/mini"][0]["gap"] == pytest.approx(35.0)
    assert data["subsets"]["compdd/mini"][0]["hard_networks"] == 3
    with Image.open(tmp_path / "out" / "report.png") as chart:
        assert chart.format == "PNG" and chart.width > 200 and chart.height > 2 * 250


def test_runs_of_the_same_method_pool_their_networks_and_names_win(tmp_path):
    records = [
        read_run(fake_run(tmp_path / "a", "compdd/mini-easy", [80.0], name="mine")),
        read_run(fake_run(tmp_path / "b", "compdd/mini-easy", [90.0], name="mine")),
    ]
    (row,) = build_report(records)["compdd/mini"]
    assert row.method == "mine" and row.stats("easy") == (85.0, 5.0) and row.gap() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "failed"}, "status 'failed'"),
        ({"source": "other"}, "no accuracy"),
        ({"dataset": "digits"}, "not an easy/hard dataset"),
    ],
)
def test_runs_that_cannot_be_reported_are_named(tmp_path, kwargs, message):
    dataset = kwargs.pop("dataset", "compdd/mini-hard")
    run = fake_run(tmp_path / "r", dataset, [50.0], **kwargs)
    with pytest.raises(DDError, match=message):
        read_run(run)


def test_build_from_a_scores_file_on_the_miniature(tmp_path):
    names = [str(d) for d in range(10)]
    values = [0.50, 0.71, 0.62, 0.55, 0.90, 0.41, 0.66, 0.83, 0.77, 0.58]
    scores = {"datasets": [{"dataset": "compdd/mini-easy", "classes": [{"class": n, "complexity": v} for n, v in zip(names, values)]}]}
    (tmp_path / "scores.json").write_text(json.dumps(scores))
    (tmp_path / "cats.toml").write_text('round = ["0", "6", "8", "9", "3"]\nstraight = ["1", "4", "7", 2, 5]\n')
    args = ["build", "--dataset", "compdd/mini-easy", "--categories", str(tmp_path / "cats.toml"), "--size", "2",
            "--scores", str(tmp_path / "scores.json"), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--workers", "0"]  # fmt: skip
    result = CliRunner().invoke(compdd_group, args)
    assert result.exit_code == 0, result.output
    subsets = {s["name"]: s["classes"] for s in json.loads((tmp_path / "out" / "subsets.json").read_text())["subsets"]}
    assert subsets == {"round-easy": ["0", "3"], "round-hard": ["8", "6"], "straight-easy": ["5", "2"], "straight-hard": ["4", "7"]}
    bad = CliRunner().invoke(compdd_group, [*args[:5], "--size", "3", *args[7:]])
    assert isinstance(bad.exception, DDError) and "at least 6" in str(bad.exception)
    (tmp_path / "typo.toml").write_text('round = ["0", "six"]\n')
    typo = CliRunner().invoke(compdd_group, [*args[:4], str(tmp_path / "typo.toml"), *args[5:]])
    assert isinstance(typo.exception, DDError) and "'six'" in str(typo.exception) and "--categories" in str(typo.exception)
