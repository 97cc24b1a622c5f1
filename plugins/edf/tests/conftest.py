"""Helpers for the edf plugin's tests: a small fixed CAM model in place of the run's trained classifier."""

from __future__ import annotations

import pytest
import torch

from ddcore.models import ConvNet

#: Tiny trajectory matching on digits (ipc 1: 10 images), cheap enough for hook-level tests.
TINY_TM = {"iterations": 4, "syn_steps": 2, "cur_max_start_epoch": 1, "max_start_epoch": 2, "checkpoint_every": 0}


@pytest.fixture
def edf_context(dd_context, monkeypatch):
    """``edf_context(tm=None, **edf_options)`` -> a digits ``RunContext`` with edf active, ``distill = "tm"``, and a fixed
    seeded ConvNet (width 8) as the CAM model instead of a trained one."""
    import ddcore_edf.maps

    def fixed_model(ctx, cam_model, cam_weights):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = ConvNet(10, in_channels=1, image_size=32, width=8, depth=3)
        return model.eval().requires_grad_(False)

    monkeypatch.setattr(ddcore_edf.maps, "load_cam_model", fixed_model)

    def make(tm: dict | None = None, **edf_options):
        return dd_context(plugins=["edf"], distill="tm", tm={**TINY_TM, **(tm or {})}, plugin={"edf": edf_options})

    return make


@pytest.fixture
def synthetic(edf_context):
    """Ten digits (one per class) as synthetic images ``[10, 1, 32, 32]`` with hard labels ``[10]``."""

    def make(ctx):
        indices = [ctx.dataset.indices_by_class("train")[c][0] for c in range(10)]
        return ctx.dataset.load("train", indices)

    return make
