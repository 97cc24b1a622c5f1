"""Feed a dataset's images to a model trained on other inputs: channels, size and normalisation.

ddcore's datasets hand out images normalised with their own statistics (``dataset.mean``,
``dataset.std``), at their own size, grey (1 channel) or RGB. A foreign classifier (a torchvision
architecture with ImageNet weights) expects 3 channels normalised with ImageNet's statistics, and
some architectures a fixed size. :class:`InputAdapter` is the one place that bridges the two; every
plugin that feeds dataset images to a foreign model (EDF's CAM model, diffsel's torchvision teacher
and observer, ``dd compdd complexity --arch``) wraps the model with :func:`adapted`, so the rest of
the code keeps passing dataset-normalised images.

A dataset whitened with ZCA (``zca = true``: mean/std 0/1, ``dataset.whitening`` set) hands out whitened
images, which the adapter's first step (below) would take for pixels: wrap with :func:`adapted_dataset` (or
:func:`adapted_torchvision_dataset`), which undoes the whitening (``dataset.unwhiten``) before the adapter.

What the adapter does, in order (every step differentiable, so Grad-CAM through it works):

1. undo the dataset's normalisation: ``pixels = images * std + mean`` (the data's own units, ``[0, 1]``
   for ddcore's datasets);
2. channels: grey to RGB repeats the channel (how a grey image is shown to an RGB classifier); RGB to
   grey takes the luminance ``0.2989 R + 0.587 G + 0.114 B`` (ITU-R 601-2, as
   :func:`torchvision.transforms.functional.rgb_to_grayscale`); any other pair is a ConfigError;
3. size: squash bilinearly (antialiased when shrinking) to the model's fixed side when it has one,
   or up to its smallest accepted side when the images are smaller; otherwise the size is kept
   (convolutional classifiers with global pooling take any size);
4. normalise with the model's statistics: ``(pixels - model mean) / model std``.

A torchvision architecture's expectations come from its weights' metadata (:func:`torchvision_input`):
mean and std of the weights' transforms (ImageNet's for every torchvision classifier), the smallest
side ``meta["min_size"]``, and a fixed side where ``min_size`` equals the weights' crop size (ViT,
Swin, MaxViT: 224).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ddcore.errors import ConfigError

#: ImageNet statistics, expected by torchvision's pretrained classifiers.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: Luminance weights of R, G, B (ITU-R 601-2), for RGB images shown to a grey model.
LUMA = (0.2989, 0.587, 0.114)


@dataclass(frozen=True)
class ModelInput:
    """What a model expects as input.

    Attributes:
        channels: input channels (3 for torchvision classifiers).
        mean, std: per-channel normalisation the model was trained with (one value per channel).
        size: the fixed side the model needs (images are resized to it), or ``None`` for any size.
        min_size: the smallest side the model accepts (smaller images are resized up to it).
    """

    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    size: int | None = None
    min_size: int = 1

    def __post_init__(self) -> None:
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(f"model input: {self.channels} channels need as many mean and std values")


def torchvision_input(arch: str) -> ModelInput:
    """The input a torchvision classification architecture expects, from its weights' metadata.

    >>> torchvision_input("resnet18")
    ModelInput(channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=None, min_size=1)
    >>> torchvision_input("vit_b_16").size
    224
    """
    import torchvision

    try:
        weights = list(torchvision.models.get_model_weights(arch))[0]
    except (ValueError, KeyError, IndexError):  # an architecture without published weights: ImageNet's defaults
        return ModelInput()
    transforms = weights.transforms()
    crop = int(transforms.crop_size[0])
    low = int(min(weights.meta.get("min_size", (1, 1))))
    return ModelInput(3, tuple(float(v) for v in transforms.mean), tuple(float(v) for v in transforms.std),
                      size=crop if low == crop else None, min_size=low)  # fmt: skip


def target_side(side: int, target: ModelInput) -> int:
    """The side images of side ``side`` are resized to for ``target``.

    >>> target_side(32, ModelInput()), target_side(32, ModelInput(size=224)), target_side(8, ModelInput(min_size=15))
    (32, 224, 15)
    """
    if target.size:
        return target.size
    return max(side, target.min_size)


class InputAdapter(nn.Module):
    """Dataset-normalised images in, the model's input out (module docstring, steps 1-4).

    Args:
        mean, std: the dataset's normalisation (one value per channel of the images).
        target: what the model expects (:class:`ModelInput`).

    Shape: ``[N, C, H, W]`` -> ``[N, target.channels, H', W']`` (``H' = W' =`` :func:`target_side` for
    square images; a fixed ``size`` gives ``size x size``; ``min_size`` scales both sides up together).

    >>> adapter = InputAdapter((0.5,), (0.25,), ModelInput(3, (0.25, 0.5, 0.5), (0.5, 0.5, 0.25)))
    >>> adapter(torch.zeros(1, 1, 1, 1)).flatten().tolist()   # pixel 0.5 in each of three channels
    [0.5, 0.0, 0.0]
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], target: ModelInput) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ConfigError(f"dataset statistics: {len(mean)} mean values and {len(std)} std values")
        source = len(mean)
        if source != target.channels and (source, target.channels) not in ((1, 3), (3, 1)):
            raise ConfigError(f"cannot show {source}-channel images to a model with {target.channels} input channels")
        self.target = target
        self.register_buffer("source_mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("source_std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("target_mean", torch.tensor(target.mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("target_std", torch.tensor(target.std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """``(H', W')`` of the adapted images."""
        if self.target.size:
            return self.target.size, self.target.size
        scale = max(1.0, self.target.min_size / min(height, width))
        return (height, width) if scale == 1.0 else (round(height * scale), round(width * scale))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != self.source_mean.shape[1]:
            raise ConfigError(
                f"the input adapter expects [N, {self.source_mean.shape[1]}, H, W] images, got {list(images.shape)}"
            )
        dtype = images.dtype
        pixels = images * self.source_std.to(dtype) + self.source_mean.to(dtype)
        if pixels.shape[1] == 1 and self.target.channels == 3:
            pixels = pixels.expand(-1, 3, -1, -1)
        elif pixels.shape[1] == 3 and self.target.channels == 1:
            pixels = (pixels * self.luma.to(dtype)).sum(dim=1, keepdim=True)
        size = self.output_size(*pixels.shape[-2:])
        if tuple(pixels.shape[-2:]) != size:
            shrink = size[0] < pixels.shape[-2] or size[1] < pixels.shape[-1]
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return (pixels - self.target_mean.to(dtype)) / self.target_std.to(dtype)

    def is_identity(self) -> bool:
        """True when the adapter changes nothing (same channels and statistics, no resize at any size >= min_size)."""
        same = self.source_mean.shape == self.target_mean.shape
        return bool(same and torch.equal(self.source_mean, self.target_mean) and torch.equal(self.source_std, self.target_std)
                    and not self.target.size and self.target.min_size <= 1)  # fmt: skip

    def extra_repr(self) -> str:
        t = self.target
        return f"channels {self.source_mean.shape[1]}->{t.channels}, size={t.size}, min_size={t.min_size}"


class Adapted(nn.Module):
    """``model(adapter(x))``: a foreign model that takes dataset-normalised images.

    The model stays reachable as ``.model`` (its layers keep their module objects, so Grad-CAM
    layers resolved on the model work on the wrapper) and the adapter as ``.adapter``.
    """

    def __init__(self, adapter: InputAdapter, model: nn.Module) -> None:
        super().__init__()
        self.adapter, self.model = adapter, model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.adapter(images))


def adapted(model: nn.Module, mean: Sequence[float], std: Sequence[float], target: ModelInput) -> nn.Module:
    """``model`` taking images normalised with ``(mean, std)``: wrapped in :class:`Adapted`, or ``model``
    itself when nothing needs adapting."""
    adapter = InputAdapter(mean, std, target)
    if adapter.is_identity():
        return model
    return Adapted(adapter, model)


def adapted_torchvision(model: nn.Module, arch: str, mean: Sequence[float], std: Sequence[float]) -> nn.Module:
    """A torchvision classifier (of architecture ``arch``) taking images normalised with ``(mean, std)``
    (a dataset's statistics, grey or RGB): :func:`adapted` with :func:`torchvision_input`."""
    return adapted(model, mean, std, torchvision_input(arch))


class Unwhitened(nn.Module):
    """``model(unwhiten(x))``: a model that takes images normalised with a dataset's ``mean``/``std`` alone, fed
    the dataset's whitened images (ZCA, :attr:`ddcore.data.base.ImageDataset.whitening`).

    Args:
        unwhiten: undoes the whitening, ``[N, C, H, W] -> [N, C, H, W]`` (:meth:`ImageDataset.unwhiten
            <ddcore.data.base.ImageDataset.unwhiten>`; differentiable, so Grad-CAM through it works).
        model: the wrapped model, reachable as ``.model`` (its layers keep their module objects).
    """

    def __init__(self, unwhiten: Callable[[torch.Tensor], torch.Tensor], model: nn.Module) -> None:
        super().__init__()
        self.unwhiten, self.model = unwhiten, model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(self.unwhiten(images))


def adapted_dataset(model: nn.Module, dataset: Any, target: ModelInput) -> nn.Module:
    """``model`` (expecting ``target``) taking ``dataset``'s images as its splits hand them out.

    :func:`adapted` with the dataset's ``mean``/``std``; on a whitened dataset (``zca = true``) behind
    :class:`Unwhitened`, so the model sees the same pixels as it would for the same images of the plain
    dataset (the adapter alone would take the whitened values, with mean/std 0/1, for pixels). Use it rather
    than :func:`adapted` with ``dataset.mean, dataset.std`` wherever the images come from a dataset.

    Shape: ``[N, C, H, W]`` as the dataset hands them out -> the model's output.
    """
    model = adapted(model, dataset.mean, dataset.std, target)
    if getattr(dataset, "whitening", None) is None:
        return model
    return Unwhitened(dataset.unwhiten, model)


def adapted_torchvision_dataset(model: nn.Module, arch: str, dataset: Any) -> nn.Module:
    """A torchvision classifier (of architecture ``arch``) taking ``dataset``'s images as its splits hand them out
    (ZCA-whitened ones too): :func:`adapted_dataset` with :func:`torchvision_input`."""
    return adapted_dataset(model, dataset, torchvision_input(arch))
