"""The self-trained prior's cache follows the data's content, not its name (issue 13, kind 3)."""

import torch

from ddcore.data.base import TensorSplit
from ddcore.datasig import data_signature
from ddcore_diffsel.pixel_prior import read_meta
from ddcore_diffsel.train_prior import ensure_pixel_prior

from diffsel_support import TINY_PRIOR


def test_a_prior_of_changed_images_is_not_reused(dd_context, tmp_path):
    ctx = dd_context(plugins=["diffsel"], image_size=16, cache_dir=str(tmp_path), plugin={"diffsel": {"train": {**TINY_PRIOR, "steps": 1}}})
    config = ctx.plugin_config("diffsel").train
    folder = ensure_pixel_prior(ctx, ctx.dataset, config)
    assert read_meta(folder)["data"] == data_signature(ctx.dataset)  # what it was trained on
    assert ensure_pixel_prior(ctx, ctx.dataset, config) == folder and ctx.records["diffsel/prior"]["trained_now"] == 0
    images = ctx.dataset.train.images.clone()
    images[5, 0, 3, 3] += 0.5  # one pixel of one image: same dataset name, size and classes
    ctx.dataset.train = TensorSplit(images, ctx.dataset.train.labels)
    changed = ensure_pixel_prior(ctx, ctx.dataset, config)
    assert changed != folder and ctx.records["diffsel/prior"]["trained_now"] == 1
    assert ctx.records["diffsel/prior"]["fingerprint"] == data_signature(ctx.dataset)["fingerprint"]
    assert read_meta(changed)["data"]["fingerprint"] != read_meta(folder)["data"]["fingerprint"]
