"""EDF's CAM refresh is chunked by memory: no chunk costs more than one matching step, and the maps do not
depend on the chunking."""

from __future__ import annotations

import pytest
import torch

from ddcore.cam import cam_chunk_size, grad_cam
from ddcore.models import ConvNet
from ddcore.tm.memory import peak_live_bytes
from ddcore_edf import plugin


def small_model() -> ConvNet:
    torch.manual_seed(0)
    return ConvNet(10, in_channels=1, image_size=32, width=8, depth=3).eval().requires_grad_(False)


def real_chunk_bytes(model, images, method) -> int:
    """Peak live tensor bytes of one real CAM pass over ``images`` on the CPU (grad_cam's per-chunk code,
    with the chunk's noisy copies), what cam_chunk_size projects."""
    from ddcore.cam import _chunk_maps, _eval_mode, resolve_layer

    targets = torch.arange(images.shape[0]) % 10

    def chunk():
        noise = 0.3 * torch.randn(4, *images.shape) if method == "smooth_gradcampp" else None
        _chunk_maps(model, resolve_layer(model, None), images, targets, method, noise)

    with torch.enable_grad(), _eval_mode(model):
        return peak_live_bytes(chunk)


@pytest.mark.parametrize("method", ["gradcam", "smooth_gradcampp"])
def test_the_chunk_is_the_largest_that_fits_the_budget(method):
    model = small_model()
    images = torch.randn(12, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    five, six = real_chunk_bytes(model, images[:5], method), real_chunk_bytes(model, images[:6], method)
    assert cam_chunk_size(model, None, (1, 32, 32), 12, five, method=method) == 5
    assert cam_chunk_size(model, None, (1, 32, 32), 12, six - 1, method=method) == 5
    assert cam_chunk_size(model, None, (1, 32, 32), 12, six, method=method) == 6
    assert cam_chunk_size(model, None, (1, 32, 32), 12, 1, method=method) == 1  # never below one image
    assert cam_chunk_size(model, None, (1, 32, 32), 12, 10**12, method=method) == 12  # never above N


@pytest.mark.parametrize("method", ["gradcam", "smooth_gradcampp"])
def test_chunked_maps_equal_maps_in_one_pass(method):
    model = small_model()
    images = torch.randn(7, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(7) % 10
    whole = grad_cam(model, None, images, targets, method=method, generator=torch.Generator().manual_seed(2))
    chunked = grad_cam(model, None, images, targets, method=method, generator=torch.Generator().manual_seed(2), batch_size=3)
    assert whole.abs().sum() > 0
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_the_refresh_is_bounded_by_one_matching_step(edf_context, synthetic, monkeypatch):
    """cam_batch_size = 0: the chunk comes from the run's projected matching step and is recorded."""
    import ddcore.tm.memory

    ctx = edf_context(interval=1, cam_method="smooth_gradcampp")
    images, labels = synthetic(ctx)
    model = small_model()
    step_bytes = real_chunk_bytes(model, images[:4], "smooth_gradcampp")  # a matching step as costly as 4 images
    monkeypatch.setattr(ddcore.tm.memory, "projected_step_bytes", lambda ctx: step_bytes)
    sizes = []
    real = ddcore_edf_maps().grad_cam
    monkeypatch.setattr(ddcore_edf_maps(), "grad_cam", lambda *a, **k: sizes.append(k["batch_size"]) or real(*a, **k))
    weights = plugin.dd_pixel_weights(ctx, images, labels, 0)
    assert sizes == [4] and ctx.records["edf"]["cam"]["chunk"] == 4
    one_pass = edf_context(interval=1, cam_method="smooth_gradcampp", cam_batch_size=10)
    torch.testing.assert_close(plugin.dd_pixel_weights(one_pass, images, labels, 0), weights, rtol=1e-5, atol=1e-6)


def ddcore_edf_maps():
    import ddcore_edf.maps

    return ddcore_edf.maps
