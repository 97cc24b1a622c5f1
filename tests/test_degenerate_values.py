"""Degenerate numbers never reach the work, and every JSON artefact is strict JSON (issue 13, kind 7).

- Every numeric option of every config class (the core's, every built-in and installed distiller's
  ``config_class`` and every installed plugin's) refuses NaN and infinity, and values just outside the
  :class:`~ddcore.config.Range` declared on it, with a one-line :class:`ConfigError` naming the dotted key.
  The cases are generated from the dataclasses, so a new field is covered without touching this file.
- ``dd run`` refuses them with exit 2 before creating the run directory or training anything.
- :func:`ddcore.atomic.write_json` refuses NaN/Infinity (naming the file and the key path) and writes nothing.
- A learned ``syn_lr`` that collapses in trajectory matching ends the run with one line naming
  ``tm.lr_lr``: no ``distilled.pt``, no metrics, exit 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Iterator

import pytest
import torch

from core_support import assert_cli_error
from ddcore.atomic import NonFiniteJSONError, write_json
from ddcore.config import Range, RunConfig, Seed, build_config, from_mapping
from ddcore.errors import ConfigError, DDError

# ----------------------------------------------------------------------------------------------
# The config classes and their numeric fields, discovered
# ----------------------------------------------------------------------------------------------


def config_classes() -> list[tuple[str, type]]:
    """``(key prefix, class)``: the core config, and every config_class of the built-ins and installed plugins."""
    from ddcore.distillers import DistillerRegistry
    from ddcore.plugins import get_plugin_manager, installed_entry_points

    found = [("", RunConfig)]
    pm = get_plugin_manager(sorted(installed_entry_points()))
    registry = DistillerRegistry()
    for info in pm.plugin_infos():
        plugin = pm.get_plugin(info.name)
        if getattr(plugin, "config_class", None) is not None:
            found.append((f"plugin.{info.name}.", plugin.config_class))
        register = getattr(plugin, "dd_register_distillers", None)
        if register is not None:
            register(register=registry.registrar(info.name))
    for name, entry in sorted(registry.entries.items()):
        if entry.config_class is not None:
            found.append((f"{name}.", entry.config_class))
    return found


@dataclasses.dataclass(frozen=True)
class NumericField:
    cls: type  # the top-level config class
    prefix: str
    path: tuple[str, ...]  # field names from cls down; a list field's item is the list's path + ("[0]",)
    kind: type  # int or float
    bounds: Range | None

    @property
    def key(self) -> str:
        return self.prefix + ".".join(self.path).replace(".[0]", "[0]")

    def table(self, value: Any) -> dict[str, Any]:
        """The config table that sets this field (a list field: a one-item list) to ``value``."""
        path, value = (self.path[:-1], [value]) if self.path[-1] == "[0]" else (self.path, value)
        for name in reversed(path):
            value = {name: value}
        return value

    def __str__(self) -> str:
        return self.key


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        return options[0] if len(options) == 1 else tp
    return tp


def _numeric(tp: Any) -> tuple[type, Range | None] | None:
    if typing.get_origin(tp) is Annotated:
        inner, *metadata = typing.get_args(tp)
        ranges = [m for m in metadata if isinstance(m, Range)]
        return (inner, ranges[0] if ranges else None) if inner in (int, float) else None
    return (tp, None) if tp in (int, float) else None


def numeric_fields(cls: type, prefix: str, top: type | None = None, path: tuple[str, ...] = ()) -> Iterator[NumericField]:
    hints = typing.get_type_hints(cls, include_extras=True)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(tp):
            yield from numeric_fields(tp, prefix, top or cls, (*path, f.name))
        elif typing.get_origin(tp) is list and typing.get_args(tp) and _numeric(typing.get_args(tp)[0]):
            yield NumericField(top or cls, prefix, (*path, f.name, "[0]"), *_numeric(typing.get_args(tp)[0]))
        elif _numeric(tp):
            yield NumericField(top or cls, prefix, (*path, f.name), *_numeric(tp))


CLASSES = config_classes()
FIELDS = [field for prefix, cls in CLASSES for field in numeric_fields(cls, prefix)]


def build(field: NumericField, value: Any) -> Any:
    return from_mapping(field.cls, field.table(value), prefix=field.prefix)


def outside(field: NumericField) -> list[float | int]:
    """Values just outside each bound of the field's Range."""
    bounds, integer = field.bounds, field.kind is int
    values: list[float | int] = []
    if bounds is None:
        return values
    if bounds.gt is not None:
        values.append(int(bounds.gt) if integer else float(bounds.gt))
    if bounds.ge is not None:
        values.append(int(bounds.ge) - 1 if integer else math.nextafter(float(bounds.ge), -math.inf))
    if bounds.lt is not None:
        values.append(int(bounds.lt) if integer else float(bounds.lt))
    if bounds.le is not None:
        values.append(int(bounds.le) + 1 if integer else math.nextafter(float(bounds.le), math.inf))
    return values


