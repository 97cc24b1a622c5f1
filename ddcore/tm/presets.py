"""Per-IPC defaults for trajectory matching, selectable by name with ``[tm] preset = "..."``, and the check
that the chosen preset fits the data and the machine.

``spec-ipc{1,10,50}`` are the EDF/DATM release's settings for 10-class ImageNet subsets at 128 px
(../shared/spec/edf.md, "Hyperparameters"), meant for GPUs: 10000 iterations, 40-60 unrolled steps.
``digits-ipc{1,10,50}`` are the same recipe scaled down for the embedded 32 px digits on a CPU (fewer
iterations and unrolled steps, a shorter expert window); ``cpu-ipc{1,10,50}`` are the same CPU-sized
values under a name for any small dataset on a CPU. ``auto`` (the default) takes ``<family>-ipc<k>``
when the dataset's preset family has presets (``digits`` and the datasets registered with
``presets="digits"``), else ``spec-ipc<k>``, with ``k`` the preset IPC nearest to the run's; ``none``
keeps :class:`~ddcore.tm.config.TMConfig`'s plain defaults. Keys set in ``[tm]`` always win over the
preset; the resolved values are recorded in the manifest.

**Does the preset fit?** Before any work (:meth:`ddcore.tm.distiller.TrajectoryMatchingDistiller.check`,
once the data is built and the device known) :func:`project_matching` projects the matching's cost:
the floating-point operations of one training step of the run's network per image (counted once on
PyTorch's ``meta`` device by ``torch.utils.flop_counter``, no real work), times 2 for an unrolled
matching step, times ``iterations x syn_steps x images per step``, at a nominal throughput per device
kind (:data:`NOMINAL_FLOPS`: 10 GFLOP/s for a CPU, measured for ConvNet-D3 on a 2-core CPU in
``bench/tm_bench.py``; 1 TFLOP/s for a GPU, a deliberately low figure). The data's own cost is what
training the experts takes (``experts.num x`` their epochs ``x`` training images, one training step
each). The matching is **far beyond what the data warrants** when it projects more than
:data:`FAR_SECONDS` *and* more than :data:`FAR_RATIO` times the experts' work. Then a GPU-sized
``spec-*`` preset on a CPU is refused (one line naming ``tm.preset = "cpu-ipc<k>"`` and its projection,
or ``tm.iterations``), and any other preset gets a warning. The projection and the reason for the
preset are one reporter line and ``records["tm_preset"]`` in the manifest. The times are rough (a
nominal rate, not a measurement of this machine): they are there to tell minutes from days.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
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
# The CPU-sized recipe under a name for any small dataset on a CPU (values of digits-ipc<k>).
TM_PRESETS.update({f"cpu-ipc{k}": dict(TM_PRESETS[f"digits-ipc{k}"]) for k in (1, 10, 50)})
PRESET_IPCS = (1, 10, 50)
#: Presets sized for GPUs: refused on a CPU when far beyond what the data warrants (module docstring).
GPU_SIZED = ("spec-ipc1", "spec-ipc10", "spec-ipc50")
#: Nominal floating-point throughput (FLOP/s) per device kind for the projection (module docstring).
NOMINAL_FLOPS = {"cpu": 1e10, "cuda": 1e12, "mps": 2e11}
#: Matching is "far beyond what the data warrants" above this many projected seconds ...
FAR_SECONDS = 3600.0
#: ... and this many times the work of training the experts.
FAR_RATIO = 20.0
#: An unrolled matching step per image costs about this many training steps (forward, backward, and the
#: backward through the unrolled updates).
MATCHING_STEP_FACTOR = 2.0


def resolve_tm_preset(name: str, dataset: str, ipc: int) -> tuple[str, dict[str, Any]]:
    """``(resolved name, values)`` for ``[tm] preset = name``; ``dataset`` is the dataset's name or its
    registered preset family (``register(..., presets="digits")``).

    >>> resolve_tm_preset("auto", "digits", 8)[0], resolve_tm_preset("auto", "imagefolder", 40)[0]
    ('digits-ipc10', 'spec-ipc50')
    >>> resolve_tm_preset("cpu-ipc1", "imagefolder", 2)[1]["iterations"]
    200
    >>> resolve_tm_preset("none", "digits", 1)
    ('none', {})

    A family's name alone (``cpu``, ``digits``, ``spec``, ...) takes that family's preset at the IPC nearest
    to the run's, as ``auto`` does for the dataset's own family (so one grid can name it for every IPC):

    >>> resolve_tm_preset("cpu", "imagefolder", 8)[0]
    'cpu-ipc10'
    """
    if name == "none":
        return "none", {}
    nearest = nearest_preset_ipc(ipc)
    if name == "auto":
        name = f"{dataset}-ipc{nearest}" if f"{dataset}-ipc{nearest}" in TM_PRESETS else f"spec-ipc{nearest}"
    elif f"{name}-ipc{nearest}" in TM_PRESETS:
        name = f"{name}-ipc{nearest}"
    if name not in TM_PRESETS:
        families = sorted({key.rsplit("-ipc", 1)[0] for key in TM_PRESETS})
        known = ", ".join(["auto", "none", *families, *TM_PRESETS])
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


def nearest_preset_ipc(ipc: int) -> int:
    """The preset IPC (1, 10 or 50) nearest to ``ipc``, the smaller on a tie.

    >>> nearest_preset_ipc(2), nearest_preset_ipc(30), nearest_preset_ipc(100)
    (1, 10, 50)
    """
    return min(PRESET_IPCS, key=lambda k: (abs(k - ipc), k))


def preset_reason(name: str, family: str, ipc: int) -> str:
    """Why preset ``name`` is the run's, in words (what it is sized for, and whether ``auto`` takes it).

    >>> preset_reason("spec-ipc1", "imagefolder", 2)
    "spec-ipc1: the EDF release's GPU-sized recipe; what auto takes for 'imagefolder' (no presets of its own) at ipc 2 (nearest preset ipc 1)"
    """
    if name == "none":
        return "none: the [tm] defaults and the keys set"
    kind = (
        "the EDF release's GPU-sized recipe" if name in GPU_SIZED
        else "the CPU-sized recipe for the embedded digits" if name.startswith("digits-")
        else "the CPU-sized recipe" if name.startswith("cpu-") else "a registered preset"
    )  # fmt: skip
    nearest = nearest_preset_ipc(ipc)
    auto = resolve_tm_preset("auto", family, ipc)[0]
    if auto != name:
        return f"{name}: {kind}; named in the config (auto would take {auto})"
    own = "its preset family" if name.startswith(f"{family}-") else "no presets of its own"
    return f"{name}: {kind}; what auto takes for {family!r} ({own}) at ipc {ipc} (nearest preset ipc {nearest})"


@functools.lru_cache(maxsize=32)
def train_step_flops(model_spec: Any, num_classes: int, channels: int, image_size: int) -> int:
    """Floating-point operations of one training step (forward and backward) of the network per image.

    Counted on PyTorch's ``meta`` device with ``torch.utils.flop_counter.FlopCounterMode`` (shapes only:
    no memory, no real arithmetic). ``model_spec``: a :class:`~ddcore.models.ModelSpec`.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ddcore.models import build_model

    with torch.device("meta"):
        with torch.random.fork_rng(devices=[]):
            model = build_model(model_spec, num_classes, channels, image_size)
        images = torch.empty(1, channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter:
        model(images).sum().backward()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class MatchingProjection:
    """What :func:`project_matching` projects (module docstring). FLOPs, seconds at the nominal rate."""

    preset: str
    reason: str
    device: str
    train_images: int
    images_per_step: int
    iterations: int
    syn_steps: int
    step_flops_per_image: int
    matching_flops: float
    experts_flops: float
    matching_seconds: float
    experts_seconds: float

    @property
    def ratio(self) -> float:
        """Matching work over the experts' work."""
        return self.matching_flops / max(self.experts_flops, 1.0)

    @property
    def far_beyond(self) -> bool:
        return self.matching_seconds > FAR_SECONDS and self.ratio > FAR_RATIO

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "far_beyond": self.far_beyond,
                "nominal_flops_per_s": NOMINAL_FLOPS.get(self.device, NOMINAL_FLOPS["cpu"])}  # fmt: skip


