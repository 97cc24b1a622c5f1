"""ddcore: a plugin-based toolkit for dataset distillation.

The public API for plugin authors and notebooks::

    from ddcore import hookimpl, run, Selection, DistilledSet, PluginError

``import ddcore`` is cheap: the names below are loaded on first use (PEP 562), so ``dd --help``, the
pytest plugin and a plugin's hook module that only needs ``hookimpl`` never import torch.
Submodules (``ddcore.teacher``, ``ddcore.atomic``, ...) are reachable as attributes too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    "ConfigError": "ddcore.errors",
    "DDError": "ddcore.errors",
    "PluginCallError": "ddcore.errors",
    "PluginError": "ddcore.errors",
    "PluginLoadError": "ddcore.errors",
    "Range": "ddcore.config",
    "StorageError": "ddcore.storage",
    "Seed": "ddcore.config",
    "hookimpl": "ddcore.hookspecs",
    "hookspec": "ddcore.hookspecs",
    "Distiller": "ddcore.distillers",
    "DistillSession": "ddcore.distillers",
    "RunContext": "ddcore.context",
    "DatasetOptions": "ddcore.data.base",
    "ImageDataset": "ddcore.data.base",
    "DistilledSet": "ddcore.distilled",
    "Selection": "ddcore.distilled",
    "RunResult": "ddcore.runner",
    "run": "ddcore.runner",
    "build_run_context": "ddcore.standalone",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; at run time the names come from __getattr__
    from ddcore.config import Range, Seed
    from ddcore.context import RunContext
    from ddcore.data.base import DatasetOptions, ImageDataset
    from ddcore.distilled import DistilledSet, Selection
    from ddcore.distillers import Distiller, DistillSession
    from ddcore.errors import ConfigError, DDError, PluginCallError, PluginError, PluginLoadError
    from ddcore.hookspecs import hookimpl, hookspec
    from ddcore.runner import RunResult, run
    from ddcore.standalone import build_run_context
    from ddcore.storage import StorageError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip __getattr__
        return value
    if not name.startswith("__"):
        try:  # a submodule not imported yet: ``ddcore.teacher`` after a bare ``import ddcore``
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
