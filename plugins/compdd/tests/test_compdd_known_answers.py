"""Known answers for the Comp-DD evaluation protocol (``[plugin.compdd] evaluate = "on"``).

A dataset whose right answer is known by construction: class ``k`` is a bright band over rows
``4k..4k+3`` of a 16 px image, which survives every DSA transform the protocol applies to each
batch (shifts, horizontal flips, 15 degree rotations, scaling, cutout, colour). One image per class
teaches the rule. The datasets share the training split and the test images; only the test labels
differ (``ddcore.testing.known_answer_dataset``, as ddcore's own known-answer tests use them):

- ``ka/clean``: labels follow the rule -> 100 %;
- ``ka/shifted``: every test label is the next class -> exactly 0 % (a network tested on the
  training split would score 100 %);
- ``ka/chance``: each test image appears once with every label -> exactly 25 % for any classifier.

The protocol trains on the distilled labels (soft cross-entropy when they are soft) at the distilled
set's learned lr: next-class labels, hard or soft, swap the answers (0 % on clean, 100 % on shifted),
and a learned lr of ``1e-12`` leaves the network as it was initialised whatever ``eval.lr`` says.
"""

from __future__ import annotations

import pytest
import torch

from ddcore import hookimpl
from ddcore.distilled import DistilledSet
from ddcore.testing import KNOWN_ANSWER_CLASSES as CLASSES
from ddcore.testing import KNOWN_ANSWER_SIDE as SIDE
from ddcore.testing import KNOWN_ANSWERS as RIGHT_ANSWER
from ddcore.testing import KnownAnswerDatasets, known_answer_dataset

PROTOCOL = {"evaluate": "on", "runs": 1, "epochs": 30, "width": 8}


class Relabel:
    """``dd_initialize``: the selected images with next-class labels (hard or soft) and a learned lr."""

    name = "relabel"

    def __init__(self, shift: int = 1, soft: bool = False, lr: float | None = None):
        self.shift, self.soft, self.lr = shift, soft, lr

    @hookimpl
    def dd_initialize(self, ctx, selection):
        dataset = ctx.dataset
        labels = (selection.labels + self.shift) % CLASSES
        if self.soft:  # logits whose softmax puts ~99 % on the chosen class
            labels = torch.nn.functional.one_hot(labels, CLASSES).float() * 6.0
        return DistilledSet(selection.images.clone(), labels, list(dataset.class_names), dataset.mean, dataset.std, lr=self.lr)


def protocol_run(run_tiny, kind: str, plugins=(), eval_lr: float = 0.05, **protocol):
    """The built-in evaluator is off: every accuracy here comes from the protocol."""
    return run_tiny(
        plugins=[KnownAnswerDatasets(), "compdd", *plugins], dataset=f"ka/{kind}",
        eval={"runs": 0, "lr": eval_lr}, plugin={"compdd": {**PROTOCOL, **protocol}},
    )  # fmt: skip


@pytest.mark.parametrize("kind", list(RIGHT_ANSWER))
def test_protocol_scores_the_known_answer(run_tiny, kind):
    result = protocol_run(run_tiny, kind, runs=2)
    expected = RIGHT_ANSWER[kind]
    assert result.metrics["compdd/acc_runs"] == [expected, expected]
    assert result.metrics["compdd/acc_mean"] == expected and result.metrics["compdd/acc_std"] == 0.0
    assert "eval/acc_mean" not in result.metrics
    recorded = result.manifest["records"]["compdd/protocol"]
    assert recorded["recipe"]["augment"] == "dsa" and recorded["recipe"]["epochs"] == PROTOCOL["epochs"]


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("kind", ["clean", "shifted"])
def test_protocol_trains_on_the_distilled_labels(run_tiny, kind, soft):
    result = protocol_run(run_tiny, kind, plugins=[Relabel(soft=soft)])
    assert result.distilled.soft is soft
    assert result.metrics["compdd/acc_runs"] == [100.0 - RIGHT_ANSWER[kind]]


def untrained_accuracy(kind: str, seed: int = 0, repeat: int = 0) -> float:
    """Test accuracy of the protocol's network as initialised for ``repeat`` (the evaluator's seeding), untrained."""
    from ddcore.context import derive_seed
    from ddcore.models import ModelSpec, build_model
    from ddcore.training import accuracy_on

    dataset = known_answer_dataset(kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "eval", "distilled", repeat, "init"))
        model = build_model(ModelSpec("convnet", width=PROTOCOL["width"], depth=2, norm="instancenorm"), CLASSES, 1, SIDE)
    return 100.0 * accuracy_on(model, dataset.loader("test", 500), torch.device("cpu"))


def test_protocol_trains_at_the_learned_lr(run_tiny):
    """A learned lr of 1e-12 leaves the network as initialised (it scores what the untrained network
    scores, whatever ``eval.lr`` says); with ``eval.lr = 1e-12`` and a learned lr of 0.05 it learns the rule."""
    learned = protocol_run(run_tiny, "clean", plugins=[Relabel(shift=0, lr=0.05)], eval_lr=1e-12)
    assert learned.distilled.lr == 0.05
    assert learned.metrics["compdd/acc_runs"] == [100.0]
    frozen = protocol_run(run_tiny, "clean", plugins=[Relabel(shift=0, lr=1e-12)], eval_lr=0.05)
    untrained = untrained_accuracy("clean")
    assert untrained < 100.0  # else this check could not tell a trained network from an untrained one
    assert frozen.metrics["compdd/acc_runs"] == [untrained]
