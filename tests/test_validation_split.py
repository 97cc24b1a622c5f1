"""The validation split (issue kind 5): carved from the training split, stratified and seeded, removed from
what selection, experts, matching and baselines see; every choice on accuracy is made on it, never on test."""

from __future__ import annotations

import pytest
import torch

from ddcore.config import build_config
from ddcore.data.split import IndexedSplit, carve_indices, carve_validation, validation_counts, validation_reason
from ddcore.datasig import dataset_fingerprint
from ddcore.errors import ConfigError, DDError
from ddcore.testing import TINY_EVAL, KnownAnswerDatasets, known_answer_dataset

TINY_TM = {"preset": "none", "iterations": 2, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 1,
           "cur_max_start_epoch": 1, "expansion_end": 1, "checkpoint_every": 0}  # fmt: skip


def test_carving_is_stratified_seeded_disjoint_and_complete():
    by_class = [list(range(0, 20)), list(range(20, 25)), list(range(25, 55))]
    train, val = carve_indices(by_class, 0.1, seed=3)
    assert sorted(train + val) == list(range(55)) and not set(train) & set(val)
    assert [sum(i in group for i in val) for group in by_class] == [2, 1, 3] == validation_counts([20, 5, 30], 0.1)
    assert carve_indices(by_class, 0.1, seed=3) == (train, val)  # one seed, one split
    assert carve_indices(by_class, 0.1, seed=4)[1] != val
    assert validation_counts([2, 100], 0.99) == [1, 99]  # never a whole class
    with pytest.raises(ConfigError, match=r"class 1 has 1 training image\(s\).*'validation' = 0"):
        validation_counts([5, 1], 0.1)


def test_the_carved_dataset_holds_out_its_validation_images():
    data = known_answer_dataset("clean")  # 4 classes x 16 training images
    with pytest.raises(ValueError, match="no validation split"):
        data.split("val")
    carved = carve_validation(data, 0.25, seed=0)
    val, train = carved.split("val"), carved.split("train")
    assert isinstance(val, IndexedSplit) and carved.class_counts("val") == [4, 4, 4, 4]
    assert len(train) == 48 and carved.class_counts("train") == [12, 12, 12, 12]
    assert not set(val.indices) & set(train.indices)  # an honest holdout: no image in both
    image, label = val[0]
    assert torch.equal(image, data.train[val.indices[0]][0]) and label == data.train.targets[val.indices[0]]
    assert carved.test is data.test and data.val is None  # test untouched, the original unchanged
    assert dataset_fingerprint(carved) != dataset_fingerprint(data)  # caches never mix the two training splits
    with pytest.raises(ConfigError, match=r"'validation' must be in \[0, 1\)"):
        carve_validation(data, 1.0, seed=0)


def test_when_a_run_carves():
    assert validation_reason(build_config({})) is None  # nothing selects: the training split stays whole
    assert "always" in validation_reason(build_config({"holdout": "always"}))
    assert validation_reason(build_config({"holdout": "always", "validation": 0})) is None
    with pytest.raises(ConfigError, match=r"'validation' must be in \[0, 1\)"):
        build_config({"validation": 1.5})


def test_periodic_evaluation_selects_on_the_validation_split_never_on_test(tmp_path):
    """``ka/shifted``: validation images follow the rule, test labels are shifted; the periodic check is the
    validation accuracy of the very network the evaluator trains for repeat 0."""
    from ddcore.builtin.evaluate import evaluate_once
    from ddcore.presets import resolve_eval
    from ddcore.runner import Pipeline

    config = {"dataset": "ka/shifted", "ipc": 1, "workers": 0, "cache_dir": str(tmp_path), "distill": "tm",
              "tm": {**TINY_TM, "eval_every": 1}, "eval": {**TINY_EVAL, "epochs": 30}}  # fmt: skip
    pipeline = Pipeline(config, [KnownAnswerDatasets()], write=False)
    data = pipeline.build_dataset()
    record = pipeline.ctx.records["validation"]
    assert record["carved"] and record["sizes"] == {"train": 56, "val": 8, "test": 32} and record["seed"] == 0
    assert "tm.eval_every = 1" in record["reason"] and record["val_per_class"] == [2, 2, 2, 2]
    assert len(data.train) == 56  # selection, experts, matching and baselines see the carved training split
    from ddcore.distilled import DistilledSet

    images, labels = data.load("train", [data.indices_by_class("train")[c][0] for c in range(4)])
    chosen = DistilledSet(images=images, labels=labels, class_names=data.class_names, mean=data.mean, std=data.std)
    settings = resolve_eval(pipeline.config.eval, data)
    periodic = pipeline.periodic_evaluation(chosen)
    assert periodic == evaluate_once(pipeline.ctx, settings, chosen, "distilled", 0, split="val") == 100.0
    assert evaluate_once(pipeline.ctx, settings, chosen, "distilled", 0, split="test") == 0.0


def test_periodic_evaluation_without_a_validation_split_is_refused(tmp_path):
    from ddcore.runner import Pipeline

    pipeline = Pipeline({"ipc": 1, "workers": 0, "cache_dir": str(tmp_path)}, write=False)
    data = pipeline.build_dataset()
    assert pipeline.ctx.records["validation"]["carved"] is False and data.val is None
    with pytest.raises(DDError, match="no validation split.*never used to choose"):
        pipeline.periodic_evaluation(None)


def test_a_tm_run_keeps_the_best_set_by_validation_accuracy(run_tiny):
    result = run_tiny([KnownAnswerDatasets()], dataset="ka/clean", distill="tm", experts={"num": 1},
                      tm={**TINY_TM, "eval_every": 1}, eval={"runs": 1})  # fmt: skip
    records = result.manifest["records"]
    assert records["validation"]["carved"] and result.manifest["dataset"]["train_size"] == 56
    assert records["tm"]["best_val_accuracy"] == result.distilled.meta["best_val_accuracy"]
    assert "best_accuracy" not in result.distilled.meta
    metrics = result.metrics  # the test split is measured once, at the end; the validation figure beside it
    assert len(metrics["eval/acc_runs"]) == 1 and len(metrics["eval/val_acc_runs"]) == 1
    assert records["experts"]["recipe"] and records["validation"]["sizes"]["train"] == 56


def test_holdout_always_reports_validation_accuracy_of_every_row(run_tiny):
    result = run_tiny([KnownAnswerDatasets()], dataset="ka/clean", holdout="always", validation=0.25,
                      eval={"runs": 1, "baseline": ["random"]})  # fmt: skip
    assert result.manifest["records"]["validation"]["sizes"] == {"train": 48, "val": 16, "test": 32}
    for key in ("eval/val_acc_mean", "eval/random_real_val_acc_mean", "eval/acc_mean", "eval/random_real_acc_mean"):
        assert 0.0 <= result.metrics[key] <= 100.0
