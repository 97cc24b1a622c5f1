"""ddcore.augment, cases found by mutation testing (bench/mutation.py): option bounds, exact messages,
sampled ranges for non-default settings, DSA's cutout-centre rule on odd and even sides, empty
batches, dtypes other than float32, and devices.

The ``meta`` device stands in for a GPU on a CPU-only machine: it has no values, but it refuses to mix
with CPU tensors, so "everything follows the images' device" and "draws happen on the generator's
device" are checked without an accelerator. (The ``crop`` family reads its largest shift back to the
host, which a meta tensor cannot do, so it is the one family not run there.)
"""

from __future__ import annotations

import pytest
import torch

from ddcore.augment import DSA, DSAParams, DSAugment, apply_family, parse_strategy

ON_META = ("color", "cutout", "flip", "scale", "rotate")


# ----------------------------------------------------------------------------------------------
# Strategy names and option bounds
# ----------------------------------------------------------------------------------------------


def test_strategy_messages_name_the_problem():
    with pytest.raises(ValueError) as empty:
        DSA("")
    assert str(empty.value).startswith("empty DSA strategy in strategy ''; valid families (joined by '_'): color, ")
    with pytest.raises(ValueError, match=r"^empty DSA strategy in strategy None;"):
        parse_strategy(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown DSA family 'blur', 'x' in strategy 'blur_x_flip';"):
        DSA("blur_x_flip")


def test_bounds_of_the_options_are_inclusive_where_documented():
    # accepted at the edges: scale 1 (no scaling), crop_pad 0, cutout 0 and 1, zero strengths
    edges = DSA(scale=1.0, crop_pad=0.0, cutout=1.0, brightness=0.0, saturation=0.0, contrast=0.0, rotate=0.0)
    assert edges.scale == 1.0 and DSA(cutout=0.0).cutout == 0.0
    for bad, message in (
        (dict(crop_pad=1.0), r"^DSA crop_pad must be in \[0, 1\), got 1.0$"),
        (dict(crop_pad=1.5), r"^DSA crop_pad must be in \[0, 1\), got 1.5$"),
        (dict(crop_pad=-0.1), r"^DSA crop_pad must be in \[0, 1\), got -0.1$"),
        (dict(cutout=1.5), r"^DSA cutout must be in \[0, 1\], got 1.5$"),
        (dict(cutout=-0.5), r"^DSA cutout must be in \[0, 1\], got -0.5$"),
        (dict(scale=0.99), r"^DSA scale must be >= 1"),
        (dict(brightness=-1.0), r"^DSA brightness must be >= 0, got -1.0$"),
        (dict(rotate=-2.0), r"^DSA rotate must be >= 0, got -2.0$"),
    ):
        with pytest.raises(ValueError, match=message):
            DSA(**bad)


def test_an_unknown_forced_family_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^unknown DSA family 'blur' in strategy 'blur';"):
        DSA().sample((1, 1, 4, 4), torch.Generator(), family="blur")


def test_unknown_family_in_params_is_refused_by_name():
    params = DSAParams(family="blur", batch_shape=(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"unknown DSA family 'blur' in strategy 'blur'"):
        apply_family(torch.zeros(1, 1, 4, 4), params)


# ----------------------------------------------------------------------------------------------
# Sampled ranges with settings other than the defaults
# ----------------------------------------------------------------------------------------------


def test_color_ranges_follow_the_settings():
    dsa = DSA(brightness=0.4, saturation=0.5, contrast=0.2)
    color = dsa.sample((2000, 3, 4, 4), torch.Generator().manual_seed(0), family="color")
    # b ~ U(-0.5, 0.5) * 0.4, s ~ U(0, 0.5), c ~ U(0.2, 1.2)
    for values, low, high in ((color.brightness, -0.2, 0.2), (color.saturation, 0.0, 0.5), (color.contrast, 0.2, 1.2)):
        assert low <= float(values.min()) < low + 0.01 and high - 0.01 < float(values.max()) <= high


def test_crop_shift_is_rounded_per_axis():
    # W = 24: round(0.125 * 24) = 3 columns; H = 8: round(0.125 * 8) = 1 row
    params = DSA().sample((500, 1, 8, 24), torch.Generator().manual_seed(1), family="crop")
    assert set(params.shift[:, 0].tolist()) == set(range(-3, 4))
    assert set(params.shift[:, 1].tolist()) == {-1, 0, 1}


@pytest.mark.parametrize("height, width", [(6, 8), (8, 6)])
def test_cutout_centres_follow_dsa_for_odd_and_even_sides(height, width):
    """DSA: the centre is uniform in ``[0, size + (1 - side % 2))`` and the box starts ``side // 2`` before it.

    side 4 (even) on 8 pixels: centre 0..8, start -2..6; side 3 (odd) on 6 pixels: centre 0..5, start -1..4.
    """
    params = DSA(cutout=0.5).sample((2000, 1, height, width), torch.Generator().manual_seed(2), family="cutout")
    box = params.cutout_box
    assert box.dtype == torch.long
    starts = {8: set(range(-2, 7)), 6: set(range(-1, 5))}
    sides = {8: 4, 6: 3}
    assert set(box[:, 0].tolist()) == starts[width] and set(box[:, 1].tolist()) == starts[height]
    assert set((box[:, 2] - box[:, 0]).tolist()) == {sides[width]}
    assert set((box[:, 3] - box[:, 1]).tolist()) == {sides[height]}


def test_float_shifts_are_applied_as_whole_pixels():
    x = torch.rand(1, 1, 5, 5) + 1.0
    whole = DSA().apply(x, DSAParams("crop", (1, 1, 5, 5), shift=torch.tensor([[1, 2]])))
    as_float = DSA().apply(x, DSAParams("crop", (1, 1, 5, 5), shift=torch.tensor([[1.0, 2.0]])))
    assert torch.equal(as_float, whole)
    assert torch.equal(whole[0, 0, 2:, 1:], x[0, 0, :3, :4]) and float(whole[0, 0, :2].abs().sum()) == 0.0


# ----------------------------------------------------------------------------------------------
# Empty batches, dtypes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["crop", "color", "rotate"])
def test_an_empty_batch_stays_empty(family):
    params = DSA().sample((0, 3, 8, 8), torch.Generator().manual_seed(0), family=family)
    assert DSA().apply(torch.zeros(0, 3, 8, 8), params).shape == (0, 3, 8, 8)


def test_bfloat16_images_stay_bfloat16():
    x = torch.rand(2, 3, 8, 8).bfloat16()
    params = DSA().sample(x.shape, torch.Generator().manual_seed(0), family="color")  # float32 parameters
    out = DSA().apply(x, params)
    assert out.dtype == torch.bfloat16
    ones = torch.ones(2)
    shifted = DSA().apply(x, DSAParams("color", (2, 3, 8, 8), brightness=torch.full((2,), 0.5), saturation=ones,
                                       contrast=ones))  # fmt: skip
    torch.testing.assert_close(shifted, x + 0.5, atol=0.02, rtol=0)


# ----------------------------------------------------------------------------------------------
# Devices (meta as the second device)
# ----------------------------------------------------------------------------------------------


def test_params_move_to_another_device():
    params = DSA().sample((2, 3, 8, 8), torch.Generator().manual_seed(0), family="color")
    moved = params.to("meta")
    assert {t.device.type for t in moved.tensors().values()} == {"meta"} and set(moved.tensors()) == set(params.tensors())
    drawn_there = DSA().sample((2, 3, 8, 8), torch.Generator().manual_seed(0), device="meta", family="cutout")
    assert drawn_there.cutout_box.device.type == "meta"


@pytest.mark.parametrize("family", ON_META)
def test_apply_follows_the_images_device(family):
    params = DSA().sample((2, 3, 8, 8), torch.Generator().manual_seed(0), family=family)  # on the CPU
    out = DSA().apply(torch.empty(2, 3, 8, 8, device="meta"), params)
    assert out.device.type == "meta" and out.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("family", ON_META)
def test_call_draws_params_for_the_images_device(family):
    out, params = DSA(family)(torch.empty(2, 3, 8, 8, device="meta"), torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and {t.device.type for t in params.tensors().values()} == {"meta"}


def test_draws_stay_on_the_generators_device_under_another_default_device():
    """A caller that set another default device (``torch.set_default_device``) gets the same parameters."""
    expected = [DSA().sample((3, 3, 8, 8), torch.Generator().manual_seed(5)) for _ in range(1)]
    expected += [DSA().sample((3, 3, 8, 8), torch.Generator().manual_seed(5), family=f) for f in ("color", "cutout")]
    with torch.device("meta"):
        got = [DSA().sample((3, 3, 8, 8), torch.Generator().manual_seed(5)) for _ in range(1)]
        got += [DSA().sample((3, 3, 8, 8), torch.Generator().manual_seed(5), family=f) for f in ("color", "cutout")]
    for a, b in zip(expected, got):
        assert a.family == b.family and a.tensors().keys() == b.tensors().keys()
        for name in a.tensors():
            assert b.tensors()[name].device.type == "cpu" and torch.equal(a.tensors()[name], b.tensors()[name])


def test_module_has_no_params_before_its_first_call():
    augment = DSAugment(DSA("flip"), torch.Generator().manual_seed(0))
    assert augment.last_params is None
    augment(torch.zeros(1, 1, 2, 2))
    assert augment.last_params is not None and augment.last_params.family == "flip"
