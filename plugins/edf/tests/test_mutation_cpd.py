"""Tests added by mutation testing (bench/mutation.py, docs/mutation.md) for ddcore_edf.cpd."""

from __future__ import annotations

import pytest
import torch

from ddcore_edf.cpd import cpd_weights


def test_bad_shape_message_names_the_shape():
    with pytest.raises(ValueError, match=r"^losses must be \[P\], got \(2, 3\)$"):
        cpd_weights(torch.zeros(2, 3), alpha=0.5)


def test_many_ties_drop_the_lowest_positions_first():
    # 64 equal losses: only a stable sort keeps positions 0..31 first (an unstable CPU sort of more
    # than 16 elements reorders ties), so exactly the first half is dropped.
    weights = cpd_weights(torch.zeros(64), alpha=0.5)
    assert weights.tolist() == [0.0] * 32 + [1.0] * 32


def test_ties_after_distinct_values_keep_position_order():
    losses = torch.tensor([3.0] + [1.0] * 40 + [0.5])
    weights = cpd_weights(losses, alpha=0.5)  # drop floor(0.5 * 42) = 21: the 0.5, then the first 20 ones
    expected = [1.0] + [0.0] * 20 + [1.0] * 20 + [0.0]
    assert weights.tolist() == expected
