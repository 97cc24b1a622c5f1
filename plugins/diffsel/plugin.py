"""The ``diffsel`` plugin's hooks: diffusion-driven patch selection (loaded as ``--plugin diffsel``).

- ``dd_select``: Stage I (diffusion or observer scores, cached pool) and Stage II (clustering and
  ranking) -> the winners' patches;
- ``dd_initialize``: stitches them ``factor x factor`` into ``ipc`` images per class, hard or teacher
  labels (abstains for selections it did not make);
- ``dd_evaluate``: the knowledge-distillation evaluator when ``[plugin.diffsel.kd] runs > 0``;
- ``dd_register_commands``: ``dd diffsel train-prior`` and ``dd diffsel show-pool``.

The algorithm lives in plain modules (``windows``, ``priors``, ``ranking``, ``assemble``, ``kd``);
options are :class:`~ddcore_diffsel.config.DiffselConfig`. See ``docs/diffsel.md``.
"""

from __future__ import annotations

from ddcore import hookimpl
from ddcore_diffsel.config import DiffselConfig

PLUGIN_NAME = "diffsel"
#: The name ddcore registers this module under when it is passed as an object.
name = PLUGIN_NAME
#: ddcore validates ``[plugin.diffsel]`` into this class; hooks read it with ``ctx.plugin_config``.
config_class = DiffselConfig
#: Patches are cut, resized, stitched and scored as pixels, which ZCA's whole-image whitening does not survive:
#: ddcore refuses ``zca = true`` with this plugin before any work (one line, exit 2).
run_requirements = {"zca": False}


@hookimpl
def dd_select(ctx, dataset, ipc):
    """Per class, ``ipc * factor^2`` real patches chosen by Stage I and Stage II (class-major)."""
    from ddcore_diffsel.selection import build_selection

    return build_selection(ctx, dataset, ipc, ctx.plugin_config(PLUGIN_NAME))


@hookimpl
def dd_initialize(ctx, selection):
    """This plugin's patches stitched into images; ``None`` (abstain) for another plugin's selection."""
    from ddcore_diffsel.selection import initial_set

    return initial_set(ctx, selection, ctx.plugin_config(PLUGIN_NAME))


@hookimpl
def dd_evaluate(ctx, distilled):
    """``kd_acc_*``: students trained by knowledge distillation from the teacher (off unless kd.runs > 0)."""
    from ddcore_diffsel.evaluate import kd_evaluate

    return kd_evaluate(ctx, distilled, ctx.plugin_config(PLUGIN_NAME))


@hookimpl
def dd_register_commands(cli):
    from ddcore_diffsel.commands import diffsel_group

    cli.add_command(diffsel_group)
