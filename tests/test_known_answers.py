"""Known answers for the built-in evaluator and its baselines (``--baseline random``, ``--baseline full``).

The ``ka/*`` datasets (``ddcore.testing.known_answer_dataset``) make the right test accuracy known by
construction: class ``k`` is a bright band over rows ``4k..4k+3`` of a 16 px image, so a network
trained on any of its training images learns the rule and classifies fresh test images perfectly.
The three datasets share the training split and the test images; only the test labels differ:

- ``ka/clean``: labels follow the rule -> 100 %;
- ``ka/shifted``: every test label is the next class -> exactly 0 % for the same networks, while
  evaluating on the *training* split would give 100 %;
- ``ka/chance``: each test image appears once with every label -> exactly 25 % for any classifier.

A distilled set whose labels are the next class (a label-permuted copy) teaches the shifted rule, so
its answers swap: 0 % on ``ka/clean`` and 100 % on ``ka/shifted``; the random baseline draws real
images with their real labels and keeps the unpermuted answers.
"""

from __future__ import annotations

import json

import pytest
import torch

from core_support import write_known_answer_plugin
from ddcore import hookimpl
from ddcore.distilled import DistilledSet
from ddcore.testing import KNOWN_ANSWER_BAND as KA_BAND
from ddcore.testing import KNOWN_ANSWER_CLASSES as KA_CLASSES
from ddcore.testing import KNOWN_ANSWER_KINDS as KA_KINDS
from ddcore.testing import KNOWN_ANSWER_TEST_PER_CLASS as KA_TEST_PER_CLASS
from ddcore.testing import KNOWN_ANSWER_TRAIN_PER_CLASS as KA_TRAIN_PER_CLASS
from ddcore.testing import KNOWN_ANSWERS as KA_RIGHT_ANSWER
from ddcore.testing import KnownAnswerDatasets as known_answer_plugin
from ddcore.testing import known_answer_dataset

#: Enough for the rule at ipc 1 (a 4-image batch) and for the full split (4 batches of 16 per epoch).
KA_EVAL = {"runs": 1, "epochs": 40, "full_epochs": 6, "width": 8, "batch_size": 16, "lr": 0.05}
KINDS_OF_EVALUATION = {"distilled": "acc", "random": "random_real_acc", "full": "full_acc"}


def ka_run(run_tiny, kind: str, plugins=(), eval=None, **config):  # noqa: A002 - the config table's name
    return run_tiny(plugins=[known_answer_plugin(), *plugins], dataset=f"ka/{kind}", eval={**KA_EVAL, **(eval or {})}, **config)


class NextClassLabels:
    """``dd_initialize``: the selected images with every label moved to the next class (hard or soft)."""

    name = "next-class-labels"

    def __init__(self, soft: bool = False):
        self.soft = soft

    @hookimpl
    def dd_initialize(self, ctx, selection):
        labels = (selection.labels + 1) % KA_CLASSES
        if self.soft:  # logits whose softmax puts ~99 % on the next class
            labels = torch.nn.functional.one_hot(labels, KA_CLASSES).float() * 6.0
        dataset = ctx.dataset
        return DistilledSet(selection.images.clone(), labels, list(dataset.class_names), dataset.mean, dataset.std)


def band_rule(images: torch.Tensor) -> torch.Tensor:
    """The classifier the datasets are built for: the brightest band. ``[N, 1, 16, 16]`` -> ``[N]``."""
    return images.mean(dim=(1, 3)).view(len(images), KA_CLASSES, KA_BAND).mean(dim=2).argmax(dim=1)


def test_the_datasets_hold_the_answers_they_promise():
    sets = {kind: known_answer_dataset(kind) for kind in KA_KINDS}
    clean, shifted, chance = sets["clean"], sets["shifted"], sets["chance"]
    for data in sets.values():  # one training split for all
        assert torch.equal(data.train.images, clean.train.images) and data.train.targets == clean.train.targets
        assert data.class_counts("train") == [KA_TRAIN_PER_CLASS] * KA_CLASSES
    assert torch.equal(band_rule(clean.train.images), clean.train.labels)  # the rule is in the data ...
    assert torch.equal(band_rule(clean.test.images), clean.test.labels)  # ... and in the test split
    assert not torch.equal(clean.train.images[: len(clean.test)], clean.test.images)  # fresh test images
    assert torch.equal(shifted.test.images, clean.test.images)
    assert torch.equal(shifted.test.labels, (clean.test.labels + 1) % KA_CLASSES)  # no label left in place
    assert len(chance.test) == KA_CLASSES * len(clean.test) == KA_CLASSES * KA_CLASSES * KA_TEST_PER_CLASS
    assert torch.equal(chance.test.images[::KA_CLASSES], clean.test.images)
    for image in range(len(clean.test)):  # each image once with every label
        assert sorted(chance.test.targets[KA_CLASSES * image : KA_CLASSES * (image + 1)]) == list(range(KA_CLASSES))
    # The rule scores exactly the advertised answers; on the training split it would score 100 everywhere.
    for kind, data in sets.items():
        accuracy = 100.0 * (band_rule(data.test.images) == data.test.labels).float().mean().item()
        assert accuracy == KA_RIGHT_ANSWER[kind], kind


