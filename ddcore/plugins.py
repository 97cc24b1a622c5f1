"""Finding, importing and registering plugins: one fresh plugin manager per run.

Plugins are found through the ``ddcore`` entry-point group (metadata only: nothing is imported until
it is requested). A run registers the built-ins and exactly the plugins it names, in order:
``--plugin NAME`` (an entry point), ``--plugin path/to/file.py`` (a local module) or an object passed
to :func:`ddcore.run`.

Names: an entry point is named by its entry-point name; a file or an object by its ``name`` attribute
when it has one (a file without one: its stem, ``_`` -> ``-``). One name is one plugin: the same name
from two different sources (an installed package and a local file, two files, two objects) is a
:class:`~ddcore.errors.PluginLoadError` naming both, before any work.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import asdict, dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Iterable, Sequence

import pluggy

from ddcore import hookspecs
from ddcore.errors import PluginLoadError

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME

#: Built-in behaviour, registered through the same path as any plugin: (name, module).
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("datasets", "ddcore.builtin.datasets"),
    ("random-real", "ddcore.builtin.selection"),
    ("as-selected", "ddcore.builtin.initialize"),
    ("eval", "ddcore.builtin.evaluate"),
    ("robustness", "ddcore.builtin.robustness"),
    ("tm", "ddcore.tm.plugin"),
)
BUILTIN_NAMES = frozenset(name for name, _ in BUILTIN_PLUGINS)


@dataclass
class PluginInfo:
    """What ``dd plugins`` and the run manifest say about one plugin."""

    name: str
    source: str  # "builtin", "entry-point", "file" or "object"
    distribution: str | None = None
    version: str | None = None
    value: str | None = None  # entry-point target or file path
    sha256: str | None = None  # for local files
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version}"
        return self.value or self.source


class DDPluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``ddcore`` project that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    def register_plugin(self, plugin: object, info: PluginInfo) -> None:
        """Register ``plugin`` under ``info.name``; pluggy's validation errors name the plugin."""
        try:
            self.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            detail = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise PluginLoadError(f'Plugin "{info.name}" ({info.label()}) is invalid: {detail}') from exc
        except ValueError as exc:  # the same object under a second name
            raise PluginLoadError(
                f'Plugin "{info.name}" ({info.label()}) is the same object as the active plugin '
                f'"{self.get_name(plugin)}"; request only one of them'
            ) from exc
        callers = self.get_hookcallers(plugin) or []
        wrapped = sorted(
            caller.name for caller in callers
            for impl in caller.get_hookimpls()
            if impl.plugin is plugin and (impl.hookwrapper or getattr(impl, "wrapper", False))
        )  # fmt: skip
        if wrapped:
            self.unregister(plugin)
            raise PluginLoadError(
                f'Plugin "{info.name}" ({info.label()}) implements {", ".join(wrapped)} as a hook wrapper, which ddcore '
                "does not support (answers are combined by ddcore's rules); implement it as a plain hook"
            )
        info.hooks = sorted(caller.name for caller in callers)
        self.infos[info.name] = info

    def plugin_infos(self) -> list[PluginInfo]:
        """Every registered plugin, in registration order."""
        return list(self.infos.values())

    def requested(self) -> list[PluginInfo]:
        return [info for info in self.infos.values() if info.source != "builtin"]

    def check(self) -> None:
        """Fail if any plugin implements a hook that does not exist (a typo such as ``dd_selct``)."""
        try:
            self.check_pending()
        except pluggy.PluginValidationError as exc:
            name = self.get_name(exc.plugin) or "?"
            info = self.infos.get(name)
            label = f" ({info.label()})" if info else ""
            raise PluginLoadError(f'Plugin "{name}"{label} implements an unknown hook: {exc}') from exc


# ----------------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------------


