"""ddcore.cam, cases found by mutation testing (bench/mutation.py): the default layer of a plain network,
exact error messages, Grad-CAM++'s "0 where d2 = 0" rule, one-image chunks (padded to two rows: the
same bits as inside a batch), the documented defaults of Smooth Grad-CAM++, and item noise's shape and dtype."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddcore import PluginError
from ddcore.cam import cam_chunk_size, default_layer_name, gradcampp_maps, grad_cam, item_noise, resolve_layer
from ddcore.context import derive_seed
from ddcore.models import ConvNet


def plain_net() -> nn.Sequential:
    """Three convolutions, no ``layer4`` and not a ddcore ConvNet: the default layer is the last Conv2d, ``"4"``."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 3, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 3))  # fmt: skip


def test_default_layer_of_a_plain_network_is_its_last_convolution():
    model = plain_net()
    assert default_layer_name(model) == "4"
    assert resolve_layer(model, None) is model[4] and resolve_layer(model, "") is model[4]
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


def _convnet(dtype=torch.float32) -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(5, in_channels=3, image_size=16, width=8, depth=2).to(dtype)


def test_smooth_noise_seeds_come_from_one_draw_of_the_generator():
    """Without ``seeds``: base = one draw in [0, 2**62) from the generator (default: a fresh one seeded with 0,
    never the global RNG), image i's seed derive_seed(base, i)."""
    model = _convnet()
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    images[2] = images[0]  # the same image at two positions gets two different noises
    targets = torch.tensor([0, 1, 0])
    layer = "features.0.2"
    base = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(9)))
    seeded = grad_cam(model, layer, images, targets, method="smooth_gradcampp", seeds=[derive_seed(base, i) for i in range(3)])
    drawn = grad_cam(model, layer, images, targets, method="smooth_gradcampp", generator=torch.Generator().manual_seed(9))
    assert torch.equal(drawn, seeded) and not torch.allclose(drawn[0], drawn[2], atol=1e-4)
    base0 = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(0)))
    torch.manual_seed(1)
    default = grad_cam(model, layer, images, targets, method="smooth_gradcampp")
    torch.manual_seed(2)
    assert torch.equal(grad_cam(model, layer, images, targets, method="smooth_gradcampp"), default)
    assert torch.equal(default, grad_cam(model, layer, images, targets, method="smooth_gradcampp",
                                         seeds=[derive_seed(base0, i) for i in range(3)]))  # fmt: skip


def test_float64_images_get_float64_noise():
    """Image i's noise is ``item_noise`` of its seed in the images' dtype (float64 draws differ from float32 ones)."""
    from ddcore.cam import _chunk_maps, _eval_mode, normalize_maps

    model = _convnet(torch.float64)
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    targets = torch.tensor([3, 4])
    layer = resolve_layer(model, "features.0.2")
    maps = grad_cam(model, layer, images, targets, method="smooth_gradcampp", samples=2, noise=0.5, seeds=[1, 2])

    def with_noise(noise):
        with torch.enable_grad(), _eval_mode(model):
            return normalize_maps(_chunk_maps(model, layer, images, targets, "smooth_gradcampp", noise).detach(), (16, 16))

    assert torch.equal(maps, with_noise(0.5 * item_noise([1, 2], 2, (3, 16, 16), torch.float64)))
    assert not torch.allclose(maps, with_noise(0.5 * item_noise([1, 2], 2, (3, 16, 16)).double()), atol=1e-6)


def test_int32_targets_are_accepted():
    model = _convnet()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8))
    as_long = grad_cam(model, None, images, torch.tensor([1, 2]))
    assert torch.equal(grad_cam(model, None, images, torch.tensor([1, 2], dtype=torch.int32)), as_long)


def test_chunk_size_defaults_layers_and_bounds():
    model = _convnet().eval().requires_grad_(False)
    shape = (3, 16, 16)
    budget = 10**6
    assert cam_chunk_size(model, None, shape, 50, budget) == cam_chunk_size(model, None, shape, 50, budget, method="gradcam")
    by_name = cam_chunk_size(model, "features.0.2", shape, 50, budget)
    assert by_name == cam_chunk_size(model, model.features[0][2], shape, 50, budget)
    assert by_name != cam_chunk_size(model, None, shape, 50, budget)  # the layer changes the cost
    assert cam_chunk_size(model, None, shape, 1, 10**12) == 1 and cam_chunk_size(model, None, shape, 0, 10**12) == 1
