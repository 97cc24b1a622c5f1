"""The metrics table shows the robustness lr search's learning rates as they are (0.001, not 0.00)."""

from __future__ import annotations

from rich.console import Console

from ddcore_cli.output import is_lr, metrics_table


def rendered(metrics) -> str:
    console = Console(width=200, record=True)
    console.print(metrics_table(metrics))
    return console.export_text()


def test_learning_rates_keep_their_digits():
    text = rendered({"robustness/lr_candidates": [0.001, 0.01], "robustness/rdm_lr_runs": [0.001, 0.0003],
                     "robustness/rdm_acc_mean": 70.123, "robustness/rdm_acc_std": 1.0})  # fmt: skip
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in text.splitlines() if line.count("│") == 3}
    assert lines["robustness/lr_candidates"] == "0.001, 0.01"
    assert lines["robustness/rdm_lr_runs"] == "0.001, 0.0003"
    assert lines["robustness/rdm_acc"] == "70.12 ± 1.00"  # accuracies keep two decimals


def test_only_learning_rate_keys_are_learning_rates():
    assert is_lr("robustness/lr_candidates") and is_lr("robustness/syn_naug_lr_runs")
    assert not is_lr("robustness/lrs_mean") and not is_lr("robustness/lrs_runs") and not is_lr("eval/acc_runs")
