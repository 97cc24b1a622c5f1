"""The facade checks the *values* of every hook answer where it is produced (issue 14, kind 2).

A plugin answering NaN weights, a label outside the classes, NaN images, a NaN metric or an
inconsistent dataset is refused with a :class:`PluginCallError` naming the hook and the plugin that
answered, not blamed on a later stage (trajectory matching's divergence check, the built-in
``as-selected``, the evaluator).
"""

from __future__ import annotations

import math

import pytest
import torch

from core_support import write_plugin_file
from ddcore import DistilledSet, PluginCallError, Selection, hookimpl
from ddcore.data.base import ImageDataset, TensorSplit
from ddcore.hooks import Hooks, dataset_problem
from ddcore.plugins import DDPluginManager, PluginInfo
from ddcore.testing import TINY_EVAL

TINY_TM = {"preset": "none", "iterations": 2, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 1,
           "cur_max_start_epoch": 1, "expansion_end": 1, "checkpoint_every": 0}  # fmt: skip


def bare_hooks(*plugins: object) -> Hooks:
    pm = DDPluginManager()
    for plugin in plugins:
        pm.register_plugin(plugin, PluginInfo(name=plugin.name, source="object", value=type(plugin).__name__))
    pm.check()
    return Hooks(pm)


def assert_blames(error: pytest.ExceptionInfo, hook: str, plugin: str, *fragments: str) -> None:
    exc = error.value
    assert (exc.hook, exc.plugin) == (hook, plugin)
    message = str(exc)
    assert message.startswith(f'{hook}: plugin "{plugin}"')
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# ----------------------------------------------------------------------------------------------
# Weighting hooks
# ----------------------------------------------------------------------------------------------


class PixelWeights:
    def __init__(self, name: str, value: float):
        self.name, self.value = name, value

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        weights = torch.ones(images.shape[0], 1, *images.shape[2:])
        weights[0, 0, 0, 0] = self.value
        return weights


class SupervisionWeights:
    def __init__(self, name: str, weights: torch.Tensor):
        self.name, self.weights = name, weights

    @hookimpl
    def dd_supervision_weights(self, ctx, losses, distances, step):
        return self.weights


@pytest.mark.parametrize(("value", "fragment"), [(math.nan, "1 NaN weight"), (math.inf, "1 infinite weight"),
                                                 (-0.5, "1 negative weight")])  # fmt: skip
def test_pixel_weights_values_are_checked_and_blamed(value, fragment):
    hooks = bare_hooks(PixelWeights("good", 1.0), PixelWeights("masky", value))
    images = torch.zeros(2, 3, 4, 4)
    with pytest.raises(PluginCallError) as error:
        hooks.pixel_weights(None, images, torch.tensor([0, 1]), step=0)
    assert_blames(error, "dd_pixel_weights", "masky", fragment, "finite and >= 0")


def test_pixel_weights_zero_is_a_valid_mask():
    hooks = bare_hooks(PixelWeights("masky", 0.0))
    weights = hooks.pixel_weights(None, torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), step=0)
    assert weights[0, 0, 0, 0].item() == 0.0 and weights.sum().item() == 2 * 16 - 1


@pytest.mark.parametrize(("weights", "fragment"), [
    (torch.tensor([1.0, math.nan, 1.0]), "1 NaN weight"),
    (torch.tensor([1.0, -1.0, 1.0]), "1 negative weight"),
    (torch.tensor([math.inf, 1.0, 1.0]), "1 infinite weight"),
])  # fmt: skip
def test_supervision_weights_values_are_checked_and_blamed(weights, fragment):
    hooks = bare_hooks(SupervisionWeights("dropper", weights))
    with pytest.raises(PluginCallError) as error:
        hooks.supervision_weights(None, torch.ones(3), torch.ones(3), step=4)
    assert_blames(error, "dd_supervision_weights", "dropper", fragment)


def test_supervision_weights_product_of_valid_answers():
    hooks = bare_hooks(SupervisionWeights("a", torch.tensor([0.0, 2.0, 1.0])), SupervisionWeights("b", torch.tensor([3.0, 0.5, 1.0])))
    assert hooks.supervision_weights(None, torch.ones(3), torch.ones(3), step=0).tolist() == [0.0, 1.0, 1.0]


