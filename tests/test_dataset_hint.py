"""An unknown benchmark dataset named after an installed but inactive plugin points at --plugin."""

from __future__ import annotations

import pytest

from ddcore.errors import ConfigError
from ddcore.runner import Pipeline


def test_a_plugin_dataset_without_its_plugin_names_the_plugin(tmp_path):
    with pytest.raises(ConfigError, match=r"installed plugin compdd: add --plugin compdd") as info:
        Pipeline({"dataset": "compdd/mini-hard", "ipc": 1, "out": str(tmp_path / "run")})
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()


def test_an_unknown_family_gets_no_plugin_hint():
    with pytest.raises(ConfigError) as info:
        Pipeline({"dataset": "nosuchplugin/x", "ipc": 1})
    assert "--plugin" not in str(info.value) and "Available: cifar10, cifar100, digits" in str(info.value)
