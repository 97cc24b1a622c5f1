"""ddcore.builtin.evaluate, cases found by mutation testing (bench/mutation.py), on the known-answer
datasets (``ddcore.testing``): ``ka/shifted``'s test labels are all the next class, so a network that
learned the band rule scores exactly 0 % on its test split, 100 % on its training and validation splits.

Checked: each row's known answer and statistics, the validation rows, the split an evaluation measures,
the training labels (hard / soft), the jobs' seeds, subsets, recipes and learned lr, one-by-one and batched
training, the one-line divergence messages, the ``eval.batched = on`` refusal, and ``describe_rows``."""

from __future__ import annotations

import math
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from ddcore.builtin.evaluate import (
    diverged,
    train_once,
    describe_rows,
    divergence_advice,
    dd_evaluate,
    evaluate_once,
    job_member,
    learned_lr,
    train_jobs,
)
from ddcore.distilled import DistilledSet
from ddcore.errors import ConfigError, PluginError
from ddcore.presets import resolve_eval
from ddcore.testing import KnownAnswerDatasets
from ddcore.builtin.selection import random_per_class
from ddcore.training import TrainingDiverged

#: Enough for the band rule at one image per class (tests/test_known_answers.py), and quick.
KA_EVAL = {"runs": 2, "epochs": 40, "full_epochs": 6, "width": 8, "batch_size": 16, "lr": 0.05, "batched": "off"}


def _context(dd_context, **config):
    eval_options = {**KA_EVAL, **config.pop("eval", {})}
    return dd_context([KnownAnswerDatasets()], dataset="ka/shifted", eval=eval_options, **config)


def _per_class(ctx, offsets=(0, 0, 0, 0), soft: bool = False, lr: float | None = None) -> DistilledSet:
    """Training image ``offsets[k]`` of each class ``k`` with its real label (hard, or soft logits)."""
    data = ctx.dataset
    by_class = data.indices_by_class("train")
    images, labels = data.load("train", [by_class[k][o] for k, o in enumerate(offsets)])
    if soft:
        labels = torch.nn.functional.one_hot(labels, 4).float() * 6.0
    return DistilledSet(images, labels, data.class_names, data.mean, data.std,
                        lr=torch.tensor(lr) if lr is not None else None)  # fmt: skip


def _settings(ctx):
    return resolve_eval(ctx.config.eval, ctx.dataset)


def test_every_row_scores_its_known_answer_with_its_statistics(dd_context):
    ctx = _context(dd_context, eval={"baseline": ["random", "full"]})
    metrics = dd_evaluate(ctx, _per_class(ctx))
    for prefix in ("acc", "random_real_acc", "full_acc"):
        assert metrics[f"{prefix}_runs"] == [0.0, 0.0], prefix
        assert metrics[f"{prefix}_mean"] == 0.0 and metrics[f"{prefix}_std"] == 0.0
        assert metrics[f"{prefix}_runs_process"] == [0, 0]
    assert "initial_acc_mean" not in metrics and "val_acc_mean" not in metrics
    assert ctx.records["eval"]["runs"] == 2 and ctx.records["eval"]["baseline"] == ("random", "full")
    assert set(ctx.records["eval_rows"]) == {"acc", "random_real_acc", "full_acc"}
    assert set(ctx.records["eval_batched"]) == {"distilled", "random", "full"}


def test_validation_rows_measure_the_same_networks_on_the_carved_split(dd_context):
    """The carved validation split comes from the training images, whose labels follow the rule: 100 %."""
    ctx = _context(dd_context, holdout="always", validation=0.25, eval={"runs": 2, "baseline": ["random"]})
    assert ctx.dataset.val is not None
    metrics = dd_evaluate(ctx, _per_class(ctx))
    assert metrics["acc_runs"] == [0.0, 0.0] and metrics["val_acc_runs"] == [100.0, 100.0]
    assert metrics["val_acc_mean"] == 100.0 and metrics["val_acc_std"] == 0.0
    assert metrics["random_real_val_acc_runs"] == [100.0, 100.0] and metrics["random_real_val_acc_mean"] == 100.0
    assert metrics["random_real_val_acc_std"] == 0.0


