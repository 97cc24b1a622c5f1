"""Known answers for the knowledge-distillation evaluator (``[plugin.diffsel.kd]``).

A dataset whose right answer is known by construction: class ``k`` is a bright band over rows
``4k..4k+3`` of a 16 px image (a horizontal band survives the evaluator's crops, flips and CutMix).
A teacher trained on the training split and a student taught by it on one image per class both
learn the rule. The datasets share the training split and the test images; only the test labels
differ (``ddcore.testing.known_answer_dataset``, as ddcore's own known-answer tests use them):

- ``ka/clean``: labels follow the rule -> teacher and student score 100 %;
- ``ka/shifted``: every test label is the next class -> exactly 0 % (a network tested on the
  training split would score 100 %);
- ``ka/chance``: each test image appears once with every label -> exactly 25 % for any classifier.

The KD evaluator never reads the distilled labels (the teacher supervises): a distilled set with
every label moved to the next class still gives 100 % on ``ka/clean``, where the built-in evaluator,
which does train on those labels, gives 0 %.
"""

from __future__ import annotations

import pytest

from ddcore import hookimpl
from ddcore.distilled import DistilledSet
from ddcore.testing import KNOWN_ANSWER_CLASSES as CLASSES
from ddcore.testing import KNOWN_ANSWERS as RIGHT_ANSWER
from ddcore.testing import KnownAnswerDatasets

KD = {"runs": 1, "epochs": 40, "lr": 0.01}  # the evaluator's own crops, flips and CutMix stay on
TEACHER_EPOCHS = 60  # 64 training images: one step per epoch


class NextClassLabels:
    """``dd_initialize``: the selected images with every label moved to the next class."""

    name = "next-class-labels"

    @hookimpl
    def dd_initialize(self, ctx, selection):
        dataset = ctx.dataset
        labels = (selection.labels + 1) % CLASSES
        return DistilledSet(selection.images.clone(), labels, list(dataset.class_names), dataset.mean, dataset.std)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache per module: the teacher of each dataset is trained once."""
    return str(tmp_path_factory.mktemp("ka-cache"))


def kd_run(run_tiny, cache: str, kind: str, plugins=(), eval_runs: int = 0, **config):
    return run_tiny(
        plugins=[KnownAnswerDatasets(), "diffsel", *plugins], dataset=f"ka/{kind}", select="random-real", cache_dir=cache,
        eval={"runs": eval_runs, "epochs": 40, "width": 8, "batch_size": 16, "lr": 0.05},
        plugin={"diffsel": {"teacher_epochs": TEACHER_EPOCHS, "kd": dict(KD)}}, **config,
    )  # fmt: skip


@pytest.mark.parametrize("kind", list(RIGHT_ANSWER))
def test_teacher_and_kd_students_score_the_known_answer(run_tiny, shared_cache, kind):
    result = kd_run(run_tiny, shared_cache, kind)
    expected = RIGHT_ANSWER[kind]
    assert result.metrics["diffsel/kd_teacher_acc"] == expected
    assert result.metrics["diffsel/kd_acc_runs"] == [expected]
    assert result.metrics["diffsel/kd_acc_mean"] == expected and "diffsel/kd_acc_std" not in result.metrics
    assert result.manifest["records"]["diffsel/kd"]["teacher_acc"] == expected
    teacher = next(v for k, v in result.manifest["records"].items() if k.startswith("teachers/"))
    assert teacher["test_acc"] == expected  # the teacher's own file measured it on the test split too


def test_kd_ignores_the_distilled_labels(run_tiny, shared_cache):
    """Next-class labels: the built-in evaluator learns them (0 %), the KD student learns the teacher (100 %)."""
    result = kd_run(run_tiny, shared_cache, "clean", plugins=[NextClassLabels()], eval_runs=1,
                    initialize="next-class-labels")  # fmt: skip
    assert result.distilled.meta["initialized_by"] == "next-class-labels"
    assert result.metrics["eval/acc_runs"] == [0.0]
    assert result.metrics["diffsel/kd_acc_runs"] == [100.0]


def test_kd_students_are_also_scored_on_the_validation_split(run_tiny, tmp_path):
    """With a validation split carved from the training split, the same students report ``kd_val_acc``.

    On ``ka/shifted`` the test labels are the next class (0 %), but the validation images come from the
    training split, whose labels follow the rule: the students score 100 % there. A validation figure
    read from the test split would be 0 %; a test figure read from the validation split would be 100 %.
    (Its own cache: the teacher is trained on the smaller training split that is left.)
    """
    result = kd_run(run_tiny, str(tmp_path / "cache"), "shifted", holdout="always", validation=0.25)
    assert result.metrics["diffsel/kd_acc_runs"] == [0.0]
    assert result.metrics["diffsel/kd_val_acc_runs"] == [100.0]
    assert result.metrics["diffsel/kd_val_acc_mean"] == 100.0 and "diffsel/kd_val_acc_std" not in result.metrics


def test_no_validation_split_means_no_validation_figure(run_tiny, shared_cache):
    result = kd_run(run_tiny, shared_cache, "clean")
    assert not any(key.startswith("diffsel/kd_val_acc") for key in result.metrics)
