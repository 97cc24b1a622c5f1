"""ddcore.cam's ``variant = "torchcam"``: torchcam 0.5.0's order of operations (the EDF release's CAM library).

Known answers by hand (no torchcam needed), and a comparison with torchcam's own ``SmoothGradCAMpp`` and
``GradCAM`` on a tiny ConvNet with the same noise draws (skipped without torchcam).

How the noise is matched: torchcam draws each noisy copy of the whole batch from torch's global RNG
(``Normal(0, std).sample(input.size())``, one draw per copy, in order). Seeding the global RNG with the same
seed and drawing ``randn(input.size())`` once per copy reproduces those standard normal values, which are
handed to :func:`ddcore.cam.grad_cam` as ``noise_draws``; both runs happen under ``torch.random.fork_rng``,
so the test leaves the global RNG as it found it.
"""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddcore.cam import grad_cam
from ddcore.models import ConvNet

# Two channels, three positions: the CAM layer's activations A and the target's gradient g (set by hand below).
A = torch.tensor([[[[1.0, 3.0, 2.0]], [[0.0, 2.0, 1.0]]]])  # [1, K=2, 1, 3]
G = torch.tensor([[[[1.0, 2.0, 0.0]], [[1.0, 1.0, 1.0]]]])  # d score / d A


def linear_head_model() -> nn.Module:
    """A model whose CAM layer ("feat") outputs its input and whose class-0 score is ``sum(G * A)``: the layer's
    activations are the input, and its gradient is ``G`` for every input."""
    head = nn.Linear(6, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.stack([G.flatten(), -G.flatten()]))
    return nn.Sequential(OrderedDict(feat=nn.Identity(), flat=nn.Flatten(), head=head)).eval()


def upsample_by_two(values: list[float]) -> torch.Tensor:
    """Bilinear (align_corners=False) upsampling of three values to six, written out by hand: output pixel ``o``
    samples the source at ``(o + 0.5) / 2 - 0.5``, clamped at the borders."""
    a, b, c = values
    return torch.tensor([a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, 0.75 * b + 0.25 * c, 0.25 * b + 0.75 * c, c])


def minmax(values: list[float]) -> list[float]:
    low, high = min(values), max(values)
    return [(v - low) / (high - low) for v in values]


def test_torchcam_variant_known_answer_without_noise():
    """Smooth Grad-CAM++ with zero noise, by hand. torchcam's alpha sums ``D3 * A`` position by position:
    channel 0: ``alpha = g^2 / (2 g^2 + sum(g^3 A)) = [1/27, 4/33, 0]`` (``sum(g^3 A) = 1 + 24 + 0``), so
    ``w_0 = 1/27 + 2 * 4/33``; channel 1: ``alpha = 1/5`` everywhere (``sum = 0 + 2 + 1``), ``w_1 = 3/5``. The map
    is normalised at layer resolution, then upsampled."""
    model, targets = linear_head_model(), torch.tensor([0])
    w0, w1 = 1 / 27 + 2 * 4 / 33, 3 / 5
    cam = [w0 * a0 + w1 * a1 for a0, a1 in zip(A[0, 0, 0].tolist(), A[0, 1, 0].tolist())]
    expected = upsample_by_two(minmax(cam))
    got = grad_cam(model, "feat", A, targets, method="smooth_gradcampp", samples=3, noise=0.0, variant="torchcam")
    assert got.shape == (1, 1, 3)  # the "image" is the activation itself here: 1x3
    # at the image's own size nothing is resized; compare the layer-resolution normalised map
    assert torch.allclose(got[0, 0], torch.tensor(minmax(cam)), atol=1e-6)
    # a two-times larger image: the same map, upsampled after normalising
    big = F.interpolate(A, size=(1, 6), mode="nearest")  # only the size matters for the output
    model_big = nn.Sequential(OrderedDict(feat=nn.AvgPool2d((1, 2)), flat=nn.Flatten(), head=linear_head_model().head)).eval()
    got = grad_cam(model_big, "feat", big, targets, method="smooth_gradcampp", samples=3, noise=0.0, variant="torchcam")
    assert torch.allclose(got[0, 0], expected, atol=1e-6)
    assert float(got.max()) < 1.0  # the peak lies between output pixels: normalising first leaves it below 1


def test_paper_variant_known_answer_differs():
    """The paper's alpha uses ``sum(A) * g^3`` (channel 0: ``alpha = [1/8, 4/56, 0]``, ``w_0 = 1/8 + 2/14``;
    channel 1: ``w_1 = 3/5``), and the map is upsampled before it is normalised (its extremes are 0 and 1)."""
    model_big = nn.Sequential(OrderedDict(feat=nn.AvgPool2d((1, 2)), flat=nn.Flatten(), head=linear_head_model().head)).eval()
    big = F.interpolate(A, size=(1, 6), mode="nearest")
    w0, w1 = 1 / 8 + 2 * 4 / 56, 3 / 5
    cam = [w0 * a0 + w1 * a1 for a0, a1 in zip(A[0, 0, 0].tolist(), A[0, 1, 0].tolist())]
    expected = torch.tensor(minmax(upsample_by_two(cam).tolist()))
    got = grad_cam(model_big, "feat", big, torch.tensor([0]), method="smooth_gradcampp", samples=3, noise=0.0)
    assert torch.allclose(got[0, 0], expected, atol=1e-6)
    assert float(got.max()) == 1.0 and float(got.min()) == 0.0


