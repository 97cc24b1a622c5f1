"""The model family: shapes, architecture details of the DD ConvNet, errors by name."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddcore.errors import ConfigError
from ddcore.models import ConvNet, ModelSpec, build_model


@pytest.mark.parametrize("name, size", [("convnetd3", 32), ("convnetd4", 64), ("convnetd5", 128), ("resnet18", 32)])
def test_output_shapes(name, size):
    model = build_model(ModelSpec(name=name, width=8), num_classes=7, in_channels=3, image_size=size)
    assert model(torch.zeros(2, 3, size, size)).shape == (2, 7)


def test_convnet_blocks_follow_the_literature():
    model = ConvNet(10, in_channels=1, image_size=32, width=16, depth=3)
    assert len(model.features) == 3
    conv, norm, act, pool = model.features[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == norm.num_channels == 16  # instance norm
    assert isinstance(act, nn.ReLU) and isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 2
    assert model.classifier.in_features == 16 * 4 * 4
    assert model.embed(torch.zeros(3, 1, 32, 32)).shape == (3, 256)


def test_instance_norm_normalises_each_image_and_channel():
    norm = ConvNet(2, 1, 8, width=4, depth=1).features[0][1]
    x = torch.randn(2, 4, 8, 8) * 5 + 3
    y = norm(x)
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 4), atol=1e-5)


def test_default_width_is_128():
    assert ModelSpec().width == 128 and ConvNet(10).classifier.in_features == 128 * 4 * 4


def test_resnet18_small_input_stem_keeps_resolution():
    model = build_model("resnet18", 10, 1, 32)
    assert model.conv1.stride == (1, 1) and isinstance(model.maxpool, nn.Identity)
    assert model.conv1.in_channels == 1


def test_norm_choices():
    for norm, cls in (("batchnorm", nn.BatchNorm2d), ("none", nn.Identity)):
        model = build_model(ModelSpec(width=4, norm=norm), 2, 1, 8 * 8)
        assert isinstance(model.features[0][1], cls)


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown model 'vit'"):
        build_model("vit", 10, 3, 32)
    with pytest.raises(ConfigError, match="unknown norm 'groupy'"):
        build_model(ModelSpec(norm="groupy"), 10, 3, 32)
    with pytest.raises(ConfigError, match="needs an image size of at least 32 px"):
        build_model("convnetd5", 10, 3, 16)  # a pooling would leave 0 px
