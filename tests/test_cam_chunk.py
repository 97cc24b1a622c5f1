"""ddcore.cam chunks a CAM pass by memory: the chunk is the largest whose projected cost fits the budget, and
the maps do not depend on the chunking (EDF's refresh bound: plugins/edf/tests/test_edf_cam_chunk.py)."""

from __future__ import annotations

import pytest
import torch

from ddcore.cam import cam_chunk_size, grad_cam
from ddcore.models import ConvNet
from ddcore.memtrace import peak_live_bytes


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
