"""The constant-memory exact unroll of trajectory matching (``tm.unroll = "constant"``).

The full unroll (:func:`ddcore.tm.matching.unroll`) keeps the autograd graph of all ``N = syn_steps``
inner steps, so its memory grows with ``N x batch``. This module computes the *same* gradients with
the memory of one inner step plus ``N + 1`` parameter vectors, at the price of recomputing every
step's forward and gradient once more in the backward pass (TESLA: Cui et al., "Scaling Up Dataset
Distillation to ImageNet-1K with Constant Memory", ICML 2023, arXiv 2211.10586, section 4.1; the
reverse recursion below is plain reverse-mode differentiation of the SGD recurrence, as in Maclaurin
et al., "Gradient-based Hyperparameter Optimization through Reversible Learning", ICML 2015, sec. 2).

Notation: images ``X [M, C, H, W]``, labels ``Y`` (hard ``[M]`` or soft logits ``[M, K]``), the
scalar ``lr`` (``syn_lr``), index chunks ``b_0 .. b_{N-1}`` and augmentation parameters
``p_0 .. p_{N-1}`` (one draw per step), parameters ``theta_k [P]``.

Forward (:func:`forward`, no graph kept)::

    g_k = grad_theta CE(f(aug(X[b_k]; p_k); theta_k), Y[b_k])        theta_{k+1} = theta_k - lr * g_k

keeping only ``theta_0 .. theta_N`` and the ``p_k`` (a :class:`Tape`).

Backward (:func:`backward`), from the adjoint ``a_N = dL/dtheta_N``, for ``k = N-1 .. 0``: rebuild
step ``k``'s graph (``g_k`` with ``create_graph``), let ``h_k = <g_k, a_{k+1}>``, and take one
vector-Jacobian product ``dh_k / d(theta_k, X[b_k], Y[b_k])``::

    a_k        = a_{k+1} - lr * dh_k/dtheta_k        (= (I - lr H_k) a_{k+1})
    dL/dX[b_k] += -lr * dh_k/dX[b_k]                  (through the replayed augmentation p_k)
    dL/dY[b_k] += -lr * dh_k/dY[b_k]                  (soft labels only)
    dL/dlr     += -h_k

This is the exact gradient of ``L(theta_N)`` (every path through every ``theta_k`` is kept), equal to
what autograd computes through the full unroll up to floating-point rounding. TESLA's own image
gradient (its eq. 6, as published) propagates the constant ``theta_N - target`` to every step; the
recursion through ``H_k`` above is what makes this one exact, and costs one Hessian-vector product per
step on top of the recomputation.

Memory: one inner step's activations and its double-backward buffers, plus ``N + 1`` vectors ``[P]``
(``ddcore.tm.memory`` projects both unrolls). Time: the full unroll's work plus one more forward and
gradient per inner step (``bench/tm_scale.py`` measures the ratio).

Randomness: the forward draws every step's augmentation parameters from the augmentation's generator
in the same order and with the same shapes as the full unroll, so both unrolls consume the same random
stream (a run switching modes sees the same augmentations), and the backward replays them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
from torch import nn

from ddcore.tm.matching import ParamShapes, inner_loss


class Replayable(Protocol):
    """An augmentation whose random draw can be kept and applied again (``DSA``'s sample-then-apply split)."""

    def sample(self, images: torch.Tensor) -> Any:
        """Draw the parameters for a batch shaped like ``images [B, C, H, W]`` (consumes the random stream)."""
        ...

    def apply(self, images: torch.Tensor, params: Any) -> torch.Tensor:
        """Apply drawn ``params`` to ``images [B, C, H, W]``; differentiable w.r.t. ``images``."""
        ...


class _ReplayDSAugment:
    """:class:`~ddcore.augment.DSAugment` as a :class:`Replayable`: the same draws, in the same order, as its ``forward``."""

    def __init__(self, augment: Any) -> None:
        self.augment = augment

    def sample(self, images: torch.Tensor) -> Any:
        # exactly what DSA.__call__ (and so DSAugment.forward) draws for this batch
        params = self.augment.dsa.sample(images.shape, self.augment.generator, device=images.device)
        self.augment.last_params = params
        return params

    def apply(self, images: torch.Tensor, params: Any) -> torch.Tensor:
        return self.augment.dsa.apply(images, params)


def replayable(augment: Callable[[torch.Tensor], torch.Tensor] | None) -> Replayable | None:
    """The replayable form of the matcher's ``augment`` (``None`` stays ``None``).

    Accepts a :class:`~ddcore.augment.DSAugment` (anything with ``dsa`` and ``generator``) or an object
    that already has ``sample(images)`` and ``apply(images, params)``.

    Raises:
        TypeError: for a plain callable, whose random draw cannot be replayed in the backward pass.
    """
    if augment is None:
        return None
    if hasattr(augment, "dsa") and hasattr(augment, "generator"):
        return _ReplayDSAugment(augment)
    if callable(getattr(augment, "sample", None)) and callable(getattr(augment, "apply", None)):
        return augment  # type: ignore[return-value]
    raise TypeError(
        f"tm.unroll = 'constant' replays each step's augmentation in the backward pass; {type(augment).__name__} "
        "cannot be replayed (give a DSAugment or an object with sample(images) and apply(images, params))"
    )


@dataclass
class Tape:
    """What the backward pass needs from the forward pass of :func:`forward`.

    Attributes:
        thetas: ``N + 1`` detached vectors ``[P]``: ``theta_0`` (a copy of the start) .. ``theta_N``.
        chunks: ``N`` index tensors ``[B_k]`` into the images (step ``k``'s minibatch).
        params: ``N`` augmentation draws (``None`` entries when there is no augmentation).
    """

    thetas: list[torch.Tensor]
    chunks: list[torch.Tensor]
    params: list[Any]

    @property
    def end(self) -> torch.Tensor:
        """``theta_N [P]`` (detached)."""
        return self.thetas[-1]


def forward(
    model: nn.Module,
    start: torch.Tensor,
    shapes: ParamShapes,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    chunks: Sequence[torch.Tensor],
    augment: Replayable | None = None,
) -> Tape:
    """Run the inner SGD steps without keeping a graph; returns the :class:`Tape` for :func:`backward`.

    Args:
        model: the student network (evaluated with ``functional_call``; never mutated).
        start: ``theta_0 [P]``.
        shapes: ``[(name, shape), ...]`` of the flat parameter vector.
        images: ``[M, C, H, W]``; labels: hard ``[M]`` int64 or soft logits ``[M, K]``.
        syn_lr: scalar tensor, the inner learning rate.
        chunks: ``N`` index tensors into ``range(M)``.
        augment: a :class:`Replayable` (see :func:`replayable`), or ``None``.

    Memory: one step's activations at a time, plus the ``N + 1`` vectors ``[P]`` kept.
    """
    lr = syn_lr.detach()
    x_all, y_all = images.detach(), labels.detach()
    theta = start.detach().clone()
    tape = Tape(thetas=[theta], chunks=[], params=[])
    for index in chunks:
        x = x_all[index]
        params = augment.sample(x) if augment is not None else None
        with torch.enable_grad():
            leaf = theta.detach().requires_grad_(True)
            if augment is not None:
                x = augment.apply(x, params)
            (grad,) = torch.autograd.grad(inner_loss(model, shapes, leaf, x, y_all[index]), leaf)
        with torch.no_grad():
            theta = theta - lr * grad
        tape.thetas.append(theta)
        tape.chunks.append(index)
        tape.params.append(params)
    return tape


@dataclass
class UnrollGradients:
    """Gradients of the outer loss from :func:`backward` (``None`` where not asked for).

    Attributes:
        images: ``[M, C, H, W]``, same dtype as the images.
        labels: ``[M, K]`` for soft labels that require grad.
        syn_lr: scalar tensor.
        start_adjoint: ``dL/dtheta_0 [P]`` (the adjoint after the last reverse step; for tests).
    """

    images: torch.Tensor | None
    labels: torch.Tensor | None
    syn_lr: torch.Tensor | None
    start_adjoint: torch.Tensor


def backward(
    model: nn.Module,
    shapes: ParamShapes,
    tape: Tape,
    adjoint: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    augment: Replayable | None = None,
    *,
    want_images: bool = True,
    want_labels: bool = False,
    want_lr: bool = True,
) -> UnrollGradients:
    """Walk the tape in reverse, one rebuilt step at a time (module docstring), from ``adjoint = dL/dtheta_N [P]``.

    Args:
        model, shapes, images, labels, syn_lr, augment: as given to :func:`forward` (same values).
        tape: :func:`forward`'s result.
        adjoint: ``dL/dtheta_N [P]``.
        want_images, want_labels, want_lr: which gradients to compute (soft labels only for
            ``want_labels``; a hard-label run has none).

    Returns:
        :class:`UnrollGradients`; nothing is written into any ``.grad``.

    Raises:
        ValueError: ``want_labels`` with hard labels, or an adjoint whose shape is not ``[P]``.
    """
    if want_labels and labels.ndim != 2:
        raise ValueError("label gradients need soft labels (logits [M, K]); hard labels have none")
    if adjoint.shape != tape.end.shape:
        raise ValueError(f"the adjoint must have the parameters' shape {tuple(tape.end.shape)}, got {tuple(adjoint.shape)}")
    lr = syn_lr.detach()
    x_all, y_all = images.detach(), labels.detach()
    grad_x = torch.zeros_like(x_all) if want_images else None
    grad_y = torch.zeros_like(y_all) if want_labels else None
    grad_lr = torch.zeros_like(lr) if want_lr else None
    a = adjoint.detach()
    for k in range(len(tape.chunks) - 1, -1, -1):
        index, params = tape.chunks[k], tape.params[k]
        with torch.enable_grad():
            theta = tape.thetas[k].detach().requires_grad_(True)
            x = x_all[index].requires_grad_(want_images)
            y = y_all[index].requires_grad_(want_labels)
            augmented = augment.apply(x, params) if augment is not None else x
            (grad,) = torch.autograd.grad(inner_loss(model, shapes, theta, augmented, y), theta, create_graph=True)
            h = torch.dot(grad, a)
            inputs = [theta] + ([x] if want_images else []) + ([y] if want_labels else [])
            parts = list(torch.autograd.grad(h, inputs))
        with torch.no_grad():
            d_theta = parts.pop(0)
            if grad_x is not None:
                grad_x.index_add_(0, index.to(grad_x.device), -lr * parts.pop(0))
            if grad_y is not None:
                grad_y.index_add_(0, index.to(grad_y.device), -lr * parts.pop(0))
            if grad_lr is not None:
                grad_lr -= h.detach()
            a = a - lr * d_theta
        del grad, h, parts, d_theta, augmented, x, y, theta
    return UnrollGradients(images=grad_x, labels=grad_y, syn_lr=grad_lr, start_adjoint=a)
