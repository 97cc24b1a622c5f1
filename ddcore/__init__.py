"""ddcore: a plugin-based toolkit for dataset distillation.

The public API for plugin authors and notebooks::

    from ddcore import hookimpl, run, Selection, DistilledSet, PluginError
"""

from ddcore.context import RunContext
from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.distilled import DistilledSet, Selection
from ddcore.errors import ConfigError, DDError, PluginCallError, PluginError, PluginLoadError
from ddcore.hookspecs import hookimpl, hookspec
from ddcore.runner import RunResult, run

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DDError",
    "DatasetOptions",
    "DistilledSet",
    "ImageDataset",
    "PluginCallError",
    "PluginError",
    "PluginLoadError",
    "RunContext",
    "RunResult",
    "Selection",
    "hookimpl",
    "hookspec",
    "run",
]
