"""Complexity of a whole dataset: a classifier, batched Grad-CAM, the metric of :mod:`.complexity`.

The classifier is either a torchvision architecture with local weights (the release used an
ImageNet-trained ResNet-18 at 224 px, layer4, Smooth Grad-CAM++ for the predicted class) or, by
default, a teacher trained on the dataset itself (:func:`ddcore.teacher.trained_teacher`, cached), which
is what runs offline. Maps come from :func:`ddcore.cam.grad_cam`: upsampled bilinearly to the input
size and min-max normalised, so the fraction of active pixels is measured on the upsampled map (the
release counted the 7x7 layer4 cells).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from torch import nn

from ddcore import ConfigError, ImageDataset
from ddcore.adapt import IMAGENET_MEAN, IMAGENET_STD, ModelInput
from ddcore.adapt import InputAdapter as SharedInputAdapter
from ddcore.context import derive_seed
from ddcore_compdd.complexity import class_complexity, image_complexity

Target = Literal["predicted", "label"]


@dataclass(frozen=True)
class ScoringOptions:
    """How complexity is measured (recorded next to the scores).

    Attributes:
        layer: CAM layer name (``None``: ``layer4`` for ResNets, the last conv block for ConvNets).
        method: ``gradcam`` or ``smooth_gradcampp`` (the release's choice).
        samples / noise: Smooth Grad-CAM++'s noisy copies and their std (normalised units).
        threshold / strict: active pixel = ``M >= threshold`` (``M > threshold`` when strict).
        target: the class each map explains: the model's ``predicted`` class (the release) or the ``label``.
        split: ``train`` (the benchmark's choice) or ``test``.
        per_class: at most this many images per class, the first in file order (0: all).
        batch_size: images per Grad-CAM pass.
        input_size: resize (squash) images to this side before the classifier (0: as they are).
    """

    layer: str | None = None
    method: str = "gradcam"
    samples: int = 4
    noise: float = 0.3
    threshold: float = 0.5
    strict: bool = False
    target: Target = "predicted"
    split: str = "train"
    per_class: int = 0
    batch_size: int = 128
    input_size: int = 0


@dataclass
class ComplexityResult:
    """Per-image and per-class complexity of one dataset split."""

    dataset: str
    class_names: list[str]
    scores: torch.Tensor  # [N] float32
    labels: torch.Tensor  # [N] int64
    indices: torch.Tensor  # [N] int64, positions in the split
    classifier: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def per_class(self) -> list[dict]:
        means = class_complexity(self.scores, self.labels, len(self.class_names))
        rows = []
        for label, class_name in enumerate(self.class_names):
            mine = self.scores[self.labels == label]
            rows.append({
                "label": label, "class": class_name, "images": int(mine.numel()),
                "complexity": float(means[label]), "std": float(mine.std(unbiased=False)) if mine.numel() else float("nan"),
            })  # fmt: skip
        return rows

    def mean(self) -> float:
        """The dataset's complexity: the mean of its class complexities (classes weigh the same)."""
        values = [row["complexity"] for row in self.per_class() if row["images"]]
        return sum(values) / len(values)

    def to_dict(self, per_image: bool = False) -> dict:
        data = {
            "dataset": self.dataset,
            "complexity": self.mean(),
            "classes": self.per_class(),
            "classifier": self.classifier,
            "options": self.options,
        }
        if per_image:
            data["images"] = {"indices": self.indices.tolist(), "labels": self.labels.tolist(), "scores": self.scores.tolist()}
        return data


class InputAdapter(SharedInputAdapter):
    """:class:`ddcore.adapt.InputAdapter` with Comp-DD's switches: a grey channel repeated to 3 when ``rgb``,
    squashed to ``size`` (0: keep), normalised with ImageNet statistics when ``imagenet`` (else the
    dataset's own, repeated over the channels). Shape: ``[N, C, H, W]`` -> ``[N, C', S, S]``.

    >>> InputAdapter((0.5,), (0.25,), rgb=True, size=2, imagenet=True)(torch.zeros(1, 1, 1, 1)).shape
    torch.Size([1, 3, 2, 2])
    """

    def __init__(self, mean, std, *, rgb: bool, size: int, imagenet: bool):
        mean, std = tuple(mean), tuple(std)
        channels = 3 if rgb else len(mean)
        if imagenet:
            target_mean, target_std = IMAGENET_MEAN, IMAGENET_STD
        else:
            repeat = channels // len(mean)
            target_mean, target_std = mean * repeat, std * repeat
        super().__init__(mean, std, ModelInput(channels, tuple(target_mean), tuple(target_std), size=size or None))


def label_space(model_classes: int, dataset: ImageDataset) -> torch.Tensor | None:
    """Dataset label -> model class, or ``None`` when they coincide. A 1000-class model on an ImageNet
    subset uses ``dataset.extra["imagenet_index"]``; any other mismatch is a ConfigError."""
    if model_classes == dataset.num_classes:
        return None
    index = dataset.extra.get("imagenet_index")
    if model_classes == 1000 and index:
        return torch.as_tensor(index, dtype=torch.long)
    raise ConfigError(
        f"the classifier has {model_classes} classes and {dataset.name} has {dataset.num_classes} without an ImageNet "
        "class index; use --target predicted (option --target)"
    )


def chosen_indices(dataset: ImageDataset, split: str, per_class: int) -> list[int]:
    """Positions in ``split`` to score: every image, or the first ``per_class`` of each class."""
    groups = dataset.indices_by_class(split)
    if per_class:
        groups = [group[:per_class] for group in groups]
    return sorted(i for group in groups for i in group)


def score_dataset(
    model: nn.Module,
    dataset: ImageDataset,
    options: ScoringOptions,
    device: torch.device,
    generator: torch.Generator,
    adapter: nn.Module | None = None,
    progress=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scores [N], labels [N], indices [N])`` for the chosen images of ``options.split``.

    Images stream through ``dataset.loader`` in batches of ``options.batch_size``; one batched
    Grad-CAM per batch. ``progress(k)`` (optional) is advanced by the images done. Smooth
    Grad-CAM++'s noise of the image at position ``i`` of the split comes from its own seed
    ``derive_seed(base, "compdd", i)`` (``base``: one draw from ``generator``), so the scores do not
    depend on ``batch_size`` or ``per_class``.
    """
    from ddcore.cam import grad_cam, resolve_layer

    network = nn.Sequential(adapter, model) if adapter is not None else model
    network = network.to(device).eval()
    layer = resolve_layer(model, options.layer, option="option --layer")  # a submodule of ``network`` too
    model_classes = None
    mapping = None
    indices = chosen_indices(dataset, options.split, options.per_class)
    base = int(torch.randint(0, 2**62, (1,), generator=generator))
    scores, labels = [], []
    done = 0
    for images, batch_labels in dataset.loader(options.split, options.batch_size, indices=indices):
        seeds = [derive_seed(base, "compdd", i) for i in indices[done : done + len(images)]]
        done += len(images)
        images = images.to(device)
        batch_labels = torch.as_tensor(batch_labels, dtype=torch.long)
        if options.target == "predicted":
            with torch.no_grad():
                targets = network(images).argmax(dim=1)
        else:
            if model_classes is None:
                with torch.no_grad():
                    model_classes = network(images[:1]).shape[1]
                mapping = label_space(model_classes, dataset)
            targets = batch_labels if mapping is None else mapping[batch_labels]
        maps = grad_cam(
            network, layer, images, targets.to(device),
            method=options.method, samples=options.samples, noise=options.noise, seeds=seeds,
        )  # fmt: skip
        scores.append(image_complexity(maps.cpu(), options.threshold, strict=options.strict))
        labels.append(batch_labels)
        if progress is not None:
            progress(len(batch_labels))
    return torch.cat(scores), torch.cat(labels), torch.as_tensor(indices, dtype=torch.long)


def options_dict(options: ScoringOptions) -> dict:
    return asdict(options)
