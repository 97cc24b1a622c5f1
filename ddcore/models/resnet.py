"""torchvision ResNet-18 adapted to small inputs (CIFAR-style stem)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18 as tv_resnet18


def resnet18(num_classes: int, in_channels: int = 3, image_size: int = 32, small_input: bool | None = None) -> nn.Module:
    """torchvision's ResNet-18, randomly initialised.

    For small images (``image_size <= 64`` unless ``small_input`` says otherwise) the stem's 7x7
    stride-2 convolution becomes a 3x3 stride-1 convolution and the max-pool is removed, so a 32 px
    image still reaches ``layer4`` as a 4x4 map. ``in_channels`` other than 3 replace the first conv.

    Shape:
        - Input: ``[N, in_channels, image_size, image_size]``
        - Output: ``[N, num_classes]``

    >>> resnet18(10, in_channels=1, image_size=32)(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """
    model = tv_resnet18(weights=None, num_classes=num_classes)
    if small_input is None:
        small_input = image_size <= 64
    if small_input:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model
