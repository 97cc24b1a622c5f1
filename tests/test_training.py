"""Training and testing a fresh network: the loss, the schedule, augmentation, batching."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ddcore.models import ModelSpec, build_model
from ddcore.training import (
    TrainRecipe,
    lr_factor,
    make_augment,
    soft_cross_entropy,
    tensor_batches,
    accuracy_on,
    train_network,
)


def test_soft_cross_entropy_formula():
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    targets = torch.tensor([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0]])
    expected = -(F.log_softmax(logits, 1) * F.softmax(targets, 1)).sum(1).mean()
    assert torch.allclose(soft_cross_entropy(logits, targets), expected)
    one_hot_logits = torch.tensor([[0.0, 100.0, 0.0], [100.0, 0.0, 0.0]])
    assert torch.allclose(soft_cross_entropy(logits, one_hot_logits), F.cross_entropy(logits, torch.tensor([1, 0])))


def test_step_and_cosine_schedules():
    step = lr_factor("step", 10)
    assert [step(e) for e in (0, 4, 5, 9)] == [1.0, 1.0, 0.1, 0.1]
    cosine = lr_factor("cosine", 10)
    assert cosine(0) == 1.0 and math.isclose(cosine(5), 0.5) and cosine(9) < 0.1


def test_tensor_batches_visit_every_image_once_per_epoch():
    images = torch.arange(10).float().view(10, 1, 1, 1)
    batches = tensor_batches(images, torch.arange(10), 4, torch.Generator().manual_seed(0))
    seen = [int(v) for x, _ in batches(0) for v in x.flatten()]
    assert sorted(seen) == list(range(10)) and [len(x) for x, _ in batches(1)] == [4, 4, 2]


def test_augmentations_keep_shape_and_move_pixels():
    assert make_augment("none", 32) is None
    x = torch.arange(2 * 32 * 32, dtype=torch.float32).view(2, 1, 32, 32)
    torch.manual_seed(0)
    moved = [make_augment("crop", 32)(x) for _ in range(5)]
    assert all(m.shape == x.shape for m in moved)
    assert any(not torch.equal(m, x) for m in moved)
    assert make_augment("crop_flip", 16)(torch.zeros(3, 3, 16, 16)).shape == (3, 3, 16, 16)


def test_dsa_augment_is_seeded_by_the_global_rng():
    x = torch.randn(4, 1, 8, 8)
    outputs = []
    for _ in range(2):
        torch.manual_seed(5)
        augment = make_augment("dsa", 8)
        outputs.append(torch.stack([augment(x) for _ in range(3)]))
    assert torch.equal(outputs[0], outputs[1])
    assert outputs[0].shape == (3, 4, 1, 8, 8)


def test_train_network_learns_a_separable_problem():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(2).repeat(8)
    images = torch.randn(16, 1, 8, 8, generator=generator) * 0.1 + (labels.float() * 2 - 1).view(-1, 1, 1, 1)
    torch.manual_seed(0)
    model = build_model(ModelSpec(width=4, depth=1), 2, 1, 8)
    recipe = TrainRecipe(epochs=30, batch_size=8, lr=0.05)
    train_network(model, tensor_batches(images, labels, 8, generator), recipe, torch.device("cpu"), 8)
    assert accuracy_on(model, [(images, labels)], torch.device("cpu")) == 1.0


def _trained_parameters(images, labels, seed: int = 0) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    model = build_model(ModelSpec(width=4, depth=1), 3, 1, 8)
    batches = tensor_batches(images, labels, 3, torch.Generator().manual_seed(seed))
    train_network(model, batches, TrainRecipe(epochs=2, lr=0.1), torch.device("cpu"), 8)
    return [p.detach().clone() for p in model.parameters()]


def test_train_network_trains_on_soft_labels_as_targets():
    """Soft labels are logits whose softmax is the target: one-hot-like logits train exactly as their hard
    labels do, and logits for other classes train differently (the labels are used, not just accepted)."""
    images = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    hard = torch.tensor([0, 1, 2, 0, 1, 2])
    one_hot_logits = torch.nn.functional.one_hot(hard, 3).float() * 100.0  # softmax == one-hot in float32
    torch.manual_seed(0)
    initial = [p.detach().clone() for p in build_model(ModelSpec(width=4, depth=1), 3, 1, 8).parameters()]
    from_hard = _trained_parameters(images, hard)
    from_soft = _trained_parameters(images, one_hot_logits)
    for a, b in zip(from_hard, from_soft):
        torch.testing.assert_close(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(initial, from_soft))  # training moved the network
    uniform = _trained_parameters(images, torch.zeros(6, 3))  # softmax 1/3 each: a different target
    assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(from_soft, uniform))
