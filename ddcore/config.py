"""The run configuration: a TOML file plus flags (flags win), validated before any work.

Every key has a type and a default here; unknown keys, wrong types and impossible values are
:class:`~ddcore.errors.ConfigError` with a one-line message naming the key. Numbers are checked by one
mechanism, before any work: every ``float`` must be finite and within float32's range, and a field's range is declared on its
annotation (``Annotated[float, Range(gt=0)]``, :class:`Range`; seeds: :data:`Seed`). Plugin options live
in ``[plugin.<name>]`` tables and are validated the same way against the dataclass the plugin declares as
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
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from ddcore.errors import ConfigError
from ddcore.vocab import EXPERT_DEFAULTS, AugmentOption, LabelMode, Optimizer, Schedule

BASELINES = ("random", "full")
#: The largest ``image_size`` a run accepts (px per side): 8x the 512 px of the largest common DD benchmarks;
#: a 3-channel float32 image is already 192 MiB there, so anything above is a typo, not a workload.
MAX_IMAGE_SIZE = 4096


# ----------------------------------------------------------------------------------------------
# Numeric ranges (one mechanism for the core config and every plugin's config_class)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The values a numeric config field accepts, declared on its annotation (as in ``annotated-types``)::

        lr: Annotated[float, Range(gt=0)] = 0.01
        momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9
        epochs: Annotated[int, Range(ge=0, note="0: the preset's")] = 0
        alpha: Annotated[float, Range(ge=0, lt=1)] | None = None

    :func:`from_mapping` checks every value it reads (and every default) before any work; a value
    outside is a :class:`~ddcore.errors.ConfigError` naming the dotted key, e.g. ``config key 'eval.lr'
    must be a finite number > 0, got nan``. Independently of any ``Range``, a ``float`` field is always
    refused NaN, a finite value beyond float32's range (:data:`FLOAT32_MAX`) and, unless ``allow_inf=True``,
    ``inf``/``-inf``; an ``int`` field must fit in 64 bits.

    Attributes:
        gt, ge: exclusive / inclusive lower bound (at most one of the two).
        lt, le: exclusive / inclusive upper bound (at most one of the two).
        allow_inf: a ``float`` field may be infinite (still within the bounds); NaN never is.
        note: appended to the error in parentheses (what the special values mean, or the flag that sets it).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    allow_inf: bool = False
    note: str = ""

    def __post_init__(self) -> None:
        if self.gt is not None and self.ge is not None or self.lt is not None and self.le is not None:
            raise TypeError("Range takes at most one lower bound (gt or ge) and one upper bound (lt or le)")

    def admits(self, value: float) -> bool:
        """Whether ``value`` (a number, not NaN) lies within the bounds."""
        return not (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )

    def describe(self, integer: bool = False) -> str:
        """The bounds in words: ``> 0``, ``>= 0``, ``at least 1`` (integers), ``in [0, 1)``, ``<= 5``; ``""`` if none.

        >>> Range(gt=0).describe(), Range(ge=1).describe(integer=True), Range(ge=0, lt=1).describe()
        ('> 0', 'at least 1', 'in [0, 1)')
        """
        low = self.gt if self.gt is not None else self.ge
        high = self.lt if self.lt is not None else self.le
        if low is not None and high is not None:
            return f"in {'(' if self.gt is not None else '['}{_number_text(low)}, {_number_text(high)}{')' if self.lt is not None else ']'}"
        if self.gt is not None:
            return f"> {_number_text(self.gt)}"
        if self.ge is not None:
            return f"at least {_number_text(self.ge)}" if integer else f">= {_number_text(self.ge)}"
        if self.lt is not None:
            return f"< {_number_text(self.lt)}"
        if self.le is not None:
            return f"<= {_number_text(self.le)}"
        return ""


#: The one seed of a run: what every random generator the run seeds accepts (accelerate's ``set_seed``
#: seeds numpy, which takes ``0 .. 2**32 - 1``; ``torch.manual_seed`` and ``random.seed`` take more).
Seed = Annotated[int, Range(ge=0, le=2**32 - 1, note="numpy's seed range")]

_INT64 = (-(2**63), 2**63 - 1)
#: The largest finite float32, ``torch.finfo(torch.float32).max`` (hard-coded: this module does not import
#: torch). Every float option ends up in float32 tensors or optimisers, where a larger finite value overflows
#: to ``inf`` (or torch refuses it with a traceback), so a finite float option must lie within +-this.
FLOAT32_MAX = 3.4028234663852886e38


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**63 else repr(value)


class _OutOfRange(ConfigError):
    """A value of the right type outside its field's range (a union does not try its other members)."""


