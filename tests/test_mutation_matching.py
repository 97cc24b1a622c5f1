"""Tests added by mutation testing (bench/mutation.py, docs/mutation.md) for ddcore.tm.matching.

The reference below is an independent, closed-form implementation of one matching step for a
bias-free linear softmax classifier: the cross-entropy gradient of ``W`` is
``(softmax(x W^T) - p)^T x / B`` (``p`` one-hot for hard labels, ``softmax(y)`` for soft logits).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.tm.matching import matching_backward, matching_step, matching_terms, minibatch_order, weighted_matching_loss

K, D, N = 3, 4, 5


def _reference_loss(theta0, target, images, labels, lr, chunks, weights, augment):
    theta = theta0.clone()
    for index in chunks:
        x = images[index]
        if augment is not None:
            x = augment(x)
        w = theta.view(K, D)
        probs = torch.softmax(x @ w.T, dim=1)
        p = torch.softmax(labels[index], dim=1) if labels.ndim == 2 else nn.functional.one_hot(labels[index], K).double()
        grad = (probs - p).T @ x / len(index)
        theta = theta - lr * grad.reshape(-1)
    losses, distances = (theta - target) ** 2, (theta0 - target) ** 2
    w = torch.ones_like(losses) if weights is None else weights
    return (w * losses).sum() / (w * distances).sum()


def _setup(soft: bool):
    torch.manual_seed(0)
    model = nn.Linear(D, K, bias=False).double()
    start, shapes = flatten_params(model), param_shapes_of(model)
    g = torch.Generator().manual_seed(3)
    trajectory = torch.stack([start + 0.3 * torch.randn(start.shape, generator=g, dtype=torch.float64) for _ in range(4)])
    images = torch.randn(N, D, generator=g, dtype=torch.float64)
    labels = torch.randn(N, K, generator=g, dtype=torch.float64) if soft else torch.tensor([0, 1, 2, 1, 0])
    chunks = [torch.tensor([0, 1]), torch.tensor([2, 3, 4]), torch.tensor([4, 0])]
    return model, shapes, trajectory, images, labels, chunks


def _weights(losses, distances):
    w = torch.full_like(losses, 2.0)
    w[::4] = 0.0
    return w


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("augmented", [False, True])
def test_matching_step_equals_the_closed_form_reference(soft, augmented):
    model, shapes, trajectory, images, labels, chunks = _setup(soft)
    augment = (lambda x: 2.0 * x + 0.5) if augmented else None
    lr = torch.tensor(0.7, dtype=torch.float64)
    pixel = torch.linspace(0.5, 1.5, N * D, dtype=torch.float64).view(N, D)
    seen = {}

    def pixel_weights(imgs, labs):
        seen["images"], seen["labels"] = imgs, labs
        return pixel

    x = images.clone().requires_grad_(True)
    y = labels.clone().requires_grad_(soft)
    r = lr.clone().requires_grad_(True)
    result = matching_step(model, shapes, trajectory, 1, 2, x, y, r, chunks, _weights, pixel_weights, augment)

    xr, yr, rr = images.clone().requires_grad_(True), labels.clone().requires_grad_(soft), lr.clone().requires_grad_(True)
    w = _weights(trajectory[0], None)
    ref = _reference_loss(trajectory[1], trajectory[3], xr, yr, rr, chunks, w, augment)
    ref.backward()
    assert result.loss == pytest.approx(ref.item(), rel=1e-9)
    assert torch.allclose(x.grad, xr.grad * pixel, rtol=1e-8, atol=1e-12)
    assert torch.allclose(r.grad, rr.grad, rtol=1e-8)
    if soft:
        assert torch.allclose(y.grad, yr.grad, rtol=1e-8, atol=1e-12)
    assert result.kept_fraction == pytest.approx(9 / 12)  # every 4th of 12 weights is 0, the rest are 2
    assert result.pixel_weighted is True
    assert torch.equal(seen["images"], images) and torch.equal(seen["labels"], labels)


def test_constant_unroll_gives_the_full_unroll_gradients_and_accumulates():
    model, shapes, trajectory, images, labels, chunks = _setup(soft=True)
    out = {}
    for mode in ("full", "constant"):
        x = images.clone().requires_grad_(True)
        y = labels.clone().requires_grad_(True)
        r = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
        for t in (x, y, r):
            t.grad = torch.ones_like(t)  # existing gradients are added to, not replaced
        loss, weights = matching_backward(model, shapes, trajectory, 1, 2, x, y, r, chunks, _weights, None, mode)
        out[mode] = (loss, weights, x.grad, y.grad, r.grad)
    xr, yr, rr = images.clone().requires_grad_(True), labels.clone().requires_grad_(True), torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    ref = _reference_loss(trajectory[1], trajectory[3], xr, yr, rr, chunks, _weights(trajectory[0], None), None)
    ref.backward()
    for mode in ("full", "constant"):
        loss, weights, gx, gy, gr = out[mode]
        assert loss.item() == pytest.approx(ref.item(), rel=1e-9), mode
        assert torch.equal(weights, _weights(trajectory[0], None)), mode
        assert torch.allclose(gx, xr.grad + 1, rtol=1e-8), mode
        assert torch.allclose(gy, yr.grad + 1, rtol=1e-8), mode
        assert torch.allclose(gr, rr.grad + 1, rtol=1e-8), mode


def test_matching_backward_defaults_to_the_full_unroll_and_names_the_modes():
    model, shapes, trajectory, images, labels, chunks = _setup(soft=False)
    x = images.clone().requires_grad_(True)
    lr = torch.tensor(0.7, dtype=torch.float64)
    loss, weights = matching_backward(model, shapes, trajectory, 0, 3, x, labels, lr, chunks, lambda l, d: None)
    assert weights is None
    assert loss.item() == pytest.approx(_reference_loss(trajectory[0], trajectory[3], images, labels, lr, chunks, None, None).item(), rel=1e-9)
    with pytest.raises(ValueError, match=r"^unknown unroll mode 'Full'; choose one of full, constant$"):
        matching_backward(model, shapes, trajectory, 0, 3, x, labels, lr, chunks, lambda l, d: None, None, "Full")


def test_unweighted_step_reports_everything_kept():
    model, shapes, trajectory, images, labels, chunks = _setup(soft=False)
    x = images.clone().requires_grad_(True)
    lr = torch.tensor(0.7, dtype=torch.float64)
    result = matching_step(model, shapes, trajectory, 0, 1, x, labels, lr, chunks, lambda l, d: None, lambda i, l: None)
    assert result.kept_fraction == 1.0 and result.pixel_weighted is False


def test_matching_terms_and_unweighted_loss_known_values():
    losses, distances = matching_terms(torch.tensor([1.0, 4.0]), torch.tensor([0.0, 5.0]), torch.tensor([3.0, 1.0]))
    assert losses.tolist() == [4.0, 9.0] and distances.tolist() == [9.0, 16.0]
    assert weighted_matching_loss(torch.tensor([1.0, 2.0]), torch.tensor([4.0, 4.0]), None).item() == 0.375


def test_minibatch_order_uses_the_generator_and_draws_only_what_it_needs():
    g = torch.Generator().manual_seed(0)
    assert [c.tolist() for c in minibatch_order(3, 2, 3, g)] == [[2, 0], [1], [2, 1]]
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    chunks = minibatch_order(4, 2, 2, g1)  # exactly one permutation consumed
    assert torch.cat(chunks).tolist() == torch.randperm(4, generator=g2).tolist()
    assert torch.equal(torch.randperm(10, generator=g1), torch.randperm(10, generator=g2))


def test_start_epoch_upper_bound_known_values():
    from ddcore.tm.matching import start_epoch_upper_bound

    assert [start_epoch_upper_bound(it, 5, 10, 1000) for it in (0, 199, 200, 999, 1000, 5000)] == [5, 5, 6, 9, 10, 10]
    assert [start_epoch_upper_bound(it, 2, 9, 7) for it in (0, 1, 3, 6, 7)] == [2, 3, 5, 8, 9]
    assert start_epoch_upper_bound(1, 5, 10, 0) == 10  # expansion_end 0 counts as 1
    assert start_epoch_upper_bound(0, 5, 10, 0) == 5


class _StepScale:
    """A replayable augmentation: step k multiplies by 1 + 0.25 k and adds 0.5 (``sample`` draws, ``apply`` replays)."""

    def __init__(self):
        self.calls = 0

    def sample(self, images):
        self.calls += 1
        return torch.tensor(1.0 + 0.25 * (self.calls - 1), dtype=images.dtype)

    def apply(self, images, params):
        return images * params + 0.5

    def __call__(self, images):
        return self.apply(images, self.sample(images))


def _distance_weights(expected_distances):
    def weights(losses, distances):
        assert torch.equal(distances, expected_distances)  # the start distances reach the hook
        return (distances > distances.median()).double() + 0.5

    return weights


@pytest.mark.parametrize("mode", ["full", "constant"])
def test_both_unrolls_replay_the_augmentation_and_pass_the_distances(mode):
    model, shapes, trajectory, images, labels, chunks = _setup(soft=True)
    expected_d = (trajectory[1] - trajectory[3]) ** 2
    x, y = images.clone().requires_grad_(True), labels.clone().requires_grad_(True)
    r = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    result = matching_step(model, shapes, trajectory, 1, 2, x, y, r, chunks, _distance_weights(expected_d),
                           lambda i, l: None, _StepScale(), mode)
    xr, yr = images.clone().requires_grad_(True), labels.clone().requires_grad_(True)
    rr = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    w = (expected_d > expected_d.median()).double() + 0.5
    ref = _reference_loss(trajectory[1], trajectory[3], xr, yr, rr, chunks, w, _StepScale())
    ref.backward()
    assert result.loss == pytest.approx(ref.item(), rel=1e-9)
    for got, want in ((x.grad, xr.grad), (y.grad, yr.grad), (r.grad, rr.grad)):
        assert torch.allclose(got, want, rtol=1e-8, atol=1e-12)


def test_constant_unroll_is_really_used_and_refuses_a_plain_callable():
    model, shapes, trajectory, images, labels, chunks = _setup(soft=False)
    x, lr = images.clone().requires_grad_(True), torch.tensor(0.7, dtype=torch.float64)
    with pytest.raises(TypeError, match="cannot be replayed"):
        matching_step(model, shapes, trajectory, 0, 1, x, labels, lr, chunks, lambda l, d: None, lambda i, l: None,
                      lambda t: t * 2.0, "constant")


@pytest.mark.parametrize("mode", ["full", "constant"])
def test_only_tensors_that_require_grad_receive_one(mode):
    model, shapes, trajectory, images, labels, chunks = _setup(soft=True)
    # soft labels and syn_lr without requires_grad, images with: only images.grad is set (from None)
    x, y, r = images.clone().requires_grad_(True), labels.clone(), torch.tensor(0.7, dtype=torch.float64)
    matching_backward(model, shapes, trajectory, 1, 2, x, y, r, chunks, lambda l, d: None, None, mode)
    assert x.grad is not None and y.grad is None and r.grad is None
    # images without requires_grad, syn_lr with: only syn_lr.grad is set
    x, r = images.clone(), torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    matching_backward(model, shapes, trajectory, 1, 2, x, y, r, chunks, lambda l, d: None, None, mode)
    assert x.grad is None and y.grad is None and r.grad is not None
