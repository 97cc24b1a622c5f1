"""A run context outside a run: for plugin commands (``dd NAME ...``), notebooks and tests.

A plugin command that trains a teacher, scores a dataset or fills a cache needs what a hook gets: the
validated config, the plugins and their options, the dataset, the accelerator, the cache directory and
the seeds. :func:`build_run_context` sets all of that up exactly as ``dd run`` does, builds the
dataset, and stops there::

    from ddcore import build_run_context

    ctx = build_run_context({"dataset": "digits", "cache_dir": "/tmp/cache"}, ["my-plugin"])
    ctx.dataset, ctx.model_spec, ctx.device, ctx.plugin_config("my-plugin")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from ddcore.config import RunConfig
    from ddcore.context import RunContext


def build_run_context(
    config: "Mapping[str, Any] | RunConfig | None" = None,
    plugins: Sequence[str | object] = (),
    *,
    quiet: bool = True,
) -> "RunContext":
    """The :class:`~ddcore.context.RunContext` of a run of ``config`` that has built its dataset and done nothing else.

    Args:
        config: a mapping shaped like the TOML config, or a :class:`~ddcore.config.RunConfig`. Everything
            is validated as for ``dd run`` (unknown keys, plugin options, the distiller's table).
            ``eval.runs`` and ``ipc`` only matter as far as presets and checks read them.
        plugins: extra plugins to activate after ``config["plugins"]`` (names, ``.py`` paths or objects).
        quiet: no progress bars or info lines.

    ``ctx.dataset``, ``ctx.model_spec`` (the resolved ``[eval]`` network), ``ctx.accelerator``,
    ``ctx.cache_dir`` and ``ctx.records`` are set; ``ctx.out_dir`` is ``None`` and nothing is written.
    """
    from ddcore.runner import Pipeline

    pipeline = Pipeline(config, plugins, quiet=quiet, write=False)
    pipeline.build_dataset()
    return pipeline.ctx
