"""The run configuration: a TOML file plus flags (flags win), validated before any work.

Every key has a type and a default here; unknown keys, wrong types and impossible values are
:class:`~ddcore.errors.ConfigError` with a one-line message naming the key. Plugin options live in
``[plugin.<name>]`` tables and are validated against the dataclass the plugin declares as
``config_class`` (see ``CONTRIBUTING.md``).

A config file::

    dataset = "digits"
    ipc = 10
    plugins = ["herding"]

    [eval]
    runs = 3
    epochs = 300

    [plugin.herding]
    space = "pixels"
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ddcore.errors import ConfigError
from ddcore.vocab import EXPERT_DEFAULTS, AugmentOption, LabelMode, Optimizer, Schedule

BASELINES = ("random", "full")


@dataclass
class EvalConfig:
    """The built-in evaluator: train ``runs`` fresh networks on the distilled set, test on real data.

    ``0`` or ``"auto"`` values are filled from the dataset's preset (see :mod:`ddcore.presets`).
    """

    runs: int = 3
    model: str = "auto"
    width: int = 0
    depth: int = 3
    norm: str = "instancenorm"
    epochs: int = 0
    full_epochs: int = 0
    batch_size: int = 256
    optimizer: Optimizer = "sgd"
    lr: float = 0.01
    use_learned_lr: bool = True
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Schedule = "step"
    augment: AugmentOption = "auto"
    labels: LabelMode = "auto"
    baseline: list[str] = field(default_factory=list)
    test_batch_size: int = 500

    def __post_init__(self) -> None:
        _at_least("eval.runs", self.runs, 0)
        _at_least("eval.depth", self.depth, 1)
        _at_least("eval.width", self.width, 0)
        _at_least("eval.epochs", self.epochs, 0)
        _at_least("eval.full_epochs", self.full_epochs, 0)
        _at_least("eval.batch_size", self.batch_size, 1)
        _at_least("eval.test_batch_size", self.test_batch_size, 1)
        if self.lr <= 0:
            raise ConfigError(f"config key 'eval.lr' must be > 0, got {self.lr}")
        for name in self.baseline:
            if name not in BASELINES:
                raise ConfigError(f"config key 'eval.baseline': unknown baseline {name!r}; choose from {', '.join(BASELINES)}")


@dataclass
class ExpertsConfig:
    """Expert trajectories for trajectory matching (``[experts]``); cached, see :mod:`ddcore.tm.experts`.

    The experts use the evaluator's network (``[eval]`` model, width, depth, norm). ``epochs = 0``
    trains just as many epochs as the ``[tm]`` window needs (``max_start_epoch + expert_epochs``).
    Defaults: :data:`ddcore.vocab.EXPERT_DEFAULTS` (also those of ``dd experts``).
    """

    num: int = EXPERT_DEFAULTS["num"]
    epochs: int = 0
    lr: float = EXPERT_DEFAULTS["lr"]
    momentum: float = EXPERT_DEFAULTS["momentum"]
    weight_decay: float = EXPERT_DEFAULTS["weight_decay"]
    batch_size: int = EXPERT_DEFAULTS["batch_size"]
    augment: AugmentOption = EXPERT_DEFAULTS["augment"]
    optimizer: Optimizer = EXPERT_DEFAULTS["optimizer"]
    schedule: Schedule = EXPERT_DEFAULTS["schedule"]

    def __post_init__(self) -> None:
        _at_least("experts.num", self.num, 1)
        _at_least("experts.epochs", self.epochs, 0)
        _at_least("experts.batch_size", self.batch_size, 1)
        if self.lr <= 0:
            raise ConfigError(f"config key 'experts.lr' must be > 0, got {self.lr}")


@dataclass
class RunConfig:
    """Everything that shapes a run. Recorded, resolved, in the run's ``manifest.json``."""

    name: str = ""
    seed: int = 0
    dataset: str = "digits"
    data_root: str = ""
    image_size: int = 0
    workers: int = 2
    ipc: int = 10
    plugins: list[str] = field(default_factory=list)
    select: str = ""
    initialize: str = ""
    distill: str = "none"  # a registered distiller's name (dd distillers); "none": selection only
    out: str = ""
    overwrite: bool = False
    cache_dir: str = ""
    cpu: bool = False
    eval: EvalConfig = field(default_factory=EvalConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    plugin: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Top-level tables that are not core keys: the distillers' own tables (``[tm]``, ``[dm]``), raw until the
    #: distiller registry validates them (:func:`ddcore.distillers.resolve_distiller`).
    tables: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    #: The chosen distiller's validated options (its ``config_class`` instance), once resolved.
    distill_options: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.distill, str) or not self.distill:
            raise ConfigError(f"config key 'distill' must name a distiller, got {self.distill!r} (option --distill)")
        if self.ipc <= 0:
            raise ConfigError(f"config key 'ipc' must be at least 1, got {self.ipc} (option --ipc)")
        _at_least("image_size", self.image_size, 0)
        _at_least("workers", self.workers, 0)
        if self.seed < 0:
            raise ConfigError(f"config key 'seed' must be >= 0, got {self.seed}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain mapping that :func:`build_config` reads back: core keys, and the distiller's
        table (resolved when the distiller registry has validated it, else as given)."""
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}
        for name, table in self.tables.items():
            data[name] = dict(table)
        if self.distill_options is not None:
            data[self.distill] = _plain(self.distill_options)
        return data


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, dict)):
        return copy.deepcopy(value)
    return value


def _at_least(key: str, value: int, low: int) -> None:
    if value < low:
        raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")


# ----------------------------------------------------------------------------------------------
# Reading and merging
# ----------------------------------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file into a plain dict; unreadable or invalid TOML is a ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist (option --config)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc} (option --config)") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc} (option --config)") from None


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; tables merge key by key (so a flag changes one key of ``[eval]``)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_assignment(text: str) -> dict[str, Any]:
    """``"eval.epochs=100"`` -> ``{"eval": {"epochs": 100}}``; the value is read as TOML, else as a string.

    >>> parse_assignment("plugin.edf.beta=2.0")
    {'plugin': {'edf': {'beta': 2.0}}}
    >>> parse_assignment("name=my run")
    {'name': 'my run'}
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set eval.epochs=100")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    result: dict[str, Any] = {}
    cursor = result
    parts = key.split(".")
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return result


def build_config(data: Mapping[str, Any] | RunConfig | None = None) -> RunConfig:
    """Validate a plain mapping (file contents merged with flags) into a :class:`RunConfig`.

    Core keys are checked here. A top-level table that is not a core key (``[tm]``, ``[dm]``) is kept
    raw in ``RunConfig.tables``: it belongs to a distiller, which only the plugins can register, so the
    run validates it once they are loaded (:func:`ddcore.distillers.resolve_distiller`). A top-level
    non-table key that is not a core key is an error here.
    """
    raw = data.to_dict() if isinstance(data, RunConfig) else dict(data or {})
    core = {f.name for f in dataclasses.fields(RunConfig) if f.init}
    tables = {key: value for key, value in raw.items() if key not in core and isinstance(value, Mapping)}
    config = from_mapping(RunConfig, {key: value for key, value in raw.items() if key not in tables}, prefix="")
    config.tables = {key: dict(value) for key, value in tables.items()}
    return config


# ----------------------------------------------------------------------------------------------
# Typed validation of dataclasses (used for the core config and for every plugin's section)
# ----------------------------------------------------------------------------------------------


def from_mapping(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, checking keys and types; errors name the dotted key.

    Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``Literal[...]``,
    ``list[T]``, ``T | None``, nested dataclasses and ``dict[str, Any]``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
        raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': {exc}") from None


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {_describe(value)}")
    if origin is list:
        if isinstance(value, str):  # a single name where a list is expected: be forgiving
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {_describe(value)}")
        inner = args[0] if args else Any
        return [_coerce(inner, item, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}': expected a table, got {_describe(value)}")
        return {str(k): v for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {_describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {_describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {_describe(value)}")
        return value
    return value


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
