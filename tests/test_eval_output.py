"""What the metrics table and the row descriptions print (dd run / dd eval), and dd eval's location options."""

from __future__ import annotations

import json

from rich.console import Console

from ddcore.builtin.evaluate import describe_rows
from ddcore_cli.output import metrics_table


def rendered(table) -> str:
    console = Console(record=True, width=120)
    console.print(table)
    return console.export_text()


def test_the_table_leaves_out_per_process_bookkeeping():
    metrics = {"eval/acc_mean": 61.5, "eval/acc_std": 0.0, "eval/acc_runs": [61.5], "eval/acc_runs_process": [0]}
    text = rendered(metrics_table(metrics))
    assert "eval/acc" in text and "61.50 ± n/a" in text  # one network: its std is undefined, not 0
    assert "runs_process" not in text


def test_robustness_scores_are_shown_as_fractions_not_percent():
    metrics = {"eval/acc_mean": 91.9444, "eval/acc_std": 1.04, "robustness/lrs_mean": 0.30071, "robustness/lrs_std": 0.0087}
    text = rendered(metrics_table(metrics))
    assert "91.94 ± 1.04" in text and "robustness/lrs (fraction)" in text and "0.3007 ± 0.0087" in text


def test_rows_say_one_network_and_what_acc_is_without_a_distiller():
    metrics = {"eval/acc_mean": 50.0, "eval/gain_vs_initial_mean": 2.0, "eval/gain_vs_initial_runs": [2.0]}
    lines = describe_rows(metrics)
    assert lines[0] == "acc: the distilled set"
    assert "mean over 1 network with the same seeds (one network: no interval)" in lines[-1]
    metrics["eval/gain_vs_initial_runs"] = [2.0, 3.0]
    assert "mean over 2 networks" in describe_rows(metrics)[-1]
    assert describe_rows({"eval/acc_mean": 50.0}, distiller="none") == [
        "acc: the selected real images (no distiller ran: distill = none)"
    ]
    assert describe_rows({"eval/acc_mean": 50.0}, distiller="tm") == ["acc: the distilled set"]


def test_dd_eval_takes_workers_and_cache_dir(tmp_path, cli, tiny_run_args):
    assert cli(*tiny_run_args("-q"))[0] == 0
    cache = tmp_path / "other-cache"
    code, out, err = cli("eval", tmp_path / "run", "--eval-runs", "1", "--eval-epochs", "1",
                         "--workers", "0", "--cache-dir", cache, "-q")  # fmt: skip
    assert code == 0, err
    assert "acc: the selected real images" in out and "the distilled set" not in out
    assert "runs_process" not in out
    [written] = (tmp_path / "run").glob("eval-*.json")
    saved = json.loads(written.read_text())
    assert saved["config"]["workers"] == 0 and saved["config"]["cache_dir"] == str(cache)
    assert saved["metrics"]["eval/acc_runs_process"] == [0]  # kept in the file
