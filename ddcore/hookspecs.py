"""The ddcore hook contract: every hook a plugin may implement, and how its answers are combined.

This module is the single source of truth for plugin authors. Each spec's docstring says when the
hook fires, what each argument holds (with tensor shapes), what to return, how the answers of several
plugins are combined, and what happens under several processes. ``CONTRIBUTING.md`` repeats each
signature; a test fails when the two disagree.

Implement a hook with :data:`ddcore.hookimpl`::

    from ddcore import hookimpl

    @hookimpl
    def dd_pixel_weights(ctx, images, labels, step):
        return None  # abstain

Core code never calls ``pm.hook`` directly: it goes through :class:`ddcore.hooks.Hooks`, which
validates answers, applies the combination rules below and names the plugin that broke them. It calls
each implementation on its own (to attribute answers), so hook wrappers (``wrapper=True``) are not
supported in 0.1 and are refused with an error naming the plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # heavy imports only for type checkers
    import click
    import torch

    from ddcore.context import RunContext
    from ddcore.data.base import ImageDataset
    from ddcore.distilled import DistilledSet, Selection

PROJECT_NAME = "ddcore"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --------------------------------------------------------------------------------------------
# Registration: called once while the run (or the `dd` command) is being set up.
# --------------------------------------------------------------------------------------------


@hookspec
def dd_register_datasets(register: Callable[..., None]) -> None:
    """Add datasets to the registry.

    When: once per run, before the configuration's ``dataset`` is looked up; also by ``dd datasets``.

    Args:
        register: ``register(name, factory, *, description="", presets="")``. ``factory(options)``
            receives a :class:`ddcore.data.DatasetOptions` (``root``, ``image_size``, ``workers``,
            ``cache_dir``) and returns an :class:`ddcore.data.ImageDataset`. Names are ``lower-case``
            and may be namespaced (``compdd/bird-hard``). ``presets`` names the preset family that
            ``tm.preset = "auto"`` uses for it (``"digits"``: the ``digits-ipc<k>`` presets).

    Returns: nothing; call ``register`` for each dataset.

    Combination: every plugin registers. Two plugins registering the same name is an error that
    names both.

    Processes: called on every process; must be cheap and free of I/O (the factory does the work).

    .. versionadded:: 0.1
    """


@hookspec
def dd_register_commands(cli: "click.Group") -> None:
    """Add subcommands to the ``dd`` command line.

    When: when ``dd <name> ...`` is invoked and ``<name>`` is the entry-point name of an installed
    plugin: only that plugin is imported and asked for its commands (``dd --help`` lists installed
    plugin names from metadata without importing them). Core commands cannot be replaced.

    Args:
        cli: the root :class:`click.Group`. Add a group named after the plugin
            (``@cli.group(name="compdd")``) and put subcommands under it.

    Returns: nothing.

    Combination: every plugin may add commands; a name already taken is an error naming the plugin.

    Processes: the command itself decides; most run on one process.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# Strategy: exactly one plugin answers; a built-in default (trylast) answers otherwise.
# --------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def dd_select(ctx: "RunContext", dataset: "ImageDataset", ipc: int) -> "Selection | None":
    """Choose the real images (or patches) the distilled set starts from.

    When: after the dataset is built, before initialisation. Called once per run.

    Args:
        ctx: the run context (``ctx.generator`` is seeded; ``ctx.device``; ``ctx.plugin_config(name)``).
        dataset: the training data; ``dataset.train`` yields ``(image [C,H,W] float32 normalised,
            label int)`` and ``dataset.train.targets`` lists every label without loading images.
        ipc: images per class wanted, ``1 <= ipc <= min images in a class``.

    Returns: a :class:`ddcore.distilled.Selection` with ``images [num_classes*ipc, C, H, W]``
    (float32, normalised like the dataset), ``labels [num_classes*ipc]`` (int64, class-major order:
    all of class 0, then class 1, ...) and ``indices`` into ``dataset.train`` when the images are
    whole training images (else ``None``); or ``None`` to abstain.

    Combination: stops at the first non-None result. The built-in ``random-real`` (seeded random
    images per class) is ``trylast``. If two requested plugins implement this hook, the run stops
    before any work with an error naming both; choose one with ``--select NAME`` (config ``select``).
    A plugin chosen that way must answer: ``None`` from it is an error.

    Processes: called on every process with the same seed; must give the same answer everywhere
    (use ``ctx.generator``, never global random state). A plugin that shards its scoring gathers
    the result itself (``ctx.accelerator.gather_object``).

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def dd_initialize(ctx: "RunContext", selection: "Selection") -> "DistilledSet | None":
    """Turn a selection into the initial distilled set (stitching, noise, resizing, soft labels).

    When: right after :func:`dd_select`, before distillation. Called once per run.

    Args:
        ctx: the run context.
        selection: what :func:`dd_select` returned; ``selection.images [M, C, H, W]``,
            ``selection.labels [M]``.

    Returns: a :class:`ddcore.distilled.DistilledSet` whose ``images`` are ``[N, C, H, W]`` float32
    normalised and whose ``labels`` are ``[N]`` int64 (hard) or ``[N, num_classes]`` float32 logits
    (soft); or ``None`` to abstain.

    Combination: stops at the first non-None result. The built-in ``as-selected`` (the selected
    images unchanged, hard labels) is ``trylast``. Two requested implementers stop the run before
    any work; choose with ``--initialize NAME`` (config ``initialize``). A plugin chosen that way
    must answer: ``None`` from it is an error.

    Processes: called on every process; must be deterministic given ``ctx.generator``.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# Weighting: inside every distillation step; answers multiply, so plugin order never matters.