def installed_entry_points() -> dict[str, list[EntryPoint]]:
    """Entry points of the ``ddcore`` group by name (a name with two entries is a conflict)."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        same = found.setdefault(ep.name, [])
        if not any(_dist_name(other) == _dist_name(ep) and other.value == ep.value for other in same):
            same.append(ep)
    return found


def _dist_name(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else None


def _dist_version(ep: EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else None


def entry_point_info(ep: EntryPoint) -> PluginInfo:
    return PluginInfo(
        name=ep.name, source="entry-point", distribution=_dist_name(ep), version=_dist_version(ep), value=ep.value
    )


def resolve_entry_point(name: str, available: dict[str, list[EntryPoint]] | None = None) -> EntryPoint:
    """The one entry point called ``name``; unknown or claimed twice is a :class:`PluginLoadError`."""
    available = installed_entry_points() if available is None else available
    candidates = available.get(name)
    if not candidates:
        installed = ", ".join(sorted(available)) or "none"
        raise PluginLoadError(f'Unknown plugin "{name}". Installed: {installed}. (option --plugin or config key plugins)')
    if len(candidates) > 1:
        claims = " and ".join(f"{_dist_name(ep)} {_dist_version(ep)} ({ep.value})" for ep in candidates)
        raise PluginLoadError(
            f'Plugin name "{name}" is claimed by two distributions: {claims}. Uninstall one of them.'
        )
    return candidates[0]


def load_entry_point(ep: EntryPoint) -> object:
    """Import an entry point's target; failures name the plugin, its distribution and the error."""
    try:
        return ep.load()
    except Exception as exc:
        info = entry_point_info(ep)
        raise PluginLoadError(
            f'Plugin "{ep.name}" ({info.label()}, entry point {ep.value}) failed to import: '
            f"{type(exc).__name__}: {exc}"
        ) from exc


# ----------------------------------------------------------------------------------------------
# Local files
# ----------------------------------------------------------------------------------------------


def is_path_request(request: str) -> bool:
    """``--plugin`` values that name a file rather than an entry point."""
    return request.endswith(".py") or "/" in request or "\\" in request


def file_stem_name(path: str | Path) -> str:
    """The name of a file plugin that sets no ``name``: its stem with ``_`` turned into ``-``."""
    return Path(path).stem.replace("_", "-")


