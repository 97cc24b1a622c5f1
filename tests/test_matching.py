"""The trajectory-matching core: the unrolled gradient, the weighted loss, the pixel weighting."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from ddcore.tm.flatparams import flatten_params, param_shapes_of, unflatten_params
from ddcore.tm.matching import matching_step, matching_terms, minibatch_order, unroll, weighted_matching_loss


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).double()


def setup(soft: bool = True):
    model = tiny_model()
    start, shapes = flatten_params(model), param_shapes_of(model)
    generator = torch.Generator().manual_seed(1)
    trajectory = torch.stack([start, start + 0.05 * torch.randn(start.shape, generator=generator, dtype=torch.float64),
                              start + 0.1 * torch.randn(start.shape, generator=generator, dtype=torch.float64)])
    images = torch.randn(4, 1, 4, 4, generator=generator, dtype=torch.float64)
    labels = torch.randn(4, 3, generator=generator, dtype=torch.float64) if soft else torch.tensor([0, 1, 2, 0])
    chunks = [torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([3, 0])]
    return model, shapes, trajectory, images, labels, chunks


def test_flat_parameters_round_trip_through_functional_call():
    model = tiny_model()
    flat, shapes = flatten_params(model), param_shapes_of(model)
    assert flat.numel() == sum(p.numel() for p in model.parameters())
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    assert torch.allclose(functional_call(model, unflatten_params(flat, shapes), (x,)), model(x))


def test_unrolled_gradient_matches_finite_differences():
    """d loss / d (images, soft labels, syn_lr) by autograd through the unrolled steps == central differences."""
    model, shapes, trajectory, images, labels, chunks = setup(soft=True)

    def loss_of(images, labels, syn_lr):
        end = unroll(model, trajectory[0], shapes, images, labels, syn_lr, chunks)
        losses, distances = matching_terms(end, trajectory[0], trajectory[2])
        return weighted_matching_loss(losses, distances, None)

    syn_lr = torch.tensor(0.3, dtype=torch.float64)
    inputs = (images.requires_grad_(True), labels.requires_grad_(True), syn_lr.requires_grad_(True))
    assert torch.autograd.gradcheck(loss_of, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_supervision_weights_select_exactly_the_kept_elements():
    model, shapes, trajectory, images, labels, chunks = setup()
    syn_lr = torch.tensor(0.3, dtype=torch.float64)
    end = unroll(model, trajectory[0], shapes, images, labels, syn_lr, chunks)
    losses, distances = matching_terms(end, trajectory[0], trajectory[2])
    drop = losses.detach().argsort()[: losses.numel() // 4]  # the quarter with the smallest loss
    weights = torch.ones_like(losses)
    weights[drop] = 0
    kept = weights.bool()
    expected = losses[kept].sum() / distances[kept].sum()
    assert torch.allclose(weighted_matching_loss(losses, distances, weights), expected)
    assert not torch.allclose(weighted_matching_loss(losses, distances, None), expected)


def run_step(pixel=None, supervision=None, soft=True):
    model, shapes, trajectory, images, labels, chunks = setup(soft=soft)
    images.requires_grad_(True)
    if soft:
        labels.requires_grad_(True)
    syn_lr = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    result = matching_step(
        model, shapes, trajectory, 0, 2, images, labels, syn_lr, chunks,
        supervision_weights=lambda losses, distances: supervision(losses) if supervision else None,
        pixel_weights=lambda x, y: pixel,
    )
    return result, images, labels, syn_lr


def test_pixel_weights_multiply_only_the_image_gradient():
    plain, images_a, labels_a, lr_a = run_step()
    weights = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weighted, images_b, labels_b, lr_b = run_step(pixel=weights)
    assert weighted.pixel_weighted and not plain.pixel_weighted
    assert weighted.loss == plain.loss
    assert torch.allclose(images_b.grad, images_a.grad * weights)  # broadcast over channels
    assert torch.equal(labels_b.grad, labels_a.grad) and torch.equal(lr_b.grad, lr_a.grad)


def test_supervision_weights_change_the_loss_and_report_the_kept_share():
    def drop_smallest_half(losses):
        weights = torch.ones_like(losses)
        weights[losses.argsort()[: losses.numel() // 2]] = 0
        return weights

    plain, *_ = run_step()
    dropped, *_ = run_step(supervision=drop_smallest_half)
    assert plain.kept_fraction == 1.0 and abs(dropped.kept_fraction - 0.5) < 0.02
    assert dropped.loss != plain.loss


def test_hard_labels_are_supported():
    result, images, _, syn_lr = run_step(soft=False)
    assert images.grad is not None and syn_lr.grad is not None and result.loss > 0


def test_minibatch_order_covers_every_image_before_repeating():
    chunks = minibatch_order(10, 4, 6, torch.Generator().manual_seed(0))
    assert [len(c) for c in chunks] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(chunks[:3]).tolist()) == list(range(10))
