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

Helpers (import them: ``from ddcore.testing import KnownAnswerDatasets``):
    known_answer_dataset / KnownAnswerDatasets / KNOWN_ANSWERS: the ``ka/<kind>`` datasets, whose right
        test accuracy is known by construction (see :func:`known_answer_dataset`).
    Interrupt / InterruptAt: a plugin that stops a run inside a given iteration, as a kill would (for
        ``--resume`` tests).

Imports of torch and ddcore's heavy modules happen inside the fixtures, so loading this plugin (pytest
loads it in every session, through its entry point) imports no torch.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytest

from ddcore.hookspecs import hookimpl  # pluggy only: no torch


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


# ----------------------------------------------------------------------------------------------
# Known-answer datasets: the right test accuracy is known by construction
# ----------------------------------------------------------------------------------------------

#: Classes, image side and band height of the known-answer datasets (the defaults of
#: :func:`known_answer_dataset`): class ``k`` is a bright band over rows ``4k .. 4k+3`` of a 1 x 16 x 16 image.
KNOWN_ANSWER_CLASSES, KNOWN_ANSWER_SIDE, KNOWN_ANSWER_BAND = 4, 16, 4
#: Training and test images per class (the defaults of :func:`known_answer_dataset`).
KNOWN_ANSWER_TRAIN_PER_CLASS, KNOWN_ANSWER_TEST_PER_CLASS = 16, 8
#: The kinds of ``ka/<kind>`` dataset, in the order :class:`KnownAnswerDatasets` registers them.
KNOWN_ANSWER_KINDS = ("clean", "shifted", "chance")
#: The test accuracy (percent) of a network that learned the rule, per kind, with the default 4 classes
#: (``chance`` is ``100 / classes`` in general).
KNOWN_ANSWERS = {"clean": 100.0, "shifted": 0.0, "chance": 100.0 / KNOWN_ANSWER_CLASSES}


def known_answer_images(
    per_class: int,
    seed: int,
    *,
    classes: int = KNOWN_ANSWER_CLASSES,
    side: int = KNOWN_ANSWER_SIDE,
    band: int = KNOWN_ANSWER_BAND,
    amplitude: float = 3.0,
    noise: float = 0.5,
):
    """``(images [classes * per_class, 1, side, side], labels [classes * per_class])``, class-major:
    Gaussian noise (std ``noise``) plus ``amplitude`` over class ``k``'s rows ``band*k .. band*(k+1)-1``."""
    import torch

    if classes * band > side:
        raise ValueError(f"{classes} bands of {band} rows do not fit in {side} rows")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = torch.randn(len(labels), 1, side, side, generator=generator) * noise
    for i, k in enumerate(labels.tolist()):
        images[i, :, band * k : band * (k + 1), :] += amplitude
    return images, labels


