"""The Comp-DD protocol's networks trained together (``eval.batched``) are its networks trained one by one:
same weights to float rounding, same accuracies, the plan recorded, the same results on any process count."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from ddcore.distilled import DistilledSet
from ddcore.ensemble import ensemble_accuracy
from ddcore.evaluation import evaluate_once, train_repeats
from ddcore_compdd.protocol import evaluate_protocol, protocol_settings

TOL = dict(atol=2e-5, rtol=1e-4)


@pytest.fixture
def setup(dd_context):
    ctx = dd_context(eval={"runs": 0})
    dataset = ctx.dataset
    images, labels = dataset.load("train", [idx[0] for idx in dataset.indices_by_class("train")])  # 1 per class
    distilled = DistilledSet(images, labels, list(dataset.class_names), dataset.mean, dataset.std)
    settings = protocol_settings(ctx, dataset, runs=3, epochs=3, width=8)
    return ctx, distilled, settings


def without_augmentation(settings):
    return dataclasses.replace(settings, recipe=dataclasses.replace(settings.recipe, augment="none"))


@pytest.mark.parametrize("augmented", [False, True], ids=["augmentation off", "the protocol's DSA"])
def test_batched_networks_equal_the_loop(setup, augmented):
    ctx, distilled, settings = setup
    settings = settings if augmented else without_augmentation(settings)
    on = train_repeats(ctx, settings, distilled, [0, 1, 2], mode="on")
    off = train_repeats(ctx, settings, distilled, [0, 1, 2], mode="off")
    assert on.plan.batched and on.plan.groups == [[0, 1, 2]] and not off.plan.batched
    for a, b in zip(on.models, off.models):
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            torch.testing.assert_close(p, q, **TOL, msg=name)
    assert not torch.allclose(on.models[0].classifier.weight, on.models[1].classifier.weight)  # three seeds
    loader = ctx.dataset.loader("test", settings.test_batch_size)
    accuracies = [100.0 * a for a in ensemble_accuracy(on.models, loader, ctx.device)]
    # each network is the protocol's repeat r, as evaluate_once trains it alone
    assert accuracies == pytest.approx([evaluate_once(ctx, settings, distilled, "distilled", r) for r in range(3)], abs=1e-9)


def test_the_protocol_records_how_and_gives_the_same_numbers(setup):
    ctx, distilled, settings = setup
    settings = without_augmentation(settings)
    results, plans = {}, {}
    for mode in ("on", "off", "auto"):
        ctx.config.eval.batched = mode
        results[mode] = evaluate_protocol(ctx, distilled, settings)
        plans[mode] = ctx.records["compdd/protocol_batched"]
    assert results["on"]["acc_runs"] == pytest.approx(results["off"]["acc_runs"], abs=1e-9)
    assert results["auto"]["acc_runs"] == results["off"]["acc_runs"]  # auto on the CPU: the loop
    assert plans["on"]["batched"] and plans["on"]["groups"] == [[0, 1, 2]]
    assert plans["off"]["reason"] == "one by one: batched training is off" and plans["off"]["groups"] == [[0], [1], [2]]
    assert "GPU only" in plans["auto"]["reason"]


def test_results_do_not_depend_on_the_number_of_processes(setup, monkeypatch):
    """Two processes: process p trains repeats p, p + 2 (together); gathered, the numbers are one process's."""
    import accelerate.utils

    ctx, distilled, settings = setup
    settings = without_augmentation(settings)
    ctx.config.eval.batched = "on"
    single = evaluate_protocol(ctx, distilled, settings)["acc_runs"]
    shares = {}
    for rank in (0, 1):
        monkeypatch.setattr(ctx, "accelerator", SimpleNamespace(num_processes=2, process_index=rank, device=ctx.device))
        monkeypatch.setattr(accelerate.utils, "gather_object", lambda rows: shares.setdefault(rank, rows))
        evaluate_protocol(ctx, distilled, settings)
    assert [r for r, _ in shares[0]] == [0, 2] and [r for r, _ in shares[1]] == [1]
    gathered = dict(shares[0] + shares[1])
    assert [gathered[r] for r in range(3)] == pytest.approx(single, abs=1e-9)
