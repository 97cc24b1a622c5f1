"""``dd compdd report`` pairs only accuracies measured by the same evaluation protocol (issue 19, kind 2).

Run directories are written by hand (manifest.json with the evaluators' records, metrics.json), as
the built-in evaluator and the Comp-DD protocol write them; one test makes two real runs.
"""

from __future__ import annotations

import json
import statistics

import pytest
from click.testing import CliRunner

from ddcore import DDError
from ddcore.protocol_key import protocol_of, run_protocol
from ddcore_compdd.commands import compdd_group
from ddcore_compdd.report import build_report, read_run

MODEL = {"name": "convnet", "width": 32, "depth": 3, "norm": "instancenorm"}
RECIPE = {"epochs": 300, "batch_size": 256, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 0.0005,
          "schedule": "step", "augment": "crop"}  # fmt: skip
#: The built-in evaluator's record on the miniature (the digits preset) and the Comp-DD protocol's.
BUILTIN = {"runs": 3, "model": MODEL, "recipe": RECIPE, "full_recipe": {**RECIPE, "epochs": 50}, "labels": "auto",
           "use_learned_lr": True, "baseline": [], "test_batch_size": 500}  # fmt: skip
PROTOCOL = {**BUILTIN, "recipe": {**RECIPE, "batch_size": 128, "augment": "dsa"}, "full_recipe": {**RECIPE, "batch_size": 128}}


def write_run(folder, dataset, evaluations, *, name="", ipc=1, shape=(1, 32, 32)):
    """A complete run of ``dataset``; ``evaluations``: ``{"eval" | "compdd": (settings, accuracies)}``."""
    folder.mkdir(parents=True)
    records, metrics = {}, {}
    for source, (settings, accuracies) in evaluations.items():
        records["compdd/protocol" if source == "compdd" else source] = settings
        metrics.update({f"{source}/acc_runs": accuracies, f"{source}/acc_mean": statistics.fmean(accuracies)})
    manifest = {"status": "complete", "config": {"dataset": dataset, "ipc": ipc, "distill": "none", "name": name},
                "plugins": [], "dataset": {"image_shape": list(shape)}, "records": records}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "metrics.json").write_text(json.dumps({"metrics": metrics}))
    return folder


