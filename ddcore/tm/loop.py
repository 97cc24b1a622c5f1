"""The outer loop of the built-in trajectory-matching distiller (``distill = "tm"``) around :mod:`ddcore.tm.matching`.

State: synthetic images ``X [N, C, H, W]``, labels ``Y`` (hard ``[N]``, or learnable soft logits
``[N, K]``), a learnable scalar ``syn_lr``. Every iteration picks an expert and a start epoch in the
sequential-generation window, runs one matching step with the weighting hooks, and steps the three
SGD optimisers unless the loss is above ``skip_threshold``. The step unrolls fully or with constant memory
(``tm.unroll``; ``auto`` is resolved by :mod:`ddcore.tm.memory`'s plan); both give the same gradients and
draw the same random numbers.

A failed distillation stops the run with a one-line :class:`~ddcore.errors.DDError` (exit 2 from ``dd``),
never a result: a NaN or infinite loss, an update that leaves the images, labels or ``syn_lr`` non-finite,
or a learned ``syn_lr`` that falls to :data:`SYN_LR_FLOOR` or below (a student that no longer learns;
evaluating the set at that lr would report chance accuracy). Each message says at which iteration
(0-based, as in ``tm_log.json``) and which option to lower. The state is checked right after every
update, so a checkpoint never holds non-finite values.

Options live in the ``[tm]`` table of the run config (:class:`TMConfig`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, NoReturn, Protocol, Sequence

import torch

from ddcore.distilled import DistilledSet
from ddcore.distillers import average_across_processes, mean_across_processes
from ddcore.errors import ConfigError, DDError
from ddcore.models import build_model
from ddcore.plots import tm_log_picture
from ddcore.tm.config import TMConfig
from ddcore.tm.matching import matching_step, minibatch_order, start_epoch_upper_bound
from ddcore.trackers import log_iteration

if TYPE_CHECKING:
    from ddcore.tm.memory import MemoryPlan
    from ddcore.context import RunContext
    from ddcore.distillers import DistillSession
    from ddcore.models import ModelSpec

STATE_FORMAT = 1
#: The learned student lr at or below which trajectory matching has failed (MTT clamps it here).
SYN_LR_FLOOR = 1e-8


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


class TrajectoryMatcher:
    """The outer loop's state (images, labels, syn_lr, optimisers, random streams, log) and one step of it.

    Each process draws its own expert and start epoch from its own stream (``derive_generator("tm", p)``);
    image, label and lr gradients are averaged over processes before the optimisers step, and the skip
    decision uses the averaged loss, so every process keeps identical images.
    :meth:`state_dict` / :meth:`load_state_dict` make a run resumable bit for bit on CPU.

    ``plan``: the run's :class:`~ddcore.tm.memory.MemoryPlan` (the distiller's ``check`` made it); without
    one, ``tm.unroll = "auto"`` is planned here. :attr:`unroll` is the unroll in use.
    """

    def __init__(self, ctx: "RunContext", initial: DistilledSet, experts: Trajectories, model_spec: "ModelSpec",
                 config: TMConfig, plan: "MemoryPlan | None" = None) -> None:  # fmt: skip
        if len(experts) == 0:
            raise ConfigError("trajectory matching needs at least one expert trajectory")
        config.check_against(experts.trajectory(0).shape[0] - 1)
        self.ctx, self.initial, self.experts, self.config = ctx, initial, experts, config
        if plan is None and config.unroll == "auto":
            from ddcore.tm.memory import plan_for_run

            plan = plan_for_run(ctx, config, experts.trajectory(0).shape[0] - 1, model_spec=model_spec,
                                num_images=initial.images.shape[0], soft=initial.soft)  # fmt: skip
        self.plan = plan
        self.unroll = plan.unroll if plan is not None else config.unroll
        channels, size, _ = ctx.dataset.image_shape
        device = ctx.device
        self.model = build_model(model_spec, ctx.dataset.num_classes, channels, size).to(device)
        self.images = initial.images.detach().clone().to(device).requires_grad_(True)
        self.labels = initial.labels.detach().clone().to(device)
        if config.learn_labels:
            if not initial.soft:
                raise ConfigError("tm.learn_labels needs soft labels from the initialisation (logits [N, K])")
            self.labels.requires_grad_(True)
        self.syn_lr = torch.tensor(initial.lr or config.lr_teacher, device=device, requires_grad=True)
        self.optimisers = [
            torch.optim.SGD([self.images], lr=config.lr_img, momentum=0.5),
            torch.optim.SGD([self.syn_lr], lr=config.lr_lr, momentum=0.5),
        ]
        if config.learn_labels:
            self.optimisers.append(torch.optim.SGD([self.labels], lr=config.lr_y, momentum=0.9))
        self.generator = ctx.derive_generator("tm", ctx.process_index)
        self.augment = None
        if config.augment == "dsa":
            from ddcore.augment import DSA, DSAugment

            self.augment = DSAugment(DSA(), ctx.derive_generator("tm", "dsa", ctx.process_index))
        self.iteration = 0
        self.log: list[dict] = []
        #: The best evaluated set: {"iteration", "accuracy", "images", "labels", "syn_lr"}; "iteration" is the
        #: tm_log.json ``iteration`` (0-based) of the update after which it was evaluated, -1 the initial set.
        self.best: dict | None = None
        self.initial_accuracy: float | None = None  # the initial set's validation accuracy (eval_every > 0)

    def step(self) -> dict:
        """One outer iteration; returns (and logs) its row. Raises :class:`DDError` on a non-finite loss."""
        ctx, config, iteration = self.ctx, self.config, self.iteration
        expert = int(torch.randint(len(self.experts), (1,), generator=self.generator))
        start = sample_start_epoch(config, iteration, self.generator)
        trajectory = self.experts.trajectory(expert).to(ctx.device)
        chunks = minibatch_order(self.images.shape[0], config.batch_syn or self.images.shape[0], config.syn_steps, self.generator)
        for optimiser in self.optimisers:
            optimiser.zero_grad(set_to_none=True)
        result = matching_step(
            self.model, self.experts.param_shapes, trajectory, start, config.expert_epochs,
            self.images, self.labels, self.syn_lr, chunks,
            supervision_weights=lambda l, d: ctx.hooks.supervision_weights(ctx, l, d, iteration),
            pixel_weights=lambda x, y: ctx.hooks.pixel_weights(ctx, x, y, iteration),
            augment=self.augment, mode=self.unroll,
        )  # fmt: skip
        average_across_processes(ctx, [self.images.grad, self.labels.grad, self.syn_lr.grad])
        loss = result.loss
        experts = [expert]
        if ctx.num_processes > 1:
            loss = mean_across_processes(ctx, loss)
            experts = [int(e) for e in ctx.accelerator.gather(torch.tensor([expert], device=ctx.device)).tolist()]
        if not math.isfinite(loss):
            self._diverged(iteration, f"the matching loss is {loss}")
        skipped = config.skip_threshold > 0 and loss > config.skip_threshold
        if not skipped:
            for optimiser in self.optimisers:
                optimiser.step()
            self._check_update(iteration)
        row = {"iteration": iteration, "experts": experts, "start_epoch": start, "loss": loss,
               "kept": result.kept_fraction, "skipped": skipped, "syn_lr": float(self.syn_lr.detach())}  # fmt: skip
        self.log.append(row)
        self.iteration += 1
        return row

    def _updates(self) -> int:
        """Updates applied so far (iterations not skipped)."""
        return sum(not row["skipped"] for row in self.log)

    def _lowering(self, *keys: str) -> str:
        return " or ".join(f"tm.{key} (now {getattr(self.config, key):g})" for key in keys)

    def _diverged(self, iteration: int, what: str) -> NoReturn:
        """Raise the one-line error for a non-finite loss at ``iteration``, naming what to change."""
        updates = self._updates()
        if updates == 0:
            raise DDError(
                f"trajectory matching diverged at iteration {iteration}, before any update: {what}, so no learning "
                "rate is the cause; check the expert trajectories (an expert whose parameters do not move over "
                "tm.expert_epochs divides by 0) and the plugins' dd_supervision_weights (all zero gives 0/0)"
            )
        keys = ("lr_img", "lr_lr", "lr_y") if self.config.learn_labels else ("lr_img", "lr_lr")
        raise DDError(
            f"trajectory matching diverged at iteration {iteration}, after {updates} update{'s' if updates > 1 else ''}: {what} "
            f"(syn_lr {float(self.syn_lr.detach()):.3g}); lower {self._lowering(*keys)}"
        )

    def _check_update(self, iteration: int) -> None:
        """After an update: images, labels and ``syn_lr`` finite, ``syn_lr`` above :data:`SYN_LR_FLOOR`; else a DDError."""
        for name, tensor, key in (("synthetic images", self.images, "lr_img"), ("learned labels", self.labels, "lr_y"),
                                  ("learned student lr (syn_lr)", self.syn_lr, "lr_lr")):  # fmt: skip
            if tensor.requires_grad and not bool(torch.isfinite(tensor.detach()).all()):
                raise DDError(
                    f"trajectory matching diverged at iteration {iteration}: its update made the {name} non-finite; "
                    f"lower {self._lowering(key)}"
                )
        syn_lr = float(self.syn_lr.detach())
        if syn_lr <= SYN_LR_FLOOR:
            start = self.initial.lr or self.config.lr_teacher
            raise DDError(
                f"trajectory matching failed at iteration {iteration}: the learned student lr (syn_lr) fell from "
                f"{start:.3g} to {syn_lr:.3g}, at or below {SYN_LR_FLOOR:g}, so the images no longer train a network "
                f"and no set is distilled; lower {self._lowering('lr_lr')}"
            )

    def current(self) -> DistilledSet:
        """A copy of the synthetic set as it is now."""
        return DistilledSet(
            images=self.images.detach().cpu().clone(),
            labels=self.labels.detach().cpu().clone(),
            class_names=list(self.initial.class_names),
            mean=self.initial.mean,
            std=self.initial.std,
            lr=float(self.syn_lr.detach()),
            meta={**self.initial.meta, "distilled_by": "tm"},
        )

    def consider(self, accuracy: float) -> None:
        """Keep the current set if ``accuracy`` (validation, %) beats the best so far (periodic evaluation).

        Before the first iteration the current set is the initial one (candidate iteration -1, kept in
        :attr:`initial_accuracy`); after it, the set of the last logged row (its ``iteration``, 0-based),
        whose ``val_acc`` is set. Ties keep the earlier set.
        """
        iteration = self.iteration - 1  # the log row just written; -1 before any iteration: the initial set
        if self.log:
            self.log[-1]["val_acc"] = accuracy
        else:
            self.initial_accuracy = accuracy
        if self.best is None or accuracy > self.best["accuracy"]:
            current = self.current()
            self.best = {"iteration": iteration, "accuracy": accuracy, "images": current.images,
                         "labels": current.labels, "syn_lr": current.lr}  # fmt: skip

    def result(self) -> DistilledSet:
        """The best evaluated set when periodic evaluation ran, else the current one."""
        distilled = self.current()
        if self.best is not None:
            distilled.images, distilled.labels, distilled.lr = self.best["images"], self.best["labels"], self.best["syn_lr"]
            distilled.meta = {**distilled.meta, "best_iteration": self.best["iteration"], "best_accuracy": self.best["accuracy"],
                              "initial_accuracy": self.initial_accuracy}  # fmt: skip
        return distilled

    def state_dict(self) -> dict:
        """Everything the next iterations depend on; random streams gathered from every process."""
        streams = [self.generator.get_state(), self.augment.generator.get_state() if self.augment else None]
        if self.ctx.num_processes > 1:
            from accelerate.utils import gather_object

            streams = gather_object([streams])
        else:
            streams = [streams]
        return {
            "format": STATE_FORMAT,
            "iteration": self.iteration,
            "images": self.images.detach().cpu(),
            "labels": self.labels.detach().cpu(),
            "syn_lr": float(self.syn_lr.detach()),
            "optimisers": [optimiser.state_dict() for optimiser in self.optimisers],
            "streams": streams,
            "log": list(self.log),
            "best": self.best,
            "initial_accuracy": self.initial_accuracy,
            "unroll": self.unroll,
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["streams"]) != self.ctx.num_processes:
            raise DDError(
                f"the checkpoint was written by {len(state['streams'])} processes; resume with the same number "
                f"(now {self.ctx.num_processes})"
            )
        with torch.no_grad():
            self.images.copy_(state["images"].to(self.images.device))
            self.labels.copy_(state["labels"].to(self.labels.device))
            self.syn_lr.fill_(state["syn_lr"])
        for optimiser, saved in zip(self.optimisers, state["optimisers"]):
            optimiser.load_state_dict(saved)
        mine, dsa = state["streams"][self.ctx.process_index]
        self.generator.set_state(mine)
        if self.augment is not None and dsa is not None:
            self.augment.generator.set_state(dsa)
        self.iteration = int(state["iteration"])
        self.log = list(state["log"])
        self.best = state.get("best")
        self.initial_accuracy = state.get("initial_accuracy")
        saved = state.get("unroll")
        if saved in ("full", "constant") and saved != self.unroll and self.config.unroll == "auto":
            # Both unrolls agree to rounding only: keep the checkpoint's, so the resumed run is bit for bit
            # the uninterrupted one, as long as it fits this device.
            if self.plan is None or self.plan.fits(saved):
                self.ctx.reporter.info(f"resuming with the checkpoint's tm.unroll = '{saved}' (auto chose '{self.unroll}')")
                self.unroll = saved
                record = self.ctx.records.get("tm_memory")
                if isinstance(record, dict):
                    record["unroll"] = saved


def distill_tm(
    ctx: "RunContext",
    initial: DistilledSet,
    experts: Trajectories,
    model_spec: "ModelSpec",
    config: TMConfig,
    session: "DistillSession | None" = None,
    evaluate: Callable[[DistilledSet], float] | None = None,
    plan: "MemoryPlan | None" = None,
) -> tuple[DistilledSet, list[dict]]:
    """Refine ``initial`` by trajectory matching; returns the distilled set and one log row per iteration.

    With a ``session``, a checkpoint is saved every ``tm.checkpoint_every`` iterations and at the end
    (:meth:`~ddcore.distillers.DistillSession.save_checkpoint`, with every plugin's state), and the
    session's ``resume_state`` (the newest checkpoint's) is continued from. With ``tm.eval_every`` and
    ``evaluate`` (distilled set -> accuracy), the initial set is evaluated before the first iteration,
    then the set every so many iterations and at the end, and the best one (the initial set included) is
    returned; one reporter line says which was kept. ``plan``: the run's memory plan (:class:`TrajectoryMatcher`).
    Each row also goes to the run's trackers (:func:`ddcore.trackers.log_iteration`) and the progress bar
    (loss, ``syn_lr``); on leaving, ``RUN/tm_log.png`` is drawn from the log (:mod:`ddcore.plots`).
    """
    matcher = TrajectoryMatcher(ctx, initial, experts, model_spec, config, plan)
    if session is not None and session.resume_state is not None:
        matcher.load_state_dict(session.resume_state)
    if session is not None:  # the live list: the pipeline writes it also when a later step fails
        from ddcore.tm.distiller import LOG_FILE

        session.add_artifact(LOG_FILE, matcher.log)
    every = config.checkpoint_every
    with ctx.reporter.progress("trajectory matching", total=config.iterations) as advance, tm_log_picture(ctx, matcher.log):
        advance(matcher.iteration)
        periodic = evaluate is not None and bool(config.eval_every)
        if periodic and matcher.iteration == 0 and matcher.best is None:  # the initial set is a candidate too
            matcher.consider(evaluate(matcher.current()))
        while matcher.iteration < config.iterations:
            row = matcher.step()
            done = matcher.iteration
            if evaluate is not None and config.eval_every and (done % config.eval_every == 0 or done == config.iterations):
                matcher.consider(evaluate(matcher.current()))
            log_iteration(ctx, row, matcher.initial_accuracy)  # after its evaluation: the row has its val_acc
            if session is not None and every and (done % every == 0 or done == config.iterations):
                session.save_checkpoint(done, matcher.state_dict())
            advance(1, loss=row["loss"], syn_lr=row["syn_lr"])
    if periodic and matcher.best is not None:
        best = matcher.best
        which = "the initial set (iteration -1)" if best["iteration"] < 0 else f"the set after iteration {best['iteration']}"
        initial = "" if matcher.initial_accuracy is None else f"; initial set {matcher.initial_accuracy:.2f}%"
        ctx.reporter.info(f"trajectory matching kept {which}: validation accuracy {best['accuracy']:.2f}%{initial}")
    return matcher.result(), matcher.log
