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
        logits = functional_call(model, unflatten_params(theta, shapes), (x,))
        y = labels[index]
        ce = soft_cross_entropy(logits, y) if y.ndim == 2 else F.cross_entropy(logits, y)
        (grad,) = torch.autograd.grad(ce, theta, create_graph=True)
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
) -> StepResult:
    """Steps 1-5 of the module docstring: accumulates gradients into ``images.grad`` (pixel-weighted),
    and into ``labels.grad`` / ``syn_lr.grad`` when those require grad. The caller steps the optimisers.

    ``trajectory [E+1, P]``; ``supervision_weights(losses, distances)`` and ``pixel_weights(images, labels)``
    are the hook facade's combined answers (``None`` = all abstain).
    """
    start = trajectory[start_epoch]
    target = trajectory[start_epoch + expert_epochs]
    end = unroll(model, start, shapes, images, labels, syn_lr, chunks, augment)
    losses, distances = matching_terms(end, start, target)
    weights = supervision_weights(losses.detach(), distances)
    loss = weighted_matching_loss(losses, distances, weights)
    loss.backward()
    pixel = pixel_weights(images.detach(), labels.detach())
    if pixel is not None and images.grad is not None:
        images.grad.mul_(pixel)
    kept = 1.0 if weights is None else float((weights != 0).float().mean())
    return StepResult(loss=float(loss.detach()), kept_fraction=kept, pixel_weighted=pixel is not None)