class NaNMask:
    name = "nan-mask"

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        return torch.full((images.shape[0], 1, 1, 1), math.nan)


def test_nan_pixel_weights_in_a_tm_run_blame_the_plugin_not_the_learning_rate(run_tiny):
    """Issue 14's input: NaN pixel weights used to end as "trajectory matching diverged ... lower tm.lr_img"."""
    with pytest.raises(PluginCallError) as error:
        run_tiny(plugins=[NaNMask()], distill="tm", tm=dict(TINY_TM), experts={"num": 1, "batch_size": 512},
                 eval={**TINY_EVAL, "runs": 0})  # fmt: skip
    assert_blames(error, "dd_pixel_weights", "nan-mask", "NaN weight")
    assert "lr_img" not in str(error.value) and "diverged" not in str(error.value)


# ----------------------------------------------------------------------------------------------
# Strategy hooks, through whole (tiny, in-memory) runs
# ----------------------------------------------------------------------------------------------


class BadSelector:
    """Selects the first image of each class, then spoils one value of its answer."""

    name = "bad-select"

    def __init__(self, spoil: str):
        self.spoil = spoil

    @hookimpl
    def dd_select(self, ctx, dataset, ipc):
        chosen = [indices[0] for indices in dataset.indices_by_class("train")]
        images, labels = dataset.load("train", chosen)
        indices = torch.tensor(chosen)
        if self.spoil == "label-99":
            labels = labels.clone()
            labels[3] = 99
            indices = None
        elif self.spoil == "nan-image":
            images = images.clone()
            images[2, 0, 0, 0] = math.nan
        elif self.spoil == "wrong-class":
            labels = labels.roll(1)
        elif self.spoil == "float-labels":
            labels = labels.float()
        elif self.spoil == "index-out":
            indices = indices + 10_000
        return Selection(images=images, labels=labels, indices=indices)


@pytest.mark.parametrize(("spoil", "fragment"), [
    ("label-99", "label 99, outside the dataset's classes 0 .. 9"),
    ("nan-image", "1 NaN or infinite value"),
    ("wrong-class", "whose class is"),
    ("float-labels", "labels of dtype torch.float32"),
    ("index-out", "indices outside dataset.train"),
])  # fmt: skip
def test_bad_selection_blames_the_selector_not_as_selected(run_tiny, spoil, fragment):
    with pytest.raises(PluginCallError) as error:
        run_tiny(plugins=[BadSelector(spoil)])
    assert_blames(error, "dd_select", "bad-select", fragment)
    assert "as-selected" not in str(error.value)


class BadInitializer:
    name = "bad-init"

    def __init__(self, spoil: str):
        self.spoil = spoil

    @hookimpl
    def dd_initialize(self, ctx, selection):
        images, labels = selection.images.clone(), selection.labels.clone()
        lr = None
        if self.spoil == "inf-image":
            images[0, 0, 1, 1] = math.inf
        elif self.spoil == "nan-soft":
            labels = torch.zeros(images.shape[0], 10)
            labels[0, 0] = math.nan
        elif self.spoil == "negative-lr":
            lr = -0.01
        dataset = ctx.dataset
        return DistilledSet(images=images, labels=labels, class_names=list(dataset.class_names),
                            mean=tuple(dataset.mean), std=tuple(dataset.std), lr=lr)  # fmt: skip


@pytest.mark.parametrize(("spoil", "fragment"), [
    ("inf-image", "1 NaN or infinite value"),
    ("nan-soft", "soft labels with NaN"),
    ("negative-lr", "lr = -0.01"),
])  # fmt: skip
def test_bad_initial_set_blames_the_initializer(run_tiny, spoil, fragment):
    with pytest.raises(PluginCallError) as error:
        run_tiny(plugins=[BadInitializer(spoil)])
    assert_blames(error, "dd_initialize", "bad-init", fragment)


# ----------------------------------------------------------------------------------------------
# Evaluation metrics
# ----------------------------------------------------------------------------------------------


class Metrics:
    name = "scorer"

    def __init__(self, metrics: dict):
        self.metrics = metrics

    @hookimpl
    def dd_evaluate(self, ctx, distilled):
        return self.metrics


