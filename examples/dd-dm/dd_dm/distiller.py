"""``distill = "dm"``: the Distribution Matching loop as a ddcore distiller.

State: the synthetic images ``X [N, C, H, W]`` (labels stay as initialised) and their SGD optimiser.
Every iteration ``t`` on process ``p``:

1. builds a fresh embedding network from the seed ``ctx.derive_seed("dm", "net", p, t)``;
2. per class ``c`` (in order): draws ``batch_real`` real images of the class without replacement
   (``ctx.derive_generator("dm", "real", p, t)``), takes the class's synthetic images, augments both
   with one DSA draw (``ctx.derive_generator("dm", "dsa", p, t)``), and backpropagates
   ``|| mean psi(real) - mean psi(syn) ||^2`` into ``X.grad``;
3. multiplies ``X.grad`` by the product of the ``dd_pixel_weights`` answers (EDF's Grad-CAM mask);
4. averages ``X.grad`` over processes and steps SGD (momentum ``dm.momentum``).

All randomness of iteration ``t`` is derived from (run seed, ``t``, ``p``), so a checkpoint needs no
random-generator state and a resumed run continues bit for bit (CPU).
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from ddcore import ConfigError, DDError, DistilledSet, Distiller
from ddcore.augment import DSA
from ddcore.distillers import average_across_processes, mean_across_processes
from dd_dm.config import DMConfig
from dd_dm.matching import class_loss, embedder, embedding_network, siamese_dsa

if TYPE_CHECKING:
    from ddcore import DistillSession, RunContext
    from ddcore.models import ModelSpec

NAME = "dm"
#: The weighting hooks DM calls in every step. DM has no per-element matching supervision, so it never
#: calls ``dd_supervision_weights`` (EDF's CPD): ddcore records that as not called for such plugins.
CALLS = ("dd_pixel_weights",)
STATE_FORMAT = 1


def embedding_spec(ctx: "RunContext", options: DMConfig) -> "ModelSpec":
    """The embedding network's :class:`~ddcore.models.ModelSpec`: the run's network, or ``dm.embed`` with the
    run's width (or ``dm.embed_width``), depth and norm."""
    spec = ctx.model_spec
    if spec is None:
        raise DDError("distiller 'dm' needs the run's network; the dataset has not been built yet")
    if options.embed != "run":
        spec = dataclasses.replace(spec, name=options.embed)
    if options.embed_width:
        spec = dataclasses.replace(spec, width=options.embed_width)
    return spec


