"""ddcore.training, cases found by mutation testing (bench/mutation.py): hand-computed optimiser steps,
the schedules' values, one training run against a hand-written loop, divergence (loss and weights),
the crop augmentation's padding, and accuracy over several batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ddcore.training import (
    TrainingDiverged,
    TrainRecipe,
    accuracy_on,
    finite_parameters,
    fork_devices,
    lr_factor,
    make_augment,
    make_optimizer,
    optimizer_step,
    tensor_batches,
    train_network,
)

CPU = torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# Optimisers: one parameter p = 1 with the loss 2 p (gradient 2), lr 0.1, weight decay 0.5
# ----------------------------------------------------------------------------------------------


def _two_steps(optimizer_name: str, momentum: float = 0.9) -> list[float]:
    p = nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    recipe = TrainRecipe(epochs=1, optimizer=optimizer_name, lr=0.1, momentum=momentum, weight_decay=0.5)
    optimizer = make_optimizer(recipe, [p])
    values = []
    for _ in range(2):
        optimizer.zero_grad()
        (2 * p).sum().backward()
        optimizer.step()
        values.append(float(p.detach()))
    return values


def test_sgd_uses_the_recipes_momentum_and_weight_decay():
    # d = g + wd p: 2 + 0.5 = 2.5, p = 1 - 0.25 = 0.75; then d = 2 + 0.375 = 2.375, buffer 0.9 * 2.5 + 2.375 = 4.625
    first, second = _two_steps("sgd")
    assert math.isclose(first, 0.75, rel_tol=1e-12) and math.isclose(second, 0.75 - 0.4625, rel_tol=1e-12)
    assert math.isclose(_two_steps("sgd", momentum=0.0)[1], 0.75 - 0.1 * 2.375, rel_tol=1e-12)


def _adam_by_hand(l2: float, decoupled: float, steps: int = 2) -> list[float]:
    """Adam (beta 0.9, 0.999, eps 1e-8) on the loss 2 p from p = 1, lr 0.1: ``l2`` adds ``l2 * p`` to the
    gradient (Adam's weight decay), ``decoupled`` shrinks p by ``1 - lr * decoupled`` first (AdamW's)."""
    p, m, v, out = 1.0, 0.0, 0.0, []
    for t in range(1, steps + 1):
        p *= 1 - 0.1 * decoupled
        g = 2.0 + l2 * p
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        p -= 0.1 * (m / (1 - 0.9**t)) / (math.sqrt(v / (1 - 0.999**t)) + 1e-8)
        out.append(p)
    return out


def test_adam_and_adamw_apply_weight_decay_differently():
    # Adam's first step moves by lr (m / sqrt(v) = 1) whatever the L2-augmented gradient; AdamW first
    # shrinks p by (1 - lr * wd) = 0.95, then moves by lr. The second steps tell the decays apart.
    assert math.isclose(_two_steps("adam")[0], 0.9, rel_tol=1e-6)
    assert math.isclose(_two_steps("adamw")[0], 0.95 - 0.1, rel_tol=1e-6)
    for name, expected in (("adam", _adam_by_hand(0.5, 0.0)), ("adamw", _adam_by_hand(0.0, 0.5))):
        got = _two_steps(name)
        assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(got, expected)), (name, got, expected)
    assert abs(_adam_by_hand(0.5, 0.0)[1] - _adam_by_hand(0.0, 0.0)[1]) > 1e-5  # the L2 term is visible


def test_unknown_optimizer_and_schedule_are_named():
    with pytest.raises(ValueError, match=r"^unknown optimizer 'lbfgs' \(sgd, adam, adamw\)$"):
        make_optimizer(TrainRecipe(epochs=1, optimizer="lbfgs"), [nn.Parameter(torch.zeros(1))])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^unknown schedule 'linear' \(step, cosine, constant\)$"):
        lr_factor("linear", 10)
    with pytest.raises(ValueError, match=r"^unknown augmentation 'blur' \(none, crop, crop_flip, dsa\)$"):
        make_augment("blur", 8)


def test_recipe_defaults():
    assert TrainRecipe(epochs=3).to_dict() == {
        "epochs": 3, "batch_size": 256, "optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
        "schedule": "step", "augment": "none"}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Schedules
# ----------------------------------------------------------------------------------------------


def test_schedule_values():
    step = lr_factor("step", 7)  # x0.1 from epoch 7 // 2 = 3 on
    assert [step(e) for e in range(7)] == [1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1]
    cosine = lr_factor("cosine", 8)
    for e in range(9):
        assert math.isclose(cosine(e), 0.5 * (1 + math.cos(math.pi * e / 8)), abs_tol=1e-12)
    assert math.isclose(cosine(2), 0.5 + 0.5 * math.sqrt(0.5)) and math.isclose(cosine(8), 0.0, abs_tol=1e-12)
    assert lr_factor("cosine", 0)(0) == 1.0  # no division by zero epochs
    assert lr_factor("cosine", 1)(0) == 1.0 and math.isclose(lr_factor("cosine", 1)(1), 0.0, abs_tol=1e-12)
    assert [lr_factor("constant", 4)(e) for e in range(4)] == [1.0] * 4


# ----------------------------------------------------------------------------------------------
# Batching, devices
# ----------------------------------------------------------------------------------------------


def test_tensor_batches_follow_the_generators_permutation():
    images = torch.arange(7.0).view(7, 1, 1, 1)
    labels = torch.arange(7) * 10
    batches = tensor_batches(images, labels, 3, torch.Generator().manual_seed(4))
    order = torch.randperm(7, generator=torch.Generator().manual_seed(4))
    got = list(batches(0))
    assert [x.flatten().long().tolist() for x, _ in got] == [order[:3].tolist(), order[3:6].tolist(), order[6:].tolist()]
    assert all(torch.equal(y, x.flatten().long() * 10) for x, y in got)


def test_fork_devices():
    assert fork_devices(torch.device("cpu")) == []
    assert fork_devices(torch.device("cuda")) == [0]
    assert fork_devices(torch.device("cuda", 2)) == [2]


# ----------------------------------------------------------------------------------------------
# Crop augmentation: a window of the reflect-padded image, padded by max(1, size // 8)
# ----------------------------------------------------------------------------------------------


def _window_offsets(out: torch.Tensor, image: torch.Tensor, pad: int) -> set[tuple[int, int]]:
    padded = F.pad(image[None], (pad, pad, pad, pad), mode="reflect")[0]
    size = image.shape[-1]
    return {(i, j) for i in range(2 * pad + 1) for j in range(2 * pad + 1)
            if torch.equal(padded[..., i : i + size, j : j + size], out)}  # fmt: skip


@pytest.mark.parametrize("size, pad", [(16, 2), (4, 1)])
def test_crop_is_a_window_of_the_reflect_padded_image(size, pad):
    image = torch.randn(1, size, size, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    augment = make_augment("crop", size)
    seen = set()
    for _ in range(40):
        offsets = _window_offsets(augment(image[None])[0], image, pad)
        assert len(offsets) == 1
        seen |= offsets
    assert (0, 0) in seen or (2 * pad, 2 * pad) in seen or {i for i, _ in seen} >= {0, 2 * pad}  # reaches the pad


def test_crop_flip_is_a_window_maybe_flipped():
    image = torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(2)
    augment = make_augment("crop_flip", 8)
    flips = moved = 0
    for _ in range(30):
        out = augment(image[None])[0]
        plain, flipped = _window_offsets(out, image, 1), _window_offsets(out.flip(-1), image, 1)
        assert len(plain) + len(flipped) == 1
        flips += len(flipped)
        moved += (plain | flipped) != {(1, 1)}  # cropped somewhere else than the centre
    assert 0 < flips < 30 and moved > 0


# ----------------------------------------------------------------------------------------------
# train_network against a hand-written loop; divergence
# ----------------------------------------------------------------------------------------------


def _linear(weight: torch.Tensor) -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype))
    with torch.no_grad():
        model[1].weight.copy_(weight)
    return model


def test_train_network_equals_a_hand_written_sgd_loop():
    """Plain SGD (no momentum, no decay), step schedule over 4 epochs, two fixed batches per epoch, hard and
    soft labels: the weights equal a loop that applies ``W -= lr * factor(epoch) * dCE/dW`` batch by batch."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 2, 2, generator=g, dtype=torch.float64)
    hard = torch.tensor([0, 1, 2, 1, 0, 2])
    soft = torch.randn(6, 3, generator=g, dtype=torch.float64)
    w0 = torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.1
    recipe = TrainRecipe(epochs=4, batch_size=3, lr=0.5, momentum=0.0, weight_decay=0.0, schedule="step")
    for labels in (hard, soft):
        batches = [(x[:3], labels[:3]), (x[3:], labels[3:])]
        epochs_seen = []
        model = train_network(_linear(w0), lambda e: iter(batches), recipe, CPU, 2, on_epoch=epochs_seen.append)
        w = w0.clone()
        for epoch in range(4):
            for images, y in batches:
                w = w.detach().requires_grad_(True)
                logits = images.flatten(1) @ w.T
                loss = F.cross_entropy(logits, y) if y.ndim == 1 else -(F.log_softmax(logits, 1) * F.softmax(y, 1)).sum(1).mean()
                (grad,) = torch.autograd.grad(loss, w)
                w = w - 0.5 * (1.0 if epoch < 2 else 0.1) * grad
        torch.testing.assert_close(model[1].weight.detach(), w.detach(), rtol=1e-10, atol=1e-12)
        assert epochs_seen == [0, 1, 2, 3] and model.training