def test_statistics_of_different_repeats(dd_context):
    """One repeat learns from the real labels (0 %), the other from the next-class labels (100 %) -- through
    the paired initial row, whose repeat r shares the distilled row's seeds: mean 50, population std 50."""
    ctx = _context(dd_context, distill="tm", tm={"preset": "digits-ipc1"}, eval={"runs": 1})
    right = _per_class(ctx)
    wrong = DistilledSet(right.images, (right.labels + 1) % 4, right.class_names, right.mean, right.std)
    ctx.initial = wrong
    metrics = dd_evaluate(ctx, right)
    assert metrics["acc_runs"] == [0.0] and metrics["initial_acc_runs"] == [100.0]
    assert metrics["gain_vs_initial_runs"] == [-100.0] and metrics["gain_vs_initial_mean"] == -100.0
    assert ctx.records["eval_rows"]["initial_acc"].startswith("the images the distiller started from")


def test_no_evaluation_when_runs_is_zero(dd_context):
    ctx = _context(dd_context, eval={"runs": 0})
    assert dd_evaluate(ctx, _per_class(ctx)) is None and "eval" not in ctx.records


def test_an_evaluation_measures_the_split_it_is_asked_for(dd_context):
    ctx = _context(dd_context, eval={"runs": 1})
    settings, distilled = _settings(ctx), _per_class(ctx)
    assert evaluate_once(ctx, settings, distilled, "distilled", 0) == 0.0
    assert evaluate_once(ctx, settings, distilled, "distilled", 0, split="train") == 100.0


def test_training_labels_follow_eval_labels(dd_context):
    ctx = _context(dd_context, eval={"runs": 1})
    soft_wrong = _per_class(ctx, soft=True)
    soft_wrong = DistilledSet(soft_wrong.images, soft_wrong.labels.roll(1, dims=1), soft_wrong.class_names,
                              soft_wrong.mean, soft_wrong.std)  # fmt: skip  # argmax: the next class
    for mode, expected in (("auto", 100.0), ("soft", 100.0), ("hard", 100.0)):
        ctx.config.eval.labels = mode
        assert evaluate_once(ctx, _settings(ctx), soft_wrong, "distilled", 0) == expected, mode
    ctx.config.eval.labels = "soft"
    with pytest.raises(PluginError, match=r"^eval.labels = 'soft' but the distilled set has hard labels; use 'auto' or 'hard'$") as caught:
        evaluate_once(ctx, _settings(ctx), _per_class(ctx), "distilled", 0)
    assert caught.value.plugin == "eval"
    # hard mode trains on the argmax, auto on the logits: same answer, other networks
    ctx.config.eval.labels = "hard"
    hard = job_member(ctx, _settings(ctx), soft_wrong, "distilled", 0)
    ctx.config.eval.labels = "auto"
    auto = job_member(ctx, _settings(ctx), soft_wrong, "distilled", 0)
    (_, hard_labels), (_, auto_labels) = next(iter(hard.batches(0))), next(iter(auto.batches(0)))
    assert hard_labels.ndim == 1 and auto_labels.shape == (4, 4)
    assert torch.equal(hard_labels, auto_labels.argmax(1))


def test_jobs_seeds_subsets_and_recipes(dd_context):
    ctx = _context(dd_context, eval={"runs": 2})
    settings = _settings(ctx)
    distilled = _per_class(ctx, offsets=(0, 1, 2, 3), lr=0.02)
    distilled = DistilledSet(distilled.images[[0, 0, 1, 3]], distilled.labels[[0, 0, 1, 3]], distilled.class_names,
                             distilled.mean, distilled.std, lr=distilled.lr)  # fmt: skip  # counts 2, 1, 0, 1
    for repeat in (0, 1):
        first = job_member(ctx, settings, distilled, "distilled", repeat)
        paired = job_member(ctx, settings, distilled, "initial", repeat)
        assert first.seed == paired.seed == ctx.derive_seed("eval", "distilled", repeat, "init")
        assert first.recipe.lr == paired.recipe.lr == pytest.approx(0.02)  # the learned lr
        random = job_member(ctx, settings, distilled, "random", repeat)
        assert random.seed == ctx.derive_seed("eval", "random", repeat, "init") != first.seed
        assert random.recipe == settings.recipe  # real images train at eval.lr
        images, labels = next(iter(random.batches(0)))
        assert Counter(labels.tolist()) == Counter({0: 2, 1: 1, 3: 1}) and images.shape == (4, 1, 16, 16)
        full = job_member(ctx, settings, distilled, "full", repeat)
        assert full.recipe == settings.full_recipe and full.seed == ctx.derive_seed("eval", "full", repeat, "init")
        seen = sum(len(y) for _, y in full.batches(0))
        assert seen == len(ctx.dataset.train)
    # a fresh subset per repeat: the two repeats' random images differ
    a = next(iter(job_member(ctx, settings, distilled, "random", 0).batches(0)))[0]
    b = next(iter(job_member(ctx, settings, distilled, "random", 1).batches(0)))[0]
    assert not torch.equal(a.sort(0).values, b.sort(0).values)
    # eval.use_learned_lr = false: eval.lr
    ctx.config.eval.use_learned_lr = False
    assert job_member(ctx, _settings(ctx), distilled, "distilled", 0).recipe.lr == KA_EVAL["lr"]