class DistributionMatcher:
    """The loop's state (images, optimiser, log) and one iteration of it; :meth:`state_dict` /
    :meth:`load_state_dict` make a run resumable bit for bit on CPU."""

    def __init__(self, ctx: "RunContext", initial: DistilledSet, options: DMConfig) -> None:
        self.ctx, self.initial, self.options = ctx, initial, options
        dataset = ctx.dataset
        self.channels, self.size, _ = dataset.image_shape
        self.num_classes = dataset.num_classes
        self.spec = embedding_spec(ctx, options)
        device = ctx.device
        self.images = initial.images.detach().clone().to(device).requires_grad_(True)
        self.labels = initial.labels.detach().clone().to(device)
        hard = initial.hard_labels().cpu()
        #: ``syn_index[c]``: positions of class ``c``'s synthetic images (empty for a class without any).
        self.syn_index = [torch.nonzero(hard == c).flatten().to(device) for c in range(self.num_classes)]
        #: ``real[c]``: every training image of class ``c`` (host memory; batches move to the device).
        self.real = [dataset.load("train", indices)[0] for indices in dataset.indices_by_class("train")]
        self.optimiser = torch.optim.SGD([self.images], lr=options.lr_img, momentum=options.momentum)
        self.dsa = DSA(options.dsa_strategy) if options.dsa else None
        self.iteration = 0
        self.log: list[dict] = []

    def network(self, iteration: int) -> torch.nn.Module:
        ctx = self.ctx
        seed = ctx.derive_seed("dm", "net", ctx.process_index, iteration)
        return embedding_network(self.spec, self.num_classes, self.channels, self.size, seed).to(ctx.device)

    def step(self) -> dict:
        """One iteration; returns (and logs) its row. Raises :class:`DDError` on a non-finite loss or image."""
        ctx, options, iteration = self.ctx, self.options, self.iteration
        embed = embedder(self.network(iteration))
        pick = ctx.derive_generator("dm", "real", ctx.process_index, iteration)
        augment = ctx.derive_generator("dm", "dsa", ctx.process_index, iteration)
        self.optimiser.zero_grad(set_to_none=True)
        loss = 0.0
        for c, index in enumerate(self.syn_index):
            if index.numel() == 0:
                continue
            pool = self.real[c]
            chosen = torch.randperm(pool.shape[0], generator=pick)[: options.batch_real]
            real = pool[chosen].to(ctx.device)
            syn = self.images[index]
            if self.dsa is not None:
                real, syn = siamese_dsa(self.dsa, real, syn, augment)
            class_value = class_loss(embed, real, syn)
            class_value.backward()  # gradients of the classes add up in X.grad: the gradient of the sum
            loss += float(class_value.detach())
        if self.images.grad is None:
            self.images.grad = torch.zeros_like(self.images)
        weights = ctx.hooks.pixel_weights(ctx, self.images.detach(), self.labels, iteration)
        if weights is not None:
            self.images.grad.mul_(weights)
        average_across_processes(ctx, [self.images.grad])
        loss = mean_across_processes(ctx, loss)
        if not math.isfinite(loss) or not torch.isfinite(self.images.grad).all():
            raise DDError(f"distribution matching diverged at iteration {iteration} (loss {loss}); lower dm.lr_img")
        self.optimiser.step()
        row = {"iteration": iteration, "loss": loss}
        self.log.append(row)
        self.iteration += 1
        return row

    def current(self) -> DistilledSet:
        """A copy of the synthetic set as it is now."""
        return DistilledSet(
            images=self.images.detach().cpu().clone(),
            labels=self.labels.detach().cpu().clone(),
            class_names=list(self.initial.class_names),
            mean=self.initial.mean,
            std=self.initial.std,
            lr=self.initial.lr,
            meta={**self.initial.meta, "distilled_by": NAME},
        )

    def state_dict(self) -> dict:
        """What the next iterations depend on (no random state: it is derived from the iteration)."""
        return {
            "format": STATE_FORMAT,
            "iteration": self.iteration,
            "num_processes": self.ctx.num_processes,
            "images": self.images.detach().cpu().clone(),
            "optimiser": self.optimiser.state_dict(),
            "log": [dict(row) for row in self.log],
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise DDError(f"the dm checkpoint has an unknown format (expected {STATE_FORMAT}); start a new run")
        if state["num_processes"] != self.ctx.num_processes:
            raise DDError(
                f"the checkpoint was written by {state['num_processes']} processes; resume with the same number "
                f"(now {self.ctx.num_processes})"
            )
        if tuple(state["images"].shape) != tuple(self.images.shape):
            raise DDError(f"the dm checkpoint holds images {list(state['images'].shape)}, the run {list(self.images.shape)}")
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.images.device))
        self.optimiser.load_state_dict(state["optimiser"])
        self.iteration = int(state["iteration"])
        self.log = [dict(row) for row in state["log"]]


class DMDistiller(Distiller):
    """``distill = "dm"``; ``options`` is the validated ``[dm]`` table (:class:`DMConfig`)."""

    options: DMConfig

    def check(self) -> None:
        """Build the embedding network once, so that a network the images do not fit is refused before any work."""
        ctx = self.ctx
        channels, size, _ = ctx.dataset.image_shape
        spec = embedding_spec(ctx, self.options)
        try:
            network = embedding_network(spec, ctx.dataset.num_classes, channels, size, seed=0)
            with torch.no_grad():
                embedder(network)(torch.zeros(1, channels, size, size))
        except ConfigError as exc:
            raise ConfigError(f"dm.embed = {self.options.embed!r}: {exc}") from None
        except RuntimeError as exc:
            raise ConfigError(f"dm.embed = {self.options.embed!r} cannot take the images {[channels, size, size]}: {exc}") from None

    def distill(self, initial: DistilledSet, session: "DistillSession") -> DistilledSet:
        ctx, options = self.ctx, self.options
        matcher = DistributionMatcher(ctx, initial, options)
        if session.resume_state is not None:
            matcher.load_state_dict(session.resume_state)
            ctx.reporter.info(f"resuming distribution matching at iteration {matcher.iteration}")
        every = options.checkpoint_every
        with session.stage("distill"), ctx.reporter.progress("distribution matching", total=options.iterations) as advance:
            advance(matcher.iteration)
            while matcher.iteration < options.iterations:
                matcher.step()
                done = matcher.iteration
                last = done == options.iterations
                if options.eval_every and (done % options.eval_every == 0 or last):
                    matcher.log[-1]["val_acc"] = session.evaluate(matcher.current(), options.eval_runs)
                if every and (done % every == 0 or last):
                    session.save_checkpoint(done, matcher.state_dict())
                advance(1)
        log = matcher.log
        tail = log[-10:]
        ctx.record(NAME, {
            "options": options.to_dict(), "embed": dataclasses.asdict(matcher.spec), "iterations": len(log),
            "first_loss": log[0]["loss"] if log else None,
            "last_loss_mean10": sum(row["loss"] for row in tail) / len(tail) if tail else None,
        })  # fmt: skip
        session.add_artifact("dm_log.json", log)
        return matcher.current()