@dataclass
class EvalConfig:
    """The built-in evaluator: train ``runs`` fresh networks on the distilled set, test on real data.

    ``0`` or ``"auto"`` values are filled from the dataset's preset (see :mod:`ddcore.presets`).
    """

    runs: Annotated[int, Range(ge=0, note="0: no evaluation")] = 3
    model: str = "auto"
    width: Annotated[int, Range(ge=0, note="0: the preset's")] = 0
    depth: Annotated[int, Range(ge=0, note="0: from the image size, ddcore.presets.convnet_depth")] = 0
    norm: str = "instancenorm"
    epochs: Annotated[int, Range(ge=0, note="0: the preset's")] = 0
    full_epochs: Annotated[int, Range(ge=0, note="0: the preset's")] = 0
    batch_size: Annotated[int, Range(ge=1)] = 256
    optimizer: Optimizer = "sgd"
    lr: Annotated[float, Range(gt=0)] = 0.01
    use_learned_lr: bool = True
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.9
    weight_decay: Annotated[float, Range(ge=0)] = 5e-4
    schedule: Schedule = "step"
    augment: AugmentOption = "auto"
    labels: LabelMode = "auto"
    baseline: list[str] = field(default_factory=list)
    test_batch_size: Annotated[int, Range(ge=1)] = 500
    # train the repeats as vmapped batches (ddcore.ensemble): auto (GPU, where the network allows), on, off
    batched: Literal["auto", "on", "off"] = "auto"

    def __post_init__(self) -> None:
        for name in self.baseline:
            if name not in BASELINES:
                raise ConfigError(f"config key 'eval.baseline': unknown baseline {name!r}; choose from {', '.join(BASELINES)}")
        if self.batched == "on" and (self.norm == "batchnorm" or self.model == "resnet18"):
            raise ConfigError(  # running statistics do not vmap cleanly (ddcore.ensemble.loop_reason)
                "config key 'eval.batched' = 'on' cannot train BatchNorm networks together "
                f"(eval.norm = {self.norm!r}, eval.model = {self.model!r}); use 'auto' or 'off'"
            )


@dataclass
class ExpertsConfig:
    """Expert trajectories for trajectory matching (``[experts]``); cached, see :mod:`ddcore.tm.experts`.

    The experts use the evaluator's network (``[eval]`` model, width, depth, norm). ``epochs = 0``
    trains just as many epochs as the ``[tm]`` window needs (``max_start_epoch + expert_epochs``).
    Defaults: :data:`ddcore.vocab.EXPERT_DEFAULTS` (also those of ``dd experts``).
    """

    num: Annotated[int, Range(ge=1)] = EXPERT_DEFAULTS["num"]
    epochs: Annotated[int, Range(ge=0, note="0: what the [tm] window needs")] = 0
    lr: Annotated[float, Range(gt=0)] = EXPERT_DEFAULTS["lr"]
    momentum: Annotated[float, Range(ge=0, lt=1)] = EXPERT_DEFAULTS["momentum"]
    weight_decay: Annotated[float, Range(ge=0)] = EXPERT_DEFAULTS["weight_decay"]
    batch_size: Annotated[int, Range(ge=1)] = EXPERT_DEFAULTS["batch_size"]
    augment: AugmentOption = EXPERT_DEFAULTS["augment"]
    optimizer: Optimizer = EXPERT_DEFAULTS["optimizer"]
    schedule: Schedule = EXPERT_DEFAULTS["schedule"]
    # train a process's missing experts together (ddcore.ensemble): auto (GPU), on, off; not in the cache key
    batched: Literal["auto", "on", "off"] = "auto"


