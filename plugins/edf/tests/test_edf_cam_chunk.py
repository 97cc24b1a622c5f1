"""EDF's CAM refresh is chunked by memory: no chunk costs more than one matching step (the chunking itself:
tests/test_cam_chunk.py)."""

from __future__ import annotations

import torch

from ddcore_edf import plugin


def test_the_refresh_is_bounded_by_one_matching_step(edf_context, synthetic, monkeypatch):
    """cam_batch_size = 0: the chunk comes from the run's projected matching step and is recorded."""
    import ddcore.tm.memory

    ctx = edf_context(interval=1, cam_method="smooth_gradcampp")
    images, labels = synthetic(ctx)
    step_bytes = 123_456_789  # the run's projected matching step
    monkeypatch.setattr(ddcore.tm.memory, "projected_step_bytes", lambda ctx: step_bytes)
    budgets, sizes = [], []
    real_chunk_size, real = ddcore_edf_maps().cam_chunk_size, ddcore_edf_maps().grad_cam

    def chunk_size(*args, **kwargs):  # the real projection; only its budget is recorded, and the answer forced to 4
        budgets.append(args[4] if len(args) > 4 else kwargs["budget_bytes"])
        real_chunk_size(*args, **kwargs)
        return 4

    monkeypatch.setattr(ddcore_edf_maps(), "cam_chunk_size", chunk_size)
    monkeypatch.setattr(ddcore_edf_maps(), "grad_cam", lambda *a, **k: sizes.append(k["batch_size"]) or real(*a, **k))
    weights = plugin.dd_pixel_weights(ctx, images, labels, 0)
    assert budgets == [step_bytes] and sizes == [4] and ctx.records["edf"]["cam"]["chunk"] == 4
    one_pass = edf_context(interval=1, cam_method="smooth_gradcampp", cam_batch_size=10)
    torch.testing.assert_close(plugin.dd_pixel_weights(one_pass, images, labels, 0), weights, rtol=1e-5, atol=1e-6)


def ddcore_edf_maps():
    import ddcore_edf.maps

    return ddcore_edf.maps
