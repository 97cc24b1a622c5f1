"""pytest fixtures for plugin authors (a pytest plugin, entry point ``pytest11: ddcore``).

In a plugin's tests::

    def test_my_selection(run_tiny):
        result = run_tiny(plugins=[MyPlugin()], ipc=1)
        assert result.distilled.meta["selected_by"] == "my-plugin"

Fixtures:
    dd_pm: a fresh plugin manager with the built-ins (``dd_pm(["herding"])`` for more).
    tiny_dataset: a 3-class, 4-images-per-class in-memory :class:`~ddcore.ImageDataset` of 8x8 images.
    run_tiny: ``run_tiny(plugins=[...], **config)`` runs the pipeline on ``digits`` in memory, with a
        tiny evaluator (1 network, 2 epochs, width 8) unless the config says otherwise.
    dd_context: ``dd_context(plugins=[...], **config)`` -> the ``RunContext`` of such a run after its
        dataset is built (:func:`ddcore.build_run_context`), for calling hook implementations (or
        ``ddcore.teacher``) directly.

Imports of torch and ddcore's heavy modules happen inside the fixtures, so loading this plugin (pytest
loads it in every session, through its entry point) imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytest


@pytest.fixture
def dd_pm() -> Callable[..., Any]:
    from ddcore.plugins import get_plugin_manager

    def make(plugins: Sequence[str | object] = ()):
        return get_plugin_manager(list(plugins))

    return make


@pytest.fixture
def tiny_dataset():
    import torch

    from ddcore.data.base import ImageDataset, TensorSplit

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(4)
    train = torch.randn(12, 1, 8, 8, generator=generator) + labels.view(-1, 1, 1, 1)
    test = torch.randn(12, 1, 8, 8, generator=generator) + labels.view(-1, 1, 1, 1)
    return ImageDataset(
        name="tiny",
        class_names=["a", "b", "c"],
        train=TensorSplit(train, labels),
        test=TensorSplit(test, labels),
        image_shape=(1, 8, 8),
        mean=(0.0,),
        std=(1.0,),
    )


TINY_EVAL = {"runs": 1, "epochs": 2, "width": 8, "batch_size": 64}


@pytest.fixture
def run_tiny(tmp_path) -> Callable[..., Any]:
    from ddcore.config import deep_merge
    from ddcore.runner import run

    def run_it(plugins: Sequence[str | object] = (), write: bool = False, **config: Any):
        base = {"dataset": "digits", "ipc": 1, "workers": 0, "eval": dict(TINY_EVAL), "cache_dir": str(tmp_path / "cache")}
        if write:
            base["out"] = str(tmp_path / "run")
        return run(deep_merge(base, config), plugins, write=write)

    return run_it


@pytest.fixture
def dd_context(tmp_path) -> Callable[..., Any]:
    """``dd_context(plugins=(), **config)`` -> the :class:`~ddcore.context.RunContext` of a run that has built
    its dataset and done nothing else (``ctx.dataset``, ``ctx.model_spec``, ``ctx.accelerator`` set);
    for calling a hook implementation directly. Defaults as ``run_tiny``; the cache is in ``tmp_path``."""
    from ddcore.config import deep_merge
    from ddcore.standalone import build_run_context

    def make(plugins: Sequence[str | object] = (), **config: Any):
        base = {"dataset": "digits", "ipc": 1, "workers": 0, "eval": dict(TINY_EVAL), "cache_dir": str(tmp_path / "cache")}
        return build_run_context(deep_merge(base, config), plugins)

    return make
