"""ddcore_diffsel.scorers, cases found by mutation testing (bench/mutation.py): what the prior is shown
(denormalised, clamped pixels), the scorer's settings reaching the map, missing picks, the
RandomResizedCrop boxes' geometry, the observer's views, and the observer scorer's scores (minus the
cross-entropy of a hand-made observer) and per-image generators."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddcore_diffsel.priors import discriminativeness_map
from ddcore_diffsel.scorers import DiffusionScorer, ObserverScorer, observer_views, random_resized_boxes
from ddcore_diffsel.windows import crop_resize

from diffsel_support import PlantedPrior


def _region(h, w, top, left, size):
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _scorer(prior, **overrides) -> DiffusionScorer:
    options = dict(image_side=16, window=8, stride=4, per_image=1, max_iou=0.5, timesteps=[300, 700], n_noise=2,
                   contrast="null", num_classes=3, resolution=16, mean=(0.0,), std=(1.0,))  # fmt: skip
    options.update(overrides)
    return DiffusionScorer(prior, **options)


class _Recording(PlantedPrior):
    """Notes the pixels it is asked to encode."""

    def encode(self, images):
        self.seen = images.clone()
        return super().encode(images)


# ----------------------------------------------------------------------------------------------
# DiffusionScorer
# ----------------------------------------------------------------------------------------------


def test_the_prior_sees_denormalised_pixels_clamped_to_0_1():
    pixels = torch.tensor([-0.2, 0.0, 0.3, 1.0, 1.4]).repeat(16 * 16 // 5 + 1)[: 16 * 16].view(1, 1, 16, 16)
    mean, std = 0.4, 0.25
    prior = _Recording(_region(16, 16, 0, 0, 4))
    _scorer(prior, mean=(mean,), std=(std,)).maps((pixels - mean) / std, torch.tensor([0]), torch.Generator())
    torch.testing.assert_close(prior.seen, pixels.clamp(0, 1), atol=1e-6, rtol=0)


@pytest.mark.parametrize("contrast, true_class", [("null", None), ("others", 1)])
def test_the_maps_use_the_scorers_settings(contrast, true_class):
    """The scorer's map is the discriminativeness map of its prior with its own timesteps, draws, contrast,
    classes and resolution (here 8, where the planted 8 x 8 region lives: the map is resized back to 16)."""
    region = _region(8, 8, 2, 4, 3)
    images = torch.zeros(2, 1, 16, 16)
    labels = torch.tensor([1, 1])

    def reference(timesteps, n_noise):
        return discriminativeness_map(PlantedPrior(region, true_class), images, labels, timesteps, n_noise,
                                      torch.Generator().manual_seed(5), contrast, 4, 8)  # fmt: skip

    settings = dict(timesteps=[200, 800], n_noise=3, contrast=contrast, num_classes=4, resolution=8)
    got = _scorer(PlantedPrior(region, true_class), **settings).maps(images, labels, torch.Generator().manual_seed(5))
    assert torch.equal(got, reference([200, 800], 3)) and got.shape == (2, 16, 16)
    # and the settings matter: other timesteps or another draw count give another map
    assert not torch.equal(got, reference([200, 800], 2)) and not torch.equal(got, reference([200], 3))


def test_candidates_keep_the_best_windows_and_mark_missing_picks():
    """Region 8x8 at (4, 4): with windows of 8 at stride 4 the best window is exactly the region; with
    max_iou 0 every other window overlaps it (the grid is 16 px wide), so the 2nd and 3rd picks are missing:
    box 0 (the clamped index) with score -inf."""
    region = _region(16, 16, 4, 4, 8)
    scorer = _scorer(PlantedPrior(region), per_image=3, max_iou=0.0)
    boxes, scores = scorer.candidates(torch.zeros(2, 1, 16, 16), torch.tensor([0, 2]), torch.Generator().manual_seed(0))
    assert boxes.shape == (2, 3, 4) and scores.shape == (2, 3)
    assert boxes[:, 0].tolist() == [[4, 4, 8, 8]] * 2 and (scores[:, 0] > 0).all()
    assert boxes[:, 1:].tolist() == [[[0, 0, 8, 8]] * 2] * 2 and torch.isinf(scores[:, 1:]).all()
    assert (scores[:, 1:] < 0).all()


# ----------------------------------------------------------------------------------------------
# RandomResizedCrop boxes
# ----------------------------------------------------------------------------------------------


def test_random_resized_boxes_geometry():
    h, w, min_scale = 20, 30, 0.3
    boxes = random_resized_boxes(3000, h, w, min_scale, torch.Generator().manual_seed(0))
    assert boxes.shape == (3000, 4) and boxes.dtype == torch.long
    top, left, bh, bw = boxes.unbind(1)
    assert (bh >= 1).all() and (bw >= 1).all() and (top >= 0).all() and (left >= 0).all()
    assert (top + bh <= h).all() and (left + bw <= w).all()
    whole = (bh == h) & (bw == w)
    assert int(whole.sum()) < 30  # the whole image is the fall-back (and a rare draw of scale ~1, ratio 1.5)
    area = (bh * bw).double()[~whole] / (h * w)
    aspect = bw.double()[~whole] / bh.double()[~whole]
    # rounding each side to whole pixels moves the area and the aspect a little
    assert area.min() > min_scale * 0.85 and area.max() <= 1.0
    assert area.min() < min_scale * 1.1 and area.max() > 0.8  # the whole range of scales is drawn
    assert aspect.min() > 0.75 * 0.85 and aspect.max() < (4 / 3) * 1.15
    assert aspect.min() < 0.8 and aspect.max() > 1.25  # and of ratios
    # a box of a given size starts anywhere from 0 to the last position that keeps it inside
    for size in ((10, 15), (14, 20)):
        same = (bh == size[0]) & (bw == size[1])
        if same.sum() >= 20:
            assert int(top[same].min()) == 0 and int(top[same].max()) == h - size[0]
            assert int(left[same].min()) == 0 and int(left[same].max()) == w - size[1]


def test_random_resized_boxes_fixed_size_positions_are_uniform():
    """Scale 1/4 of 8 x 8 at ratio 1: always a 4 x 4 box; its corner is uniform over the 5 x 5 positions."""
    boxes = random_resized_boxes(2500, 8, 8, 0.25, torch.Generator().manual_seed(1), ratio=(1.0, 1.0))
    boxes = boxes[(boxes[:, 2] == 4) & (boxes[:, 3] == 4)]
    assert len(boxes) > 100  # scale 0.25 exactly is drawn with probability 0 but rounds to 4 for s < 0.28
    counts = torch.bincount(boxes[:, 0] * 5 + boxes[:, 1], minlength=25)
    assert counts.numel() == 25 and (counts > 0).all()


def test_random_resized_box_areas_are_uniform_fractions_of_the_image():
    """One try per box at ratio 1 on 32 x 32: a square of side round(32 sqrt(s)), s ~ U(0.3, 1), always fits; the
    whole image only for s >= (31.5 / 32)^2 (4.4 % of draws)."""
    boxes = random_resized_boxes(2000, 32, 32, 0.3, torch.Generator().manual_seed(5), ratio=(1.0, 1.0), tries=1)
    assert (boxes[:, 2] == boxes[:, 3]).all()
    whole = float((boxes[:, 2] == 32).float().mean())
    assert 0.02 < whole < 0.07
    area = (boxes[:, 2] * boxes[:, 3]).double() / 1024
    assert 0.3 * 0.95 < float(area.min()) and abs(float(area.mean()) - 0.65) < 0.02


def test_random_resized_boxes_use_ten_tries_by_default():
    a = random_resized_boxes(20, 12, 12, 0.2, torch.Generator().manual_seed(6))
    assert torch.equal(a, random_resized_boxes(20, 12, 12, 0.2, torch.Generator().manual_seed(6), tries=10))
    assert not torch.equal(a, random_resized_boxes(20, 12, 12, 0.2, torch.Generator().manual_seed(6), tries=11))


def test_random_resized_boxes_reach_one_pixel_and_full_sides():
    """2 x 2: sides of 1 pixel occur, and 1-pixel boxes sit in every row and column. 4 x 2 (H x W) at ratio 1:
    a 2 x 2 box (as wide as the image) occurs; so does a 2 x 2 box in a 2 x 4 image (as high as it)."""
    tiny = random_resized_boxes(400, 2, 2, 0.2, torch.Generator().manual_seed(7))
    assert (tiny[:, 2] == 1).any() and (tiny[:, 3] == 1).any()
    one_wide, one_high = tiny[tiny[:, 3] == 1], tiny[tiny[:, 2] == 1]
    assert set(one_wide[:, 1].tolist()) == {0, 1} and set(one_high[:, 0].tolist()) == {0, 1}
    tall = random_resized_boxes(200, 4, 2, 0.5, torch.Generator().manual_seed(8), ratio=(1.0, 1.0))
    assert ((tall[:, 2] == 2) & (tall[:, 3] == 2)).any()
    wide = random_resized_boxes(200, 2, 4, 0.5, torch.Generator().manual_seed(9), ratio=(1.0, 1.0))
    assert ((wide[:, 2] == 2) & (wide[:, 3] == 2)).any()


def test_random_resized_boxes_fall_back_to_the_whole_image():
    """A 1-pixel-high image: no box of area >= 0.5 * 100 with ratio in [3/4, 4/3] fits -> the whole image."""
    boxes = random_resized_boxes(5, 1, 100, 0.5, torch.Generator().manual_seed(2))
    assert boxes.tolist() == [[0, 0, 1, 100]] * 5


def test_random_resized_boxes_take_the_first_draw_that_fits():
    """Of 10 tries at scale ~U(0.9, 1) on a 10 x 10 image, those with a ratio far from 1 do not fit; the box
    is the first try that fits, whose sides are then rounded from its own scale and ratio."""
    g = torch.Generator().manual_seed(3)
    boxes = random_resized_boxes(400, 10, 10, 0.9, g)
    sides = set(map(tuple, boxes[:, 2:].tolist()))
    assert sides <= {(10, 10), (9, 10), (10, 9), (9, 9), (10, 8), (8, 10)} and (10, 10) in sides


def test_random_resized_boxes_depend_only_on_the_generator():
    a = random_resized_boxes(50, 12, 12, 0.2, torch.Generator().manual_seed(4))
    b = random_resized_boxes(50, 12, 12, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------
# Observer views
# ----------------------------------------------------------------------------------------------


def test_observer_views_pad_centred_and_resize():
    patch = torch.arange(1.0, 5.0).view(1, 1, 2, 2)
    padded = observer_views(patch, 5, "pad")
    expected = torch.zeros(1, 1, 5, 5)
    expected[0, 0, 1:3, 1:3] = patch[0, 0]  # (5 - 2) // 2 = 1 before, 2 after
    assert torch.equal(padded, expected)
    resized = observer_views(patch, 4, "resize")
    assert torch.equal(resized, F.interpolate(patch, size=(4, 4), mode="bilinear", align_corners=False))
    # bilinear with half-pixel centres: the corners keep the corner values
    assert resized[0, 0, 0, 0] == 1.0 and resized[0, 0, 3, 3] == 4.0 and resized[0, 0, 1, 1] == 1.75
    wide = observer_views(torch.ones(1, 1, 2, 2), 8, "pad")[0, 0]
    assert wide[3:5, 3:5].sum() == 4 and wide.sum() == 4  # (8 - 2) // 2 = 3 rows and columns before
    same = torch.rand(2, 3, 4, 4)
    assert observer_views(same, 4, "pad") is same and observer_views(same, 4, "resize") is same


# ----------------------------------------------------------------------------------------------
# ObserverScorer
# ----------------------------------------------------------------------------------------------


class _Brightness(nn.Module):
    """Logits ``[10 m, -10 m]`` with ``m`` the mean of the view: class 0 likes bright crops, class 1 dark ones."""

    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([10 * m, -10 * m], dim=1)


def _observer_scorer(**overrides) -> ObserverScorer:
    options = dict(image_side=12, cell=6, crops=8, min_scale=0.1, view="resize", per_image=2, max_iou=0.9,
                   device=torch.device("cpu"))  # fmt: skip
    options.update(overrides)
    return ObserverScorer(_Brightness(), **options)


def test_observer_scores_are_minus_the_cross_entropy_of_the_chosen_crops():
    images = torch.zeros(2, 1, 12, 12)
    images[:, :, 2:7, 3:9] = 1.0  # a bright patch
    labels = torch.tensor([0, 1])
    scorer = _observer_scorer()
    boxes, scores = scorer.candidates(images, labels, torch.Generator().manual_seed(0))
    assert boxes.shape == (2, 2, 4) and scores.shape == (2, 2)
    for i in range(2):
        crops = crop_resize(images[i : i + 1].expand(2, -1, -1, -1), boxes[i], 6)
        logits = _Brightness()(F.interpolate(crops, size=(12, 12), mode="bilinear", align_corners=False))
        expected = -F.cross_entropy(logits, labels[i].repeat(2), reduction="none")
        torch.testing.assert_close(scores[i], expected, atol=1e-5, rtol=1e-5)
    assert (scores[:, 0] >= scores[:, 1]).all()  # best first
    # all 8 crops of image i come from the one generator, in order: the best of them is picked
    every = random_resized_boxes(16, 12, 12, 0.1, torch.Generator().manual_seed(0)).view(2, 8, 4)
    for i in range(2):
        crops = crop_resize(images[i : i + 1].expand(8, -1, -1, -1), every[i], 6)
        logits = _Brightness()(F.interpolate(crops, size=(12, 12), mode="bilinear", align_corners=False))
        all_scores = -F.cross_entropy(logits, labels[i].repeat(8), reduction="none")
        assert math.isclose(float(scores[i, 0]), float(all_scores.max()), rel_tol=1e-5, abs_tol=1e-6)


def test_observer_scores_with_padded_views():
    images = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(1))
    boxes, scores = _observer_scorer(view="pad", per_image=1).candidates(images, torch.tensor([0]),
                                                                       torch.Generator().manual_seed(2))  # fmt: skip
    crop = crop_resize(images, boxes[0], 6)
    view = F.pad(crop, (3, 3, 3, 3))
    expected = -F.cross_entropy(_Brightness()(view), torch.tensor([0]))
    torch.testing.assert_close(scores[0, 0], expected, atol=1e-5, rtol=1e-5)


def test_per_image_generators_make_each_image_independent_of_the_batch():
    images = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    labels = torch.tensor([0, 1, 0])
    scorer = _observer_scorer()
    together = scorer.candidates(images, labels, [torch.Generator().manual_seed(10 + i) for i in range(3)])
    for i in range(3):
        alone = scorer.candidates(images[i : i + 1], labels[i : i + 1], [torch.Generator().manual_seed(10 + i)])
        assert torch.equal(alone[0][0], together[0][i]) and torch.equal(alone[1][0], together[1][i])
    boxes, scores = scorer.candidates(images[:0], labels[:0], [])
    assert boxes.shape == (0, 2, 4) and scores.shape == (0, 2)
    with pytest.raises(ValueError, match=r"^2 generators for 3 images$"):
        scorer.candidates(images, labels, [torch.Generator(), torch.Generator()])
