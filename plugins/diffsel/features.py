"""Patch embeddings for Stage II, and the teacher the plugin leans on.

Features:
- ``teacher``: the input of the classifier's last linear layer (its penultimate features) on the
  patch resized to the image size;
- ``pixels``: the patch average-pooled to 8 x 8, flattened (the fallback without a teacher);
- ``latents``: the prior's own encoding of the patch, average-pooled to 4 x 4, flattened.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ddcore import PluginError


def last_linear(model: nn.Module) -> nn.Linear:
    """The classifier's final ``nn.Linear`` (the last one registered)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PluginError(f"the teacher ({type(model).__name__}) has no linear layer to take penultimate features from")
    return linears[-1]


@torch.no_grad()
def penultimate(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The input of ``model``'s last linear layer. Shape: ``[B, C, H, W]`` -> ``[B, D]``."""
    captured: list[torch.Tensor] = []
    handle = last_linear(model).register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        model(images)
    finally:
        handle.remove()
    return captured[-1].flatten(1)


def patch_features(kind: str, patches: torch.Tensor, image_side: int, *, teacher: nn.Module | None = None,
                   prior=None, device=None) -> torch.Tensor:  # fmt: skip
    """Embed cell-size patches (dataset-normalised). Shape: ``[B, C, s, s]`` -> ``[B, D]`` float32 on the CPU.

    ``prior`` (``latents``) receives the patch in ``[0, 1]``: pass ``patches`` already mapped so.
    """
    if kind == "pixels":
        return F.adaptive_avg_pool2d(patches.float(), 8).flatten(1).cpu()
    if kind == "teacher":
        assert teacher is not None
        views = patches
        if patches.shape[-1] != image_side:
            views = F.interpolate(patches, size=(image_side, image_side), mode="bilinear", align_corners=False)
        return penultimate(teacher, views.to(device)).float().cpu()
    if kind == "latents":
        assert prior is not None
        with torch.no_grad():
            latents = prior.encode(patches.to(device))
        return F.adaptive_avg_pool2d(latents.float(), 4).flatten(1).cpu()
    raise ValueError(f"unknown feature kind {kind!r}")


class ClassSubset(nn.Module):
    """A 1000-class model restricted to the dataset's classes (``extra["imagenet_index"]``): logits ``[:, index]``."""

    def __init__(self, model: nn.Module, index: list[int]):
        super().__init__()
        self.model = model
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[:, self.index]


def check_teacher_weights(spec: str) -> None:
    """Open and match a ``torchvision:ARCH:PATH`` teacher's weights file now (for the options check, before any
    work): a missing, unreadable or mismatching file is one :class:`~ddcore.ConfigError` line naming
    ``plugin.diffsel.teacher``. Other specs are left alone."""
    from ddcore.weights import load_torchvision

    kind, _, rest = spec.partition(":")
    arch, _, path = rest.partition(":")
    if kind == "torchvision" and arch and path:
        load_torchvision(arch, path, option="config key 'plugin.diffsel.teacher'")


def load_teacher(ctx, dataset, spec: str, epochs: int = 0) -> nn.Module:
    """The classifier named by ``plugin.diffsel.teacher`` (``""`` and ``trained``: ddcore's cached teacher,
    trained for ``epochs``, 0 meaning ddcore's default; ``run``: the run's classifier, expert 0's final
    snapshot with its batch-norm statistics restored by :mod:`ddcore.snapshot`).

    Returned in eval mode on ``ctx.device``; it takes the dataset's normalised images and its logits
    cover the dataset's classes. A ``torchvision:ARCH:PATH`` teacher (and observer) reads its weights
    through :func:`ddcore.weights.load_torchvision` and sees the images through
    :class:`ddcore.adapt.InputAdapter` (grey repeated to RGB, the architecture's size limits,
    ImageNet's normalisation; a ZCA dataset's whitening undone first), so everything that calls it (observer scores, penultimate features,
    teacher labels, the KD evaluator) passes dataset images as they are.
    """
    from ddcore import teacher as teachers
    from ddcore.adapt import adapted_torchvision_dataset
    from ddcore.weights import load_torchvision

    if spec in ("", "trained"):
        return teachers.trained_teacher(ctx, dataset, epochs=epochs or None)
    if spec == "run":
        return teachers.run_classifier(ctx)
    _, arch, path = (spec.split(":", 2) + ["", ""])[:3]
    if not arch or not path:
        raise PluginError(f"plugin.diffsel.teacher {spec!r}: expected torchvision:ARCH:PATH")
    model = load_torchvision(arch, path, option="config key 'plugin.diffsel.teacher'")
    outputs = last_linear(model).out_features
    model = adapted_torchvision_dataset(model, arch, dataset)  # pixels as on the plain dataset (ZCA undone)
    if outputs != dataset.num_classes:
        index = dataset.extra.get("imagenet_index")
        if outputs == 1000 and index:
            model = ClassSubset(model, list(index))
        else:
            raise PluginError(
                f"the teacher {arch} from {path} has {outputs} outputs, the dataset {dataset.num_classes} classes "
                "(and no extra['imagenet_index'] to map them) (config key plugin.diffsel.teacher)"
            )
    ctx.record("diffsel/teacher", {"spec": spec})
    return model.to(ctx.device).eval()