def test_the_discovery_sees_every_bundled_config():
    names = {prefix for prefix, _ in CLASSES}
    assert {"", "tm.", "dm.", "plugin.edf.", "plugin.diffsel.", "plugin.compdd.", "plugin.herding."} <= names
    keys = {field.key for field in FIELDS}
    assert {"seed", "eval.lr", "eval.momentum", "experts.weight_decay", "tm.lr_img", "tm.lr_lr", "dm.momentum",
            "plugin.edf.alpha", "plugin.edf.class_index[0]", "plugin.diffsel.kd.lr", "plugin.compdd.runs"} <= keys  # fmt: skip


@pytest.mark.parametrize("prefix, cls", CLASSES, ids=[prefix or "core" for prefix, _ in CLASSES])
def test_defaults_are_valid(prefix, cls):
    assert isinstance(from_mapping(cls, {}, prefix=prefix), cls)


@pytest.mark.parametrize("field", [f for f in FIELDS if f.path[-1] != "[0]"], ids=str)
def test_every_numeric_option_declares_its_range(field):
    assert field.bounds is not None, (
        f"{field.key} is a number without a Range: annotate it Annotated[{field.kind.__name__}, Range(...)]"
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", FIELDS, ids=str)
def test_nan_and_infinity_are_refused_naming_the_key(field, value):
    if field.bounds is not None and field.bounds.allow_inf and math.isinf(value) and field.bounds.admits(value):
        pytest.skip("infinity explicitly allowed")
    with pytest.raises(ConfigError) as info:
        build(field, value)
    message = str(info.value)
    assert f"config key '{field.key}'" in message and "\n" not in message
    assert ("expected an integer" if field.kind is int else "must be a finite number") in message


@pytest.mark.parametrize("field", [f for f in FIELDS if outside(f)], ids=str)
def test_values_outside_the_declared_range_are_refused_naming_the_key(field):
    for value in outside(field):
        with pytest.raises(ConfigError) as info:
            build(field, value)
        message = str(info.value)
        assert message.startswith(f"config key '{field.key}' must be ") and f"got {value!r}" in message, message
        assert "\n" not in message


@pytest.mark.parametrize(
    "data, message",
    [
        ({"eval": {"lr": math.nan}}, "config key 'eval.lr' must be a finite number > 0, got nan"),
        ({"eval": {"lr": math.inf}}, "config key 'eval.lr' must be a finite number > 0, got inf"),
        ({"eval": {"momentum": math.nan}}, "config key 'eval.momentum' must be a finite number in [0, 1), got nan"),
        ({"eval": {"momentum": 1}}, "config key 'eval.momentum' must be in [0, 1), got 1.0"),
        ({"eval": {"weight_decay": -1}}, "config key 'eval.weight_decay' must be >= 0, got -1.0"),
        ({"seed": 2**32}, "config key 'seed' must be in [0, 4294967295], got 4294967296 (numpy's seed range)"),
        ({"seed": -1}, "config key 'seed' must be in [0, 4294967295], got -1"),
        ({"eval": {"runs": 2**64}}, "config key 'eval.runs' must be an integer that fits in 64 bits"),
        ({"experts": {"lr": 10**400}}, "config key 'experts.lr' must be a finite number, got an integer of 401 digits"),
    ],
)
def test_core_messages(data, message):
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert str(info.value).startswith(message), str(info.value)


def test_the_seed_range_is_what_the_run_seeds_accept():
    """The largest accepted seed goes through accelerate's set_seed (numpy, torch, random); one more would not."""
    import numpy as np
    from accelerate.utils import set_seed

    import random

    top = typing.get_args(Seed)[1].le
    assert build_config({"seed": top}).seed == top
    states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        set_seed(top)
    finally:
        torch.random.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])
    with pytest.raises(ValueError):
        np.random.RandomState(top + 1)