@pytest.mark.parametrize("kind", KA_KINDS)
def test_evaluator_and_both_baselines_score_the_known_answer(run_tiny, kind):
    """The distilled set (random real ipc 1), a fresh random real subset and the whole training split
    all teach the rule: each network scores exactly the dataset's right answer on its test split."""
    result = ka_run(run_tiny, kind, eval={"baseline": ["random", "full"]})
    expected = KA_RIGHT_ANSWER[kind]
    for evaluation, prefix in KINDS_OF_EVALUATION.items():
        assert result.metrics[f"eval/{prefix}_runs"] == [expected], evaluation
        assert result.metrics[f"eval/{prefix}_mean"] == expected and f"eval/{prefix}_std" not in result.metrics  # one network: no std
    assert result.distilled.meta["selected_by"] == "random-real" and result.distilled.images.shape == (4, 1, 16, 16)


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("kind", ["clean", "shifted"])
def test_a_label_permuted_distilled_set_teaches_the_permuted_rule(run_tiny, kind, soft):
    """Next-class labels (hard, or soft logits with soft cross-entropy): 0 % on clean, 100 % on shifted.
    The random baseline trains on real images with their real labels and keeps the unpermuted answer."""
    result = ka_run(run_tiny, kind, plugins=[NextClassLabels(soft)], eval={"baseline": ["random"]})
    assert result.distilled.meta["initialized_by"] == "next-class-labels"
    assert result.distilled.soft is soft
    assert result.metrics["eval/acc_runs"] == [100.0 - KA_RIGHT_ANSWER[kind]]
    assert result.metrics["eval/random_real_acc_runs"] == [KA_RIGHT_ANSWER[kind]]
    if soft:  # eval.labels = "hard" trains on the argmax: the same answer
        hard = ka_run(run_tiny, kind, plugins=[NextClassLabels(soft)], eval={"labels": "hard"})
        assert hard.metrics["eval/acc_runs"] == [100.0 - KA_RIGHT_ANSWER[kind]]


def test_several_repeats_all_score_the_known_answer(run_tiny):
    """Repeats are seeded independently; each of them must land on the answer, not just their mean."""
    result = ka_run(run_tiny, "shifted", eval={"runs": 3, "baseline": ["random"]})
    assert result.metrics["eval/acc_runs"] == [0.0, 0.0, 0.0]
    assert result.metrics["eval/random_real_acc_runs"] == [0.0, 0.0, 0.0]
    assert result.metrics["eval/acc_runs_process"] == [0, 0, 0]


def test_dd_run_with_both_baselines_on_the_command_line(cli, tmp_path):
    """``dd run --baseline random --baseline full`` end to end: every network is trained on the
    training split and tested on the test split, whose labels are all shifted: 0 % everywhere
    (a network tested on its training split would score 100 %)."""
    plugin = write_known_answer_plugin(tmp_path)
    out = tmp_path / "run"
    sets = [f"eval.{key}={value}" for key, value in KA_EVAL.items() if key not in ("runs", "epochs")]
    code, stdout, stderr = cli(
        "run", "--plugin", plugin, "--dataset", "ka/shifted", "--ipc", "1", "--eval-runs", "2", "--eval-epochs",
        KA_EVAL["epochs"], "--baseline", "random", "--baseline", "full", *[a for s in sets for a in ("--set", s)],
        "--workers", "0", "--out", out, "--cache-dir", tmp_path / "cache", "--json",
    )  # fmt: skip
    assert code == 0, stderr
    metrics = json.loads(stdout)["metrics"]
    for prefix in KINDS_OF_EVALUATION.values():
        assert metrics[f"eval/{prefix}_runs"] == [0.0, 0.0], prefix
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["records"]["eval"]["baseline"] == ["random", "full"]
    assert manifest["records"]["eval"]["full_recipe"]["epochs"] == KA_EVAL["full_epochs"]
    assert manifest["dataset"]["test_size"] == KA_CLASSES * KA_TEST_PER_CLASS
