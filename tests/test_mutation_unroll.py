"""ddcore.tm.unroll, cases found by mutation testing (bench/mutation.py): the constant-memory
forward/backward without augmentation against autograd through a hand-written SGD unroll (including
``dL/dtheta_0``), which gradients are computed when (and their defaults), the messages, and which
augmentations can be replayed."""

from __future__ import annotations

import pytest
import torch

from ddcore.augment import DSA, DSAugment
from ddcore.models import ModelSpec, build_model
from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.tm.matching import inner_loss
from ddcore.tm.unroll import backward, forward, replayable

SPEC = ModelSpec(width=4, depth=1)


def _problem(soft: bool):
    torch.manual_seed(0)
    model = build_model(SPEC, 3, 1, 8).double()
    start, shapes = flatten_params(model).double(), param_shapes_of(model)
    g = torch.Generator().manual_seed(1)
    images = torch.randn(5, 1, 8, 8, generator=g, dtype=torch.float64)
    labels = torch.randn(5, 3, generator=g, dtype=torch.float64) if soft else torch.tensor([0, 1, 2, 0, 1])
    lr = torch.tensor(0.1, dtype=torch.float64)
    chunks = [torch.tensor([0, 1]), torch.tensor([2, 3, 4]), torch.tensor([4, 0])]
    direction = torch.randn(start.shape, generator=g, dtype=torch.float64)  # L(theta_N) = <theta_N, direction>
    return model, start, shapes, images, labels, lr, chunks, direction


def _reference(model, start, shapes, images, labels, lr, chunks, direction):
    """Autograd through the plain SGD recurrence theta_{k+1} = theta_k - lr * grad CE (no augmentation)."""
    theta0 = start.clone().requires_grad_(True)
    x = images.clone().requires_grad_(True)
    y = labels.clone().requires_grad_(labels.is_floating_point())
    eta = lr.clone().requires_grad_(True)
    theta = theta0
    for index in chunks:
        (g,) = torch.autograd.grad(inner_loss(model, shapes, theta, x[index], y[index]), theta, create_graph=True)
        theta = theta - eta * g
    wanted = [theta0, x, eta] + ([y] if y.requires_grad else [])
    return theta.detach(), torch.autograd.grad(torch.dot(theta, direction), wanted)


@pytest.mark.parametrize("soft", [False, True])
def test_forward_and_backward_without_augmentation_equal_autograd(soft):
    model, start, shapes, images, labels, lr, chunks, direction = _problem(soft)
    end, (d_start, d_images, d_lr, *d_labels) = _reference(model, start, shapes, images, labels, lr, chunks, direction)
    tape = forward(model, start, shapes, images, labels, lr, chunks)
    torch.testing.assert_close(tape.end, end, rtol=1e-12, atol=1e-12)
    assert len(tape.thetas) == 4 and tape.params == [None, None, None]
    grads = backward(model, shapes, tape, direction, images, labels, lr, want_labels=soft)
    torch.testing.assert_close(grads.start_adjoint, d_start, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads.images, d_images, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(grads.syn_lr, d_lr, rtol=1e-9, atol=1e-12)
    if soft:
        torch.testing.assert_close(grads.labels, d_labels[0], rtol=1e-9, atol=1e-12)


def test_backward_computes_only_what_is_asked_for_with_documented_defaults():
    model, start, shapes, images, labels, lr, chunks, direction = _problem(soft=True)
    tape = forward(model, start, shapes, images, labels, lr, chunks)
    default = backward(model, shapes, tape, direction, images, labels, lr)  # images and lr, not labels
    assert default.images is not None and default.syn_lr is not None and default.labels is None
    none = backward(model, shapes, tape, direction, images, labels, lr, want_images=False, want_lr=False)
    assert none.images is None and none.syn_lr is None and none.labels is None
    torch.testing.assert_close(none.start_adjoint, default.start_adjoint, rtol=0, atol=0)


def test_backward_messages():
    model, start, shapes, images, labels, lr, chunks, direction = _problem(soft=False)
    tape = forward(model, start, shapes, images, labels, lr, chunks)
    with pytest.raises(ValueError, match=r"^label gradients need soft labels \(logits \[M, K\]\); hard labels have none$"):
        backward(model, shapes, tape, direction, images, labels, lr, want_labels=True)
    p = start.numel()
    with pytest.raises(ValueError, match=rf"^the adjoint must have the parameters' shape \({p},\), got \({p + 1},\)$"):
        backward(model, shapes, tape, torch.zeros(p + 1, dtype=torch.float64), images, labels, lr)


class _Replayable:
    """A replayable augmentation of its own, with a generator attribute (no ``dsa``): used as it is."""

    def __init__(self) -> None:
        self.generator = torch.Generator()

    def sample(self, images):
        return None

    def apply(self, images, params):
        return images


class _HalfA:
    def sample(self, images):
        return None


class _HalfB:
    def apply(self, images, params):
        return images


class _NotCallable:
    sample = 3
    apply = 4


class _DsaOnly(_Replayable):
    """Has a ``dsa`` attribute but no generator: not a DSAugment."""

    def __init__(self) -> None:
        self.dsa = DSA()


def test_which_augmentations_can_be_replayed():
    assert replayable(None) is None
    own = _Replayable()
    assert replayable(own) is own
    dsa_only = _DsaOnly()
    assert replayable(dsa_only) is dsa_only
    for refused in (_HalfA(), _HalfB(), _NotCallable(), lambda x: x):
        with pytest.raises(TypeError) as caught:
            replayable(refused)
        assert str(caught.value) == (
            f"tm.unroll = 'constant' replays each step's augmentation in the backward pass; {type(refused).__name__} "
            "cannot be replayed (give a DSAugment or an object with sample(images) and apply(images, params))")


def test_a_replayed_dsaugment_draws_as_its_forward_does():
    augment = DSAugment(DSA("color_cutout"), torch.Generator().manual_seed(3))
    replay = replayable(augment)
    images = torch.empty(2, 3, 8, 8, device="meta")  # parameters for the images' device, like DSAugment's own call
    params = replay.sample(images)
    assert augment.last_params is params
    assert {t.device.type for t in params.tensors().values()} == {"meta"}
    twin = DSAugment(DSA("color_cutout"), torch.Generator().manual_seed(3))
    out = twin(torch.zeros(2, 3, 8, 8))
    assert twin.last_params.family == params.family and out.shape == (2, 3, 8, 8)