def test_learned_lr_only_for_the_distilled_and_initial_rows(dd_context):
    ctx = _context(dd_context)
    settings = _settings(ctx)
    with_lr, without = _per_class(ctx, lr=0.25), _per_class(ctx)
    assert learned_lr(settings, with_lr, "distilled") == 0.25 and learned_lr(settings, with_lr, "initial") == 0.25
    assert learned_lr(settings, with_lr, "random") is None and learned_lr(settings, with_lr, "full") is None
    assert learned_lr(settings, without, "distilled") is None and learned_lr(settings, None, "distilled") is None
    ctx.config.eval.use_learned_lr = False
    assert learned_lr(_settings(ctx), with_lr, "distilled") is None


def test_batched_and_one_by_one_training_agree_on_the_known_answer(dd_context):
    ctx = _context(dd_context, eval={"runs": 2, "batched": "on"})
    settings, distilled = _settings(ctx), _per_class(ctx)
    ticks = []
    rows = train_jobs(ctx, settings, {"distilled": distilled}, [("distilled", 0), ("distilled", 1)], ("test", "train"),
                      "on", ticks.append)  # fmt: skip
    assert rows == [("distilled", 0, {"test": 0.0, "train": 100.0}), ("distilled", 1, {"test": 0.0, "train": 100.0})]
    assert ticks == [2] and ctx.records["eval_batched"]["distilled"]["batched"] is True
    rows = train_jobs(ctx, settings, {"distilled": distilled}, [("distilled", 1)], ("test",), "off", ticks.append)
    assert rows == [("distilled", 1, {"test": 0.0})] and ticks == [2, 1]
    assert ctx.records["eval_batched"]["distilled"]["batched"] is False


@pytest.mark.parametrize("batched", ["off", "on"])
def test_a_diverging_network_ends_the_evaluation_with_one_line(dd_context, batched):
    ctx = _context(dd_context, eval={"runs": 2, "lr": 1e30, "epochs": 2, "batched": batched})
    with pytest.raises(TrainingDiverged) as caught:
        dd_evaluate(ctx, _per_class(ctx))
    message = str(caught.value)
    assert message.startswith("training of the evaluation network of row acc (repeat 0) diverged at epoch ")
    assert " of 2: " in message and message.count("\n") == 0
    assert message.endswith("; lower eval.lr (now 1e+30) or eval.weight_decay (now 0.0005)")


def test_divergence_advice_names_the_lr_and_the_weight_decay_used(dd_context):
    ctx = _context(dd_context, eval={"lr": 0.5, "weight_decay": 0.001})
    settings = _settings(ctx)
    plain, learned = _per_class(ctx), _per_class(ctx, lr=0.125)
    recipe = settings.recipe
    assert divergence_advice(ctx, settings, plain, "distilled", recipe) == "lower eval.lr (now 0.5) or eval.weight_decay (now 0.001)"
    assert divergence_advice(ctx, settings, learned, "distilled", recipe) == (
        "it trained at the distilled set's learned lr 0.125 (eval.use_learned_lr = true): set eval.use_learned_lr=false "
        "to train at eval.lr (now 0.5), or lower eval.weight_decay (now 0.001)")  # fmt: skip
    fixed = type(recipe)(**{**recipe.to_dict(), "weight_decay": 0.0, "lr": 2.0})  # a protocol's own recipe
    assert divergence_advice(ctx, settings, learned, "random", fixed) == "lower eval.lr (now 2) or the weight decay (0)"