# ----------------------------------------------------------------------------------------------
# The mechanism itself, for a plugin's config_class
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ToyOptions:
    lr: Annotated[float, Range(gt=0)] = 0.1
    alpha: Annotated[float, Range(ge=0, lt=1, note="1 drops everything")] | None = None
    patience: Annotated[float, Range(ge=0, allow_inf=True)] = math.inf
    plain: float = 1.0
    steps: list[Annotated[int, Range(ge=1)]] = dataclasses.field(default_factory=lambda: [1])


def toy(**table: Any) -> ToyOptions:
    return from_mapping(ToyOptions, table, prefix="plugin.toy.")


def test_range_mechanism_on_a_plugin_config():
    assert toy(alpha=0.5, patience=3, plain=-2).alpha == 0.5 and toy().patience == math.inf and toy().alpha is None
    cases = [
        ({"plain": math.nan}, "config key 'plugin.toy.plain' must be a finite number, got nan"),
        ({"alpha": 1.0}, "config key 'plugin.toy.alpha' must be in [0, 1), got 1.0 (1 drops everything)"),
        ({"alpha": "x"}, "config key 'plugin.toy.alpha': expected a number, got 'x' (str)"),
        ({"patience": math.nan}, "config key 'plugin.toy.patience' must be a number (not NaN) >= 0, got nan"),
        ({"patience": -math.inf}, "config key 'plugin.toy.patience' must be >= 0, got -inf"),
        ({"steps": [2, 0]}, "config key 'plugin.toy.steps[1]' must be at least 1, got 0"),
    ]
    for table, message in cases:
        with pytest.raises(ConfigError) as info:
            toy(**table)
        assert str(info.value) == message


def test_a_default_outside_its_range_is_refused():
    """Defaults, and what ``__post_init__`` fills in, are held to the same annotations."""

    @dataclasses.dataclass
    class Filled:
        beta: Annotated[float, Range(ge=0)] | None = None

        def __post_init__(self) -> None:
            if self.beta is None:
                self.beta = -1.0  # a preset table with a typo

    with pytest.raises(ConfigError, match=r"^config key 'plugin.f.beta' must be >= 0, got -1.0$"):
        from_mapping(Filled, {}, prefix="plugin.f.")


def test_range_takes_one_bound_per_side():
    with pytest.raises(TypeError):
        Range(gt=0, ge=0)


# ----------------------------------------------------------------------------------------------
# dd run: refused before any work
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--set", "eval.lr=nan"], ["config key 'eval.lr'", "finite", "got nan"]),
        (["--set", "eval.lr=inf"], ["config key 'eval.lr'", "finite", "got inf"]),
        (["--set", "eval.momentum=nan"], ["config key 'eval.momentum'", "got nan"]),
        (["--set", "eval.weight_decay=nan"], ["config key 'eval.weight_decay'", "got nan"]),
        (["--set", "eval.weight_decay=-1"], ["config key 'eval.weight_decay'", ">= 0", "got -1"]),
        (["--seed", "4294967296"], ["config key 'seed'", "4294967295"]),
        (["--distill", "tm", "--set", "tm.lr_img=nan"], ["config key 'tm.lr_img'", "got nan"]),
        (["--distill", "tm", "--set", "tm.lr_lr=-inf"], ["config key 'tm.lr_lr'", "got -inf"]),
        (["--plugin", "dm", "--distill", "dm", "--set", "dm.lr_img=inf"], ["config key 'dm.lr_img'", "got inf"]),
        (["--plugin", "diffsel", "--set", "plugin.diffsel.kd.lr=nan"], ["config key 'plugin.diffsel.kd.lr'", "got nan"]),
    ],
    ids=lambda item: " ".join(item) if isinstance(item, list) and item[0].startswith("-") else None,
)
def test_dd_run_refuses_before_any_work(cli, tiny_run_args, tmp_path, extra, fragments):
    assert_cli_error(cli(*tiny_run_args(*extra)), *fragments)
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "cache").exists()  # no experts trained, no cache written


