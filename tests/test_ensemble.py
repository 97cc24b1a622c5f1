"""Training K networks together (ddcore.ensemble) means the same as training them one by one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ddcore.ensemble import (
    EnsemblePlan,
    Member,
    ensemble_accuracy,
    loop_reason,
    plan_group_size,
    train_ensemble,
    unbatchable_reason,
)
from ddcore.errors import ConfigError
from ddcore.models import ModelSpec, build_model
from ddcore.testing import known_answer_images
from ddcore.training import TrainRecipe, accuracy_on, tensor_batches

SHAPE = (1, 16, 16)
SPEC = ModelSpec(width=8, depth=2)
RECIPE = TrainRecipe(epochs=3, batch_size=8, lr=0.05, augment="none")
SEEDS = (11, 12, 13)
TOL = dict(atol=2e-5, rtol=1e-4)


def build(norm: str = "instancenorm"):
    return lambda: build_model(dataclasses.replace(SPEC, norm=norm), 4, 1, 16)


@pytest.fixture(scope="module")
def data():
    train = known_answer_images(4, seed=1, noise=1.5)  # 16 images, 4 classes: 2 batches of 8 per epoch
    test_images, _ = known_answer_images(8, seed=2, noise=1.5)
    test_labels = torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(3))  # accuracies not all 100
    return train, [(test_images[:20], test_labels[:20]), (test_images[20:], test_labels[20:])]


def members(train, recipe=RECIPE, seeds=SEEDS, labels=None):
    images, hard = train
    return [
        Member(s, tensor_batches(images, hard if labels is None else labels, recipe.batch_size, torch.Generator().manual_seed(s + 1000)), recipe)
        for s in seeds
    ]


def train(data_train, mode="auto", norm="instancenorm", **kwargs):
    recipe, labels, seeds = kwargs.pop("recipe", RECIPE), kwargs.pop("labels", None), kwargs.pop("seeds", SEEDS)
    return train_ensemble(build(norm), members(data_train, recipe, seeds, labels), "cpu", SHAPE, mode=mode, **kwargs)


def assert_same(a, b, exact=False):
    assert len(a) == len(b)
    for net_a, net_b in zip(a, b):
        for (name, p), (_, q) in zip(net_a.named_parameters(), net_b.named_parameters()):
            assert torch.equal(p, q) if exact else torch.allclose(p, q, **TOL), name


def test_batched_matches_one_by_one_without_augmentation(data):
    batched, looped = train(data[0], "on"), train(data[0], "off")
    assert batched.plan.batched and batched.plan.groups == [[0, 1, 2]] and not looped.plan.batched
    assert_same(batched.models, looped.models)
    accuracies = ensemble_accuracy(batched.models, data[1], "cpu")
    assert accuracies == [accuracy_on(m, data[1], "cpu") for m in looped.models]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    # three seeds, three different networks (not one network trained three times)
    assert not torch.allclose(batched.models[0].classifier.weight, batched.models[1].classifier.weight)


def test_one_by_one_is_train_network_under_the_members_seed(data):
    from ddcore.training import train_network

    (looped,) = train(data[0], "off", seeds=(7,)).models
    torch.manual_seed(7)
    reference = build()()
    train_network(reference, members(data[0], seeds=(7,))[0].batches, RECIPE, torch.device("cpu"), 16)
    assert_same([looped], [reference], exact=True)


@pytest.mark.parametrize("augment", ["crop", "dsa"])
def test_augmentation_draws_are_each_networks_own_and_reproducible(data, augment):
    recipe = dataclasses.replace(RECIPE, augment=augment)
    # the same seed twice: identical networks only if each one's draws come from its own seed
    first = train(data[0], "on", recipe=recipe, seeds=(5, 5, 6))
    again = train(data[0], "on", recipe=recipe, seeds=(5, 5, 6))
    assert_same(first.models, again.models, exact=True)
    assert_same(first.models[:1], first.models[1:2], exact=True)
    assert not torch.allclose(first.models[0].classifier.weight, first.models[2].classifier.weight)
    # and they are the draws the one-by-one path makes with the same seed
    assert_same(first.models, train(data[0], "off", recipe=recipe, seeds=(5, 5, 6)).models)


def test_augmentation_draws_differ_from_unaugmented_training(data):
    plain = train(data[0], "on").models
    cropped = train(data[0], "on", recipe=dataclasses.replace(RECIPE, augment="crop")).models
    assert all(not torch.allclose(a.classifier.weight, b.classifier.weight) for a, b in zip(plain, cropped))


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_one_optimizer_over_stacked_parameters_is_k_optimizers(data, optimizer):
    recipe = dataclasses.replace(RECIPE, optimizer=optimizer, lr=0.01, weight_decay=0.01, schedule="cosine")
    # norm "none": a conv bias in front of instance norm has a zero gradient up to rounding, which Adam's
    # normalised step turns into +-lr of noise, so its value is not comparable between two computations
    on, off = train(data[0], "on", recipe=recipe, norm="none"), train(data[0], "off", recipe=recipe, norm="none")
    assert_same(on.models, off.models)


def test_soft_labels_and_learned_lr(data):
    soft = torch.randn(16, 4, generator=torch.Generator().manual_seed(4)) * 3
    assert_same(train(data[0], "on", labels=soft).models, train(data[0], "off", labels=soft).models)
    # a learned lr differing per network: members with different recipes are grouped apart
    fast = dataclasses.replace(RECIPE, lr=0.2)
    mixed = lambda: members(data[0]) + members(data[0], recipe=fast, seeds=(21, 22))  # noqa: E731 (fresh generators)
    batched = train_ensemble(build(), mixed(), "cpu", SHAPE, mode="on")
    looped = train_ensemble(build(), mixed(), "cpu", SHAPE, mode="off")
    assert batched.plan.groups == [[0, 1, 2], [3, 4]]
    assert_same(batched.models, looped.models)
    assert not torch.allclose(looped.models[3].classifier.weight, train(data[0], "off", seeds=(21,)).models[0].classifier.weight)


def test_results_do_not_depend_on_the_group_size(data):
    recipe = dataclasses.replace(RECIPE, augment="crop")
    runs = {size: train(data[0], "on", recipe=recipe, max_group=size) for size in (1, 2, 3)}
    assert [runs[s].plan.groups for s in (1, 2, 3)] == [[[0], [1], [2]], [[0, 1], [2]], [[0, 1, 2]]]
    for size in (1, 2):
        assert_same(runs[size].models, runs[3].models)
    accuracies = {s: ensemble_accuracy(runs[s].models, data[1], "cpu", group_size=s) for s in (1, 2, 3)}
    assert accuracies[1] == accuracies[2] == accuracies[3]


def test_on_epoch_reports_every_networks_parameters(data):
    seen = {}
    run = train(data[0], "on", on_epoch=lambda i, e, params: seen.__setitem__((i, e), params["classifier.bias"].clone()))
    assert sorted(seen) == [(i, e) for i in range(3) for e in range(RECIPE.epochs)]
    for i, model in enumerate(run.models):
        assert torch.equal(seen[(i, RECIPE.epochs - 1)], model.classifier.bias.detach())


def test_auto_trains_one_by_one_on_the_cpu_and_says_why(data):
    auto = train(data[0], "auto")
    assert not auto.plan.batched and "GPU only" in auto.plan.reason and auto.plan.groups == [[0], [1], [2]]
    assert_same(auto.models, train(data[0], "off").models, exact=True)


def test_the_fallback_rule():
    net, bn = build()(), build("batchnorm")()
    assert loop_reason(net, "auto", "cuda", 2) is None and loop_reason(net, "on", "cpu", 1) is None
    assert loop_reason(net, "auto", "cuda", 1) == "only one network"
    assert "GPU only" in loop_reason(net, "auto", "cpu", 6) and loop_reason(net, "off", "cuda", 6) == "batched training is off"
    assert "BatchNorm" in loop_reason(bn, "auto", "cuda", 6)
    with pytest.raises(ConfigError, match="unknown mode 'yes'"):
        loop_reason(net, "yes", "cpu", 2)


def test_batchnorm_falls_back_to_the_loop_and_on_refuses(data):
    reason = unbatchable_reason(build("batchnorm")())
    assert reason and "BatchNorm" in reason and unbatchable_reason(build()()) is None
    auto = train(data[0], "auto", norm="batchnorm")
    assert not auto.plan.batched and "BatchNorm" in auto.plan.reason
    assert_same(auto.models, train(data[0], "off", norm="batchnorm").models, exact=True)
    with pytest.raises(ConfigError, match="BatchNorm.*'auto' or 'off'"):
        train(data[0], "on", norm="batchnorm")


def test_training_sets_of_different_sizes_cannot_share_a_group(data):
    images, labels = data[0]
    small = Member(1, tensor_batches(images[:8], labels[:8], 8, torch.Generator().manual_seed(0)), RECIPE)
    with pytest.raises(ValueError, match="same size"):
        train_ensemble(build(), [*members(data[0], seeds=(2,)), small], "cpu", SHAPE, mode="on")


def test_memory_guard_is_recorded_and_caps_the_group(data):
    plan = train(data[0], "on").plan
    assert isinstance(plan, EnsemblePlan) and plan.bytes_per_network > sum(p.numel() * 4 for p in build()().parameters())
    assert plan.budget_bytes > 0 and plan.to_dict()["group_size"] == 3
    assert plan_group_size(plan.bytes_per_network, 2 * plan.bytes_per_network + 1, 3) == 2
    assert plan_group_size(10**12, 1, 3) == 1


def test_builtin_evaluator_batched_and_one_by_one_agree(run_tiny):
    """The built-in evaluator's rows (distilled and the fresh random-real baseline) are the same numbers
    whether its networks are trained as one batch or one by one; the plan is recorded."""
    results = {}
    for mode in ("on", "off"):
        result = run_tiny(eval={"runs": 3, "batched": mode, "augment": "crop", "baseline": ["random"]})
        results[mode] = result
    on, off = (results[m].metrics for m in ("on", "off"))
    for key in ("eval/acc_runs", "eval/random_real_acc_runs"):
        assert len(on[key]) == 3 and on[key] == pytest.approx(off[key], abs=1e-9), key
    plans = results["on"].manifest["records"]["eval_batched"]
    assert plans["distilled"]["batched"] and plans["random"]["groups"] == [[0, 1, 2]]
    assert not results["off"].manifest["records"]["eval_batched"]["distilled"]["batched"]


def test_builtin_evaluator_refuses_on_for_batchnorm(run_tiny):
    with pytest.raises(ConfigError, match="eval.batched.*BatchNorm"):
        run_tiny(eval={"runs": 2, "batched": "on", "norm": "batchnorm"})