def test_batched_on_is_refused_for_a_network_that_cannot_be_batched(dd_context):
    ctx = _context(dd_context, eval={"norm": "batchnorm", "batched": "off"})
    ctx.config.eval.batched = "on"  # as a plugin or script could set it after validation
    with pytest.raises(ConfigError, match=r"^config key 'eval.batched' is 'on' but .*BatchNorm.*; set eval.batched to 'auto' or 'off'$"):
        dd_evaluate(ctx, _per_class(ctx))


def test_describe_rows():
    metrics = {"eval/acc_mean": 1.0, "eval/full_acc_mean": 2.0, "other/random_real_acc_mean": 3.0}
    assert describe_rows(metrics) == ["acc: the distilled set", "full_acc: the whole training split"]
    assert describe_rows(metrics, distiller="none")[0] == "acc: the selected real images (no distiller ran: distill = none)"
    assert describe_rows(metrics, "other/") == ["random_real_acc: a fresh random real subset of the same per-class size, "
                                                "drawn again for every network (not this run's selection)"]  # fmt: skip
    assert describe_rows({}) == []
    one = {"eval/gain_vs_initial_mean": 2.5, "eval/gain_vs_initial_runs": [2.5]}
    assert describe_rows(one) == ["headline (paired): distilled - initial = +2.50 points, mean over 1 network with the "
                                  "same seeds (one network: no interval)"]  # fmt: skip
    three = {"eval/gain_vs_initial_mean": -1.0, "eval/gain_vs_initial_runs": [-1.0, -2.0, 0.0],
             "eval/gain_vs_initial_ci95_low": -3.484, "eval/gain_vs_initial_ci95_high": 1.484}  # fmt: skip
    assert describe_rows(three) == ["headline (paired): distilled - initial = -1.00 points, mean over 3 networks with "
                                    "the same seeds, 95% t-interval [-3.48, +1.48]"]  # fmt: skip
    assert math.isclose(-3.484, -1.0 - 2.484)


# ----------------------------------------------------------------------------------------------
# Seeds and streams of each job (the digits of run_tiny: accuracies that depend on the network)
# ----------------------------------------------------------------------------------------------


def _digits(dd_context, **eval_options):
    return dd_context(eval={"runs": 2, "epochs": 2, "width": 8, "batch_size": 4, "batched": "off", **eval_options})


def _first_images(ctx, per_class: int = 1) -> DistilledSet:
    data = ctx.dataset
    indices = [i for group in data.indices_by_class("train") for i in group[:per_class]]
    images, labels = data.load("train", indices)
    return DistilledSet(images, labels, data.class_names, data.mean, data.std)


def test_each_repeat_trains_its_own_network_and_is_measured_as_trained(dd_context):
    ctx = _digits(dd_context)
    settings, distilled = _settings(ctx), _first_images(ctx)
    weights = [torch.cat([p.detach().flatten() for p in train_once(ctx, settings, distilled, "distilled", r).parameters()])
               for r in (0, 1, 1)]  # fmt: skip
    assert torch.equal(weights[1], weights[2]) and not torch.equal(weights[0], weights[1])
    from ddcore.training import accuracy_on

    for r in (0, 1):
        model = train_once(ctx, settings, distilled, "distilled", r)
        expected = 100.0 * accuracy_on(model, ctx.dataset.loader("test", 7), ctx.device)  # any batch size
        assert evaluate_once(ctx, settings, distilled, "distilled", r) == expected


def test_batched_repeats_are_different_networks(dd_context):
    ctx = _digits(dd_context, batched="on")
    settings, distilled = _settings(ctx), _first_images(ctx, 3)
    rows = train_jobs(ctx, settings, {"distilled": distilled}, [("distilled", 0), ("distilled", 1)], ("test",), "on",
                      lambda n: None)  # fmt: skip
    one = train_jobs(ctx, settings, {"distilled": distilled}, [("distilled", 1)], ("test",), "off", lambda n: None)
    assert rows[0][2] != rows[1][2]  # another seed, another network (3 images per class: accuracies spread)
    assert abs(rows[1][2]["test"] - one[0][2]["test"]) <= 1.0  # batched = one by one, to float rounding


