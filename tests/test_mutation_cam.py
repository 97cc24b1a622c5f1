"""ddcore.cam, cases found by mutation testing (bench/mutation.py): the default layer of a plain network,
exact error messages, Grad-CAM++'s "0 where d2 = 0" rule, one-image chunks (padded to two rows: the
same bits as inside a batch), the documented defaults of Smooth Grad-CAM++, and item noise's shape and dtype."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddcore import PluginError
from ddcore.cam import default_layer_name, gradcampp_maps, grad_cam, item_noise, resolve_layer
from ddcore.models import ConvNet


def plain_net() -> nn.Sequential:
    """Two convolutions, no ``layer4`` and not a ddcore ConvNet: the default layer is the last Conv2d, ``"2"``."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))  # fmt: skip


def test_default_layer_of_a_plain_network_is_its_last_convolution():
    model = plain_net()
    assert default_layer_name(model) == "2"
    assert resolve_layer(model, None) is model[2] and resolve_layer(model, "") is model[2]
    with pytest.raises(PluginError, match=r"^Sequential has no Conv2d layer to compute class activation maps at$"):
        default_layer_name(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_unknown_layer_message_lists_every_name():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    with pytest.raises(PluginError, match=r"^Sequential has no layer 'head' \(the layer name\); available: 0, 1$"):
        resolve_layer(model, "head")


class _Split(nn.Module):
    def forward(self, x):
        return x, x


class _TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.split = _Split()
        self.fc = nn.Linear(2, 2)

    def forward(self, x):
        return self.fc(self.split(x)[0].mean(dim=(2, 3)))


class _Flat(nn.Module):
    """Returns a 3-D ``[N, classes, 1]`` output: not logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        return self.conv(x).mean(dim=3)


def test_layer_and_model_messages():
    images, targets = torch.zeros(2, 2, 4, 4), torch.tensor([0, 1])
    with pytest.raises(PluginError, match=r"^the CAM layer _Split returns tuple, not a tensor$"):
        grad_cam(_TupleNet(), "split", images, targets)
    with pytest.raises(PluginError, match=r"^the CAM layer \(Linear\) produces a tensor of shape \[2, 2\], "
                                          r"not a feature map \[N, K, h, w\]; choose a convolutional layer$"):
        grad_cam(_TupleNet(), "fc", images, targets)
    with pytest.raises(PluginError, match=r"^the CAM model returns shape \[2, 2, 4\], expected logits \[N, classes\]$"):
        grad_cam(_Flat(), "conv", images, targets)
    twice = nn.Sequential(nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.ReLU(), nn.Flatten())
    twice[3] = twice[1]  # the same ReLU runs twice
    with pytest.raises(PluginError, match=r"^the CAM layer \(ReLU\) ran 2 times in one forward pass; "
                                          r"choose a layer that runs once \(e.g. its parent block\)$"):
        grad_cam(twice, "1", images, targets)


def test_argument_messages():
    model, images, targets = plain_net(), torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])
    with pytest.raises(PluginError, match=r"^unknown CAM method 'scorecam'; choose one of gradcam, smooth_gradcampp$"):
        grad_cam(model, None, images, targets, method="scorecam")  # type: ignore[arg-type]
    with pytest.raises(PluginError, match=r"^grad_cam needs images \[N, C, H, W\], got shape \[1, 4, 4\]$"):
        grad_cam(model, None, images[0], targets)
    with pytest.raises(PluginError, match=r"^grad_cam needs one target per image: targets \[3\] for 2 images$"):
        grad_cam(model, None, images, torch.tensor([0, 1, 2]))
    for samples, noise in ((0, 0.3), (4, -0.1)):
        with pytest.raises(PluginError, match=rf"^Smooth Grad-CAM\+\+ needs samples >= 1 and noise >= 0, got {samples} and {noise}$"):
            grad_cam(model, None, images, targets, method="smooth_gradcampp", samples=samples, noise=noise)
    # the noise settings do not concern plain Grad-CAM
    assert grad_cam(model, None, images, targets, samples=0, noise=-1.0).shape == (2, 4, 4)
    with pytest.raises(PluginError, match=r"^grad_cam needs one noise seed per image: 1 seeds for 2 images$"):
        grad_cam(model, None, images, targets, method="smooth_gradcampp", seeds=[3])


def test_gradcampp_weight_is_zero_where_d2_is_zero_even_if_the_denominator_vanishes():
    """``alpha = 0 where d2 = 0``: here ``sum(A) * d3 = -EPS`` at the first position, so the formula alone is 0/0."""
    a = torch.tensor([[[[1.0, 0.0]]]])  # sum_ab A = 1
    d1 = torch.tensor([[[[1.0, 1.0]]]])
    d2 = torch.tensor([[[[0.0, 1.0]]]])
    d3 = torch.tensor([[[[-1e-8, 0.0]]]])
    # position 1: alpha = 1 / (2 + 0 + 1e-8); w = alpha * 1; map = w * A = [w, 0]
    expected = torch.tensor([[[1 / (2 + 1e-8), 0.0]]])
    torch.testing.assert_close(gradcampp_maps(a, d1, d2, d3), expected)


def test_a_one_image_call_has_the_bits_of_that_image_in_a_two_image_call():
    torch.manual_seed(0)
    model = ConvNet(5, in_channels=3, image_size=16, width=8, depth=2)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    targets = torch.tensor([1, 3])
    pair = grad_cam(model, "features.0.2", images, targets)
    for i in range(2):
        assert torch.equal(grad_cam(model, "features.0.2", images[i : i + 1], targets[i : i + 1])[0], pair[i])


def test_smooth_defaults_are_four_samples_of_noise_0_3():
    torch.manual_seed(0)
    model = ConvNet(5, in_channels=3, image_size=16, width=8, depth=2)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    targets = torch.tensor([0, 2])

    def smooth(**kw):
        return grad_cam(model, "features.0.2", images, targets, method="smooth_gradcampp", seeds=[5, 6], **kw)

    default = smooth()
    assert torch.equal(default, smooth(samples=4, noise=0.3))
    assert not torch.allclose(default, smooth(samples=5, noise=0.3), atol=1e-4)
    assert not torch.allclose(default, smooth(samples=4, noise=1.3), atol=1e-4)


def test_item_noise_shapes_and_dtype():
    empty = item_noise([], 3, (2, 5), torch.float64)
    assert empty.shape == (3, 0, 2, 5) and empty.dtype == torch.float64
    assert item_noise([], 2, (4,)).dtype == torch.float32
    draws = item_noise([7], 2, (3,), torch.float64)
    assert draws.dtype == torch.float64
    assert torch.equal(draws[:, 0], torch.randn((2, 3), generator=torch.Generator().manual_seed(7), dtype=torch.float64))
