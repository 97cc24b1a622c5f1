"""Build a network from its name and a few options (timm-style, minus the downloads)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ddcore.errors import ConfigError
from ddcore.models.convnet import NORMS, ConvNet, pooled_side
from ddcore.models.resnet import resnet18

#: Names accepted by :func:`build_model`. ``convnet`` takes its depth from ``ModelSpec.depth``.
MODEL_NAMES = ("convnet", "convnetd3", "convnetd4", "convnetd5", "resnet18")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides a network's architecture (recorded in manifests and caches)."""

    name: str = "convnet"
    width: int = 128
    depth: int = 3
    norm: str = "instancenorm"

    def resolved_depth(self) -> int:
        if self.name.startswith("convnetd"):
            return int(self.name[len("convnetd"):])
        return self.depth


def build_model(spec: ModelSpec | str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A freshly initialised network (seed the global torch RNG or fork it before calling).

    Raises :class:`ConfigError` for an unknown name or options the network cannot take.
    """
    if isinstance(spec, str):
        spec = ModelSpec(name=spec)
    if spec.name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {spec.name!r}; choose one of {', '.join(MODEL_NAMES)}")
    if spec.name == "resnet18":
        return resnet18(num_classes, in_channels=in_channels, image_size=image_size)
    if spec.norm not in NORMS:
        raise ConfigError(f"unknown norm {spec.norm!r}; choose one of {', '.join(NORMS)}")
    depth = spec.resolved_depth()
    if pooled_side(image_size, depth) < 1:
        raise ConfigError(
            f"model {spec.name} (depth {depth}) needs an image size of at least {2**depth} px ({depth} poolings "
            f"halve the side, flooring), got {image_size}"
        )
    return ConvNet(num_classes, in_channels, image_size, width=spec.width, depth=depth, norm=spec.norm)