# ----------------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------------


def test_write_json_refuses_nan_and_infinity_and_writes_nothing(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"metrics": {"eval/acc_mean": 90.0}})
    before = path.read_bytes()
    for bad, where in (({"metrics": {"eval/acc_std": math.nan}}, '$.metrics["eval/acc_std"]'),
                       ({"runs": [1.0, 2.0, -math.inf]}, "$.runs[2]")):  # fmt: skip
        with pytest.raises(NonFiniteJSONError) as info:
            write_json(path, bad)
        assert str(path) in str(info.value) and where in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left


def strict_json(path: Path) -> Any:
    def refuse(constant: str) -> Any:
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_every_json_artefact_of_a_run_is_strict_json(cli, tiny_run_args, tmp_path):
    code, _, err = cli(*tiny_run_args())
    assert code == 0, err
    files = sorted((tmp_path / "run").rglob("*.json"))
    assert any(p.name == "manifest.json" for p in files)
    for path in files:
        strict_json(path)


# ----------------------------------------------------------------------------------------------
# Trajectory matching: a collapsed syn_lr is a failed distillation
# ----------------------------------------------------------------------------------------------


class RandomWalkExperts:
    """One expert trajectory: a tiny ConvNet's initial parameters plus a seeded random walk (cheap, no training)."""

    def __init__(self, spec, epochs: int = 4):
        from ddcore.models import build_model
        from ddcore.tm.flatparams import flatten_params, param_shapes_of

        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = build_model(spec, 10, 1, 32)
        generator = torch.Generator().manual_seed(0)
        snapshots = [flatten_params(model).detach()]
        for _ in range(epochs):
            snapshots.append(snapshots[-1] + 0.01 * torch.randn(snapshots[0].shape, generator=generator))
        self.snapshots, self.param_shapes = torch.stack(snapshots), param_shapes_of(model)

    def __len__(self) -> int:
        return 1

    def trajectory(self, index: int) -> torch.Tensor:
        return self.snapshots


@pytest.fixture(scope="module")
def tm_setup():
    from ddcore import DistilledSet
    from ddcore.models import ModelSpec
    from ddcore.runner import Pipeline

    pipeline = Pipeline({"ipc": 1, "workers": 0, "distill": "tm", "eval": {"runs": 0}}, write=False)
    dataset = pipeline.build_dataset()
    first = [indices[0] for indices in dataset.indices_by_class("train")[:2]]
    images, labels = dataset.load("train", first)
    spec = ModelSpec(width=4)
    return pipeline.ctx, DistilledSet(images, labels, dataset.class_names, dataset.mean, dataset.std), spec, RandomWalkExperts(spec)


def tm_config(**tm: Any):
    from ddcore.tm.config import TMConfig

    table = {"iterations": 4, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 0, **tm}
    return from_mapping(TMConfig, table, prefix="tm.")


def test_a_collapsing_syn_lr_stops_the_distillation(tm_setup):
    from ddcore.tm.loop import SYN_LR_FLOOR, distill_tm

    ctx, initial, spec, experts = tm_setup
    distilled, log = distill_tm(ctx, initial, experts, spec, tm_config())  # the default lr_lr: fine
    assert all(row["syn_lr"] > SYN_LR_FLOOR for row in log) and distilled.lr > SYN_LR_FLOOR
    with pytest.raises(DDError) as info:
        distill_tm(ctx, initial, experts, spec, tm_config(lr_lr=0.01))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("trajectory matching failed at iteration 0: the learned student lr (syn_lr) fell from 0.01 to -")
    assert message.endswith("lower tm.lr_lr (now 0.01)")


def test_divergence_messages_name_the_cause(tm_setup):
    from ddcore.tm.loop import distill_tm

    ctx, initial, spec, experts = tm_setup
    with pytest.raises(DDError) as info:
        distill_tm(ctx, initial, experts, spec, tm_config(lr_img=1e30))
    assert "diverged at iteration 1, after 1 update: the matching loss is nan" in str(info.value)
    assert str(info.value).endswith("lower tm.lr_img (now 1e+30) or tm.lr_lr (now 1e-05)")


