"""ddcore.cam: Grad-CAM and Smooth Grad-CAM++ on known networks, batched against per-image, against a library."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddcore import PluginError
from ddcore.cam import default_layer_name, grad_cam, item_noise, resolve_layer
from ddcore.models import ConvNet, resnet18

SIZE = 16
#: Region of class c: rows, columns (inclusive-exclusive) of a 16x16 image.
REGIONS = {0: (slice(2, 6), slice(2, 6)), 1: (slice(9, 14), slice(8, 13))}


class TwoRegionNet(nn.Module):
    """Logit c sees only region c of the image: feature channel c is gated to region c before the CAM layer.

    conv (1 -> 2 channels) -> ReLU -> gate (channel c kept in region c only) -> ``block``
    (grouped 3x3 conv with positive weights, ReLU, 2x2 pooling: an 8x8 map) -> spatial mean -> logits = features.
    """

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        gate = torch.zeros(2, SIZE, SIZE)
        for channel, (rows, cols) in REGIONS.items():
            gate[channel, rows, cols] = 1.0
        self.register_buffer("gate", gate)
        self.block = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, groups=2), nn.ReLU(), nn.AvgPool2d(2))
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))
            self.block[0].weight.fill_(0.2)
            self.block[0].bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(x)) * self.gate
        return self.block(features).mean(dim=(2, 3))  # [N, 2]: logit c = mean of channel c


def region_mask(label: int, grow: int) -> torch.Tensor:
    """``[SIZE, SIZE]`` bool: region ``label`` grown by ``grow`` pixels on each side."""
    rows, cols = REGIONS[label]
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[max(rows.start - grow, 0) : rows.stop + grow, max(cols.start - grow, 0) : cols.stop + grow] = True
    return mask


@pytest.mark.parametrize("method", ["gradcam", "smooth_gradcampp"])
def test_activation_lies_in_the_only_region_that_affects_the_target(method):
    model = TwoRegionNet()
    images = torch.randn(6, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 0, 1, 1, 0])
    maps = grad_cam(model, "block", images, targets, method=method)
    assert maps.shape == (6, SIZE, SIZE)
    for cam, label in zip(maps, targets.tolist()):
        # The layer's receptive growth (3x3 conv, 2x2 pooling, bilinear upsampling) spreads a region by <= 3 px.
        inside = region_mask(label, grow=3)
        assert cam.max() == 1.0 and cam.min() == 0.0
        assert inside[torch.div(cam.argmax(), SIZE, rounding_mode="floor"), cam.argmax() % SIZE]
        assert cam[inside].sum() / cam.sum() > 0.97
        assert cam[region_mask(1 - label, grow=0)].max() == 0.0  # the other class's region stays dark


def test_plain_gradcam_values_on_a_hand_made_layer():
    """Linear head on a 1x2 feature map: the map is ReLU(sum_k w_k A_k) with w_k = mean gradient, then min-max."""

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Identity()  # the CAM layer: the image itself, [N, 2, 1, 2]
            self.weights = torch.tensor([[1.0, -1.0], [-1.0, 3.0]])  # logit c = sum_k W[c, k] * mean(A_k)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.features(x).mean(dim=(2, 3)) @ self.weights.T

    images = torch.tensor([[[[4.0, 1.0]], [[1.0, 2.0]]]]).repeat(2, 1, 1, 1)  # [2, 2, 1, 2]
    maps = grad_cam(Head(), "features", images, torch.tensor([0, 1]))
    # target 0: w = (0.5, -0.5): 0.5*[4,1] - 0.5*[1,2] = [1.5, -0.5] -> ReLU [1.5, 0] -> [1, 0]
    # target 1: w = (-0.5, 1.5): [-2+1.5, -0.5+3] = [-0.5, 2.5] -> ReLU [0, 2.5] -> [0, 1]
    assert maps.tolist() == [[[1.0, 0.0]], [[0.0, 1.0]]]


def reference_maps(model, layer, images, targets, method, noise=None):
    """Per image, per noisy copy: separate forward/backward passes with plain hooks (the slow, obvious way)."""
    results = []
    for index in range(images.shape[0]):
        store = {}
        handle = layer.register_forward_hook(lambda _m, _i, out: store.__setitem__("a", out))
        try:
            clean = images[index : index + 1]
            copies = [clean] if method == "gradcam" else [clean + noise[s, index : index + 1] for s in range(noise.shape[0])]
            grads = []
            for copy in copies:
                logits = model(copy.clone().requires_grad_(True))
                grads.append(torch.autograd.grad(logits[0, targets[index]], store["a"])[0][0])
            model(clean)
            activations = store["a"][0].detach()  # [K, h, w]
        finally:
            handle.remove()
        g = torch.stack(grads)  # [S, K, h, w]
        if method == "gradcam":
            weights = g[0].mean(dim=(1, 2))
        else:
            d1, d2, d3 = g.mean(0), (g**2).mean(0), (g**3).mean(0)
            alpha = torch.where(d2 > 0, d2 / (2 * d2 + activations.sum(dim=(1, 2))[:, None, None] * d3 + 1e-8), 0.0)
            weights = (alpha * torch.relu(d1)).sum(dim=(1, 2))
        cam = torch.relu((weights[:, None, None] * activations).sum(0))
        cam = F.interpolate(cam[None, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
        span = cam.max() - cam.min()
        results.append((cam - cam.min()) / span if span > 0 else torch.zeros_like(cam))
    return torch.stack(results)


def tiny_models():
    torch.manual_seed(0)
    convnet = ConvNet(5, in_channels=3, image_size=16, width=8, depth=2)
    resnet = resnet18(5, in_channels=3, image_size=16)
    return {"convnet": convnet, "resnet18": resnet}


@pytest.mark.parametrize("arch", ["convnet", "resnet18"])
@pytest.mark.parametrize("method", ["gradcam", "smooth_gradcampp"])
def test_batched_maps_equal_per_image_computation(arch, method):
    model = tiny_models()[arch]
    model.train()  # batch norm in train mode would mix images: grad_cam must switch to eval and back
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 4, 2])
    layer = "features.0.2" if arch == "convnet" else "layer3"  # a layer where the gradient depends on the input
    maps = grad_cam(model, layer, images, targets, method=method, samples=2, noise=0.2, seeds=[7, 8, 9])
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    noise = item_noise([7, 8, 9], 2, (3, 16, 16)) * 0.2  # each image's own draws
    model.eval()
    expected = reference_maps(model, resolve_layer(model, layer), images, targets, method, noise)
    assert torch.allclose(maps, expected, atol=1e-5)
    assert (maps.flatten(1).amax(1) == 1.0).sum() >= 2  # mostly real maps, not all-zero ones


def test_chunks_and_seeds():
    model = tiny_models()["convnet"]
    images = torch.randn(7, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    targets = torch.arange(7) % 5
    whole = grad_cam(model, None, images, targets)
    assert torch.allclose(grad_cam(model, None, images, targets, batch_size=3), whole, atol=1e-6)

    def smooth(layer, seed):
        return grad_cam(model, layer, images, targets, method="smooth_gradcampp", generator=torch.Generator().manual_seed(seed))

    # At the first block the gradient depends on the input: the noise (from the generator) matters.
    assert torch.equal(smooth("features.0.2", 1), smooth("features.0.2", 1))
    assert not torch.allclose(smooth("features.0.2", 1), smooth("features.0.2", 2), atol=1e-3)
    # At the last block only pooling and a linear layer follow: the gradient is the same for every input,
    # so the noisy copies change nothing (Smooth Grad-CAM++ is Grad-CAM++ there).
    assert torch.allclose(smooth(None, 1), smooth(None, 2), atol=1e-6)


def test_default_layers_and_bad_names():
    models = tiny_models()
    assert default_layer_name(models["convnet"]) == "features.1.2"
    assert resolve_layer(models["resnet18"], None) is models["resnet18"].layer4
    with pytest.raises(PluginError, match=r"no layer 'layer9' \(plugin.edf.cam_layer\); available: .*layer4"):
        resolve_layer(models["resnet18"], "layer9", option="plugin.edf.cam_layer")
    images, targets = torch.zeros(2, 3, 16, 16), torch.tensor([0, 1])
    with pytest.raises(PluginError, match="not a feature map"):
        grad_cam(models["resnet18"], "fc", images, targets)
    with pytest.raises(PluginError, match="ran 2 times"):
        grad_cam(models["resnet18"], "layer4.1.relu", images, targets)  # BasicBlock calls its ReLU twice
    with pytest.raises(PluginError, match=r"targets must lie in \[0, 5\)"):
        grad_cam(models["convnet"], None, images, torch.tensor([0, 5]))
    with pytest.raises(PluginError, match="unknown CAM method"):
        grad_cam(models["convnet"], None, images, targets, method="scorecam")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["gradcam", "smooth_gradcampp"])
def test_agrees_with_pytorch_grad_cam_on_a_resnet(method):
    """pytorch-grad-cam's GradCAM, and its GradCAMPlusPlus = our Smooth Grad-CAM++ without noise."""
    library = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = resnet18(5, in_channels=3, image_size=16).eval()
    with torch.no_grad():
        model.fc.weight.mul_(1e4)  # large gradients, so that the libraries' different epsilons (1e-8, 1e-6) do not matter
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    targets = [3, 0, 4]
    ours = grad_cam(model, "layer4", images, torch.tensor(targets), method=method, noise=0.0, samples=1)
    extractor = library.GradCAM if method == "gradcam" else library.GradCAMPlusPlus
    with extractor(model=model, target_layers=[model.layer4]) as cam:
        theirs = torch.from_numpy(cam(input_tensor=images, targets=[ClassifierOutputTarget(t) for t in targets]))
    # The library min-max scales before resizing (with a 1e-7 guard); re-scale its maps exactly to compare.
    low = theirs.flatten(1).amin(1)[:, None, None]
    theirs = (theirs - low) / (theirs.flatten(1).amax(1)[:, None, None] - low)
    assert torch.allclose(ours, theirs, atol=1e-4)