def load_file_plugin(request: str) -> tuple[object, PluginInfo]:
    """Import a one-off local module (``--plugin ./my_plugin.py``).

    The plugin is named by the module's ``name`` attribute when it is a non-empty string (the same
    rule as for an object passed to :func:`ddcore.run`), else after its file stem with ``_`` turned
    into ``-`` (``my_plugin.py`` -> ``my-plugin``). That name keys ``[plugin.<name>]``,
    ``ctx.plugin_config``, ``--select`` and metric prefixes.

    Raises:
        PluginLoadError: the file is missing, cannot be imported, or fails while importing.
    """
    path = Path(request).expanduser()
    if not path.is_file():
        raise PluginLoadError(f"plugin file {request} does not exist (option --plugin)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    name = file_stem_name(path)
    module_name = f"ddcore_local_plugin_{path.stem}_{digest[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginLoadError(f"plugin file {request} cannot be imported as a Python module (option --plugin)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginLoadError(
            f'Plugin "{name}" (file {path}) failed to import: {type(exc).__name__}: {exc}'
        ) from exc
    declared = getattr(module, "name", None)
    if isinstance(declared, str) and declared.strip():
        name = declared.strip()
    info = PluginInfo(name=name, source="file", value=str(path.resolve()), sha256=digest)
    return module, info


# ----------------------------------------------------------------------------------------------
# The manager for one run
# ----------------------------------------------------------------------------------------------


def object_plugin_name(plugin: object) -> str:
    """The name an in-process plugin object is registered under: ``.name``, ``__name__`` or its class."""
    for attr in ("name", "__name__"):
        value = getattr(plugin, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(plugin).__name__


def get_plugin_manager(requested: Sequence[str | object] = ()) -> DDPluginManager:
    """A new manager with the built-ins and the ``requested`` plugins, validated.

    Each request is an entry-point name, a path to a ``.py`` file, or a plugin object (a module,
    class instance or class with ``@hookimpl`` functions). The same plugin requested twice (same
    entry point, same file content at the same path, same object) is registered once.

    Raises:
        PluginLoadError: an unknown or broken plugin, a built-in's name, or one name requested from
            two different sources (the message names both).
    """
    pm = DDPluginManager()
    for name, module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.register_plugin(module, PluginInfo(name=name, source="builtin", value=module_name))
    available: dict[str, list[EntryPoint]] | None = None
    for request in requested:
        if isinstance(request, str):
            if is_path_request(request):
                plugin, info = load_file_plugin(request)
            else:
                known = pm.infos.get(request)
                if known is not None and known.source == "entry-point":
                    continue  # the same name twice: registered once
                available = installed_entry_points() if available is None else available
                ep = resolve_entry_point(request, available)
                if known is not None and known.source != "builtin":
                    _refuse_clash(known, entry_point_info(ep))
                plugin, info = load_entry_point(ep), entry_point_info(ep)
        else:
            plugin = request
            info = PluginInfo(name=object_plugin_name(request), source="object", value=type(request).__name__)
        if info.name in pm.infos:
            known = pm.infos[info.name]
            if known.source == "builtin":
                raise PluginLoadError(f'Plugin name "{info.name}" is reserved for a built-in plugin; rename it.')
            if _same_plugin(known, info, pm.get_plugin(info.name), plugin):
                continue
            _refuse_clash(known, info)
        pm.register_plugin(plugin, info)
    pm.check()
    return pm


def describe_source(info: PluginInfo) -> str:
    """Where a plugin came from, for messages: ``installed package dd-x 1.0 (entry point m)``, ``file /p.py``."""
    if info.source == "entry-point":
        return f"installed package {info.label()} (entry point {info.value})"
    if info.source == "file":
        return f"file {info.value}"
    return f"object {info.value}"


def _same_plugin(known: PluginInfo, new: PluginInfo, known_plugin: object, new_plugin: object) -> bool:
    """True when a repeated request is the plugin already registered (same entry point, file or object)."""
    if known.source != new.source:
        return False
    if known.source == "file":
        return known.value == new.value and known.sha256 == new.sha256
    if known.source == "entry-point":
        return known.value == new.value and known.distribution == new.distribution
    return known_plugin is new_plugin


def _refuse_clash(known: PluginInfo, new: PluginInfo) -> None:
    """Two different plugins under one name: an error naming both sources."""
    raise PluginLoadError(
        f'Plugin name "{new.name}" is requested twice from different sources: {describe_source(known)} and '
        f"{describe_source(new)}; request only one of them (option --plugin or config key plugins), or give the "
        "file plugin another `name`"
    )


def list_installed(include_builtins: bool = False) -> list[PluginInfo]:
    """Every installed plugin with its status; a broken one is reported, never raised (``dd plugins``)."""
    infos: list[PluginInfo] = []
    if include_builtins:
        probe = DDPluginManager()
        for name, module_name in BUILTIN_PLUGINS:
            probe.register_plugin(importlib.import_module(module_name), PluginInfo(name, "builtin", value=module_name))
        infos.extend(probe.plugin_infos())
    for name, eps in sorted(installed_entry_points().items()):
        for ep in eps:
            info = entry_point_info(ep)
            if len(eps) > 1:
                others = ", ".join(str(_dist_name(o)) for o in eps if o is not ep)
                info.status, info.error = "error", f"name also claimed by {others}"
                infos.append(info)
                continue
            try:
                plugin = load_entry_point(ep)
                probe = DDPluginManager()
                probe.register_plugin(plugin, info)
                probe.check()
            except PluginLoadError as exc:
                info.status, info.error = "error", str(exc)
            infos.append(info)
    return infos


def iter_hook_names() -> Iterable[str]:
    """The names of every hook in the contract, in definition order."""
    return [name for name in vars(hookspecs) if name.startswith("dd_")]
