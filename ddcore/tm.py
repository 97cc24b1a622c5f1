"""The built-in trajectory-matching distiller (``distill = "tm"``): the outer loop around :mod:`ddcore.matching`.

State: synthetic images ``X [N, C, H, W]``, labels ``Y`` (hard ``[N]``, or learnable soft logits
``[N, K]``), a learnable scalar ``syn_lr``. Every iteration picks an expert and a start epoch in the
sequential-generation window, runs one matching step with the weighting hooks, and steps the three
SGD optimisers unless the loss is above ``skip_threshold``. A NaN or infinite loss stops the run with
a one-line error.

Options live in the ``[tm]`` table of the run config (:class:`TMConfig`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol, Sequence

import torch

from ddcore.distilled import DistilledSet
from ddcore.config import TMConfig
from ddcore.errors import ConfigError, DDError
from ddcore.matching import matching_step, minibatch_order, start_epoch_upper_bound
from ddcore.models import build_model

if TYPE_CHECKING:
    from ddcore.context import RunContext
    from ddcore.models import ModelSpec


class Trajectories(Protocol):
    """What the distiller needs from a buffer of expert trajectories."""

    param_shapes: Sequence[tuple[str, torch.Size]]

    def __len__(self) -> int: ...

    def trajectory(self, index: int) -> torch.Tensor:  # [E+1, P]
        ...


def sample_start_epoch(config: TMConfig, iteration: int, generator: torch.Generator) -> int:
    """A start epoch uniform in ``[min_start_epoch, upper_bound(iteration))`` (the bound at least one past the min)."""
    upper = start_epoch_upper_bound(iteration, config.cur_max_start_epoch, config.max_start_epoch, config.expansion_end)
    upper = max(upper, config.min_start_epoch + 1)
    return int(torch.randint(config.min_start_epoch, upper, (1,), generator=generator))


def distill_tm(
    ctx: "RunContext",
    initial: DistilledSet,
    experts: Trajectories,
    model_spec: "ModelSpec",
    config: TMConfig,
    augment=None,
) -> tuple[DistilledSet, list[dict]]:
    """Refine ``initial`` by trajectory matching; returns the distilled set and one log row per iteration."""
    if len(experts) == 0:
        raise ConfigError("trajectory matching needs at least one expert trajectory")
    first = experts.trajectory(0)
    config.check_against(first.shape[0] - 1)
    dataset = ctx.dataset
    channels, size, _ = dataset.image_shape
    device = ctx.device
    model = build_model(model_spec, dataset.num_classes, channels, size).to(device)
    images = initial.images.detach().clone().to(device).requires_grad_(True)
    labels = initial.labels.detach().clone().to(device)
    if config.learn_labels:
        if not initial.soft:
            raise ConfigError("tm.learn_labels needs soft labels from the initialisation (logits [N, K])")
        labels.requires_grad_(True)
    syn_lr = torch.tensor(initial.lr or config.lr_teacher, device=device, requires_grad=True)
    optimisers = [
        torch.optim.SGD([images], lr=config.lr_img, momentum=0.5),
        torch.optim.SGD([syn_lr], lr=config.lr_lr, momentum=0.5),
    ]
    if config.learn_labels:
        optimisers.append(torch.optim.SGD([labels], lr=config.lr_y, momentum=0.9))
    generator = ctx.derive_generator("tm")
    batch_syn = config.batch_syn or images.shape[0]
    log: list[dict] = []
    with ctx.reporter.progress("trajectory matching", total=config.iterations) as advance:
        for iteration in range(config.iterations):
            expert = int(torch.randint(len(experts), (1,), generator=generator))
            start = sample_start_epoch(config, iteration, generator)
            trajectory = experts.trajectory(expert).to(device)
            chunks = minibatch_order(images.shape[0], batch_syn, config.syn_steps, generator)
            for optimiser in optimisers:
                optimiser.zero_grad(set_to_none=True)
            result = matching_step(
                model, experts.param_shapes, trajectory, start, config.expert_epochs, images, labels, syn_lr, chunks,
                supervision_weights=lambda l, d, it=iteration: ctx.hooks.supervision_weights(ctx, l, d, it),
                pixel_weights=lambda x, y, it=iteration: ctx.hooks.pixel_weights(ctx, x, y, it),
                augment=augment,
            )
            if not math.isfinite(result.loss) or not torch.isfinite(images).all():
                raise DDError(
                    f"trajectory matching diverged at iteration {iteration} (loss {result.loss}); lower tm.lr_img or tm.lr_lr"
                )
            skipped = config.skip_threshold > 0 and result.loss > config.skip_threshold
            if not skipped:
                for optimiser in optimisers:
                    optimiser.step()
                with torch.no_grad():
                    syn_lr.clamp_(min=1e-8)
            log.append({"iteration": iteration, "expert": expert, "start_epoch": start, "loss": result.loss,
                        "kept": result.kept_fraction, "skipped": skipped, "syn_lr": float(syn_lr.detach())})
            advance(1)
    distilled = DistilledSet(
        images=images.detach().cpu(),
        labels=labels.detach().cpu(),
        class_names=list(initial.class_names),
        mean=initial.mean,
        std=initial.std,
        lr=float(syn_lr.detach()),
        meta={**initial.meta, "distilled_by": "tm"},
    )
    return distilled, log
