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
validates every answer where it is produced (types, shapes and values: the ranges each spec
states), applies the combination rules below and names the hook and the plugin that broke them
(:class:`ddcore.PluginCallError`). It calls each implementation on its own (to attribute answers),
so hook wrappers (``wrapper=True``) are not supported in 0.1 and are refused with an error naming
the plugin.
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

    Checked: the dataset a factory returns must be consistent, or the run stops before its directory
    is written with a ``PluginCallError`` naming the dataset and this plugin: ``class_names`` distinct
    non-empty strings; ``image_shape`` ``(C, H, W)`` positive ints; ``mean`` and ``std`` one finite
    value per channel, ``std > 0``; ``train`` and ``test`` (and ``val`` if set) non-empty, one target
    per item, targets ints in ``[0, num_classes)``; every class present in ``train``; the first
    image of each split a finite tensor of ``image_shape``.

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


@hookspec
def dd_register_distillers(register: Callable[..., None]) -> None:
    """Add distillers: the algorithms ``distill = "NAME"`` (``--distill NAME``) runs between initialisation and
    evaluation. The built-in trajectory matcher registers ``tm`` through this hook like any plugin.

    When: once per run, after the plugins are loaded and before the config's ``distill`` is resolved;
    also by ``dd distillers``.

    Args:
        register: ``register(name, factory, *, config_class=None, calls=(), description="",
            configure=None)``. ``factory(ctx, options)`` returns a :class:`ddcore.Distiller` (a subclass
            is the factory itself). ``config_class`` is a dataclass validated from the run config's
            top-level ``[NAME]`` table (``--set NAME.key=value``); its instance is ``options``.
            ``calls`` names the weighting hooks the distiller calls in its steps
            (``"dd_pixel_weights"``, ``"dd_supervision_weights"``): a plugin implementing only hooks the
            chosen distiller never calls is refused before any work. ``configure(table, family, ipc)``
            may fill defaults (presets) into the raw table before validation (``family`` is the
            dataset's preset family or its name).

    Returns: nothing; call ``register`` for each distiller.

    Combination: every plugin registers. Two plugins registering the same name is an error naming
    both; ``none`` (selection only) is the core's and cannot be taken.

    Processes: called on every process; must be cheap and free of I/O (the distiller does the work).

    .. versionadded:: 0.2
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

    Checked (a ``PluginCallError`` naming this plugin, never the later stages): at least one image;
    images float, ``[M, *dataset.image_shape]``, every value finite; labels an integer tensor
    ``[M]`` with every value in ``[0, dataset.num_classes)``; ``indices``, when given, ``[M]``
    integers in ``[0, len(dataset.train))`` whose training labels equal ``labels``.

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

    Checked (a ``PluginCallError`` naming this plugin): at least one image, every image value
    finite; hard labels in ``[0, num_classes)``, soft labels finite with ``num_classes`` columns;
    ``mean``/``std`` one value per channel; ``lr`` ``None`` or a finite number ``> 0``;
    ``class_names`` those of ``ctx.dataset``.

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
    step of every distiller that says it calls it (the built-in trajectory matcher ``tm``; ``dd
    distillers`` lists them). Not called by selection-only runs (``distill = "none"``); a plugin whose
    weighting hooks the chosen distiller never calls is refused before any work.

    Args:
        ctx: the run context.
        images: the current synthetic images ``[N, C, H, W]`` float32 (detached).
        labels: their labels, ``[N]`` int64 or ``[N, num_classes]`` float32 logits (detached).
        step: the outer distillation iteration, from 0.

    Returns: a float tensor broadcastable to ``[N, 1, H, W]`` (``[N,1,H,W]``, ``[1,1,H,W]``,
    ``[N,1,1,1]``, ...), on ``images.device`` (not checked: a wrong device fails in the product);
    or ``None`` to abstain. Every value finite and ``>= 0`` (0 masks a pixel out; values above 1
    amplify it).

    Combination: the elementwise product of all non-None answers multiplies ``images.grad``
    (broadcast over channels). No answer means weight 1. Shapes and values are checked on every
    answer: a wrong shape, or a NaN, infinite or negative weight, is a ``PluginCallError`` naming the
    plugin (never blamed on the distiller's learning rate).

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
    expert, before the loss is reduced (``distill = "tm"``, and any distiller that says it calls it).
    Not called by selection-only runs.

    Args:
        ctx: the run context.
        losses: per-element matching losses ``[P]`` float32, ``(theta_N - target)^2`` over all
            ``P`` flattened parameters (detached).
        distances: per-element start distances ``[P]`` float32, ``(theta_0 - target)^2`` (detached).
        step: the outer distillation iteration, from 0.

    Returns: a float tensor of shape ``[P]`` (the shape of ``losses``), or ``None`` to abstain.
    Every value finite and ``>= 0``. (All zeros are not refused here, but leave a ``0 / 0`` loss, which
    the distiller's divergence check stops.)

    Combination: the elementwise product ``w`` of all non-None answers gives the loss
    ``sum(w * losses) / sum(w * distances)``. No answer means ``w = 1``. Shapes and values are
    checked on every answer: a wrong shape, or a NaN, infinite or negative weight, is a
    ``PluginCallError`` naming the plugin.

    Processes: called on every process for its own trajectory.

    .. versionadded:: 0.1
    """


# --------------------------------------------------------------------------------------------
# Plugin state: saved inside the distiller's checkpoints, restored on resume.
# --------------------------------------------------------------------------------------------


@hookspec
def dd_state_dict(ctx: "RunContext") -> "dict[str, Any] | None":
    """The plugin's state that a resumed run needs to continue exactly (EDF: its current maps and counters).

    When: every time the distiller saves a checkpoint (``DistillSession.save_checkpoint``).

    Args:
        ctx: the run context.

    Returns: a dict that ``torch.load(..., weights_only=True)`` can read back (tensors, numbers,
    strings, lists, dicts), or ``None`` to abstain (nothing to save yet).

    Combination: collected; each answer is stored under the plugin's name in the checkpoint.

    Processes: called on every process; the main process's answer is saved, so it must describe
    state that is the same on every process (or gather it).

    .. versionadded:: 0.2
    """


@hookspec
def dd_load_state_dict(ctx: "RunContext", state: "dict[str, Any]") -> None:
    """Restore the state this plugin returned from :func:`dd_state_dict`.

    When: on ``--resume``, once, when the newest readable checkpoint is loaded and before the
    distiller continues; only for plugins whose state is in that checkpoint.

    Args:
        ctx: the run context (``ctx.dataset`` is built; the distiller's own state is not yet restored).
        state: exactly what the plugin's ``dd_state_dict`` returned (tensors on the CPU).

    Returns: nothing.

    Combination: each plugin gets its own state. A checkpoint holding the state of a plugin that is
    not active (or does not implement this hook) stops the resume with an error naming the plugin.

    Processes: called on every process with the same state.

    .. versionadded:: 0.2
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

    Returns: a dict of metric name to a finite number (int or float, not bool) or a list of finite
    numbers for per-repeat values, or ``None`` to abstain. Other value types, NaN and infinite
    values are a ``PluginCallError`` naming the plugin and the metric (no result is printed).

    Combination: all answers are collected; keys are namespaced ``"<plugin>/<metric>"``
    (``eval/acc_mean``); a clash is an error.

    Processes: called on every process. Shard repeats over ``ctx.accelerator`` processes and
    gather (``ctx.accelerator.gather_object``); return the same dict on every process. Only the main
    process writes artifacts.

    .. versionadded:: 0.1
    """
