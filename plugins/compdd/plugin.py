"""The ``compdd`` plugin: the Comp-DD benchmark's datasets, its evaluation protocol and ``dd compdd`` commands.

- ``dd_register_datasets``: ``compdd/<category>-<easy|hard>`` (16 ImageNet subsets, over ``--data-root``)
  the offline miniature ``compdd/mini-easy`` / ``compdd/mini-hard`` and the proxy pair
  ``compdd/proxy-easy`` / ``compdd/proxy-hard`` (:mod:`ddcore_compdd.proxy`).
- ``dd_evaluate``: the benchmark's protocol (:mod:`ddcore_compdd.protocol`), metrics ``compdd/acc_*``.
- ``dd_register_commands``: ``dd compdd complexity | build | report | subsets``.

Options, from the run's ``[plugin.compdd]`` table::

    [plugin.compdd]
    evaluate = "auto"   # "auto": on Comp-DD datasets only; "on": on any dataset; "off"
    runs = 3            # networks trained by the protocol
    epochs = 0          # 0: 1000 on the ImageNet subsets, 300 on the miniature
    width = 0           # 0: 128 on the ImageNet subsets, 32 on the miniature
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Annotated, Callable, Literal

from ddcore import hookimpl
from ddcore.config import Range
from ddcore_compdd.subsets import SUBSETS

PLUGIN_NAME = "compdd"
name = PLUGIN_NAME


@dataclass
class CompddConfig:
    """``[plugin.compdd]`` options (see the module docstring)."""

    evaluate: Literal["auto", "on", "off"] = "auto"
    runs: Annotated[int, Range(ge=1)] = 3  # ranges: checked by ddcore before any work (ddcore.config.Range)
    epochs: Annotated[int, Range(ge=0, note="0: the protocol's")] = 0
    width: Annotated[int, Range(ge=0, note="0: the protocol's")] = 0


config_class = CompddConfig


def _subset(subset: str, options):
    from ddcore_compdd.imagenet import load_subset

    return load_subset(subset, options)


def _mini(level: str, options):
    from ddcore_compdd.minidata import load_mini

    return load_mini(level, options)  # type: ignore[arg-type]


def _proxy(level: str, options):
    from ddcore_compdd.proxydata import load_proxy

    return load_proxy(level, options)  # type: ignore[arg-type]


@hookimpl
def dd_register_datasets(register: Callable[..., None]) -> None:
    for subset, indices in SUBSETS.items():
        note = " (published with banjo twice: loaded as its 9 distinct classes, with a warning)" if len(set(indices)) < len(indices) else ""
        register(f"compdd/{subset}", partial(_subset, subset), description=f"Comp-DD {subset}: ImageNet subset under --data-root, 128 px{note}")
    register(
        "compdd/mini-easy", partial(_mini, "easy"), presets="digits",  # CPU-sized matching and evaluator presets
        description="Comp-DD miniature, easy: digits filling the frame, 32 px grey (offline)",
    )
    register(
        "compdd/mini-hard", partial(_mini, "hard"), presets="digits",  # CPU-sized matching and evaluator presets
        description="Comp-DD miniature, hard: small digits on clutter, 32 px grey (offline)",
    )
    register(  # the complex-scenario proxy pair (issue 17, ddcore_compdd.proxy)
        "compdd/proxy-easy", partial(_proxy, "easy"), presets="digits",
        description="Comp-DD proxy, easy: a digit filling the frame over a dim crop of a real photo, 32 px grey (offline)",
    )
    register(
        "compdd/proxy-hard", partial(_proxy, "hard"), presets="digits",
        description="Comp-DD proxy, hard: a half-size, off-centre digit on a busy, close-up crop of a real photo, 32 px grey (offline)",
    )


@hookimpl
def dd_evaluate(ctx, distilled):
    from ddcore_compdd.protocol import evaluate_protocol, is_compdd, protocol_settings

    options: CompddConfig = ctx.plugin_config(PLUGIN_NAME)
    if options.evaluate == "off" or (options.evaluate == "auto" and not is_compdd(ctx.dataset)):
        return None
    settings = protocol_settings(ctx, ctx.dataset, options.runs, options.epochs, options.width)
    ctx.record("compdd/protocol", settings.to_dict())
    return evaluate_protocol(ctx, distilled, settings)


@hookimpl
def dd_register_commands(cli) -> None:
    from ddcore_compdd.commands import compdd_group

    cli.add_command(compdd_group)