# --------------------------------------------------------------------------------------------


@hookspec
def dd_pixel_weights(
    ctx: "RunContext", images: "torch.Tensor", labels: "torch.Tensor", step: int
) -> "torch.Tensor | None":
    """Weight the synthetic images' gradient pixel by pixel (e.g. EDF's Grad-CAM soft mask).

    When: in every distillation step, after the matching loss's backward and before the optimiser
    step of the built-in trajectory matcher (``distill = "tm"``). Not called by selection-only runs
    (``distill = "none"``).

    Args:
        ctx: the run context.
        images: the current synthetic images ``[N, C, H, W]`` float32 (detached).
        labels: their labels, ``[N]`` int64 or ``[N, num_classes]`` float32 logits (detached).
        step: the outer distillation iteration, from 0.

    Returns: a float tensor broadcastable to ``[N, 1, H, W]`` (``[N,1,H,W]``, ``[1,1,H,W]``,
    ``[N,1,1,1]``, ...), on ``images.device`` (not checked: a wrong device fails in the product);
    or ``None`` to abstain.

    Combination: the elementwise product of all non-None answers multiplies ``images.grad``
    (broadcast over channels). No answer means weight 1. Shapes are checked; a wrong shape is an
    error naming the plugin.

    Processes: called on every process with that process's images; weights must be the same on
    every process (they multiply gradients that are averaged across processes).

    .. versionadded:: 0.1
    """


@hookspec
def dd_supervision_weights(
    ctx: "RunContext", losses: "torch.Tensor", distances: "torch.Tensor", step: int
) -> "torch.Tensor | None":
    """Weight the elements of the matching supervision (e.g. EDF's common-pattern dropout).

    When: in every trajectory-matching step, after the unrolled student is compared with the
    expert, before the loss is reduced (``distill = "tm"``). Not called by selection-only runs.

    Args:
        ctx: the run context.
        losses: per-element matching losses ``[P]`` float32, ``(theta_N - target)^2`` over all
            ``P`` flattened parameters (detached).
        distances: per-element start distances ``[P]`` float32, ``(theta_0 - target)^2`` (detached).
        step: the outer distillation iteration, from 0.

    Returns: a float tensor of shape ``[P]`` (the shape of ``losses``), or ``None`` to abstain.

    Combination: the elementwise product ``w`` of all non-None answers gives the loss
    ``sum(w * losses) / sum(w * distances)``. No answer means ``w = 1``. Shapes are checked.

    Processes: called on every process for its own trajectory.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# Evaluation: after distillation; every plugin's metrics are collected.
# --------------------------------------------------------------------------------------------


@hookspec
def dd_evaluate(ctx: "RunContext", distilled: "DistilledSet") -> "dict[str, Any] | None":
    """Measure the distilled set.

    When: once per run after distillation (and by ``dd eval RUN_DIR``).

    Args:
        ctx: the run context; ``ctx.dataset`` is the run's dataset (its ``test`` split is the real
            held-out data).
        distilled: the final distilled set (``images [N, C, H, W]``, ``labels``, ``lr``).

    Returns: a dict of metric name to a number (int or float, not bool) or a list of numbers for
    per-repeat values, or ``None`` to abstain. Other value types are an error naming the plugin.

    Combination: all answers are collected; keys are namespaced ``"<plugin>/<metric>"``
    (``eval/acc_mean``); a clash is an error.

    Processes: called on every process. Shard repeats over ``ctx.accelerator`` processes and
    gather (``ctx.accelerator.gather_object``); return the same dict on every process. Only the main
    process writes artifacts.

    .. versionadded:: 0.1
    """