def project_matching(options: Any, family: str, ipc: int, model_spec: Any, dataset: Any, device: str,
                     num_experts: int, expert_epochs: int, num_images: int) -> MatchingProjection:  # fmt: skip
    """Project the matching's and the experts' cost for a run (module docstring).

    Args:
        options: the resolved ``[tm]`` options (:class:`~ddcore.tm.config.TMConfig`).
        family, ipc: the dataset's preset family (or name) and the run's ipc, for the reason.
        model_spec, dataset: the run's network and data (classes, image shape, training images).
        device: the device kind, ``"cpu"``, ``"cuda"`` or ``"mps"``.
        num_experts, expert_epochs: the experts' recipe; ``num_images``: the synthetic set's size.
    """
    channels, size, _ = dataset.image_shape
    per_image = train_step_flops(model_spec, dataset.num_classes, channels, size)
    batch = min(options.batch_syn, num_images) if options.batch_syn else num_images
    matching = MATCHING_STEP_FACTOR * per_image * options.iterations * options.syn_steps * batch
    train_images = len(dataset.train)
    experts = float(per_image) * num_experts * expert_epochs * train_images
    rate = NOMINAL_FLOPS.get(device, NOMINAL_FLOPS["cpu"])
    return MatchingProjection(
        preset=options.preset, reason=preset_reason(options.preset, family, ipc), device=device,
        train_images=train_images, images_per_step=batch, iterations=options.iterations, syn_steps=options.syn_steps,
        step_flops_per_image=per_image, matching_flops=matching, experts_flops=experts,
        matching_seconds=matching / rate, experts_seconds=experts / rate,
    )  # fmt: skip


def human_seconds(seconds: float) -> str:
    """``"45 s"``, ``"12 min"``, ``"14 h"``, ``"3.2 days"``.

    >>> human_seconds(45), human_seconds(720), human_seconds(50400), human_seconds(280000)
    ('45 s', '12 min', '14 h', '3.2 days')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.1f} days"