def test_a_nan_loss_before_any_update_blames_no_learning_rate(tm_setup):
    from ddcore.tm.loop import distill_tm

    ctx, initial, spec, experts = tm_setup
    still = RandomWalkExperts(spec)
    still.snapshots = still.snapshots[:1].repeat(5, 1)  # an expert that never moves: 0/0
    with pytest.raises(DDError) as info:
        distill_tm(ctx, initial, still, spec, tm_config())
    message = str(info.value)
    assert message.startswith("trajectory matching diverged at iteration 0, before any update: the matching loss is inf")
    assert "no learning rate is the cause" in message and "divides by 0" in message and "tm.lr_" not in message


@pytest.mark.slow
def test_dd_run_with_a_collapsing_syn_lr_fails_without_a_result(cli, tiny_run_args, tmp_path):
    """The issue's input, made small: ``--distill tm --set tm.lr_lr=0.01`` exits 2 with one line, no result."""
    sets = ["tm.lr_lr=0.01", "tm.iterations=3", "tm.syn_steps=2", "tm.max_start_epoch=2", "tm.cur_max_start_epoch=1",
            "experts.num=1", "experts.batch_size=512", "eval.width=8"]  # fmt: skip
    result = cli(*tiny_run_args("--distill", "tm", "-q", *[arg for s in sets for arg in ("--set", s)]))
    assert_cli_error(result, "trajectory matching failed at iteration", "syn_lr", "lower tm.lr_lr (now 0.01)")
    run = tmp_path / "run"
    assert not (run / "distilled.pt").exists() and not (run / "metrics.json").exists()
    assert strict_json(run / "manifest.json")["status"] == "failed"


# ----------------------------------------------------------------------------------------------
# Values a float32 tensor cannot hold, and image sizes no memory holds: refused before any work
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, key",
    [({"eval": {"lr": 1e308}}, "eval.lr"), ({"experts": {"weight_decay": 1e39}}, "experts.weight_decay"),
     ({"validation": -1e300}, "validation")],  # fmt: skip
)
def test_floats_beyond_float32_are_refused(data, key):
    with pytest.raises(ConfigError) as info:
        build_config(data)
    assert str(info.value).startswith(f"config key '{key}' must be ") and "float32's range" in str(info.value)


def test_the_float32_limit_is_torchs():
    from ddcore.config import FLOAT32_MAX

    assert FLOAT32_MAX == torch.finfo(torch.float32).max
    assert build_config({"eval": {"lr": FLOAT32_MAX}}).eval.lr == FLOAT32_MAX  # representable: the range's to judge
    assert toy(patience=math.inf).patience == math.inf
    with pytest.raises(ConfigError, match=r"^config key 'plugin.toy.patience' must be a number within float32's range or infinite"):
        toy(patience=1e300)


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--set", "eval.lr=1e308"], ["config key 'eval.lr'", "finite number within float32's range", "got 1e+308"]),
        (["--plugin", "edf", "--set", "plugin.edf.beta=1e300"], ["config key 'plugin.edf.beta'", "float32's range"]),
        (["--image-size", "100000"], ["config key 'image_size'", "[0, 4096]", "--image-size"]),
    ],
    ids=["eval.lr=1e308", "plugin.edf.beta=1e300", "image-size=100000"],
)
def test_dd_run_refuses_unrepresentable_values_before_any_directory(cli, tiny_run_args, tmp_path, extra, fragments):
    assert_cli_error(cli(*tiny_run_args(*extra)), *fragments)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_digits_refuses_an_image_size_beyond_memory_before_allocating(cli, tiny_run_args, tmp_path, monkeypatch):
    import ddcore.data.digits as digits

    with pytest.raises(ConfigError, match=r"image_size 4096 needs about 336.9 GiB .* use a smaller --image-size"):
        digits.check_memory(4096, available=2**34)
    digits.check_memory(32, available=2**30)  # 22 MiB of 1 GiB: fine
    monkeypatch.setattr(digits, "available_memory", lambda: 2**20)  # 1 MiB left: even 64 px is too much
    assert_cli_error(cli(*tiny_run_args("--image-size", "64")), "image_size 64 needs about", "--image-size")
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------
# A diverging network is a failed training, never a (chance-level) result
# ----------------------------------------------------------------------------------------------


