"""Trajectory matching (MTT/FTD/DATM), the pure-tensor core: unroll a student, compare it with an expert.

One outer step, for synthetic images ``X [N, C, H, W]``, labels ``Y`` (hard ``[N]`` or soft logits
``[N, K]``), a learnable scalar ``syn_lr`` and an expert trajectory ``T [E+1, P]``:

1. ``theta_0 = T[t]``, ``target = T[t + M]``.
2. ``syn_steps`` SGD steps on minibatches of ``X`` (a fresh permutation cut into chunks of
   ``batch_syn``), keeping the graph: ``theta_{k+1} = theta_k - syn_lr * grad CE(f(aug(x_b); theta_k), y_b)``.
3. Per-element losses ``l = (theta_N - target)^2`` and distances ``d = (theta_0 - target)^2`` over all
   ``P`` parameters.
4. ``loss = sum(w * l) / sum(w * d)`` with ``w`` the product of the ``dd_supervision_weights``
   answers (1 when none answer).
5. Backward; ``X.grad *= `` the product of the ``dd_pixel_weights`` answers.

The student is evaluated with :func:`torch.func.functional_call` on a flat parameter vector, so the
model object is never re-parametrised or mutated.

Steps 2 and 5 come in two unrolls with the same result (``matching_step(..., mode=...)``, the run's
``tm.unroll``): ``"full"`` keeps the autograd graph of all inner steps (memory grows with
``syn_steps x batch_syn``); ``"constant"`` (:mod:`ddcore.tm.unroll`) keeps only the ``syn_steps + 1``
parameter vectors and the augmentation draws, and rebuilds one step's graph at a time in reverse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ddcore.tm.flatparams import unflatten_params
from ddcore.training import soft_cross_entropy

ParamShapes = Sequence[tuple[str, Sequence[int]]]
Augment = Callable[[torch.Tensor], torch.Tensor]
#: The unrolls :func:`matching_step` can run (``tm.unroll`` adds ``"auto"``, resolved by :mod:`ddcore.tm.memory`).
UNROLL_MODES = ("full", "constant")


def minibatch_order(n: int, batch_syn: int, syn_steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index chunks for ``syn_steps`` inner steps: permutations of ``range(n)`` cut into ``batch_syn`` chunks,
    a fresh permutation whenever one runs out.

    >>> [c.tolist() for c in minibatch_order(3, 2, 3, torch.Generator().manual_seed(0))]
    [[2, 0], [1], [2, 1]]
    """
    chunks: list[torch.Tensor] = []
    while len(chunks) < syn_steps:
        chunks.extend(torch.randperm(n, generator=generator).split(batch_syn))
    return chunks[:syn_steps]