@pytest.mark.parametrize("metrics", [{"score": math.nan}, {"score": -math.inf}, {"per_run": [1.0, math.nan]}])
def test_non_finite_metrics_blame_the_evaluator(metrics):
    hooks = bare_hooks(Metrics(metrics))
    with pytest.raises(PluginCallError) as error:
        hooks.evaluate(None, None)
    assert_blames(error, "dd_evaluate", "scorer", "a metric must be a finite number")


def test_nan_metric_through_a_run_leaves_no_result(run_tiny):
    with pytest.raises(PluginCallError) as error:
        run_tiny(plugins=[Metrics({"score": math.nan})], eval={**TINY_EVAL, "runs": 0})
    assert_blames(error, "dd_evaluate", "scorer", "'score' is nan")


# ----------------------------------------------------------------------------------------------
# Dataset factories
# ----------------------------------------------------------------------------------------------


def tiny(**changes) -> ImageDataset:
    generator = torch.Generator().manual_seed(0)
    labels = changes.pop("labels", torch.arange(3).repeat_interleave(4))
    train_images = changes.pop("train_images", torch.randn(12, 1, 8, 8, generator=generator))
    fields = {"name": "tiny", "class_names": ["a", "b", "c"], "train": TensorSplit(train_images, labels),
              "test": TensorSplit(torch.randn(12, 1, 8, 8, generator=generator), torch.arange(3).repeat_interleave(4)),
              "image_shape": (1, 8, 8), "mean": (0.0,), "std": (1.0,)}  # fmt: skip
    fields.update(changes)
    return ImageDataset(**fields)


class Factory:
    name = "tiny-data"

    def __init__(self, **changes):
        self.changes = changes

    @hookimpl
    def dd_register_datasets(self, register):
        register("tiny/bad", lambda options: tiny(**self.changes), description="an inconsistent dataset")


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"labels": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 7])}, "targets must be class ids in [0, 3)"),
    ({"labels": torch.tensor([0] * 6 + [1] * 6)}, "class 'c' has no training image"),
    ({"image_shape": (3, 8, 8)}, "mean and std need one value per channel (3)"),
    ({"image_shape": (1, 16, 16)}, "images are (1, 8, 8), but image_shape is (1, 16, 16)"),
    ({"std": (0.0,)}, "std finite and > 0"),
    ({"class_names": ["a", "b", "b"]}, "class_names must be distinct"),
    ({"test": TensorSplit(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long))}, "the test split is empty"),
    ({"train_images": torch.full((12, 1, 8, 8), math.nan)}, "NaN or infinite"),
])  # fmt: skip
def test_inconsistent_dataset_blames_the_factory_plugin(run_tiny, changes, fragment):
    with pytest.raises(PluginCallError) as error:
        run_tiny(plugins=[Factory(**changes)], dataset="tiny/bad")
    assert_blames(error, "dd_register_datasets", "tiny-data", 'dataset "tiny/bad" factory returned an inconsistent dataset', fragment)


def test_consistent_datasets_pass(tiny_dataset):
    assert dataset_problem(tiny()) is None
    assert dataset_problem(tiny_dataset) is None


def test_inconsistent_dataset_via_the_cli_is_one_line_exit_2(cli, tmp_path):
    module = write_plugin_file(
        tmp_path, "tiny_data",
        "import torch\n"
        "from ddcore import hookimpl\n"
        "from ddcore.data.base import ImageDataset, TensorSplit\n"
        "name = 'tiny-data'\n"
        "def make(options):\n"
        "    x = torch.zeros(4, 1, 8, 8); y = torch.tensor([0, 1, 0, 5])\n"
        "    return ImageDataset(name='t', class_names=['a', 'b'], train=TensorSplit(x, y), test=TensorSplit(x, y),\n"
        "                        image_shape=(1, 8, 8), mean=(0.0,), std=(1.0,))\n"
        "@hookimpl\n"
        "def dd_register_datasets(register):\n"
        "    register('tiny/bad', make)\n"
    )
    out = tmp_path / "run"
    code, stdout, stderr = cli("run", "--plugin", module, "--dataset", "tiny/bad", "--out", out, "--eval-runs", "0",
                               "--cache-dir", tmp_path / "cache")  # fmt: skip
    assert code == 2, stdout + stderr
    assert 'dd_register_datasets: plugin "tiny-data"' in stderr and "targets must be class ids in [0, 2)" in stderr
    assert "Traceback" not in stderr and not out.exists()  # refused before the run directory is written