def test_shuffles_and_subsets_follow_the_jobs_own_generators(dd_context):
    """Batch order: ``derive_generator("eval", kind, repeat, "shuffle")`` (the initial row shares the distilled
    row's); the random row's subset: ``derive_generator("eval", "random", repeat, "subset")``. The global RNG
    plays no part."""
    ctx = _digits(dd_context, batch_size=100)
    settings, distilled = _settings(ctx), _first_images(ctx)
    for repeat in (0, 1):
        torch.manual_seed(repeat + 10)  # must not matter
        for kind in ("distilled", "initial"):
            member = job_member(ctx, settings, distilled, kind, repeat)
            (images, _), = list(member.batches(0))
            order = torch.randperm(10, generator=ctx.derive_generator("eval", "distilled", repeat, "shuffle"))
            assert torch.equal(images, distilled.images[order])
        member = job_member(ctx, settings, distilled, "random", repeat)
        picks = ctx.derive_generator("eval", "random", repeat, "subset")
        chosen = [i for idx in ctx.dataset.indices_by_class("train") for i in random_per_class([idx], 1, picks)]
        expected_images, _ = ctx.dataset.load("train", chosen)
        order = torch.randperm(10, generator=ctx.derive_generator("eval", "random", repeat, "shuffle"))
        (images, _), = list(member.batches(0))
        assert torch.equal(images, expected_images[order])


def test_the_full_rows_loader_is_shuffled_by_its_own_generator(dd_context):
    ctx = _digits(dd_context, full_epochs=1)
    settings = _settings(ctx)

    def first_batch(repeat, global_seed):
        torch.manual_seed(global_seed)
        member = job_member(ctx, settings, _first_images(ctx), "full", repeat)
        return next(iter(member.batches(0)))

    a, b, c = first_batch(0, 1), first_batch(0, 2), first_batch(1, 1)
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    in_order, _ = ctx.dataset.load("train", list(range(len(a[1]))))
    assert not torch.equal(a[0], in_order)  # shuffled
    assert len(a[1]) == settings.full_recipe.batch_size == 4


def test_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="^bogus$"):
        job_member(SimpleNamespace(dataset=None, derive_generator=lambda *k: None), SimpleNamespace(recipe=None), None, "bogus", 0)


@pytest.mark.parametrize("batched", ["off", "on"])
def test_a_divergence_at_the_learned_lr_says_so(dd_context, batched):
    ctx = _context(dd_context, eval={"runs": 2, "epochs": 2, "batched": batched})
    with pytest.raises(TrainingDiverged) as caught:
        dd_evaluate(ctx, _per_class(ctx, lr=1e30))
    assert str(caught.value).endswith(
        "it trained at the distilled set's learned lr 1e+30 (eval.use_learned_lr = true): set eval.use_learned_lr=false "
        "to train at eval.lr (now 0.05), or lower eval.weight_decay (now 0.0005)")  # fmt: skip
    assert "row acc (repeat 0)" in str(caught.value)


def test_diverged_names_a_plugins_own_kind_and_advice_without_an_eval_table(dd_context):
    ctx = _context(dd_context)
    settings = _settings(ctx)
    error = diverged(ctx, settings, None, "teacher", 4, settings.recipe, TrainingDiverged(0, 2, math.nan))
    assert str(error).startswith("training of the evaluation network of row teacher (repeat 4) diverged")
    bare = SimpleNamespace(config=SimpleNamespace())
    assert divergence_advice(bare, settings, None, "random", settings.recipe) == "lower eval.lr (now 0.05) or the weight decay (0.0005)"


def test_the_full_row_is_trained_one_by_one_even_when_batching_is_on(dd_context):
    ctx = _context(dd_context, eval={"runs": 2, "batched": "on", "baseline": ["full"]})
    metrics = dd_evaluate(ctx, _per_class(ctx))
    assert metrics["full_acc_runs"] == [0.0, 0.0] and metrics["acc_runs"] == [0.0, 0.0]
    plans = ctx.records["eval_batched"]
    assert plans["distilled"]["batched"] is True
    assert plans["full"] == {"batched": False, "reason": "one by one: batched training is off", "networks": 2,
                             "group_size": 1, "groups": [[0], [1]], "bytes_per_network": 0, "budget_bytes": 0,
                             "device": "cpu"}  # fmt: skip
