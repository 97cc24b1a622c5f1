"""The headline compares like with like (issue kind 6): the distilled set against the images the distiller
started from, with the same per-network seeds, as a paired difference with a 95% t-interval; every row
says what it is."""

from __future__ import annotations

import math

import pytest

from ddcore.evaluation import paired_difference, t_critical_95, t_interval_95
from ddcore.testing import TINY_EVAL, KnownAnswerDatasets


def test_t_interval_known_values():
    assert (t_critical_95(1), t_critical_95(4), t_critical_95(30), t_critical_95(35), t_critical_95(500)) == (
        12.706, 2.776, 2.042, 2.042, 1.96)  # fmt: skip
    mean, low, high = t_interval_95([1.0, 2.0, 3.0])  # s = 1, n = 3: half width 4.303 / sqrt(3)
    assert mean == 2.0 and math.isclose(high - mean, 4.303 / math.sqrt(3)) and math.isclose(mean - low, high - mean)
    assert t_interval_95([5.0]) is None
    gain = paired_difference([91.0, 93.0, 92.0], [77.0, 78.0, 76.0])
    assert gain["runs"] == [14.0, 15.0, 16.0] and gain["mean"] == 15.0 and gain["std"] == 1.0
    assert math.isclose(gain["ci95_high"] - 15.0, 4.303 / math.sqrt(3))
    one = paired_difference([80.0], [70.0])
    assert one == {"mean": 10.0, "runs": [10.0]}  # one pair: no std, no interval is claimed
    with pytest.raises(ValueError, match="cannot be paired"):
        paired_difference([1.0, 2.0], [1.0])


def _context(dd_context, **config):
    return dd_context([KnownAnswerDatasets()], dataset="ka/clean", eval={**TINY_EVAL, "runs": 3, "epochs": 3}, **config)


def _initial(ctx, offset=0):
    from ddcore.distilled import DistilledSet

    data = ctx.dataset
    images, labels = data.load("train", [group[offset] for group in data.indices_by_class("train")])
    return DistilledSet(images=images, labels=labels, class_names=data.class_names, mean=data.mean, std=data.std)


def test_the_initial_row_uses_the_distilled_rows_seeds(dd_context):
    """The same images as distilled and as initial train identical networks: every paired difference is 0."""
    from ddcore.builtin.evaluate import dd_evaluate

    ctx = _context(dd_context, distill="tm", tm={"preset": "digits-ipc1"})
    same = _initial(ctx)
    ctx.initial = same
    metrics = dd_evaluate(ctx, same)
    assert metrics["initial_acc_runs"] == metrics["acc_runs"]
    assert metrics["gain_vs_initial_runs"] == [0.0, 0.0, 0.0]
    assert metrics["gain_vs_initial_mean"] == metrics["gain_vs_initial_ci95_low"] == metrics["gain_vs_initial_ci95_high"] == 0.0
    assert ctx.records["eval_rows"]["initial_acc"].startswith("the images the distiller started from")


def test_paired_difference_of_another_start_and_the_row_meanings(dd_context):
    from ddcore.builtin.evaluate import describe_rows, dd_evaluate

    ctx = _context(dd_context, distill="tm", tm={"preset": "digits-ipc1"})
    ctx.config.eval.baseline = ["random"]
    ctx.initial = _initial(ctx, offset=1)
    distilled = _initial(ctx, offset=0)
    metrics = dd_evaluate(ctx, distilled)
    diffs = [a - b for a, b in zip(metrics["acc_runs"], metrics["initial_acc_runs"])]
    assert metrics["gain_vs_initial_runs"] == diffs and math.isclose(metrics["gain_vs_initial_mean"], sum(diffs) / 3)
    assert metrics["gain_vs_initial_ci95_low"] <= metrics["gain_vs_initial_mean"] <= metrics["gain_vs_initial_ci95_high"]
    lines = describe_rows({f"eval/{key}": value for key, value in metrics.items()})
    assert lines[0] == "acc: the distilled set"
    assert any(line.startswith("initial_acc: the images the distiller started from (this run's own selection)") for line in lines)
    assert any(line.startswith("random_real_acc: a fresh random real subset") and "drawn again for every network" in line
               for line in lines)  # fmt: skip
    assert lines[-1].startswith("headline (paired): distilled - initial = ") and "95% t-interval" in lines[-1]


def test_no_initial_row_without_a_distiller(dd_context):
    from ddcore.builtin.evaluate import describe_rows, dd_evaluate

    ctx = _context(dd_context)
    ctx.initial = _initial(ctx)  # selection-only: the "initial" set is the result itself
    metrics = dd_evaluate(ctx, ctx.initial)
    assert "initial_acc_mean" not in metrics and "gain_vs_initial_mean" not in metrics
    assert describe_rows({f"eval/{k}": v for k, v in metrics.items()}) == ["acc: the distilled set"]


def test_dd_run_prints_what_each_row_is(cli, tmp_path):
    code, out, err = cli("run", "--ipc", "1", "--workers", "0", "--out", tmp_path / "run", "--cache-dir", tmp_path / "cache",
                         "--baseline", "random", "--eval-runs", "1", "--set", "eval.epochs=1", "--set", "eval.width=8",
                         "--quiet")  # fmt: skip
    assert code == 0, err
    assert "acc: the selected real images (no distiller ran: distill = none)" in out  # no --distill: the selection itself
    assert "random_real_acc: a fresh random real subset of the same per-class size, drawn again for every network" in out
