"""The run configuration: parsing, merging, typed validation, one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from ddcore.config import RunConfig, build_config, deep_merge, from_mapping, parse_assignment, read_config_file
from ddcore.errors import ConfigError


def test_defaults_build():
    config = build_config({})
    assert isinstance(config, RunConfig)
    assert (config.dataset, config.ipc, config.seed, config.eval.runs) == ("digits", 10, 0, 3)


def test_nested_tables_and_lists():
    config = build_config({"ipc": 2, "plugins": ["a", "b"], "eval": {"epochs": 7, "baseline": ["random"]}})
    assert config.ipc == 2 and config.plugins == ["a", "b"]
    assert config.eval.epochs == 7 and config.eval.baseline == ["random"]


def test_int_accepted_for_float_but_not_bool_for_int():
    assert build_config({"eval": {"lr": 1}}).eval.lr == 1.0
    with pytest.raises(ConfigError, match=r"config key 'ipc': expected an integer, got True"):
        build_config({"ipc": True})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"ipcc": 3}, r"unknown config key 'ipcc'; did you mean 'ipc'\?"),
        ({"eval": {"epoch": 3}}, r"unknown config key 'eval.epoch'; did you mean 'eval.epochs'\?"),
        ({"ipc": "ten"}, r"config key 'ipc': expected an integer, got 'ten' \(str\)"),
        ({"ipc": 0}, r"config key 'ipc' must be at least 1, got 0 \(option --ipc\)"),
        ({"eval": {"optimizer": "rmsprop"}}, r"config key 'eval.optimizer': expected one of 'sgd', 'adam', 'adamw'"),
        ({"eval": {"baseline": ["everything"]}}, r"unknown baseline 'everything'"),
        ({"eval": 3}, r"config key 'eval': expected a table, got 3"),
        ({"eval": {"lr": -1}}, r"'eval.lr' must be > 0"),
    ],
)
def test_bad_values_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message) as info:
        build_config(data)
    assert "\n" not in str(info.value)


def test_parse_assignment_reads_toml_values():
    assert parse_assignment("eval.epochs=12") == {"eval": {"epochs": 12}}
    assert parse_assignment("eval.baseline=['random','full']") == {"eval": {"baseline": ["random", "full"]}}
    assert parse_assignment("name=plain words") == {"name": "plain words"}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_assignment("no-equals-sign")


def test_deep_merge_override_wins_per_key():
    merged = deep_merge({"ipc": 1, "eval": {"runs": 3, "epochs": 9}}, {"eval": {"epochs": 2}})
    assert merged == {"ipc": 1, "eval": {"runs": 3, "epochs": 2}}


def test_read_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist \(option --config\)"):
        read_config_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("ipc = = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML"):
        read_config_file(bad)
    good = tmp_path / "good.toml"
    good.write_text('dataset = "digits"\nipc = 3\n[eval]\nruns = 1\n')
    assert build_config(read_config_file(good)).eval.runs == 1


@dataclass
class ToyOptions:
    beta: float = 1.0
    mode: Literal["a", "b"] = "a"
    layer: str | None = None


def test_plugin_option_dataclass_validation():
    options = from_mapping(ToyOptions, {"beta": 2, "layer": "layer4"}, prefix="plugin.toy.")
    assert options == ToyOptions(beta=2.0, mode="a", layer="layer4")
    with pytest.raises(ConfigError, match=r"config key 'plugin.toy.beta': expected a number, got 'x'"):
        from_mapping(ToyOptions, {"beta": "x"}, prefix="plugin.toy.")
    with pytest.raises(ConfigError, match=r"unknown config key 'plugin.toy.bta'; did you mean 'plugin.toy.beta'"):
        from_mapping(ToyOptions, {"bta": 1}, prefix="plugin.toy.")


def tm_options(config, tmp_path):
    """The resolved ``[tm]`` options of a run config (the distiller registry applies the preset)."""
    from ddcore.runner import Pipeline

    return Pipeline({"cache_dir": str(tmp_path), **config}, write=False).config.distill_options


def test_tm_presets_fill_unset_keys_and_explicit_keys_win(tmp_path):
    config = tm_options({"distill": "tm", "ipc": 1, "tm": {"iterations": 7}}, tmp_path)
    assert config.preset == "digits-ipc1" and config.iterations == 7 and config.syn_steps == 10
    spec = tm_options({"distill": "tm", "dataset": "imagefolder", "ipc": 10, "data_root": str(tmp_path)}, tmp_path)
    assert spec.preset == "spec-ipc10" and spec.syn_steps == 40 and spec.lr_img == 1e3
    assert tm_options({"distill": "tm", "tm": {"preset": "none", "max_start_epoch": 4}}, tmp_path).iterations == 200
    assert build_config({"distill": "none"}).distill_options is None  # selection-only runs take no options
    from ddcore.runner import Pipeline

    first = Pipeline({"distill": "tm", "ipc": 50, "cache_dir": str(tmp_path)}, write=False).config
    again = Pipeline(first.to_dict(), write=False).config  # a resolved config stays the same
    assert again.distill_options == first.distill_options and again.to_dict() == first.to_dict()
    with pytest.raises(ConfigError, match=r"config key 'tm.preset': unknown preset 'fast'"):
        tm_options({"distill": "tm", "tm": {"preset": "fast"}}, tmp_path)


def test_a_dataset_registered_with_a_preset_family_gets_its_presets(tmp_path):
    """``register(..., presets="digits")`` makes ``tm.preset = "auto"`` pick ``digits-ipc<k>``; explicit keys win."""
    from ddcore import hookimpl
    from ddcore.data.digits import load_digits_dataset
    from ddcore.runner import Pipeline

    class SmallDigits:
        name = "small-digits"

        @hookimpl
        def dd_register_datasets(self, register):
            register("small/digits", load_digits_dataset, presets="digits")
            register("small/other", load_digits_dataset)

    base = {"distill": "tm", "ipc": 1, "cache_dir": str(tmp_path)}
    family = Pipeline({**base, "dataset": "small/digits", "tm": {"syn_steps": 7}}, [SmallDigits()], write=False).config.distill_options
    assert family.preset == "digits-ipc1" and family.iterations == 200 and family.syn_steps == 7
    other = Pipeline({**base, "dataset": "small/other"}, [SmallDigits()], write=False).config.distill_options
    assert other.preset == "spec-ipc1" and other.iterations == 10000