def _tiny_training(**recipe: Any):
    from ddcore.models import ModelSpec, build_model
    from ddcore.training import TrainRecipe, tensor_batches

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(12, 1, 8, 8, generator=generator), torch.arange(3).repeat_interleave(4)
    torch.manual_seed(0)
    model = build_model(ModelSpec("convnet", 8, 2, "instancenorm"), 3, 1, 8)
    return model, tensor_batches(images, labels, 4, generator), TrainRecipe(**{"epochs": 5, "augment": "none", **recipe})


@pytest.mark.parametrize("recipe", [{"lr": 1e30}, {"weight_decay": 1e6}, {"lr": 1e38, "optimizer": "adam"}], ids=str)
def test_train_network_raises_when_training_diverges(recipe):
    from ddcore.training import TrainingDiverged, train_network

    model, batches, recipe = _tiny_training(**recipe)
    seen: list[int] = []
    with pytest.raises(TrainingDiverged) as info:
        train_network(model, batches, recipe, torch.device("cpu"), 8, on_epoch=seen.append)
    exc = info.value
    assert isinstance(exc, DDError) and exc.epochs == 5 and exc.member is None
    assert seen == list(range(exc.epoch))  # the diverged epoch is never handed on
    assert not math.isfinite(exc.loss) or exc.weights
    assert str(exc).startswith(f"training of the network diverged at epoch {exc.epoch + 1} of 5: ")


def test_a_sane_training_is_not_flagged():
    from ddcore.training import finite_parameters, train_network

    model, batches, recipe = _tiny_training()
    assert finite_parameters(train_network(model, batches, recipe, torch.device("cpu"), 8))


@pytest.mark.parametrize("mode", ["on", "off"])
def test_train_ensemble_names_the_diverging_member(mode):
    from ddcore.ensemble import Member, train_ensemble
    from ddcore.models import ModelSpec, build_model
    from ddcore.training import TrainingDiverged, TrainRecipe, tensor_batches

    generator = torch.Generator().manual_seed(0)
    images, labels = torch.randn(6, 1, 8, 8, generator=generator), torch.arange(3).repeat_interleave(2)
    good, bad = TrainRecipe(epochs=3, augment="none"), TrainRecipe(epochs=3, lr=1e30, augment="none")
    members = [Member(s, tensor_batches(images, labels, 6, torch.Generator().manual_seed(s)), r)
               for s, r in ((0, good), (1, bad), (2, good))]  # fmt: skip
    build = lambda: build_model(ModelSpec("convnet", 8, 2, "instancenorm"), 3, 1, 8)  # noqa: E731
    with pytest.raises(TrainingDiverged) as info:
        train_ensemble(build, members, "cpu", (1, 8, 8), mode=mode)
    assert info.value.member == 1


def test_divergence_advice_names_the_lr_that_was_used():
    from types import SimpleNamespace

    from ddcore.builtin.evaluate import divergence_advice
    from ddcore.config import EvalConfig
    from ddcore.training import TrainRecipe

    ctx = SimpleNamespace(config=SimpleNamespace(eval=EvalConfig(lr=1e6)))
    recipe = TrainRecipe(epochs=3, lr=1e6)
    settings = SimpleNamespace(recipe=recipe, use_learned_lr=True)
    plain = SimpleNamespace(lr=None)
    assert divergence_advice(ctx, settings, plain, "distilled", recipe) == "lower eval.lr (now 1e+06) or eval.weight_decay (now 0.0005)"
    learned = SimpleNamespace(lr=torch.tensor(250.0))
    advice = divergence_advice(ctx, settings, learned, "distilled", TrainRecipe(epochs=3, lr=250.0))
    assert advice.startswith("it trained at the distilled set's learned lr 250 (eval.use_learned_lr = true)")
    assert "eval.use_learned_lr=false" in advice and "eval.lr (now 1e+06)" in advice
    assert divergence_advice(ctx, settings, learned, "random", recipe).startswith("lower eval.lr (now 1e+06)")


