"""The activation maps of the synthetic images over a run: computed every ``interval`` iterations, reused
in between, and saved inside the distiller's checkpoints (ddcore's ``dd_state_dict`` hook) so that a
resumed run reuses the exact maps and counters an uninterrupted one would have.

State (:meth:`CamMaps.state_dict`, read back with ``torch.load(path, weights_only=True)``)::

    step       the iteration the maps were computed at (-1: none yet)
    maps       [N, H, W] float32 in [0, 1], or None
    targets    [N] int64, each synthetic image's dataset class, or None
    refreshes  how many times the maps were computed
    active     share of pixels emphasised (at or above the threshold, > 0), one per refresh
    empty      all-zero maps (no positive evidence: weight 1 everywhere), one count per refresh

Smooth Grad-CAM++'s noise of synthetic image ``i`` at the refresh of iteration ``t`` comes from its own
seed ``ctx.derive_seed("edf", "cam", t, i)``: the maps depend neither on ``cam_batch_size`` nor on the
chunk the memory bound picks (:func:`ddcore.cam.grad_cam`, tested bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ddcore import RunContext
from ddcore.adapt import adapted, adapted_dataset
from ddcore.cam import cam_chunk_size, default_layer_name, grad_cam, resolve_layer
from ddcore_edf.cam_model import cam_input, cam_teacher, class_map, load_cam_model, probe_classes
from ddcore_edf.config import EDFConfig
from ddcore_edf.dae import emphasised, empty_maps, last_refresh


@dataclass
class CamMaps:
    """The CAM model, its layer and the maps in use (one per run, kept in ``ctx.stash["edf"]``)."""

    model: nn.Module  # takes the dataset's images (a foreign model wrapped with ddcore.adapt's adapter, ZCA undone)
    layer: nn.Module
    layer_name: str
    classes: torch.Tensor  # [num_classes] the CAM model's index of each dataset class
    targets: torch.Tensor | None = None  # [N] dataset class of each synthetic image, fixed at first use
    maps: torch.Tensor | None = None  # [N, H, W]
    step: int = -1
    refreshes: int = 0
    active: list[float] = field(default_factory=list)  # share of pixels emphasised, per refresh
    empty: list[int] = field(default_factory=list)  # all-zero maps, per refresh
    chunk: int | None = None  # images per CAM pass when cam_batch_size = 0 (bounded by memory), fixed at first use
    inner: nn.Module | None = None  # the CAM model itself, inside any adapter: torchcam adds its noise at its input
    source: dict = field(default_factory=dict)  # what the CAM model is (teacher: path, epochs, test accuracy)

    @classmethod
    def build(cls, ctx: RunContext, config: EDFConfig) -> "CamMaps":
        """Load the CAM model, check its layer and label space against the dataset (one probe image)."""
        dataset = ctx.dataset
        if config.cam_model == "teacher":
            model, source = cam_teacher(ctx, config)
            model = model.to(ctx.device).eval().requires_grad_(False)
        else:
            model = load_cam_model(ctx, config.cam_model, config.cam_weights)
            source = {"kind": config.cam_model}
            if config.cam_model == "run" and "classifier" in ctx.records:
                source.update(ctx.records["classifier"])
        inner = model
        layer_name = config.cam_layer or default_layer_name(model)
        layer = resolve_layer(model, layer_name, option="plugin.edf.cam_layer")  # the same module inside the wrapper
        target = cam_input(config, dataset)
        if target is not None and config.cam_input_norm == "dataset":  # the images as handed out (whitened with ZCA)
            model = adapted(model, dataset.mean, dataset.std, target).to(ctx.device)
        elif target is not None:  # pixels, re-normalised for the model: a ZCA dataset's whitening is undone first
            model = adapted_dataset(model, dataset, target).to(ctx.device)
        example = dataset.train[0][0].unsqueeze(0).to(ctx.device)
        classes = class_map(
            probe_classes(model, example), dataset.num_classes, config.class_index, dataset.extra.get("imagenet_index")
        )
        return cls(model, layer, layer_name, classes.to(ctx.device), inner=inner, source=source)

    def noise_module(self, config: EDFConfig) -> nn.Module | None:
        """Where Smooth Grad-CAM++'s noise goes: the CAM model's own input for ``cam_variant = "torchcam"`` (behind
        any input adapter, as torchcam wraps the model itself), else the dataset's images (``None``)."""
        return self.inner if config.cam_variant == "torchcam" and self.inner is not self.model else None

    def targets_for(self, labels: torch.Tensor) -> torch.Tensor:
        """Each synthetic image's dataset class: hard labels as they are, soft ones by argmax, fixed at first use."""
        if self.targets is None:
            self.targets = (labels if labels.ndim == 1 else labels.argmax(dim=1)).long()
        return self.targets

    def compute(self, ctx: RunContext, config: EDFConfig, images: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """Fresh maps ``[N, H, W]`` of ``images [N, C, H, W]`` for their classes, mapped to the CAM model's labels."""
        targets = self.classes[self.targets_for(labels).to(self.classes.device)]
        seeds = [ctx.derive_seed("edf", "cam", step, index) for index in range(images.shape[0])]
        return grad_cam(
            self.model, self.layer, images, targets,
            method=config.cam_method, samples=config.cam_samples, noise=config.cam_noise, seeds=seeds,
            batch_size=config.cam_batch_size or self.chunk_size(ctx, config, images),
            variant=config.cam_variant, noise_module=self.noise_module(config),
        )  # fmt: skip

    def chunk_size(self, ctx: RunContext, config: EDFConfig, images: torch.Tensor) -> int | None:
        """Images per CAM pass for ``cam_batch_size = 0``: the most whose pass costs no more memory than one
        matching step of this run (the smaller of the two unrolls' projected peaks, excluding the state
        both hold), so a refresh never raises the run's peak. ``None`` (all at once) when the run has no
        trajectory-matching plan. Depends only on the run's settings, never on the device's free memory,
        so a resumed run chunks as the original did (the maps do not depend on the chunking anyway)."""
        if self.chunk is None:
            from ddcore.tm.memory import projected_step_bytes

            budget = projected_step_bytes(ctx)
            if budget is None:
                return None
            self.chunk = cam_chunk_size(
                self.model, self.layer, tuple(images.shape[1:]), images.shape[0], budget,
                method=config.cam_method, samples=config.cam_samples, variant=config.cam_variant,
                noise_module=self.noise_module(config),
            )  # fmt: skip
            ctx.records.setdefault("edf", {}).setdefault("cam", {})["chunk"] = self.chunk
        return self.chunk

    def current(self, ctx: RunContext, config: EDFConfig, images: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """The maps in use at ``step``: recomputed when due, else the last ones (reloaded after a resume)."""
        interval = config.interval
        assert interval is not None
        due = last_refresh(step, interval)
        if self.maps is not None and self.step == due:
            return self.maps
        # Due now (a resumed run restored the maps of its last refresh): compute, use until the next refresh.
        self.maps = self.compute(ctx, config, images, labels, due)
        self.step = due
        self.refreshes += 1
        self.active.append(float(emphasised(self.maps, config.act_threshold).float().mean()))
        self.empty.append(empty_maps(self.maps))
        return self.maps

    # -- resume --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """What a resumed run needs (module docstring); tensors on the CPU."""
        return {
            "step": self.step,
            "maps": None if self.maps is None else self.maps.detach().cpu(),
            "targets": None if self.targets is None else self.targets.detach().cpu(),
            "refreshes": self.refreshes,
            "active": list(self.active),
            "empty": list(self.empty),
        }

    def load_state_dict(self, state: dict, device: torch.device) -> None:
        """Restore :meth:`state_dict`'s output (maps and targets moved to ``device``)."""
        self.step = int(state["step"])
        self.maps = None if state["maps"] is None else state["maps"].to(device)
        self.targets = None if state["targets"] is None else state["targets"].to(device)
        self.refreshes = int(state["refreshes"])
        self.active = [float(a) for a in state["active"]]
        self.empty = [int(e) for e in state.get("empty", [])]  # absent in checkpoints written before it was kept
