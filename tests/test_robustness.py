"""DD-Ranking's robustness scores (LRS, ARS): the formula on hand-computed numbers, its refusals, the config
keys, and a tiny digits run with the scores in its metrics (``ddcore.robustness``, ``ddcore.builtin.robustness``)."""

from __future__ import annotations

import json
import math

import pytest

from ddcore.config import build_config
from ddcore.errors import ConfigError
from ddcore.robustness import (
    MIDPOINT,
    ars_from_accuracies,
    augmentation_robust_score,
    check_accuracy,
    exp_normalise,
    fraction_from_percent,
    hard_label_recovery,
    improvement_over_random,
    label_robust_score,
    lrs_from_accuracies,
    per_run,
)

E = math.e


def ddranking_020_score(x: float) -> float:
    """The normalisation exactly as DD-Ranking 0.2.0 writes it (``(np.exp(x) - np.exp(-1)) / (np.exp(1) -
    np.exp(-1))``), applied by it to differences in percentage points."""
    return (math.exp(x) - math.exp(-1)) / (math.exp(1) - math.exp(-1))


# ----------------------------------------------------------------------------------------------
# The formula on hand-computed numbers
# ----------------------------------------------------------------------------------------------


def test_lrs_on_hand_computed_numbers():
    # full 97%, synthetic with hard labels 91%, synthetic with its labels 91%, random 76%, w = 0.5:
    # HLR = 0.06, IOR = 0.15, alpha = 0.5 * 0.15 - 0.5 * 0.06 = 0.045,
    # LRS = (e^0.045 - e^-1) / (e - e^-1) = (1.046028 - 0.367879) / 2.350402 = 0.288524
    parts = lrs_from_accuracies(0.97, 0.91, 0.91, 0.76, w=0.5)
    assert parts["hlr"] == pytest.approx(0.06)
    assert parts["ior"] == pytest.approx(0.15)
    assert parts["alpha"] == pytest.approx(0.045)
    assert parts["lrs"] == pytest.approx(0.288524, abs=1e-6)
    # w weighs IOR against HLR: w = 1 ignores HLR, w = 0 ignores IOR
    assert label_robust_score(0.06, 0.15, w=1.0) == pytest.approx((math.exp(0.15) - 1 / E) / (E - 1 / E))
    assert label_robust_score(0.06, 0.15, w=0.0) == pytest.approx((math.exp(-0.06) - 1 / E) / (E - 1 / E))
    assert hard_label_recovery(0.97, 0.91) == pytest.approx(0.06)
    assert improvement_over_random(0.91, 0.76) == pytest.approx(0.15)


def test_ars_on_hand_computed_numbers():
    # with augmentation: synthetic 91%, random 76% (gain 0.15); without: 85% and 65% (gain 0.20); gamma = 0.5:
    # beta = 0.175, ARS = (e^0.175 - e^-1) / (e - e^-1) = (1.191246 - 0.367879) / 2.350402 = 0.350309
    parts = ars_from_accuracies(0.91, 0.76, 0.85, 0.65, gamma=0.5)
    assert parts["aug_gain"] == pytest.approx(0.15)
    assert parts["naug_gain"] == pytest.approx(0.20)
    assert parts["beta"] == pytest.approx(0.175)
    assert parts["ars"] == pytest.approx(0.350309, abs=1e-6)
    # gamma = 0.25 weighs the un-augmented gain three times the augmented one: beta = 0.0375 + 0.15 = 0.1875
    assert augmentation_robust_score(0.15, 0.20, gamma=0.25) == pytest.approx((math.exp(0.1875) - 1 / E) / (E - 1 / E))


def test_edge_values_of_the_normalisation():
    # IOR = HLR = 0: alpha = 0, the documented midpoint (1 - e^-1) / (e - e^-1) = 1 / (1 + e) = 0.268941, not 0.5
    assert MIDPOINT == pytest.approx(1 / (1 + E))
    assert MIDPOINT == pytest.approx(0.268941, abs=1e-6)
    for w in (0.0, 0.3, 0.5, 1.0):
        assert label_robust_score(0.0, 0.0, w) == pytest.approx(MIDPOINT)
    assert augmentation_robust_score(0.0, 0.0) == pytest.approx(MIDPOINT)
    # the ends: alpha = -1 (no recovery at all, worse than random by the whole range) -> 0; alpha = +1 -> 1
    assert label_robust_score(1.0, -1.0, 0.5) == 0.0
    assert label_robust_score(-1.0, 1.0, 0.5) == 1.0
    assert lrs_from_accuracies(1.0, 0.0, 0.0, 1.0)["lrs"] == 0.0
    assert exp_normalise(-1.0) == 0.0 and exp_normalise(1.0) == 1.0
    # monotone: a larger IOR or a smaller HLR never lowers the score
    assert label_robust_score(0.05, 0.2) > label_robust_score(0.05, 0.1) > label_robust_score(0.1, 0.1)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: check_accuracy(91.67), "divided by 100"),
        (lambda: hard_label_recovery(97.0, 91.0), "divided by 100"),
        (lambda: improvement_over_random(0.91, 76.0), "divided by 100"),
        (lambda: lrs_from_accuracies(97.0, 91.0, 91.0, 76.0), "divided by 100"),
        (lambda: label_robust_score(6.0, 15.0), "percentage points"),
        (lambda: augmentation_robust_score(15.0, 20.0), "percentage points"),
        (lambda: exp_normalise(4.5), "percentage points"),
        (lambda: check_accuracy(-0.1), "[0, 1]"),
        (lambda: check_accuracy(float("nan")), "finite"),
        (lambda: label_robust_score(0.06, 0.15, w=1.5), "weight w"),
        (lambda: augmentation_robust_score(0.1, 0.1, gamma=-0.1), "weight gamma"),
        (lambda: fraction_from_percent(120.0), "[0, 100]"),
        (lambda: per_run(lrs_from_accuracies, [0.9], [0.8, 0.7], [0.8], [0.7]), "paired"),
    ],
)
def test_percentages_and_impossible_values_are_refused(call, needle):
    with pytest.raises(ValueError, match=None) as info:
        call()
    assert needle in str(info.value)