def known_answer_dataset(
    kind: str,
    *,
    classes: int = KNOWN_ANSWER_CLASSES,
    side: int = KNOWN_ANSWER_SIDE,
    band: int = KNOWN_ANSWER_BAND,
    train_per_class: int = KNOWN_ANSWER_TRAIN_PER_CLASS,
    test_per_class: int = KNOWN_ANSWER_TEST_PER_CLASS,
    train_seed: int = 1,
    test_seed: int = 2,
    extra: dict[str, Any] | None = None,
):
    """The in-memory :class:`~ddcore.ImageDataset` ``ka/<kind>``, whose right test accuracy is known.

    Class ``k`` is a bright horizontal band over rows ``band*k .. band*(k+1)-1`` (:func:`known_answer_images`).
    A horizontal band survives every augmentation the evaluators use (shifts of a few pixels, horizontal
    flips, rotations of 15 degrees, scaling, cutout, CutMix, colour), so one image per class teaches the
    rule and a network that learned it classifies every clean test image right. The kinds share one
    training split (``train_seed``) and one set of test images (``test_seed``); only the test split differs:

    - ``clean``: the test labels follow the rule -> 100 %.
    - ``shifted``: every test label is the next class, ``(k + 1) % classes`` -> exactly 0 % on the test
      split (and 100 % on the training split: evaluating on the wrong split shows).
    - ``chance``: every test image appears ``classes`` times, once with each label -> ANY classifier
      scores exactly ``100 / classes`` % (25 % with 4 classes).

    :data:`KNOWN_ANSWERS` holds these numbers for the defaults. ``extra`` is the dataset's ``extra``
    (default ``{"default_augment": "none"}``: no augmentation unless the config asks for one).
    """
    import torch

    from ddcore.data.base import ImageDataset, TensorSplit

    if kind not in KNOWN_ANSWER_KINDS:
        raise ValueError(f"known-answer kind {kind!r}: expected one of {', '.join(KNOWN_ANSWER_KINDS)}")
    shape = {"classes": classes, "side": side, "band": band}
    train_images, train_labels = known_answer_images(train_per_class, train_seed, **shape)
    test_images, test_labels = known_answer_images(test_per_class, test_seed, **shape)
    if kind == "shifted":
        test_labels = (test_labels + 1) % classes
    elif kind == "chance":
        test_images = test_images.repeat_interleave(classes, dim=0)
        test_labels = torch.arange(classes).repeat(len(test_labels))
    return ImageDataset(
        name=f"ka/{kind}", class_names=[f"band{k}" for k in range(classes)],
        train=TensorSplit(train_images, train_labels), test=TensorSplit(test_images, test_labels),
        image_shape=(1, side, side), mean=(0.0,), std=(1.0,),
        extra=dict(extra) if extra is not None else {"default_augment": "none"},
    )  # fmt: skip


def register_known_answer_datasets(register: Callable[..., None], **options: Any) -> None:
    """A ``dd_register_datasets`` body: ``ka/clean``, ``ka/shifted``, ``ka/chance``; ``options`` go to
    :func:`known_answer_dataset`. For a local plugin file (``dd run --plugin FILE``)::

        from ddcore import hookimpl
        from ddcore.testing import register_known_answer_datasets

        @hookimpl
        def dd_register_datasets(register):
            register_known_answer_datasets(register)
    """
    for kind in KNOWN_ANSWER_KINDS:
        register(
            f"ka/{kind}", lambda _options, kind=kind: known_answer_dataset(kind, **options),
            description=f"known answers: {kind}",
        )  # fmt: skip


class KnownAnswerDatasets:
    """A plugin registering the ``ka/*`` datasets of :func:`known_answer_dataset` (``options`` go to it)::

        result = run_tiny(plugins=[KnownAnswerDatasets()], dataset="ka/shifted", ...)
        assert result.metrics["eval/acc_runs"] == [KNOWN_ANSWERS["shifted"]]
    """

    name = "known-answers"

    def __init__(self, **options: Any):
        self.options = options

    @hookimpl
    def dd_register_datasets(self, register):
        register_known_answer_datasets(register, **self.options)


# ----------------------------------------------------------------------------------------------
# Cutting a run short, as a kill would (for --resume tests)
# ----------------------------------------------------------------------------------------------


class Interrupt(Exception):
    """What :class:`InterruptAt` raises; the run reports it as a :class:`~ddcore.errors.PluginCrash`
    whose message holds ``killed at <iteration>``."""


class InterruptAt:
    """A plugin that stops a run inside iteration ``at`` (as a kill would), touching nothing else.

    It raises :class:`Interrupt` from ``dd_pixel_weights`` (which every matching distiller calls each
    iteration) when ``step == at``: the checkpoints written before that iteration are all the run leaves::

        with pytest.raises(PluginCrash, match="killed at 3"):
            ddcore.run(config, [InterruptAt(3)])
        resumed = resume_run(out_dir)
    """

    name = "crasher"

    def __init__(self, at: int):
        self.at = at

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        if step == self.at:
            raise Interrupt(f"killed at {step}")
        return None