def test_torchcam_variant_takes_the_last_noisy_copy():
    """With noise, torchcam weighs the **last** noisy copy's activations (its hook keeps the latest pass) while
    alpha's sum uses the clean ones. The head is linear, so every copy has the gradient G; the weights are
    those of the zero-noise case, and the map is ``ReLU(sum_k w_k (A + noise * last draw)_k)``."""
    model = linear_head_model()
    draws = torch.randn(2, 1, 2, 1, 3, generator=torch.Generator().manual_seed(4))
    w = torch.tensor([1 / 27 + 2 * 4 / 33, 3 / 5]).view(1, 2, 1, 1)
    last = A + 0.1 * draws[-1]
    cam = torch.relu((w * last).sum(1))[0, 0].tolist()
    got = grad_cam(model, "feat", A, torch.tensor([0]), method="smooth_gradcampp", noise=0.1, noise_draws=draws,
                   variant="torchcam")  # fmt: skip
    assert torch.allclose(got[0, 0], torch.tensor(minmax(cam)), atol=1e-5)
    first = torch.relu((w * (A + 0.1 * draws[0])).sum(1))[0, 0].tolist()
    assert not torch.allclose(got[0, 0], torch.tensor(minmax(first)), atol=1e-3)  # the draws differ enough to tell


class Doubling(nn.Module):
    """``inner(2 x)``: a wrapper in front of a classifier, as ddcore.adapt's adapter is."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(2 * x)


def tiny_convnet(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ConvNet(4, in_channels=1, image_size=16, width=4, depth=2).eval()


def test_noise_module_adds_the_noise_at_its_input():
    """``noise_module = inner`` puts the noise behind the wrapper: the maps equal those of ``inner`` fed ``2 x``
    with the same draws added to its input directly (and differ from noise added before the doubling)."""
    inner = tiny_convnet()
    images = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 2])
    draws = torch.randn(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    options = {"method": "smooth_gradcampp", "noise": 0.3, "noise_draws": draws, "variant": "torchcam"}
    behind = grad_cam(Doubling(inner), "inner.features.0.2", images, targets, noise_module=inner, **options)
    direct = grad_cam(inner, "features.0.2", 2 * images, targets, **options)
    before = grad_cam(Doubling(inner), "inner.features.0.2", images, targets, **options)
    assert torch.allclose(behind, direct, atol=1e-5)
    assert (behind - before).abs().max() > 1e-3


def torchcam_reference(methods, model, layer, method, images, targets, samples, std, seed):
    """torchcam 0.5.0's own maps for ``images`` at ``layer`` (noise from the global RNG seeded with ``seed``),
    upsampled bilinearly to the image size as the release did. Shape: ``[N, H, W]``."""
    shape = tuple(images.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if method == "smooth_gradcampp":
            extractor = methods.SmoothGradCAMpp(model, layer, num_samples=samples, std=std, input_shape=shape)
        else:
            extractor = methods.GradCAM(model, layer, input_shape=shape)
        with extractor:
            scores = model(images)
            (low,) = extractor(class_idx=targets, scores=scores)
    return F.interpolate(low.unsqueeze(1), size=shape[1:], mode="bilinear", align_corners=False).squeeze(1)


@pytest.mark.parametrize("method", ["smooth_gradcampp", "gradcam"])
def test_torchcam_variant_matches_torchcam(method):
    """ddcore's batched torchcam variant against torchcam 0.5.0 itself, same noise draws, at an early layer (where
    the noise changes the gradients), each image with its own target; torchcam's maps are then upsampled
    bilinearly as the release did."""
    methods = pytest.importorskip("torchcam.methods")
    model = tiny_convnet()
    images = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    targets = [2, 0, 3]
    samples, std, seed = 4, 0.3, 11
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        draws = torch.stack([torch.randn(images.shape) for _ in range(samples)])  # torchcam's draws, in order
    reference = torchcam_reference(methods, model, "features.0.2", method, images, targets, samples, std, seed)
    # the layer is 16x16 here: compare at the layer's resolution too, and after a 2x upsampling of both
    ours = grad_cam(model, "features.0.2", images, torch.tensor(targets), method=method, noise=std, noise_draws=draws,
                    variant="torchcam")  # fmt: skip
    assert ours.shape == reference.shape
    assert torch.allclose(ours, reference, atol=1e-5), float((ours - reference).abs().max())
    paper = grad_cam(model, "features.0.2", images, torch.tensor(targets), method=method, noise=std, noise_draws=draws)
    if method == "smooth_gradcampp":  # the paper formula is another map (alpha, mean gradient, clean activations)
        assert (paper - reference).abs().max() > 1e-3
    # the same draws through a deeper layer (8x8 map, upsampled to 16x16): torchcam normalises, then we upsample
    reference = torchcam_reference(methods, model, "features.1.2", method, images, targets, samples, std, seed)
    ours = grad_cam(model, "features.1.2", images, torch.tensor(targets), method=method, noise=std, noise_draws=draws,
                    variant="torchcam")  # fmt: skip
    assert torch.allclose(ours, reference, atol=1e-5), float((ours - reference).abs().max())
