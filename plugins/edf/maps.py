"""The activation maps of the synthetic images over a run: computed every ``interval`` iterations, reused
in between, and kept next to the trajectory-matching checkpoints so that a resumed run reuses the
exact maps an uninterrupted one would have (``checkpoints/edf-maps-<iteration>.pt``).

Maps file (``torch.load(path, weights_only=True)``)::

    step      the iteration the maps were computed at
    maps      [N, H, W] float32 in [0, 1]
    targets   [N] int64, each synthetic image's dataset class
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ddcore import RunContext
from ddcore.atomic import torch_save
from ddcore.cam import default_layer_name, grad_cam, resolve_layer
from ddcore_edf.cam_model import IMAGENET_MEAN, IMAGENET_STD, class_map, load_cam_model, probe_classes, renormalize
from ddcore_edf.config import EDFConfig
from ddcore_edf.dae import last_refresh, thresholds

MAPS_PREFIX = "edf-maps-"


@dataclass
class CamMaps:
    """The CAM model, its layer and the maps in use (one per run, kept in ``ctx.stash["edf"]``)."""

    model: nn.Module
    layer: nn.Module
    layer_name: str
    classes: torch.Tensor  # [num_classes] the CAM model's index of each dataset class
    norms: tuple | None  # (source, target) statistics for renormalize, or None
    targets: torch.Tensor | None = None  # [N] dataset class of each synthetic image, fixed at first use
    maps: torch.Tensor | None = None  # [N, H, W]
    step: int = -1
    refreshes: int = 0
    active: list[float] = field(default_factory=list)  # share of pixels at or above the threshold, per refresh

    @classmethod
    def build(cls, ctx: RunContext, config: EDFConfig) -> "CamMaps":
        """Load the CAM model, check its layer and label space against the dataset (one probe image)."""
        dataset = ctx.dataset
        model = load_cam_model(ctx, config.cam_model, config.cam_weights)
        layer_name = config.cam_layer or default_layer_name(model)
        layer = resolve_layer(model, layer_name, option="plugin.edf.cam_layer")
        norm = config.cam_input_norm
        if norm == "auto":
            norm = "dataset" if config.cam_model == "run" else "imagenet"
        norms = ((dataset.mean, dataset.std), (IMAGENET_MEAN, IMAGENET_STD)) if norm == "imagenet" else None
        example = dataset.train[0][0].unsqueeze(0).to(ctx.device)
        if norms is not None:
            example = renormalize(example, *norms)
        classes = class_map(
            probe_classes(model, example), dataset.num_classes, config.class_index, dataset.extra.get("imagenet_index")
        )
        return cls(model, layer, layer_name, classes.to(ctx.device), norms)

    def targets_for(self, labels: torch.Tensor) -> torch.Tensor:
        """Each synthetic image's dataset class: hard labels as they are, soft ones by argmax, fixed at first use."""
        if self.targets is None:
            self.targets = (labels if labels.ndim == 1 else labels.argmax(dim=1)).long()
        return self.targets

    def compute(self, ctx: RunContext, config: EDFConfig, images: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """Fresh maps ``[N, H, W]`` of ``images [N, C, H, W]`` for their classes, mapped to the CAM model's labels."""
        targets = self.classes[self.targets_for(labels).to(self.classes.device)]
        inputs = renormalize(images, *self.norms) if self.norms is not None else images
        return grad_cam(
            self.model, self.layer, inputs, targets,
            method=config.cam_method, samples=config.cam_samples, noise=config.cam_noise,
            generator=ctx.derive_generator("edf", "cam", step), batch_size=config.cam_batch_size or None,
        )  # fmt: skip

    def current(self, ctx: RunContext, config: EDFConfig, images: torch.Tensor, labels: torch.Tensor, step: int) -> torch.Tensor:
        """The maps in use at ``step``: recomputed when due, else the last ones (reloaded after a resume)."""
        interval = config.interval
        assert interval is not None
        due = last_refresh(step, interval)
        if self.maps is not None and self.step == due:
            return self.maps
        if due != step and self._reload(ctx, due):
            return self.maps  # type: ignore[return-value]
        # Due now, or resumed without the saved maps: compute from the current images, use until the next refresh.
        self.maps = self.compute(ctx, config, images, labels, due)
        self.step = due
        self.refreshes += 1
        self.active.append(float((self.maps >= thresholds(self.maps, config.act_threshold)).float().mean()))
        self._save(ctx, interval)
        return self.maps

    # -- resume --------------------------------------------------------------------------------

    @staticmethod
    def folder(ctx: RunContext) -> Path | None:
        from ddcore.artifacts import CHECKPOINT_DIR

        return ctx.out_dir / CHECKPOINT_DIR if ctx.out_dir is not None else None

    def _save(self, ctx: RunContext, interval: int) -> None:
        folder = self.folder(ctx)
        if folder is None or not ctx.is_main_process or ctx.config.tm.checkpoint_every == 0:
            return
        torch_save({"step": self.step, "maps": self.maps.cpu(), "targets": self.targets.cpu()},
                   folder / f"{MAPS_PREFIX}{self.step:08d}.pt")  # fmt: skip
        from ddcore.tm import checkpoint_paths

        # Keep the maps that the oldest kept matching checkpoint would resume with, and newer ones.
        iterations = [int(path.stem.split("-")[1]) for path in checkpoint_paths(folder)]
        keep_from = last_refresh(min(iterations), interval) if iterations else 0
        for path in folder.glob(f"{MAPS_PREFIX}*.pt"):
            number = path.stem[len(MAPS_PREFIX):]
            if number.isdigit() and int(number) < keep_from:
                path.unlink(missing_ok=True)

    def _reload(self, ctx: RunContext, step: int) -> bool:
        folder = self.folder(ctx)
        path = folder / f"{MAPS_PREFIX}{step:08d}.pt" if folder is not None else None
        if path is None or not path.exists():
            return False
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # damaged: recompute from the current images instead
            return False
        self.maps = saved["maps"].to(ctx.device)
        self.targets = saved["targets"].to(ctx.device)
        self.step = int(saved["step"])
        return True