@pytest.mark.parametrize(
    "option, fragments",
    [("eval.lr=1e6", ["row acc (repeat 0)", "lower eval.lr (now 1e+06)"]),
     ("eval.weight_decay=1e6", ["row acc (repeat 0)", "eval.weight_decay (now 1e+06)"])],  # fmt: skip
    ids=["lr", "weight_decay"],
)
def test_dd_run_with_a_diverging_evaluation_fails_without_a_result(cli, tiny_run_args, tmp_path, option, fragments):
    """The issue's input, made small: ``--set eval.lr=1e6`` used to report 10% (chance) with exit 0."""
    args = [a if a != "0" or i != 4 else "1" for i, a in enumerate(tiny_run_args())]  # --eval-runs 1
    assert args[3:5] == ["--eval-runs", "1"]
    line = assert_cli_error(cli(*args, "--eval-epochs", "8", "--set", "eval.width=8", "--set", option, "-q"),
                            "training of the evaluation network", "diverged at epoch", *fragments)  # fmt: skip
    assert "10.00" not in line
    run = tmp_path / "run"
    assert not (run / "metrics.json").exists()
    assert strict_json(run / "manifest.json")["status"] == "failed"


def test_experts_and_teachers_name_their_options_when_training_diverges(tiny_dataset):
    from ddcore.models import ModelSpec
    from ddcore.teacher import train_teacher
    from ddcore.tm.experts import ExpertRecipe, train_expert
    from ddcore.training import TrainingDiverged, TrainRecipe

    spec = ModelSpec("convnet", 8, 2, "instancenorm")
    recipe = ExpertRecipe(1, 3, spec, TrainRecipe(epochs=3, lr=1e30, augment="none"), seed=0)
    with pytest.raises(TrainingDiverged) as info:
        train_expert(tiny_dataset, recipe, 0)
    assert str(info.value).startswith("training of expert 0 diverged at epoch ")
    assert "lower experts.lr (now 1e+30) or experts.weight_decay (now 0.0005)" in str(info.value)
    with pytest.raises(TrainingDiverged) as info:
        train_teacher(tiny_dataset, recipe)
    assert "training of the teacher (convnet, 3 epochs) diverged" in str(info.value)
    assert "lower its lr (now 1e+30)" in str(info.value)


def test_the_kd_student_names_its_options_when_training_diverges():
    from ddcore.models import ModelSpec, build_model
    from ddcore.training import TrainingDiverged
    from ddcore_diffsel.kd import KDRecipe, train_student

    torch.manual_seed(0)
    student, teacher = (build_model(ModelSpec("convnet", 8, 2, "instancenorm"), 3, 1, 8) for _ in range(2))
    recipe = KDRecipe(epochs=3, batch_size=4, lr=1e36, weight_decay=0.01, temperature=4.0, cutmix=0.0, min_scale=0.5, flip=False)
    images = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with pytest.raises(TrainingDiverged) as info:
        train_student(student, teacher, images, recipe, torch.Generator().manual_seed(1), "cpu")
    message = str(info.value)
    assert message.startswith("training of the KD student diverged at epoch ") and "\n" not in message
    assert message.endswith("lower plugin.diffsel.kd.lr (now 1e+36) or plugin.diffsel.kd.weight_decay (now 0.01)")


@pytest.mark.parametrize("learned", [None, 1e30], ids=["eval.lr", "learned lr"])
def test_the_compdd_protocol_names_the_lr_it_used_when_training_diverges(dd_context, learned):
    from ddcore.distilled import DistilledSet
    from ddcore.training import TrainingDiverged
    from ddcore_compdd.protocol import evaluate_protocol, protocol_settings

    ctx = dd_context(eval={"lr": 1e30})
    dataset = ctx.dataset
    images, labels = dataset.load("train", list(range(10)))
    distilled = DistilledSet(images, labels, list(dataset.class_names), dataset.mean, dataset.std, lr=learned)
    settings = protocol_settings(ctx, dataset, runs=1, epochs=2, width=8)
    with pytest.raises(TrainingDiverged) as info:
        evaluate_protocol(ctx, distilled, settings)
    message = str(info.value)
    assert message.startswith("training of the Comp-DD protocol's network (repeat 0) diverged at epoch ")
    assert ("learned lr 1e+30, which the protocol prescribes" if learned else "lower eval.lr (now 1e+30)") in message
    assert message.endswith("the protocol fixes weight decay 0.0005 and momentum 0.9")
