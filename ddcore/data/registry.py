"""The dataset registry, filled by the ``dd_register_datasets`` hook."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Callable

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.errors import ConfigError, PluginError, attributed_to

DatasetFactory = Callable[[DatasetOptions], ImageDataset]


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    factory: DatasetFactory
    plugin: str
    description: str = ""
    #: The preset family ``tm.preset = "auto"`` uses (``"digits"`` -> ``digits-ipc<k>``); "" = the name.
    presets: str = ""


class DatasetRegistry:
    """Dataset names -> factories, with the plugin that registered each."""

    def __init__(self) -> None:
        self.entries: dict[str, DatasetEntry] = {}

    def registrar(self, plugin: str) -> Callable[..., None]:
        """The ``register(name, factory, *, description="", presets="")`` callback handed to ``plugin``."""

        def register(name: str, factory: DatasetFactory, *, description: str = "", presets: str = "") -> None:
            if not isinstance(name, str) or not name or name != name.strip():
                raise PluginError(f"dataset names must be non-empty strings, got {name!r}", plugin=plugin)
            if name in self.entries:
                other = self.entries[name].plugin
                raise PluginError(
                    f'dataset "{name}" is registered by both "{other}" and "{plugin}"; deactivate one of them',
                    plugin=plugin,
                )
            self.entries[name] = DatasetEntry(name, factory, plugin, description, presets)

        return register

    def names(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, name: str) -> DatasetEntry:
        if name not in self.entries:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            family = name.split("/", 1)[0]
            if "/" in name and family not in {entry.plugin for entry in self.entries.values()}:
                from ddcore.plugins import installed_entry_points

                if family in installed_entry_points():  # benchmark datasets are named <plugin>/<name>
                    hint = f" It looks like a dataset of the installed plugin {family}: add --plugin {family}."
            raise ConfigError(
                f'unknown dataset "{name}" (option --dataset).{hint} Available: {", ".join(self.names())}'
            )
        return self.entries[name]

    def build(self, name: str, options: DatasetOptions) -> ImageDataset:
        """Build dataset ``name``; problems are attributed to the plugin that registered it.

        A factory's result must be an :class:`ImageDataset` whose ``fingerprint`` is ``None`` or a
        non-empty string (:class:`PluginError` otherwise)."""
        entry = self.entry(name)
        with attributed_to(f'dataset "{name}"', entry.plugin):
            dataset = entry.factory(options)
        if not isinstance(dataset, ImageDataset):
            raise PluginError(
                f'dataset "{name}" factory returned {type(dataset).__name__}, expected ddcore.ImageDataset',
                plugin=entry.plugin,
            )
        declared = getattr(dataset, "fingerprint", None)
        if declared is not None and (not isinstance(declared, str) or not declared):
            raise PluginError(
                f'dataset "{name}" factory set fingerprint = {declared!r}; expected a non-empty string '
                "that changes with the content, or None (ddcore then derives one, see ddcore.datasig)",
                plugin=entry.plugin,
            )
        if getattr(options, "zca", False) and getattr(dataset, "whitening", None) is None:
            raise ConfigError(
                f'dataset "{name}" does not support ZCA whitening (config key \'zca\'; cifar10 and cifar100 do); '
                "set zca = false"
            )
        if entry.presets:
            dataset.extra.setdefault("presets", entry.presets)
        return dataset