def report(tmp_path, *runs):
    result = CliRunner().invoke(compdd_group, ["report", *map(str, runs), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((tmp_path / "out" / "report.json").read_text())


def test_the_issue_pair_is_two_rows_without_a_gap_and_says_why(tmp_path):
    """mini-easy by the Comp-DD protocol, mini-hard by the built-in evaluator: today one row '+33.61'."""
    easy = write_run(tmp_path / "easy", "compdd/mini-easy", {"compdd": (PROTOCOL, [80.0, 82.0])})
    hard = write_run(tmp_path / "hard", "compdd/mini-hard", {"eval": (BUILTIN, [47.0, 47.8])})
    text, data = report(tmp_path, easy, hard)
    assert "+33" not in text and "| random real | 1 | 81.00 ± 1.00 | — | — |" in text
    assert "| random real | 1 | — | 47.40 ± 0.40 | — |" in text
    assert "evaluator compdd vs eval; recipe.augment dsa vs crop; recipe.batch_size 128 vs 256" in text
    assert "Evaluation protocol — compdd: convnet w32 d3 instancenorm, 300 epochs, batch 128" in text
    rows = data["subsets"]["compdd/mini"]
    assert [(r["evaluator"], r["gap"], r["easy_networks"], r["hard_networks"]) for r in rows] == [("compdd", None, 2, 0), ("eval", None, 0, 2)]
    assert all("not comparable" in r["note"] for r in rows)


def test_same_evaluator_other_epochs_is_kept_apart(tmp_path):
    short = {**BUILTIN, "recipe": {**RECIPE, "epochs": 50}}
    easy = write_run(tmp_path / "easy", "compdd/mini-easy", {"eval": (BUILTIN, [90.0])})
    hard = write_run(tmp_path / "hard", "compdd/mini-hard", {"eval": (short, [40.0])})
    (first, second) = build_report([read_run(easy), read_run(hard)])["compdd/mini"]
    assert first.gap() is None and second.gap() is None
    assert "recipe.epochs 300 vs 50" in first.note and first.note == second.note


def test_a_common_evaluator_is_found_when_one_run_has_both(tmp_path):
    """easy has the protocol and the built-in evaluator, hard only the built-in one: paired on ``eval``."""
    easy = write_run(tmp_path / "easy", "compdd/mini-easy", {"compdd": (PROTOCOL, [70.0]), "eval": (BUILTIN, [90.0])})
    hard = write_run(tmp_path / "hard", "compdd/mini-hard", {"eval": (BUILTIN, [60.0, 40.0])})
    (row,) = build_report([read_run(easy), read_run(hard)])["compdd/mini"]
    assert row.protocol.evaluator == "eval" and row.stats("easy") == (90.0, None) and row.gap() == pytest.approx(40.0)
    assert row.note == ""
    both = write_run(tmp_path / "hard2", "compdd/mini-hard", {"compdd": (PROTOCOL, [50.0]), "eval": (BUILTIN, [10.0])})
    (row,) = build_report([read_run(easy), read_run(both)])["compdd/mini"]
    assert row.protocol.evaluator == "compdd" and row.gap() == pytest.approx(20.0)  # the preferred evaluator when all have it


def test_network_count_and_test_batch_do_not_split_but_the_image_size_does(tmp_path):
    more = {**PROTOCOL, "runs": 10, "test_batch_size": 100, "baseline": ["random"]}
    a = write_run(tmp_path / "a", "compdd/mini-easy", {"compdd": (PROTOCOL, [80.0])})
    b = write_run(tmp_path / "b", "compdd/mini-easy", {"compdd": (more, [70.0])})
    c = write_run(tmp_path / "c", "compdd/mini-hard", {"compdd": (PROTOCOL, [50.0])})
    (row,) = build_report([read_run(a), read_run(b), read_run(c)])["compdd/mini"]
    assert row.stats("easy") == (75.0, 5.0) and row.gap() == pytest.approx(25.0)
    big = write_run(tmp_path / "d", "compdd/mini-hard", {"compdd": (PROTOCOL, [50.0])}, shape=(1, 64, 64))
    rows = build_report([read_run(a), read_run(big)])["compdd/mini"]
    assert len(rows) == 2 and "image_shape 1x32x32 vs 1x64x64" in rows[0].note


def test_an_unrecorded_protocol_is_refused_in_one_line(tmp_path):
    run = write_run(tmp_path / "r", "compdd/mini-hard", {"eval": (BUILTIN, [50.0])})
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["records"] = {}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DDError, match=r"does not record how its eval accuracies were measured") as error:
        read_run(run)
    assert str(run) in str(error.value) and "\n" not in str(error.value)
    result = CliRunner().invoke(compdd_group, ["report", str(run), "--out", str(tmp_path / "out")])
    assert isinstance(result.exception, DDError) and not (tmp_path / "out").exists()


def test_protocol_key_reads_both_record_names_and_lists_differences():
    manifest = {"records": {"eval": BUILTIN, "compdd/protocol": PROTOCOL}, "dataset": {"image_shape": [1, 32, 32]}}
    builtin, protocol = run_protocol(manifest, "eval"), run_protocol(manifest, "compdd")
    assert builtin == protocol_of("eval", {**BUILTIN, "runs": 1, "full_recipe": {}}, [1, 32, 32])
    assert builtin != protocol and protocol.get("recipe.augment") == "dsa" and protocol.get("image_shape") == (1, 32, 32)
    assert protocol.differences(protocol) == "nothing"
    assert builtin.differences(protocol, limit=1) == "evaluator eval vs compdd; and 2 more"


def test_real_runs_record_what_the_report_reads(run_tiny, tmp_path):
    """A built-in-evaluator run and a Comp-DD-protocol run of the miniature, as ``dd run`` writes them."""
    from ddcore_compdd import plugin

    tiny = {"plugins": [plugin], "write": True, "dataset": "compdd/mini-easy"}
    builtin = run_tiny(**tiny, out=str(tmp_path / "builtin"), plugin={"compdd": {"evaluate": "off"}})
    protocol = run_tiny(**tiny, out=str(tmp_path / "protocol"), eval={"runs": 0},
                        plugin={"compdd": {"runs": 1, "epochs": 1, "width": 8}})  # fmt: skip
    a, b = read_run(builtin.out_dir), read_run(protocol.out_dir)
    assert [e.source for e in a.evaluations] == ["eval"] and [e.source for e in b.evaluations] == ["compdd"]
    assert a.evaluations[0].protocol.get("recipe.batch_size") == 64 and b.evaluations[0].protocol.get("recipe.batch_size") == 128
    assert b.evaluations[0].protocol.get("recipe.epochs") == 1 and b.evaluations[0].protocol.get("image_shape") == (1, 32, 32)
    again = run_tiny(**tiny, out=str(tmp_path / "again"), eval={"runs": 0}, plugin={"compdd": {"runs": 1, "epochs": 1, "width": 8}})
    (row,) = build_report([b, read_run(again.out_dir)])["compdd/mini"]  # the same protocol twice: pooled
    assert row.easy == [*b.accuracies, *read_run(again.out_dir).accuracies] and row.note == ""
    rows = build_report([a, b])["compdd/mini"]
    assert len(rows) == 2 and "evaluator eval vs compdd" in rows[0].note
