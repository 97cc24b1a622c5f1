"""The trajectory-matching outer loop: hooks fire every step, weights act, guards stop bad runs."""

from __future__ import annotations

import pytest
import torch

from ddcore import DistilledSet, hookimpl
from ddcore.errors import ConfigError, DDError
from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.models import ModelSpec, build_model
from ddcore.runner import Pipeline
from ddcore.tm.config import TMConfig
from ddcore.tm.loop import distill_tm
from ddcore.training import TrainRecipe, tensor_batches, train_network

SPEC = ModelSpec(width=4)


class Buffer:
    """Trajectories made by really training the tiny ConvNet on a few digits."""

    def __init__(self, dataset, count=2, epochs=4):
        images, labels = dataset.load("train", list(range(64)))
        self.trajectories = []
        for seed in range(count):
            torch.manual_seed(seed)
            model = build_model(SPEC, 10, 1, 32)
            snapshots = [flatten_params(model)]
            batches = tensor_batches(images, labels, 32, torch.Generator().manual_seed(seed))
            recipe = TrainRecipe(epochs=epochs, lr=0.05, schedule="constant")
            train_network(model, batches, recipe, torch.device("cpu"), 32, on_epoch=lambda e, m=model: snapshots.append(flatten_params(m)))
            self.trajectories.append(torch.stack(snapshots))
        self.param_shapes = param_shapes_of(model)

    def __len__(self):
        return len(self.trajectories)

    def trajectory(self, index):
        return self.trajectories[index]


class Recorder:
    name = "recorder"

    def __init__(self, pixel=None, supervision=None):
        self.steps, self.pixel, self.supervision = [], pixel, supervision

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        self.steps.append(step)
        return None if self.pixel is None else self.pixel(images)

    @hookimpl
    def dd_supervision_weights(self, ctx, losses, distances, step):
        return None if self.supervision is None else self.supervision(losses)


@pytest.fixture(scope="module")
def buffer():
    pipeline = Pipeline({"ipc": 1, "workers": 0, "eval": {"runs": 0}}, write=False)
    return Buffer(pipeline.build_dataset())


def setup(plugin=None, **tm):
    pipeline = Pipeline({"ipc": 1, "workers": 0, "distill": "tm", "eval": {"runs": 0}}, [plugin] if plugin else [], write=False)
    dataset = pipeline.build_dataset()
    images, labels = dataset.load("train", dataset.indices_by_class("train")[0][:1] + dataset.indices_by_class("train")[1][:1])
    initial = DistilledSet(images, labels, dataset.class_names, dataset.mean, dataset.std)
    config = TMConfig(**{"iterations": 3, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, **tm})
    return pipeline.ctx, initial, config


def test_matching_moves_the_images_and_calls_the_hooks_every_step(buffer):
    recorder = Recorder()
    ctx, initial, config = setup(recorder)
    distilled, log = distill_tm(ctx, initial, buffer, SPEC, config)
    assert recorder.steps == [0, 1, 2]
    assert [row["iteration"] for row in log] == [0, 1, 2] and all(row["loss"] > 0 for row in log)
    assert not torch.equal(distilled.images, initial.images)
    assert distilled.lr is not None and distilled.meta["distilled_by"] == "tm"
    assert all(0 <= row["start_epoch"] < 2 for row in log)


def test_zero_pixel_weights_freeze_the_images(buffer):
    ctx, initial, config = setup(Recorder(pixel=lambda images: torch.zeros(images.shape[0], 1, 1, 1)))
    distilled, _ = distill_tm(ctx, initial, buffer, SPEC, config)
    assert torch.equal(distilled.images, initial.images)


def test_skip_threshold_skips_every_update(buffer):
    ctx, initial, config = setup(skip_threshold=1e-12)
    distilled, log = distill_tm(ctx, initial, buffer, SPEC, config)
    assert all(row["skipped"] for row in log) and torch.equal(distilled.images, initial.images)


def test_nan_loss_stops_the_run(buffer):
    ctx, initial, config = setup(Recorder(supervision=lambda losses: torch.zeros_like(losses)))  # 0/0
    with pytest.raises(DDError, match="diverged at iteration 0"):
        distill_tm(ctx, initial, buffer, SPEC, config)


def test_same_seed_same_distilled_images(buffer):
    a, _ = distill_tm(*setup()[:2], buffer, SPEC, setup()[2])
    b, _ = distill_tm(*setup()[:2], buffer, SPEC, setup()[2])
    assert torch.equal(a.images, b.images)


def test_impossible_windows_are_rejected(buffer):
    with pytest.raises(ConfigError, match="tm.min_start_epoch"):
        TMConfig(min_start_epoch=3, cur_max_start_epoch=2)
    ctx, initial, config = setup(max_start_epoch=4, cur_max_start_epoch=2)
    with pytest.raises(ConfigError, match="needs experts of at least 5 epochs, they have 4"):
        distill_tm(ctx, initial, buffer, SPEC, config)


def test_periodic_evaluation_keeps_the_best_set(buffer):
    ctx, initial, config = setup(iterations=4, eval_every=2)
    scores = iter([30.0, 50.0, 40.0])  # the initial set, then after iterations 1 and 3 (0-based)
    seen = []

    def evaluate(distilled):
        seen.append(distilled.images.clone())
        return next(scores)

    distilled, log = distill_tm(ctx, initial, buffer, SPEC, config, evaluate=evaluate)
    assert [row.get("val_acc") for row in log] == [None, 50.0, None, 40.0]
    assert torch.equal(seen[0], initial.images)
    assert torch.equal(distilled.images, seen[1]) and not torch.equal(distilled.images, seen[2])
    # best_iteration is tm_log.json's (0-based) iteration of the row whose val_acc won
    assert distilled.meta["best_iteration"] == 1 == log[1]["iteration"] and distilled.meta["best_accuracy"] == 50.0
    assert distilled.meta["initial_accuracy"] == 30.0


def test_periodic_evaluation_can_keep_the_initial_set(buffer):
    ctx, initial, config = setup(iterations=4, eval_every=2)
    scores = iter([69.7, 55.6, 50.0])

    distilled, log = distill_tm(ctx, initial, buffer, SPEC, config, evaluate=lambda d: next(scores))
    assert torch.equal(distilled.images, initial.images)
    assert distilled.meta["best_iteration"] == -1 and distilled.meta["best_accuracy"] == 69.7
    assert [row.get("val_acc") for row in log] == [None, 55.6, None, 50.0]
