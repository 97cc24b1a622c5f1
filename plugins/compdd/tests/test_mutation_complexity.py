"""Tests added by mutation testing (bench/mutation.py, docs/mutation.md) for ddcore_compdd.complexity."""

from __future__ import annotations

import math

import pytest
import torch

from ddcore_compdd.complexity import class_complexity, easy_hard_split, image_complexity, normalize_maps


def test_normalize_keeps_a_span_below_one():
    # span 0.5 is far above the default eps (1e-12): scaled to [0, 1], not zeroed
    assert normalize_maps(torch.tensor([[[0.0, 0.25, 0.5]]])).tolist() == [[[0.0, 0.5, 1.0]]]


def test_normalize_zeroes_a_span_equal_to_eps():
    # span == eps counts as constant (strict >): all zeros
    assert normalize_maps(torch.tensor([[[0.0, 0.5]]]), eps=0.5).tolist() == [[[0.0, 0.0]]]


def test_image_complexity_bad_shape_message():
    with pytest.raises(ValueError, match=r"^maps must be \[N, H, W\], got \(2, 2\)$"):
        image_complexity(torch.zeros(2, 2))


def test_class_complexity_accepts_float64_scores_and_gives_nan_for_empty_classes():
    out = class_complexity(torch.tensor([0.2, 0.4, 0.9], dtype=torch.float64), torch.tensor([0, 0, 2]), 3)
    assert out.dtype == torch.float32
    assert out[0].item() == pytest.approx(0.3)
    assert math.isnan(out[1].item())
    assert out[2].item() == pytest.approx(0.9)


def test_easy_hard_split_size_bounds():
    assert easy_hard_split([0.6, 0.9, 0.5], 1) == ([2], [1])
    assert easy_hard_split([0.6, 0.9, 0.5], 3) == ([2, 0, 1], [1, 0, 2])
    with pytest.raises(ValueError, match=r"^size must be in \[1, 3\], got 0$"):
        easy_hard_split([0.6, 0.9, 0.5], 0)
    with pytest.raises(ValueError, match=r"^size must be in \[1, 3\], got 4$"):
        easy_hard_split([0.6, 0.9, 0.5], 4)
