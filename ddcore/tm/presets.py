"""Per-IPC defaults for trajectory matching, selectable by name with ``[tm] preset = "..."``.

``spec-ipc{1,10,50}`` are the EDF/DATM release's settings for 10-class ImageNet subsets at 128 px
(../shared/spec/edf.md, "Hyperparameters"), meant for GPUs: 10000 iterations, 40-60 unrolled steps.
``digits-ipc{1,10,50}`` are the same recipe scaled down for the embedded 32 px digits on a CPU (fewer
iterations and unrolled steps, a shorter expert window). ``auto`` (the default) takes
``<dataset>-ipc<k>`` when it exists, else ``spec-ipc<k>``, with ``k`` the preset IPC nearest to the
run's; ``none`` keeps :class:`~ddcore.config.TMConfig`'s plain defaults. Keys set in ``[tm]`` always
win over the preset; the resolved values are recorded in the manifest.
"""

from __future__ import annotations

from typing import Any, Mapping

from ddcore.errors import ConfigError

TM_PRESETS: dict[str, dict[str, Any]] = {
    "spec-ipc1": {
        "iterations": 10000, "syn_steps": 40, "expert_epochs": 2, "cur_max_start_epoch": 5, "max_start_epoch": 10,
        "expansion_end": 1000, "batch_syn": 1000, "lr_img": 1e4, "lr_lr": 1e-5, "lr_y": 2.0, "skip_threshold": 2.0,
        "checkpoint_every": 100,
    },
    "spec-ipc10": {
        "iterations": 10000, "syn_steps": 40, "expert_epochs": 2, "cur_max_start_epoch": 10, "max_start_epoch": 20,
        "expansion_end": 1000, "batch_syn": 200, "lr_img": 1e3, "lr_lr": 1e-5, "lr_y": 2.0, "skip_threshold": 2.0,
        "checkpoint_every": 100,
    },
    "spec-ipc50": {
        "iterations": 10000, "syn_steps": 60, "expert_epochs": 2, "cur_max_start_epoch": 20, "max_start_epoch": 40,
        "expansion_end": 1500, "batch_syn": 200, "lr_img": 100.0, "lr_lr": 1e-5, "lr_y": 5.0, "skip_threshold": 1.25,
        "checkpoint_every": 100,
    },
    # Scaled for digits on a 2-core CPU (provisional: chosen from one IPC 1 comparison, see the README).
    "digits-ipc1": {
        "iterations": 200, "syn_steps": 10, "expert_epochs": 2, "cur_max_start_epoch": 2, "max_start_epoch": 4,
        "expansion_end": 100, "batch_syn": 0, "lr_img": 100.0, "lr_lr": 1e-5, "lr_y": 2.0, "skip_threshold": 0.0,
    },
    "digits-ipc10": {
        "iterations": 150, "syn_steps": 10, "expert_epochs": 2, "cur_max_start_epoch": 2, "max_start_epoch": 4,
        "expansion_end": 100, "batch_syn": 50, "lr_img": 100.0, "lr_lr": 1e-5, "lr_y": 2.0, "skip_threshold": 0.0,
    },
    "digits-ipc50": {
        "iterations": 100, "syn_steps": 10, "expert_epochs": 2, "cur_max_start_epoch": 3, "max_start_epoch": 6,
        "expansion_end": 100, "batch_syn": 100, "lr_img": 100.0, "lr_lr": 1e-5, "lr_y": 5.0, "skip_threshold": 0.0,
    },
}
PRESET_IPCS = (1, 10, 50)


def resolve_tm_preset(name: str, dataset: str, ipc: int) -> tuple[str, dict[str, Any]]:
    """``(resolved name, values)`` for ``[tm] preset = name``; ``dataset`` is the dataset's name or its
    registered preset family (``register(..., presets="digits")``).

    >>> resolve_tm_preset("auto", "digits", 8)[0], resolve_tm_preset("auto", "imagefolder", 40)[0]
    ('digits-ipc10', 'spec-ipc50')
    >>> resolve_tm_preset("none", "digits", 1)
    ('none', {})
    """
    if name == "none":
        return "none", {}
    if name == "auto":
        nearest = min(PRESET_IPCS, key=lambda k: (abs(k - ipc), k))
        name = f"{dataset}-ipc{nearest}" if f"{dataset}-ipc{nearest}" in TM_PRESETS else f"spec-ipc{nearest}"
    if name not in TM_PRESETS:
        known = ", ".join(["auto", "none", *TM_PRESETS])
        raise ConfigError(f"config key 'tm.preset': unknown preset {name!r}; choose one of {known}")
    return name, dict(TM_PRESETS[name])


def apply_tm_preset(data: Mapping[str, Any], family: str = "") -> dict[str, Any]:
    """Fill the ``[tm]`` table of a raw config from its preset when ``distill = "tm"`` (explicit keys win).

    ``family``: the dataset's preset family, when its registry entry names one (else its name is used).
    """
    data = dict(data)
    tm = data.get("tm", {})
    if data.get("distill") != "tm" or not isinstance(tm, Mapping):
        return data
    ipc = data.get("ipc", 10)
    dataset = family or str(data.get("dataset", "digits"))
    name, values = resolve_tm_preset(str(tm.get("preset", "auto")), dataset, ipc if isinstance(ipc, int) else 10)
    data["tm"] = {**values, **tm, "preset": name}
    return data
