"""DSA (ddcore.augment): what each family does, replay (siamese), gradients, determinism, errors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from ddcore.augment import FAMILIES, DSA, DSAParams, DSAugment

GEOMETRIC = ("crop", "cutout", "flip", "scale", "rotate")  # linear in the images


def _params(family: str, shape=(2, 3, 8, 8), **values) -> DSAParams:
    return DSAParams(family=family, batch_shape=tuple(shape), **values)


def _sampled(family: str, shape=(3, 3, 8, 8), seed: int = 0) -> DSAParams:
    return DSA().sample(shape, torch.Generator().manual_seed(seed), family=family)


# ----------------------------------------------------------------------------------------------
# Each family on hand-made inputs
# ----------------------------------------------------------------------------------------------


def test_flip_reverses_columns_of_flipped_images_only():
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.float32).view(2, 1, 3, 4)
    out = DSA().apply(x, _params("flip", x.shape, flip=torch.tensor([True, False])))
    assert torch.equal(out[0], x[0].flip(-1))
    assert torch.equal(out[1], x[1])


def test_cutout_zeros_exactly_the_box():
    x = torch.rand(2, 3, 8, 8) + 1.0  # no zeros of its own
    box = torch.tensor([[1, 2, 5, 6], [4, 0, 8, 4]])  # (x0, y0, x1, y1), side 4 = 0.5 * 8
    out = DSA().apply(x, _params("cutout", x.shape, cutout_box=box))
    for n, (x0, y0, x1, y1) in enumerate(box.tolist()):
        expected = x[n].clone()
        expected[:, y0:y1, x0:x1] = 0
        assert torch.equal(out[n], expected)
        assert int((out[n, 0] == 0).sum()) == 16


def test_sampled_cutout_is_a_square_of_half_the_side_clipped_at_the_borders():
    dsa, g = DSA(), torch.Generator().manual_seed(1)
    x = torch.ones(64, 1, 8, 8)
    params = dsa.sample(x.shape, g, family="cutout")
    box = params.cutout_box
    assert torch.equal(box[:, 2] - box[:, 0], torch.full((64,), 4))
    assert torch.equal(box[:, 3] - box[:, 1], torch.full((64,), 4))
    zeros = (dsa.apply(x, params) == 0).sum(dim=(1, 2, 3))
    clipped = (box[:, 2].clamp(0, 8) - box[:, 0].clamp(0, 8)) * (box[:, 3].clamp(0, 8) - box[:, 1].clamp(0, 8))
    assert torch.equal(zeros, clipped) and bool((zeros > 0).all())
    assert bool((zeros == 16).any()) and bool((zeros < 16).any())  # DSA's centres reach the borders


def test_crop_moves_pixels_by_the_shift_with_zero_fill():
    x = torch.rand(2, 3, 8, 8) + 1.0
    shift = torch.tensor([[2, -1], [0, 0]])  # image 0: right by 2, up by 1
    out = DSA().apply(x, _params("crop", x.shape, shift=shift))
    assert torch.equal(out[0, :, 0:7, 2:8], x[0, :, 1:8, 0:6])
    assert bool((out[0, :, 7, :] == 0).all()) and bool((out[0, :, :, 0:2] == 0).all())
    assert torch.equal(out[1], x[1])


def test_sampled_crop_shifts_cover_plus_minus_the_pad():
    params = DSA().sample((400, 3, 16, 16), torch.Generator().manual_seed(2), family="crop")
    assert params.shift.dtype == torch.long
    assert set(params.shift.flatten().tolist()) == {-2, -1, 0, 1, 2}  # round(0.125 * 16) = 2


def test_rotate_by_90_and_180_matches_exact_rotations():
    x = torch.rand(3, 3, 7, 7)
    out = DSA().apply(x, _params("rotate", x.shape, angle=torch.tensor([90.0, -90.0, 180.0])))
    torch.testing.assert_close(out[0], torch.rot90(x[0], 1, (1, 2)), atol=1e-5, rtol=0)  # counter-clockwise
    torch.testing.assert_close(out[1], torch.rot90(x[1], -1, (1, 2)), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2], x[2].flip(-1, -2), atol=1e-5, rtol=0)


def test_rotate_keeps_a_rotation_symmetric_image():
    x = torch.zeros(1, 1, 9, 9)
    x[..., 2:7, 2:7] = 1.0  # centred square: invariant under 90 degrees
    out = DSA().apply(x, _params("rotate", x.shape, angle=torch.tensor([90.0])))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    tilted = DSA().apply(x, _params("rotate", x.shape, angle=torch.tensor([15.0])))
    assert not torch.allclose(tilted, x, atol=1e-3)


def test_scale_one_is_identity_and_scales_about_the_centre_per_axis():
    x = torch.rand(2, 3, 8, 8)
    out = DSA().apply(x, _params("scale", x.shape, scale=torch.ones(2, 2)))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    # a horizontal ramp x = j: sampling scale sx = 0.5 reads column 2 + 0.5 * (j - 2); rows unaffected
    ramp = torch.arange(5.0).expand(1, 1, 5, 5)
    out = DSA().apply(ramp, _params("scale", ramp.shape, scale=torch.tensor([[0.5, 1.0]])))
    torch.testing.assert_close(out, (2 + 0.5 * (torch.arange(5.0) - 2)).expand(1, 1, 5, 5), atol=1e-5, rtol=0)


def test_brightness_adds_exactly_the_sampled_constant():
    x = torch.rand(4, 3, 8, 8)
    params = _sampled("color", x.shape)
    ones = torch.ones(4)
    neutral = DSAParams("color", params.batch_shape, brightness=params.brightness, saturation=ones, contrast=ones)
    out = DSA().apply(x, neutral)
    torch.testing.assert_close(out, x + params.brightness.view(-1, 1, 1, 1), atol=1e-6, rtol=0)


def test_saturation_and_contrast_mix_with_the_means():
    x = torch.rand(2, 3, 6, 6)
    zero, one = torch.zeros(2), torch.ones(2)
    grey = DSA().apply(x, _params("color", x.shape, brightness=zero, saturation=zero, contrast=one))
    torch.testing.assert_close(grey, x.mean(dim=1, keepdim=True).expand_as(x))
    flat = DSA().apply(x, _params("color", x.shape, brightness=zero, saturation=one, contrast=zero))
    torch.testing.assert_close(flat, x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x))


def test_sampled_ranges_follow_dsa():
    dsa, g, shape = DSA(), torch.Generator().manual_seed(3), (2000, 3, 8, 8)
    color = dsa.sample(shape, g, family="color")
    for values, low, high in ((color.brightness, -0.5, 0.5), (color.saturation, 0.0, 2.0), (color.contrast, 0.5, 1.5)):
        assert low <= float(values.min()) < low + 0.01 and high - 0.01 < float(values.max()) <= high
    scale = dsa.sample(shape, g, family="scale").scale
    assert scale.shape == (2000, 2) and 1 / 1.2 <= float(scale.min()) and float(scale.max()) <= 1.2
    assert not torch.equal(scale[:, 0], scale[:, 1])  # independent x and y
    angle = dsa.sample(shape, g, family="rotate").angle
    assert -15.0 <= float(angle.min()) < -14.9 and 14.9 < float(angle.max()) <= 15.0
    flips = dsa.sample(shape, g, family="flip").flip
    assert flips.dtype == torch.bool and 0.45 < flips.float().mean().item() < 0.55


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("shape", [(2, 1, 5, 5), (3, 3, 8, 8), (2, 3, 32, 32)])
def test_every_family_keeps_shape_dtype_and_input(family, shape):
    x = torch.rand(shape)
    before = x.clone()
    out = DSA().apply(x, _sampled(family, shape))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)  # never written in place


# ----------------------------------------------------------------------------------------------
# Replay (siamese)
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_same_params_give_the_same_transform_on_two_batches(family):
    dsa, x = DSA(), torch.rand(3, 3, 8, 8)
    params = _sampled(family, x.shape, seed=5)
    assert torch.equal(dsa.apply(x, params), dsa.apply(x.clone(), params))
    if family in GEOMETRIC:  # linear: the same warp/mask hits both batches
        torch.testing.assert_close(dsa.apply(2 * x, params), 2 * dsa.apply(x, params))
        y = torch.rand(3, 3, 8, 8)
        torch.testing.assert_close(dsa.apply(x + y, params), dsa.apply(x, params) + dsa.apply(y, params))
        # and channel by channel: a 1-channel batch gets the same geometry
        torch.testing.assert_close(dsa.apply(x[:, :1], params), dsa.apply(x, params)[:, :1])


def test_apply_rejects_a_batch_of_another_shape():
    params = _sampled("crop", (3, 3, 8, 8))
    with pytest.raises(ValueError, match="N, H, W"):
        DSA().apply(torch.rand(2, 3, 8, 8), params)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        DSA().apply(torch.rand(3, 8, 8), params)


# ----------------------------------------------------------------------------------------------
# Differentiability
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_gradcheck_each_family(family):
    dsa = DSA()
    params = _sampled(family, (2, 2, 5, 5), seed=7)
    if family == "flip":
        params = _params("flip", (2, 2, 5, 5), flip=torch.tensor([True, False]))
    x = torch.rand(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda images: dsa.apply(images, params), (x,))


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_flows_through_call_and_module(family):
    x = torch.rand(4, 3, 8, 8, requires_grad=True)
    out, params = DSA(family)(x, torch.Generator().manual_seed(0))
    assert params.family == family
    (out * torch.rand_like(out)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    y = torch.rand(4, 3, 8, 8, requires_grad=True)
    DSAugment(DSA(family), torch.Generator().manual_seed(0))(y).square().sum().backward()
    assert y.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------
# Randomness: only the generator, deterministic, uniform over families
# ----------------------------------------------------------------------------------------------


def test_same_seed_same_params_and_no_global_rng():
    dsa = DSA()
    global_state = torch.get_rng_state()
    first = [dsa.sample((4, 3, 8, 8), g) for g in [torch.Generator().manual_seed(11)] for _ in range(20)]
    second = [dsa.sample((4, 3, 8, 8), g) for g in [torch.Generator().manual_seed(11)] for _ in range(20)]
    assert torch.equal(torch.get_rng_state(), global_state)
    for a, b in zip(first, second):
        assert a.family == b.family and a.tensors().keys() == b.tensors().keys()
        assert all(torch.equal(a.tensors()[k], b.tensors()[k]) for k in a.tensors())
    other = [dsa.sample((4, 3, 8, 8), g) for g in [torch.Generator().manual_seed(12)] for _ in range(20)]
    assert [p.family for p in other] != [p.family for p in first]


def test_call_is_reproducible_and_params_replay_it():
    x = torch.rand(4, 3, 8, 8)
    out1, p1 = DSA()(x, torch.Generator().manual_seed(4))
    out2, _ = DSA()(x, torch.Generator().manual_seed(4))
    assert torch.equal(out1, out2) and torch.equal(DSA().apply(x, p1), out1)


def test_module_samples_fresh_params_each_call():
    augment = DSAugment(DSA("rotate"), torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 8, 8)
    first = augment(x)
    first_params = augment.last_params
    second = augment(x)
    assert not torch.equal(first, second)
    assert torch.equal(DSA().apply(x, first_params), first)
    assert "rotate" in repr(augment)


def test_family_is_chosen_uniformly():
    dsa, g = DSA(), torch.Generator().manual_seed(0)
    counts = Counter(dsa.sample((1, 1, 4, 4), g).family for _ in range(3000))
    assert set(counts) == set(FAMILIES)
    assert all(400 < c < 600 for c in counts.values()), counts  # 500 expected, sd ~ 20


def test_params_move_to_a_device():
    params = DSA().sample((2, 3, 8, 8), torch.Generator().manual_seed(0), device="cpu", family="scale")
    moved = params.to(torch.device("cpu"))
    assert moved.family == "scale" and moved.scale.device.type == "cpu" and moved.angle is None


# ----------------------------------------------------------------------------------------------
# Configuration errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["color_blur", "", "crop__flip", "Flip"])
def test_invalid_strategy_names_the_valid_families(strategy):
    with pytest.raises(ValueError, match="color, crop, cutout, flip, scale, rotate"):
        DSA(strategy)


def test_invalid_settings_and_forced_family():
    with pytest.raises(ValueError, match="scale"):
        DSA(scale=0.8)
    with pytest.raises(ValueError, match="valid families"):
        DSA().sample((1, 1, 4, 4), torch.Generator(), family="blur")
    with pytest.raises(ValueError, match="N, C, H, W"):
        DSA().sample((4, 4), torch.Generator())


def test_strategy_subset_and_repeats():
    assert DSA("flip_flip_rotate").families == ("flip", "flip", "rotate")
    g = torch.Generator().manual_seed(0)
    counts = Counter(DSA("flip_flip_rotate").sample((1, 1, 4, 4), g).family for _ in range(600))
    assert set(counts) == {"flip", "rotate"} and counts["flip"] > counts["rotate"]
    assert DSA().to_dict()["strategy"] == "color_crop_cutout_flip_scale_rotate"