def inner_loss(model: nn.Module, shapes: ParamShapes, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The student's loss on one minibatch, ``CE(f(x; theta), y)``: ``theta [P]`` flat parameters, ``x [B, C, H, W]``,
    ``y`` hard ``[B]`` (cross-entropy) or soft logits ``[B, K]`` (soft cross-entropy); a scalar. Shared by both unrolls."""
    logits = functional_call(model, unflatten_params(theta, shapes), (x,))
    return soft_cross_entropy(logits, y) if y.ndim == 2 else F.cross_entropy(logits, y)


def unroll(
    model: nn.Module,
    start: torch.Tensor,
    shapes: ParamShapes,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    chunks: Sequence[torch.Tensor],
    augment: Augment | None = None,
) -> torch.Tensor:
    """Unrolled SGD from ``start [P]`` over the index ``chunks``; returns ``theta_N [P]`` with the graph kept.

    ``images [N, C, H, W]``, ``labels [N]`` (hard) or ``[N, K]`` (soft logits), ``syn_lr`` a scalar
    tensor. Gradients of a function of the result reach ``images``, soft ``labels`` and ``syn_lr``.
    """
    theta = start.detach().clone().requires_grad_(True)
    for index in chunks:
        x = images[index]
        if augment is not None:
            x = augment(x)
        (grad,) = torch.autograd.grad(inner_loss(model, shapes, theta, x, labels[index]), theta, create_graph=True)
        theta = theta - syn_lr * grad
    return theta


def matching_terms(end: torch.Tensor, start: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-element ``losses = (end - target)^2`` (differentiable) and ``distances = (start - target)^2``. Shapes ``[P]``."""
    return (end - target) ** 2, (start.detach() - target) ** 2


def weighted_matching_loss(losses: torch.Tensor, distances: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``sum(w * losses) / sum(w * distances)`` (``w = 1`` when ``weights`` is None). Shapes ``[P]`` -> scalar.

    >>> weighted_matching_loss(torch.tensor([1., 2., 3.]), torch.tensor([2., 2., 2.]), torch.tensor([0., 1., 1.]))
    tensor(1.2500)
    """
    if weights is None:
        return losses.sum() / distances.sum()
    return (weights * losses).sum() / (weights * distances).sum()


def start_epoch_upper_bound(iteration: int, cur_max_start: int, max_start: int, expansion_end: int) -> int:
    """Sequential generation: the exclusive upper bound of the start epoch at ``iteration``.

    ``min(max_start, cur_max_start + floor((max_start - cur_max_start) * iteration / expansion_end))``.

    >>> [start_epoch_upper_bound(it, 5, 10, 1000) for it in (0, 199, 200, 999, 1000, 5000)]
    [5, 5, 6, 9, 10, 10]
    """
    grown = cur_max_start + ((max_start - cur_max_start) * iteration) // max(1, expansion_end)
    return min(max_start, grown)


@dataclass
class StepResult:
    """What one outer matching step produced (all detached)."""

    loss: float
    kept_fraction: float  # share of the P elements with non-zero supervision weight
    pixel_weighted: bool


def matching_step(
    model: nn.Module,
    shapes: ParamShapes,
    trajectory: torch.Tensor,
    start_epoch: int,
    expert_epochs: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    chunks: Sequence[torch.Tensor],
    supervision_weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    pixel_weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    augment: Augment | None = None,
    mode: str = "full",
) -> StepResult:
    """Steps 1-5 of the module docstring: accumulates gradients into ``images.grad`` (pixel-weighted),
    and into ``labels.grad`` / ``syn_lr.grad`` when those require grad. The caller steps the optimisers.

    ``trajectory [E+1, P]``; ``supervision_weights(losses, distances)`` and ``pixel_weights(images, labels)``
    are the hook facade's combined answers (``None`` = all abstain). ``mode``: ``"full"`` or
    ``"constant"`` (the same gradients; the constant unroll needs ``augment`` to be replayable, see
    :func:`ddcore.tm.unroll.replayable`). Raises ``ValueError`` for another mode.
    """
    loss, weights = matching_backward(
        model, shapes, trajectory, start_epoch, expert_epochs, images, labels, syn_lr, chunks,
        supervision_weights, augment, mode,
    )  # fmt: skip
    pixel = pixel_weights(images.detach(), labels.detach())
    if pixel is not None and images.grad is not None:
        images.grad.mul_(pixel)
    kept = 1.0 if weights is None else float((weights != 0).float().mean())
    return StepResult(loss=float(loss.detach()), kept_fraction=kept, pixel_weighted=pixel is not None)


def matching_backward(
    model: nn.Module,
    shapes: ParamShapes,
    trajectory: torch.Tensor,
    start_epoch: int,
    expert_epochs: int,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    chunks: Sequence[torch.Tensor],
    supervision_weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    augment: Augment | None = None,
    mode: str = "full",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Steps 1-4 and the backward of step 5 without the pixel weighting and without reading any value
    back to the host (so :mod:`ddcore.tm.memory` can run it on the ``meta`` device).

    Returns ``(loss, weights)``: the loss (scalar, detached) and the supervision weights ``[P]`` (or
    ``None``). Arguments as in :func:`matching_step`; raises ``ValueError`` for an unknown ``mode``.
    """
    if mode not in UNROLL_MODES:
        raise ValueError(f"unknown unroll mode {mode!r}; choose one of {', '.join(UNROLL_MODES)}")
    start = trajectory[start_epoch]
    target = trajectory[start_epoch + expert_epochs]
    if mode == "constant":
        return _constant_memory_backward(
            model, shapes, start, target, images, labels, syn_lr, chunks, supervision_weights, augment
        )
    end = unroll(model, start, shapes, images, labels, syn_lr, chunks, augment)
    losses, distances = matching_terms(end, start, target)
    weights = supervision_weights(losses.detach(), distances)
    loss = weighted_matching_loss(losses, distances, weights)
    loss.backward()
    return loss.detach(), weights


def _constant_memory_backward(
    model: nn.Module,
    shapes: ParamShapes,
    start: torch.Tensor,
    target: torch.Tensor,
    images: torch.Tensor,
    labels: torch.Tensor,
    syn_lr: torch.Tensor,
    chunks: Sequence[torch.Tensor],
    supervision_weights: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None],
    augment: Augment | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Steps 2-4 and the backward of step 5 with :mod:`ddcore.tm.unroll`; returns ``(loss, weights)``.

    The supervision weights enter exactly as in the full unroll: the loss is built on ``theta_N`` as
    a leaf, and its gradient there is the adjoint the reverse walk starts from.
    """
    from ddcore.tm import unroll as constant

    replay = constant.replayable(augment)
    tape = constant.forward(model, start, shapes, images, labels, syn_lr, chunks, replay)
    end = tape.end.detach().requires_grad_(True)
    losses, distances = matching_terms(end, start, target)
    weights = supervision_weights(losses.detach(), distances)
    loss = weighted_matching_loss(losses, distances, weights)
    (adjoint,) = torch.autograd.grad(loss, end)
    del losses, end
    grads = constant.backward(
        model, shapes, tape, adjoint, images, labels, syn_lr, replay,
        want_images=images.requires_grad, want_labels=labels.requires_grad and labels.ndim == 2,
        want_lr=syn_lr.requires_grad,
    )  # fmt: skip
    for tensor, grad in ((images, grads.images), (labels, grads.labels), (syn_lr, grads.syn_lr)):
        if grad is not None:
            tensor.grad = grad if tensor.grad is None else tensor.grad + grad
    return loss.detach(), weights