def test_percent_inputs_convert_explicitly():
    accs = [fraction_from_percent(p) for p in (97.0, 91.0, 91.0, 76.0)]
    assert accs == pytest.approx([0.97, 0.91, 0.91, 0.76])
    assert lrs_from_accuracies(*accs)["lrs"] == pytest.approx(lrs_from_accuracies(0.97, 0.91, 0.91, 0.76)["lrs"])


def test_ddranking_020_on_percentage_points_against_fractions():
    """DD-Ranking 0.2.0 computes ``hlr = full - syn``, ``ior = syn - rdm`` on accuracies in percent and normalises
    ``alpha`` directly: on the same four accuracies its "score" is 38.14, far outside [0, 1]; on fractions its
    expression and ours agree (only the units differ)."""
    full, syn_hard, syn_any, rdm = 97.0, 91.0, 91.0, 76.0
    alpha_points = 0.5 * (syn_any - rdm) - 0.5 * (full - syn_hard)  # 4.5
    theirs = ddranking_020_score(alpha_points)
    assert theirs == pytest.approx(38.1421, abs=1e-4) and theirs > 1
    ours = lrs_from_accuracies(full / 100, syn_hard / 100, syn_any / 100, rdm / 100)["lrs"]
    assert ours == pytest.approx(ddranking_020_score(alpha_points / 100))
    assert 0 <= ours <= 1
    # a negative alpha in points pushes theirs towards -e^-1 / (e - e^-1) = -0.1565, also outside [0, 1]
    assert ddranking_020_score(0.5 * (60 - 76) - 0.5 * (97 - 60)) == pytest.approx(-0.156518, abs=1e-6)


def test_per_run_pairs_repeats():
    parts = per_run(lrs_from_accuracies, [0.97, 0.96], [0.91, 0.90], [0.91, 0.90], [0.76, 0.80], w=0.5)
    assert parts["hlr"] == pytest.approx([0.06, 0.06])
    assert parts["ior"] == pytest.approx([0.15, 0.10])
    assert parts["lrs"][1] == pytest.approx(label_robust_score(0.06, 0.10))


# ----------------------------------------------------------------------------------------------
# Config keys and row planning
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("robustness", "extra", "needle"),
    [
        ({"scores": ["lrs", "xyz"]}, {}, "robustness.scores[1]"),
        ({"scores": ["lrs", "lrs"]}, {}, "robustness.scores' lists a value twice"),
        ({"lrs_weight": 1.5}, {}, "robustness.lrs_weight"),
        ({"ars_weight": -0.1}, {}, "robustness.ars_weight"),
        ({"scores": ["ars"], "augment": "blur"}, {}, "robustness.augment"),
        ({"scores": ["ars"], "augment": "none"}, {}, "leaves ARS nothing to compare"),
        ({"scores": ["lrs"]}, {"eval": {"runs": 0}}, "robustness.runs or eval.runs"),
        ({"scores": ["lrs"], "lr_search": [0.01, 0.0]}, {"holdout": "always"}, "robustness.lr_search[1]"),
        ({"scores": ["lrs"], "lr_search": [0.01]}, {}, "holdout = 'always'"),
        ({"scores": ["lrs"], "lr_search": [0.01]}, {"holdout": "always", "validation": 0.0}, "validation > 0"),
    ],
)
def test_bad_robustness_config_is_one_line(robustness, extra, needle):
    with pytest.raises(ConfigError) as info:
        build_config({"robustness": robustness, **extra})
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_good_robustness_config_and_row_plan():
    from ddcore.builtin.robustness import ars_augment, plan_rows

    config = build_config({"robustness": {"scores": ["lrs", "ars"], "lr_search": [0.01, 0.03]}, "holdout": "always"})
    assert config.robustness.scores == ["lrs", "ars"] and config.robustness.lr_search == [0.01, 0.03]
    assert build_config({}).robustness.scores == []  # off by default
    assert ars_augment("auto", "none") == "dsa" and ars_augment("auto", "crop") == "crop"
    rows = plan_rows(["lrs", "ars"], "crop", "crop", "hard")
    assert list(rows) == ["syn", "syn_hard", "full", "rdm", "syn_aug", "rdm_aug", "syn_naug", "rdm_naug"]
    # a hard-label set: syn-hard is syn; ARS with the evaluator's augmentation: the aug rows are LRS's rows
    assert rows["syn_hard"] == rows["syn"] and rows["syn_aug"] == rows["syn"] and rows["rdm_aug"] == rows["rdm"]
    assert rows["syn_naug"] != rows["syn"] and rows["syn_naug"].augment == "none"
    assert list(plan_rows(["ars"], "crop", "dsa", "hard")) == ["syn_aug", "rdm_aug", "syn_naug", "rdm_naug"]


