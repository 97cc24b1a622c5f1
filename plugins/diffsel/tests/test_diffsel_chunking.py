"""Stage I does not depend on how its images are batched (issue 19, kind 5).

Every image draws its noise (diffusion scorer) or its crops (observer) from its own generator,
``derive_generator("diffsel", "stage1", i)`` with ``i`` its position in the training split, and a patch
is resampled the same whatever boxes are cut with it. So with a prior whose arithmetic is per element
(the planted prior) the pool is the same bit for bit whatever ``plugin.diffsel.batch_size`` (the knob
that cuts Stage I into prior calls); with a real UNet the scores differ only by the rounding of
batched convolutions (about 1e-6) and the kept windows are the same. The process count, the other
knob, is covered by test_diffsel_multiprocess.py.
"""

from __future__ import annotations

import pytest
import torch

from ddcore_diffsel.pixel_prior import PixelPrior, build_scheduler, build_unet
from ddcore_diffsel.pool import score_pool
from ddcore_diffsel.priors import draw_normal
from ddcore_diffsel.scorers import DiffusionScorer, ObserverScorer
from diffsel_support import PlantedPrior

FIELDS = ("labels", "index", "boxes", "scores", "features")


def pools(ctx, scorer, batch_sizes, per_class=5):
    embed = lambda patches: patches.flatten(1)[:, :8]  # noqa: E731
    return [score_pool(ctx, ctx.dataset, scorer, embed, per_class=per_class, batch_size=b, cell=16, meta={})
            for b in batch_sizes]  # fmt: skip


def assert_same(reference, other, what, scores_to_rounding=False):
    for name in FIELDS:
        mine, theirs = getattr(reference, name), getattr(other, name)
        if scores_to_rounding and name == "scores":
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-5, msg=f"{what}: {name}")
        else:
            assert torch.equal(mine, theirs), (what, name)


def diffusion_scorer(prior, dataset, **changes):
    options = {"image_side": 32, "window": 16, "stride": 8, "per_image": 2, "max_iou": 0.5, "timesteps": [300, 700],
               "n_noise": 2, "contrast": "null", "num_classes": 10, "resolution": 16, "mean": dataset.mean, "std": dataset.std}  # fmt: skip
    return DiffusionScorer(prior, **{**options, **changes})


@pytest.mark.parametrize("contrast", ["null", "others"])
def test_diffusion_stage_one_is_bit_identical_for_every_batch_size(dd_context, contrast):
    ctx = dd_context(dataset="digits")
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[4:12, 2:9] = True
    scorer = diffusion_scorer(PlantedPrior(region, true_class=3), ctx.dataset, contrast=contrast)
    one, three, five = pools(ctx, scorer, (1, 3, 5))
    assert one.scores.numel() == 10 * 5 * 2 and one.scores.std() > 0
    assert_same(one, three, "batch 3")
    assert_same(one, five, "batch 5")


def test_with_a_real_unet_only_rounding_differs(dd_context):
    ctx = dd_context(dataset="digits")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        prior = PixelPrior(build_unet(16, 1, 10, [8, 16]), build_scheduler(1000), [str(d) for d in range(10)])
    one, four = pools(ctx, diffusion_scorer(prior, ctx.dataset, n_noise=1, timesteps=[500]), (1, 4), per_class=4)
    assert_same(one, four, "batch 4", scores_to_rounding=True)


def test_observer_crops_are_bit_identical_for_every_batch_size(dd_context):
    ctx = dd_context(dataset="digits")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        observer = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, 10)).eval()  # per-image arithmetic
    scorer = ObserverScorer(observer, image_side=32, cell=16, crops=5, min_scale=0.08, view="pad", per_image=2,
                            max_iou=0.5, device="cpu")  # fmt: skip
    one, two, five = pools(ctx, scorer, (1, 2, 5))
    assert len(set(map(tuple, one.boxes.tolist()))) > 10  # crops differ between images
    assert_same(one, two, "batch 2", scores_to_rounding=True)
    assert_same(one, five, "batch 5", scores_to_rounding=True)


def test_an_image_draws_the_same_noise_wherever_it_sits(dd_context):
    ctx = dd_context(dataset="digits")
    generators = lambda ids: [ctx.derive_generator("diffsel", "stage1", i) for i in ids]  # noqa: E731
    batched = draw_normal((3, 4, 8, 8), generators([0, 1, 2]))
    assert torch.equal(batched[2:], draw_normal((1, 4, 8, 8), generators([2])))
    assert not torch.equal(batched[0], batched[1])
    with pytest.raises(ValueError, match="2 generators for 3 images"):
        draw_normal((3, 4), generators([0, 1]))
