"""Tests for dd-herding: the algorithm on hand-built data with known answers, and the hook itself."""

from __future__ import annotations

import doctest
from types import SimpleNamespace

import pytest
import torch

from dd_herding import herding
from dd_herding.herding import herding_order, image_features
from dd_herding.plugin import PLUGIN_NAME, HerdingConfig, config_class, dd_select
from ddcore import ImageDataset, PluginError, Selection
from ddcore.data.base import TensorSplit

IMAGE_SHAPE = (1, 2, 2)


def constant_images(values: list[float]) -> torch.Tensor:
    """One constant ``[1, 2, 2]`` image per value. Shape: ``[len(values), 1, 2, 2]``."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, *IMAGE_SHAPE).clone()


def tiny_dataset() -> ImageDataset:
    """Two classes, interleaved in the training split so class positions differ from split positions.

    Split positions: class 0 at 0, 2, 4, 6 (values 0, 1, 2, 10); class 1 at 1, 3, 5, 7 (values
    5, 5, 4, 6: mean 5, two exact ties).
    """
    values = [0.0, 5.0, 1.0, 5.0, 2.0, 4.0, 10.0, 6.0]
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    split = TensorSplit(constant_images(values), labels)
    return ImageDataset(
        name="tiny",
        class_names=["low", "mid"],
        train=split,
        test=split,
        image_shape=IMAGE_SHAPE,
        mean=(0.0,),
        std=(1.0,),
    )


def fake_ctx(space: str = "pixels") -> SimpleNamespace:
    """What ``dd_select`` uses of a RunContext; ``plugin_config`` only answers for this plugin."""

    def plugin_config(name: str) -> HerdingConfig:
        assert name == PLUGIN_NAME
        return HerdingConfig(space=space)

    return SimpleNamespace(
        plugin_config=plugin_config,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )


# ----------------------------------------------------------------------------------------------
# The algorithm
# ----------------------------------------------------------------------------------------------


def test_doctests() -> None:
    result = doctest.testmod(herding)
    assert result.attempted >= 2 and result.failed == 0


def test_herding_known_answer_differs_from_nearest_to_mean() -> None:
    # Mean 3.25. Herding: 2 (closest), then 1 (running mean 1.5 is the closest reachable), then 10
    # (running mean 4.33 beats 1.0), then 0. Nearest-to-mean would take 2, 1, 0.
    features = image_features(constant_images([0.0, 1.0, 2.0, 10.0]))
    assert herding_order(features, 4).tolist() == [2, 1, 3, 0]
    assert herding_order(features, 1).tolist() == [2]


def test_herding_ties_go_to_lowest_position() -> None:
    features = image_features(constant_images([5.0, 5.0, 4.0, 6.0]))
    # Mean 5: the two 5s tie for the first pick (position 0 wins), the other 5 is next; for the
    # third pick the target is 3 * 5 - 10 = 5 again, so 4 and 6 tie and position 2 wins.
    assert herding_order(features, 4).tolist() == [0, 1, 2, 3]


def test_herding_is_a_permutation_and_deterministic() -> None:
    features = torch.randn(50, 12, generator=torch.Generator().manual_seed(1))
    first = herding_order(features, 50)
    assert sorted(first.tolist()) == list(range(50))
    assert torch.equal(first, herding_order(features.clone(), 50))
    assert first.dtype == torch.int64


def test_herding_running_mean_beats_random_subsets() -> None:
    features = torch.randn(200, 8, generator=torch.Generator().manual_seed(2))
    mean = features.mean(0)
    picked = features[herding_order(features, 10)]
    herding_error = (picked.mean(0) - mean).norm()
    generator = torch.Generator().manual_seed(3)
    random_errors = [
        (features[torch.randperm(200, generator=generator)[:10]].mean(0) - mean).norm() for _ in range(20)
    ]
    assert herding_error < min(random_errors)


def test_herding_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cannot pick 5 of 4"):
        herding_order(torch.zeros(4, 3), 5)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        herding_order(torch.zeros(4), 1)
    with pytest.raises(ValueError, match="unknown feature space"):
        image_features(torch.zeros(1, 1, 2, 2), "logits")  # type: ignore[arg-type]


def test_image_features_shapes() -> None:
    images = torch.zeros(3, 3, 8, 6)
    assert image_features(images, "pixels").shape == (3, 3 * 8 * 6)
    assert image_features(images, "pixels-pooled").shape == (3, 3 * 4 * 3)


# ----------------------------------------------------------------------------------------------
# The hook
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["pixels", "pixels-pooled"])
def test_dd_select_returns_class_major_selection(space: str) -> None:
    dataset = tiny_dataset()
    selection = dd_select(ctx=fake_ctx(space), dataset=dataset, ipc=3)

    assert isinstance(selection, Selection)
    assert selection.images.shape == (6, *IMAGE_SHAPE) and selection.images.dtype == torch.float32
    assert selection.labels.dtype == torch.int64 and selection.labels.tolist() == [0, 0, 0, 1, 1, 1]
    # Class 0 picks values 2, 1, 10 (split positions 4, 2, 6); class 1 picks 5, 5, 4 (1, 3, 5).
    assert selection.indices is not None and selection.indices.dtype == torch.int64
    assert selection.indices.tolist() == [4, 2, 6, 1, 3, 5]
    assert torch.equal(selection.images, dataset.train.images[selection.indices])
    assert selection.meta == {"method": "herding", "space": space}


def test_dd_select_is_deterministic() -> None:
    dataset = tiny_dataset()
    first = dd_select(ctx=fake_ctx(), dataset=dataset, ipc=2)
    second = dd_select(ctx=fake_ctx(), dataset=dataset, ipc=2)
    assert torch.equal(first.indices, second.indices)
    assert torch.equal(first.images, second.images)


def test_dd_select_ipc_larger_than_a_class_is_a_plugin_error() -> None:
    with pytest.raises(PluginError, match="fewer than ipc=5"):
        dd_select(ctx=fake_ctx(), dataset=tiny_dataset(), ipc=5)


def test_registers_against_the_ddcore_hookspecs() -> None:
    import pluggy

    from dd_herding import plugin
    from ddcore import hookspecs

    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    pm.register(plugin, name=PLUGIN_NAME)  # validates the hook name and argument names
    selection = pm.hook.dd_select(ctx=fake_ctx(), dataset=tiny_dataset(), ipc=1)
    assert selection.indices.tolist() == [4, 1]


def test_config_class_is_validated_by_ddcore() -> None:
    from ddcore.config import from_mapping
    from ddcore.errors import ConfigError

    assert config_class is HerdingConfig
    assert from_mapping(config_class, {}).space == "pixels"
    assert from_mapping(config_class, {"space": "pixels-pooled"}).space == "pixels-pooled"
    with pytest.raises(ConfigError, match="space"):
        from_mapping(config_class, {"space": "logits"}, prefix="plugin.herding.")