# ----------------------------------------------------------------------------------------------
# Tiny digits runs
# ----------------------------------------------------------------------------------------------

TINY = {"runs": 2, "epochs": 2, "width": 8, "batch_size": 64, "full_epochs": 1}


@pytest.mark.slow
def test_digits_run_has_the_scores_in_its_metrics(cli, tiny_run_args, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = cli(*tiny_run_args(
        "--eval-runs", "2", "--set", "eval.epochs=2", "--set", "eval.width=8", "--set", "eval.batch_size=64",
        "--set", "eval.full_epochs=1", "--set", 'robustness.scores=["lrs", "ars"]', out=out,
    ))  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    metrics = metrics.get("metrics", metrics)
    manifest = json.loads((out / "manifest.json").read_text())
    record = manifest["records"]["robustness"]
    assert record["runs"] == 2 and record["augment"] == {"evaluator": "crop", "ars_with": "crop"}
    assert record["shared"] == {"syn_hard": "syn", "syn_aug": "syn", "rdm_aug": "rdm"}
    ns = "robustness/"
    # every row's per-network accuracies are kept; the distilled row repeats the evaluator's networks (same seeds)
    for row in ("syn", "syn_hard", "full", "rdm", "syn_aug", "rdm_aug", "syn_naug", "rdm_naug"):
        assert len(metrics[f"{ns}{row}_acc_runs"]) == 2
    assert metrics[f"{ns}syn_acc_runs"] == metrics["eval/acc_runs"]
    acc = {row: [a / 100 for a in metrics[f"{ns}{row}_acc_runs"]] for row in ("full", "syn_hard", "syn", "rdm", "syn_naug", "rdm_naug")}
    for r in range(2):
        lrs = lrs_from_accuracies(acc["full"][r], acc["syn_hard"][r], acc["syn"][r], acc["rdm"][r], w=0.5)
        assert metrics[f"{ns}hlr_runs"][r] == pytest.approx(lrs["hlr"])
        assert metrics[f"{ns}ior_runs"][r] == pytest.approx(lrs["ior"])
        assert metrics[f"{ns}lrs_runs"][r] == pytest.approx(lrs["lrs"])
        ars = ars_from_accuracies(acc["syn"][r], acc["rdm"][r], acc["syn_naug"][r], acc["rdm_naug"][r], gamma=0.5)
        assert metrics[f"{ns}ars_runs"][r] == pytest.approx(ars["ars"])
    for score in ("lrs", "ars"):
        assert 0 <= metrics[f"{ns}{score}_mean"] <= 1
        assert metrics[f"{ns}{score}_mean"] == pytest.approx(sum(metrics[f"{ns}{score}_runs"]) / 2)
    assert "robustness: LRS = " in stderr and "robustness: ARS = " in stderr


@pytest.mark.slow
def test_lr_search_chooses_on_the_validation_split(run_tiny):
    candidates = [0.003, 0.05]
    result = run_tiny(holdout="always", eval={**TINY, "runs": 1},
                      robustness={"scores": ["lrs"], "lr_search": candidates})  # fmt: skip
    metrics = result.metrics
    ns = "robustness/"
    assert metrics[f"{ns}lr_candidates"] == candidates
    for row in ("syn", "rdm"):  # no learned lr here (distill = none): both search; full never does
        val = metrics[f"{ns}{row}_search_val_acc_runs"]
        test = metrics[f"{ns}{row}_search_acc_runs"]
        assert len(val) == len(test) == len(candidates)
        best = max(range(len(val)), key=lambda k: (val[k], -k))
        assert metrics[f"{ns}{row}_lr_runs"] == [candidates[best]]
        assert metrics[f"{ns}{row}_acc_runs"] == [test[best]]
        assert metrics[f"{ns}{row}_val_acc_runs"] == [val[best]]
    assert f"{ns}full_lr_runs" not in metrics
    assert result.manifest["records"]["robustness"]["lr_search"]["chosen_on"] == "val"
