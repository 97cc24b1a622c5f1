"""CPD: exactly the floor(alpha * P) smallest losses are dropped, and the loss is the kept ratio."""

from __future__ import annotations

import math

import pytest
import torch

from ddcore.tm.matching import weighted_matching_loss
from ddcore_edf.cpd import cpd_loss, cpd_weights, drop_count


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.375, 0.5, 0.99])
def test_keeps_exactly_the_largest_losses(alpha):
    generator = torch.Generator().manual_seed(0)
    losses = torch.rand(101, generator=generator)
    weights = cpd_weights(losses, alpha)
    dropped = math.floor(alpha * 101)
    assert set(weights.unique().tolist()) <= {0.0, 1.0}
    assert int((weights == 0).sum()) == dropped
    kept = set(torch.nonzero(weights).flatten().tolist())
    assert kept == set(torch.argsort(losses, descending=True)[: 101 - dropped].tolist())
    if dropped:
        assert losses[weights == 1].min() > losses[weights == 0].max()


def test_loss_equals_the_formula():
    generator = torch.Generator().manual_seed(1)
    losses, distances = torch.rand(40, generator=generator), torch.rand(40, generator=generator) + 0.5
    order = torch.argsort(losses)
    kept = order[10:]  # alpha = 0.25 of 40 drops the 10 smallest
    expected = losses[kept].sum() / distances[kept].sum()
    torch.testing.assert_close(cpd_loss(losses, distances, 0.25), expected)
    # The matcher's weighted loss with CPD's weights is the same number.
    torch.testing.assert_close(weighted_matching_loss(losses, distances, cpd_weights(losses, 0.25)), expected)


def test_ties_drop_the_lowest_positions_first():
    weights = cpd_weights(torch.tensor([1.0, 1.0, 1.0, 1.0, 2.0]), 0.5)
    assert weights.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("alpha", [1.0, -0.1, 1.5])
def test_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        drop_count(10, alpha)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        cpd_weights(torch.rand(10), alpha)


def test_gradient_flows_only_through_kept_elements():
    losses = torch.tensor([0.4, 0.1, 0.3, 0.2], requires_grad=True)
    cpd_loss(losses, torch.ones(4), 0.5).backward()
    assert losses.grad.tolist() == [0.5, 0.0, 0.5, 0.0]