@dataclass
class RobustnessConfig:
    """DD-Ranking's robustness scores (``[robustness]``; the built-in plugin ``robustness``,
    :mod:`ddcore.builtin.robustness`, formula in :mod:`ddcore.robustness`, docs/robustness.md).

    ``scores``: ``"lrs"`` (label-robust score) and/or ``"ars"`` (augmentation-robust score); empty = off.
    ``runs``: networks per row (0: ``eval.runs``). ``lrs_weight`` is the paper's ``w``, ``ars_weight`` its
    ``gamma``. ``augment``: ARS's "with augmentation" condition (``auto``: the evaluator's, or ``dsa`` when
    that is ``none``). ``lr_search``: candidate lrs, chosen per network on the validation split (needs
    ``holdout = "always"``; never the test split); empty = no search (the evaluator's lr).
    """

    scores: list[Literal["lrs", "ars"]] = field(default_factory=list)
    runs: Annotated[int, Range(ge=0, note="0: eval.runs")] = 0
    lrs_weight: Annotated[float, Range(ge=0, le=1)] = 0.5
    ars_weight: Annotated[float, Range(ge=0, le=1)] = 0.5
    augment: AugmentOption = "auto"
    lr_search: list[Annotated[float, Range(gt=0)]] = field(default_factory=list)

    def check(self, config: "RunConfig") -> None:
        """Cross-key checks with the rest of the run ``config``: one-line :class:`ConfigError` naming the key."""
        for key in ("scores", "lr_search"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                raise ConfigError(f"config key 'robustness.{key}' lists a value twice: {values}")
        if "ars" in self.scores and self.augment == "none":
            raise ConfigError("config key 'robustness.augment' = 'none' leaves ARS nothing to compare (it trains with and "
                              "without augmentation); choose auto, crop, crop_flip or dsa")
        if self.scores and self.runs == 0 and config.eval.runs == 0:
            raise ConfigError("config key 'robustness.scores' needs networks: set robustness.runs or eval.runs above 0")
        if self.scores and self.lr_search and (not config.validation or config.holdout != "always"):
            raise ConfigError(  # carving only for the scores would change the training split the set is distilled from
                "config key 'robustness.lr_search' chooses the lr on the validation split: set holdout = 'always' "
                f"and validation > 0 (now holdout = {config.holdout!r}, validation = {config.validation:g}); "
                "the test split is never used to choose"
            )


@dataclass
class RunConfig:
    """Everything that shapes a run. Recorded, resolved, in the run's ``manifest.json``."""

    name: str = ""
    seed: Seed = 0
    dataset: str = "digits"
    data_root: str = ""
    image_size: Annotated[int, Range(ge=0, le=MAX_IMAGE_SIZE, note="option --image-size; 0: the dataset's own")] = 0
    # ZCA whitening of the pixels (cifar10, cifar100): kornia's ZCAWhitening, eps 0.1, fitted on the training split
    zca: bool = False
    workers: Annotated[int, Range(ge=0)] = 2
    ipc: Annotated[int, Range(ge=1, note="option --ipc")] = 10
    plugins: list[str] = field(default_factory=list)
    select: str = ""
    initialize: str = ""
    distill: str = "none"  # a registered distiller's name (dd distillers); "none": selection only
    out: str = ""
    overwrite: bool = False
    cache_dir: str = ""
    cpu: bool = False
    # Accelerate trackers (ddcore/trackers.py; option --log-with): tensorboard, wandb, ...; a comma list is split
    log_with: list[str] = field(default_factory=list)
    # the validation split (ddcore/data/split.py): fraction of each class's training images held out, and when
    validation: Annotated[float, Range(ge=0, lt=1, note="0: no validation split")] = 0.1
    holdout: Literal["auto", "always"] = "auto"  # auto: when something selects on accuracy (tm.eval_every > 0)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experts: ExpertsConfig = field(default_factory=ExpertsConfig)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)
    plugin: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Top-level tables that are not core keys: the distillers' own tables (``[tm]``, ``[dm]``), raw until the
    #: distiller registry validates them (:func:`ddcore.distillers.resolve_distiller`).
    tables: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    #: The chosen distiller's validated options (its ``config_class`` instance), once resolved.
    distill_options: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.distill, str) or not self.distill:
            raise ConfigError(f"config key 'distill' must name a distiller, got {self.distill!r} (option --distill)")
        self.log_with = list(dict.fromkeys(n.strip() for item in self.log_with for n in item.split(",") if n.strip()))
        self.robustness.check(self)

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
    """Build dataclass ``cls`` from ``data``, checking keys, types and ranges; errors name the dotted key.

    Supported field types: ``bool``, ``int``, ``float`` (ints accepted), ``str``, ``Literal[...]``,
    ``list[T]``, ``T | None``, nested dataclasses, ``dict[str, Any]`` and ``Annotated[int | float,
    Range(...)]`` (:class:`Range`). Every ``float`` must be finite (NaN never, ``inf`` only where its
    ``Range`` has ``allow_inf``) and within float32's range (:data:`FLOAT32_MAX`), and every ``int`` fit in 64 bits. The values the instance ends up with
    (defaults, and what ``__post_init__`` filled in) are checked against the same annotations.

    Raises:
        ConfigError: one line naming the first offending key (``prefix`` + field name).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a table, got {_describe(data)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [key for key in data if key not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
        raise ConfigError(f"unknown config key '{prefix}{key}'{hint}")
    values = {key: _coerce(hints[key], value, f"{prefix}{key}") for key, value in data.items()}
    try:
        instance = cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}': {exc}") from None
    _check_instance(instance, hints, fields, prefix)
    return instance


def _check_instance(instance: Any, hints: Mapping[str, Any], fields: Mapping[str, Any], prefix: str) -> None:
    """Check the values a built dataclass holds (defaults and ``__post_init__`` fills too) against its annotations."""
    for name in fields:
        _coerce(hints[name], getattr(instance, name), f"{prefix}{name}")


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # an instance already built (a default): check what it holds
            hints = typing.get_type_hints(tp, include_extras=True)
            _check_instance(value, hints, {f.name: f for f in dataclasses.fields(tp) if f.init}, f"{key}.")
            return value
        return from_mapping(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if origin is Annotated:
        inner, *metadata = args
        ranges = [item for item in metadata if isinstance(item, Range)]
        if not ranges:
            return _coerce(inner, value, key)
        if inner not in (int, float) or len(ranges) > 1:
            raise TypeError(f"config key '{key}': Range applies to one int or float field, not {_type_name(tp)}")
        return _number(inner, value, key, ranges[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"config key '{key}': expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # T | None given a value: T's own message
            return _coerce(options[0], value, key)
        for option in options:
            try:
                return _coerce(option, value, key)
            except _OutOfRange:
                raise
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
    if tp in (int, float):
        return _number(tp, value, key, None)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {_describe(value)}")
        return value
    return value


def _number(tp: type, value: Any, key: str, bounds: Range | None) -> Any:
    """``value`` as an ``int`` or a ``float`` (``tp``) within ``bounds``, else a one-line ConfigError naming ``key``."""
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {_describe(value)}")
        if (bounds is None or bounds.admits(value)) and not _INT64[0] <= value <= _INT64[1]:
            raise _OutOfRange(f"config key '{key}' must be an integer that fits in 64 bits, got {value}")
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {_describe(value)}")
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            raise _OutOfRange(f"config key '{key}' must be a finite number, got an integer of {len(str(abs(value)))} digits") from None
        allow_inf = bounds is not None and bounds.allow_inf
        if math.isnan(value) or (math.isinf(value) and not allow_inf):
            kind = "a number (not NaN)" if allow_inf else "a finite number"
            wanted = bounds.describe() if bounds is not None else ""
            raise _OutOfRange(f"config key '{key}' must be {kind}{' ' + wanted if wanted else ''}, got {value}{_note(bounds)}")
        if math.isfinite(value) and abs(value) > FLOAT32_MAX:
            kind = "a number within float32's range or infinite" if allow_inf else "a finite number within float32's range"
            raise _OutOfRange(f"config key '{key}' must be {kind} (|x| <= {FLOAT32_MAX:.7g}), got {value!r}{_note(bounds)}")
    if bounds is not None and not bounds.admits(value):
        raise _OutOfRange(f"config key '{key}' must be {bounds.describe(integer=tp is int)}, got {value!r}{_note(bounds)}")
    return value


def _note(bounds: Range | None) -> str:
    return f" ({bounds.note})" if bounds is not None and bounds.note else ""


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in typing.get_args(tp))
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    return "None" if tp is type(None) else getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
