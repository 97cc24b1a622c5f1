"""[plugin.edf] options: presets by IPC, explicit keys win, bad values are one-line errors naming the key."""

from __future__ import annotations

import doctest

import pytest
import torch

import ddcore_edf.cam_model
import ddcore_edf.config
import ddcore_edf.cpd
import ddcore_edf.dae
from ddcore import ConfigError
from ddcore.config import from_mapping
from ddcore_edf.config import EDF_PRESETS, EDFConfig


def options(**section):
    return from_mapping(EDFConfig, section, prefix="plugin.edf.")


@pytest.mark.parametrize(
    ("ipc", "preset", "interval", "alpha", "beta"),
    [(1, "ipc1", 50, 0.0, 1.0), (10, "ipc10", 100, 0.25, 1.0), (50, "ipc50", 100, 0.375, 1.0), (3, "ipc1", 50, 0.0, 1.0)],
)
def test_auto_preset_follows_the_spec_table(ipc, preset, interval, alpha, beta):
    resolved = options().resolved(ipc)
    assert (resolved.preset, resolved.interval, resolved.alpha, resolved.beta) == (preset, interval, alpha, beta)


def test_named_presets_and_explicit_keys():
    woof = options(preset="woof-ipc10")
    assert (woof.beta, woof.alpha, woof.interval) == (2.0, 0.25, 100)
    mixed = options(preset="ipc50", alpha=0.1).resolved(1)  # a named preset ignores the run's IPC
    assert (mixed.preset, mixed.alpha, mixed.interval) == ("ipc50", 0.1, 100)
    assert options(interval=7).resolved(10).interval == 7
    assert set(EDF_PRESETS) == {"ipc1", "ipc10", "ipc50", "woof-ipc10", "woof-ipc50"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"alpha": 1.0}, r"'plugin.edf.alpha' must be in \[0, 1\), got 1.0 \(alpha = 1 would drop every element\)"),
        ({"alpha": -0.5}, r"'plugin.edf.alpha' must be in \[0, 1\), got -0.5"),
        ({"beta": -1}, r"'plugin.edf.beta' must be >= 0"),
        ({"act_threshold": 1.5}, r"'plugin.edf.act_threshold' must be in \[0, 1\], got 1.5"),
        ({"interval": 0}, r"'plugin.edf.interval' must be at least 1"),
        ({"preset": "ipc100"}, r"'plugin.edf.preset': unknown preset 'ipc100'; choose one of auto, none, ipc1"),
        ({"preset": "none", "beta": 1.0}, r"preset' is 'none', so set plugin.edf.interval, plugin.edf.alpha"),
        ({"cam_method": "scorecam"}, r"'plugin.edf.cam_method': expected one of 'gradcam', 'smooth_gradcampp'"),
        ({"cam_samples": 0}, r"'plugin.edf.cam_samples' must be at least 1"),
        ({"cam_model": "timm:resnet18"}, r"'plugin.edf.cam_model': expected 'run', 'teacher' or 'torchvision:<arch>'"),
        ({"cam_model": "torchvision:resnet999", "cam_weights": "x.pt"}, r"torchvision has no classification model 'resnet999'"),
        ({"cam_model": "torchvision:resnet18"}, r"'plugin.edf.cam_weights' must name a local weights file"),
        ({"cam_weights": "w.pt"}, r"'plugin.edf.cam_weights' is only for cam_model = 'torchvision:<arch>'"),
        ({"class_index": [0, -1]}, r"'plugin.edf.class_index\[1\]' must be at least 0, got -1"),
        ({"betta": 1.0}, r"unknown config key 'plugin.edf.betta'; did you mean 'plugin.edf.beta'\?"),
    ],
)
def test_bad_values_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        options(**section)


def test_missing_weights_file_is_refused_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match=r"'plugin.edf.cam_weights': .*missing.pt is not a file"):
        options(cam_model="torchvision:resnet18", cam_weights=str(tmp_path / "missing.pt"))
    weights = tmp_path / "w.pt"
    torch.save({}, weights)  # a file, but no weights: opened and refused at the check too (test_edf_weights.py)
    with pytest.raises(ConfigError, match=r"w.pt does not hold a state dict .*'plugin.edf.cam_weights'"):
        options(cam_model="torchvision:resnet18", cam_weights=str(weights))


@pytest.mark.parametrize("module", [ddcore_edf.config, ddcore_edf.dae, ddcore_edf.cpd, ddcore_edf.cam_model])
def test_docstring_examples(module):
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert failures == 0
