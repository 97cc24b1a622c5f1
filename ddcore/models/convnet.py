"""The ConvNet family of the dataset-distillation literature (DC/DSA/MTT/DATM/EDF).

``depth`` blocks of conv3x3 (padding 1) -> norm -> ReLU -> 2x2 average pooling, then one linear
classifier on the flattened features. Instance norm is a per-channel GroupNorm with affine
parameters, as in the literature's reference implementations. Each pooling floors an odd side (28 -> 14 ->
7 -> 3 at depth 3, the classifier then takes ``width * 3 * 3`` features), as DC/MTT's ConvNet computes its
feature shape; sides divisible by ``2**depth`` keep the shapes they always had.
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instancenorm", "batchnorm", "layernorm", "none")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instancenorm":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(channels)
    if kind == "layernorm":
        return nn.GroupNorm(1, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


def pooled_side(image_size: int, depth: int) -> int:
    """The side after ``depth`` 2x2 poolings of stride 2, each flooring (``nn.AvgPool2d``): ``image_size >> depth``.

    0 means the network cannot take the size (:func:`ddcore.models.build_model` refuses it).

    >>> pooled_side(32, 3), pooled_side(28, 3), pooled_side(7, 3)
    (4, 3, 0)
    """
    side = int(image_size)
    for _ in range(depth):
        side //= 2
    return side


class ConvNet(nn.Module):
    """ConvNet-D{depth}-W{width}.

    Args:
        num_classes: output logits.
        in_channels: image channels ``C``.
        image_size: input side ``H == W``; at least ``2**depth`` (each 2x2 pooling floors the side, see
            :func:`pooled_side`); otherwise ``ValueError``.
        width: channels of every conv layer (128 in the literature).
        depth: number of conv blocks (3 for 32 px, 4 for 64 px, 5 for 128 px).
        norm: ``instancenorm`` (default), ``batchnorm``, ``layernorm`` or ``none``.

    Shape:
        - Input: ``[N, C, H, W]``
        - Output: ``[N, num_classes]``

    Attributes:
        features: the conv blocks; ``features[i]`` is block ``i`` (its last module is the pooling).
        classifier: the final ``nn.Linear``.

    >>> ConvNet(10, in_channels=1, image_size=32, width=16, depth=3)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
    ):
        super().__init__()
        if depth < 1:
            raise ValueError("depth must be at least 1")
        side = pooled_side(image_size, depth)
        if side < 1:
            raise ValueError(f"image_size {image_size} is smaller than 2**depth = {2**depth}: a pooling would leave 0 px")
        blocks = []
        channels = in_channels
        for _ in range(depth):
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(channels, width, kernel_size=3, padding=1),
                    _norm(norm, width),
                    nn.ReLU(inplace=True),
                    nn.AvgPool2d(kernel_size=2, stride=2),
                )
            )
            channels = width
        self.features = nn.Sequential(*blocks)
        self.feature_dim = width * side * side
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features. Shape: ``[N, C, H, W]`` -> ``[N, feature_dim]``."""
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