def test_the_recipes_augmentation_is_applied_to_every_batch():
    """``crop`` moves pixels of a varied image (other weights than without it) and leaves a constant image as
    it is (reflect padding of a constant is constant: the same weights as without it)."""
    varied = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    constant = torch.ones(4, 1, 8, 8, dtype=torch.float64) * torch.arange(1.0, 5.0, dtype=torch.float64).view(4, 1, 1, 1)
    labels = torch.tensor([0, 1, 2, 0])
    w0 = torch.randn(3, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.1
    epochs_asked = []

    def trained(images, augment):
        def batches(epoch):
            epochs_asked.append(epoch)
            return iter([(images, labels)])

        torch.manual_seed(3)
        recipe = TrainRecipe(epochs=2, lr=0.1, momentum=0.0, weight_decay=0.0, augment=augment)
        return train_network(_linear(w0), batches, recipe, CPU, 8)[1].weight.detach()

    assert torch.equal(trained(constant, "crop"), trained(constant, "none"))
    assert not torch.allclose(trained(varied, "crop"), trained(varied, "none"))
    assert epochs_asked == [0, 1] * 4  # the batches of each epoch are asked for by its index


def test_an_overflowing_adam_step_is_a_divergence_of_its_epoch():
    """Adam's first step size is lr / (1 - 0.9) = 1e39 for lr 1e38: beyond float32, refused by torch."""
    x = torch.ones(1, 1, 1, 2)
    with pytest.raises(TrainingDiverged) as caught:
        train_network(_linear(torch.zeros(2, 2)), lambda e: iter([(x, torch.tensor([0]))]),
                      TrainRecipe(epochs=3, optimizer="adam", lr=1e38), CPU, 1)  # fmt: skip
    assert (caught.value.epoch, caught.value.epochs, caught.value.loss) == (0, 3, math.inf)
    assert "diverged at epoch 1 of 3: the optimiser's step overflows float32" in str(caught.value)


def test_diverged_weights_are_found_at_the_end_of_their_epoch():
    """Inputs of 1e10 and lr 1e30: epoch 0's step sends the weights past float32 (the loss, computed before
    the step, is finite), so epoch 0 ends in a divergence of the weights, before ``on_epoch`` sees it."""
    x = torch.full((1, 1, 1, 2), 1e10)
    batches = lambda e: iter([(x, torch.tensor([0]))])  # noqa: E731
    recipe = TrainRecipe(epochs=2, lr=1e30, momentum=0.0, weight_decay=0.0, schedule="constant")
    seen = []
    with pytest.raises(TrainingDiverged) as caught:
        train_network(_linear(torch.zeros(2, 2)), batches, recipe, CPU, 1, on_epoch=seen.append)
    error = caught.value
    assert (error.epoch, error.epochs, error.weights) == (0, 2, True) and seen == []
    assert math.isclose(error.loss, math.log(2), rel_tol=1e-6)  # CE at zero weights, 2 classes
    assert str(error).endswith("diverged at epoch 1 of 2: its weights are no longer finite")


def test_epoch_loss_is_the_sum_over_batches():
    """Zero inputs leave zero weights (zero gradient) for two batches, the third overflows them: the epoch's
    reported loss is the sum of its 3 batches' losses at zero weights, 3 log 2."""
    x = torch.zeros(3, 1, 1, 2)
    x[2] = 1e10
    labels = torch.tensor([0, 1, 0])
    batches = lambda e: iter([(x[i : i + 1], labels[i : i + 1]) for i in range(3)])  # noqa: E731
    recipe = TrainRecipe(epochs=1, lr=1e30, momentum=0.0, weight_decay=0.0, schedule="constant")
    with pytest.raises(TrainingDiverged) as caught:
        train_network(_linear(torch.zeros(2, 2)), batches, recipe, CPU, 1)
    assert caught.value.weights and math.isclose(caught.value.loss, 3 * math.log(2), rel_tol=1e-6)


def test_summed_loss_of_a_diverged_epoch_is_reported():
    """Two batches, one with a nan image: the epoch's summed loss is nan, and the loss is what is reported."""
    x = torch.zeros(2, 1, 1, 2)
    x[1] = float("nan")
    batches = lambda e: iter([(x[:1], torch.tensor([0])), (x[1:], torch.tensor([1]))])  # noqa: E731
    recipe = TrainRecipe(epochs=3, lr=0.1, momentum=0.0, weight_decay=0.0)
    with pytest.raises(TrainingDiverged) as caught:
        train_network(_linear(torch.zeros(2, 2)), batches, recipe, CPU, 1)
    error = caught.value
    assert error.epoch == 0 and math.isnan(error.loss) and not error.weights
    assert str(error) == "training of the network diverged at epoch 1 of 3: the training loss is nan"


def test_diverged_error_fields_and_advice():
    error = TrainingDiverged(1, 4, 2.5, weights=True, member=3)
    advised = error.advised("the expert", "lower experts.lr")
    assert (advised.epoch, advised.epochs, advised.loss, advised.member, advised.weights) == (1, 4, 2.5, 3, True)
    assert str(advised) == "training of the expert diverged at epoch 2 of 4: its weights are no longer finite; lower experts.lr"
    detail = TrainingDiverged(0, 1, math.inf, detail="the step overflows").advised("x", "y")
    assert str(detail) == "training of x diverged at epoch 1 of 1: the step overflows; y"


def test_finite_parameters():
    model = _linear(torch.ones(2, 2))
    assert finite_parameters(model) and finite_parameters(nn.ReLU())  # no parameters: nothing to break
    with torch.no_grad():
        model[1].weight[1, 0] = float("inf")
    assert not finite_parameters(model)


class _Stepper:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def step(self) -> None:
        if self.error is not None:
            raise self.error


def test_an_overflowing_step_is_a_divergence_and_other_errors_pass_through():
    optimizer_step(_Stepper(None), 0, 1)  # type: ignore[arg-type]
    overflow = RuntimeError("value cannot be converted to type float without overflow")
    with pytest.raises(TrainingDiverged) as caught:
        optimizer_step(_Stepper(overflow), 2, 5, member=1)  # type: ignore[arg-type]
    error = caught.value
    assert (error.epoch, error.epochs, error.loss, error.member) == (2, 5, math.inf, 1)
    assert str(error) == ("training of the network diverged at epoch 3 of 5: the optimiser's step overflows float32 "
                          "(value cannot be converted to type float without overflow)")  # fmt: skip
    assert error.__cause__ is None and error.__suppress_context__
    with pytest.raises(RuntimeError, match="^shape mismatch$"):
        optimizer_step(_Stepper(RuntimeError("shape mismatch")), 0, 1)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# accuracy_on
# ----------------------------------------------------------------------------------------------


def test_accuracy_counts_over_all_batches():
    model = _linear(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))  # predicts the larger of the two inputs
    model.train()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 5.0], [3.0, 0.0]]).view(5, 1, 1, 2)
    loader = [(x[:2], [0, 1]), (x[2:], torch.tensor([1, 1, 0]))]  # labels as a list too; 4 of 5 right
    assert accuracy_on(model, loader, CPU) == 0.8 and not model.training
    assert accuracy_on(model, [], CPU) == 0.0


def test_dsa_augment_seeds_spread_over_a_wide_range():
    """Each global seed gives the DSA augmentation its own random stream: 40 seeds, 40 different streams."""
    seeds = set()
    for global_seed in range(40):
        torch.manual_seed(global_seed)
        seeds.add(make_augment("dsa", 8).generator.initial_seed())
    assert len(seeds) == 40
