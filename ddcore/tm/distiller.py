"""``distill = "tm"``: trajectory matching (MTT/DATM family) as a registered distiller.

The distiller owns everything the matcher needs around the loop of :mod:`ddcore.tm.loop`: the expert
trajectories (trained once, cached, :mod:`ddcore.tm.experts`), EDF's "predicted correctly"
initialisation (``tm.init = "correct"``, :mod:`ddcore.tm.correct_init`), the checks that the experts
can serve the start window, the memory plan (``tm.unroll``, :mod:`ddcore.tm.memory`: projected before
any work, refused when it cannot fit, recorded as ``tm_memory``), and the run's ``tm`` record and
``tm_log.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from ddcore.distillers import Distiller
from ddcore.tm.config import TMConfig

if TYPE_CHECKING:
    from ddcore.context import RunContext
    from ddcore.distilled import DistilledSet
    from ddcore.distillers import DistillSession

NAME = "tm"
#: The per-iteration log in the run directory (loss, experts, start epoch, syn_lr).
LOG_FILE = "tm_log.json"
#: The weighting hooks the matcher calls in every step.
CALLS = ("dd_pixel_weights", "dd_supervision_weights")


def configure(table: Mapping[str, Any], family: str, ipc: int) -> dict[str, Any]:
    """Fill the raw ``[tm]`` table from its preset (``tm.preset``, default ``auto``); explicit keys win."""
    from ddcore.tm.presets import resolve_tm_preset

    name, values = resolve_tm_preset(str(table.get("preset", "auto")), family, ipc)
    return {**values, **table, "preset": name}


def _preset_values(name: str) -> dict[str, Any]:
    from ddcore.tm.presets import TM_PRESETS

    return dict(TM_PRESETS[name])


def expert_recipe(ctx: "RunContext", epochs: int):
    """The :class:`~ddcore.tm.experts.ExpertRecipe` of this run's experts (``[experts]`` and the run's network)."""
    from ddcore.tm.experts import recipe_for_dataset

    config, spec, experts = ctx.config, ctx.model_spec, ctx.config.experts
    return recipe_for_dataset(
        ctx.dataset, experts.num, epochs,
        model=spec.name, width=spec.width, depth=spec.depth, norm=spec.norm, seed=config.seed,
        augment=experts.augment, lr=experts.lr, momentum=experts.momentum,
        weight_decay=experts.weight_decay, batch_size=experts.batch_size,
        optimizer=experts.optimizer, schedule=experts.schedule,
    )  # fmt: skip


def expert_epochs(config: Any, options: TMConfig) -> int:
    """Epochs per expert: ``experts.epochs``, or just what the ``[tm]`` window needs
    (``tm.max_start_epoch + tm.expert_epochs``)."""
    return config.experts.epochs or options.max_start_epoch + options.expert_epochs


def resolve_expert_recipe(ctx: "RunContext", options: TMConfig | None = None):
    """The :class:`~ddcore.tm.experts.ExpertRecipe` that ``dd run --distill tm`` trains or reuses for ``ctx``.

    The one place both ``dd run --distill tm`` and ``dd experts`` get their recipe from, so that experts
    trained ahead have the run's cache key: the run's network (``ctx.model_spec``, the resolved ``[eval]``
    model), its ``[experts]`` options and seed, and the epochs of :func:`expert_epochs` for the resolved
    ``[tm]`` options (``options``, default ``ctx.config.distill_options``: the ``[tm]`` table after its
    preset, which depends on the dataset's preset family and ``ipc``). Needs ``ctx.dataset`` built.
    """
    options = ctx.config.distill_options if options is None else options
    if not isinstance(options, TMConfig):
        from ddcore.errors import ConfigError

        raise ConfigError(
            f"expert trajectories follow the [tm] options of distill = 'tm', but the run has distill = {ctx.config.distill!r}"
        )
    return expert_recipe(ctx, expert_epochs(ctx.config, options))


class TrajectoryMatchingDistiller(Distiller):
    """The built-in trajectory matcher; ``options`` is the resolved ``[tm]`` table (:class:`TMConfig`)."""

    options: TMConfig

    def __init__(self, ctx: "RunContext", options: TMConfig) -> None:
        super().__init__(ctx, options)
        self.replaces_selection = "tm.init = 'correct'" if options.init == "correct" else False
        self.options.check_against(self.expert_epochs())
        self._experts = None
        self.memory_plan = None
        self._preset_lines: list[str] = []

    def check(self) -> None:
        """Project one matching step's memory in both unrolls, pick ``tm.unroll`` and record it as ``tm_memory``.

        Raises :class:`~ddcore.ConfigError` (one line naming the settings to lower) when the requested
        unroll, or for ``auto`` either, cannot fit the device (:func:`ddcore.tm.memory.plan_unroll`).
        """
        from ddcore.tm.memory import plan_for_run

        self.check_preset(report=False)  # said when the work starts (into run.log too): an error stays one line
        self.memory_plan = plan_for_run(self.ctx, self.options, self.expert_epochs())
        self.ctx.record("tm_memory", self.memory_plan.to_record())

    def announce(self) -> None:
        """Say (once) the lines :meth:`check_preset` held back: the preset, why, its projection, any warning."""
        for line in self._preset_lines:
            self.ctx.reporter.info(line)
        self._preset_lines = []

    def check_preset(self, report: bool = True):
        """Say which ``[tm]`` preset the run took and why, project the matching's cost on this device and data,
        and refuse a GPU-sized preset on a CPU (warn otherwise) when that is far beyond what the data
        warrants (:mod:`ddcore.tm.presets`). Records ``tm_preset``; returns the projection. ``report=False``
        keeps the lines for :meth:`announce`.

        Raises :class:`~ddcore.ConfigError` (one line naming ``tm.preset`` / ``tm.iterations``) before any work.
        """
        from ddcore.errors import ConfigError
        from ddcore.tm.presets import GPU_SIZED, human_seconds, nearest_preset_ipc, project_matching

        ctx, options = self.ctx, self.options
        dataset = ctx.dataset
        family = dataset.extra.get("presets") or dataset.name
        projection = project_matching(
            options, family, ctx.config.ipc, ctx.model_spec, dataset, ctx.device.type,
            ctx.config.experts.num, self.expert_epochs(), ctx.config.ipc * dataset.num_classes,
        )  # fmt: skip
        ctx.record("tm_preset", projection.to_record())
        cost = (f"{options.iterations} iterations x {options.syn_steps} inner steps x {projection.images_per_step} images, "
                f"roughly {human_seconds(projection.matching_seconds)} on {projection.device} for "
                f"{projection.train_images} training images (experts ~{human_seconds(projection.experts_seconds)})")  # fmt: skip
        self._preset_lines = [f"tm preset {projection.reason}; {cost}"]
        if not projection.far_beyond:
            if report:
                self.announce()
            return projection
        if options.preset in GPU_SIZED and projection.device == "cpu":
            smaller = f"cpu-ipc{nearest_preset_ipc(ctx.config.ipc)}"
            alt = project_matching(
                type(options)(**{**options.to_dict(), **_preset_values(smaller), "preset": smaller}),
                family, ctx.config.ipc, ctx.model_spec, dataset, ctx.device.type, ctx.config.experts.num,
                self.expert_epochs(), ctx.config.ipc * dataset.num_classes,
            )  # fmt: skip
            raise ConfigError(
                f"tm.preset {options.preset!r} is sized for GPUs: {cost}, {projection.ratio:.0f}x the experts' work; "
                f"pass --set tm.preset={smaller} (~{human_seconds(alt.matching_seconds)}) or set tm.iterations"
            )
        self._preset_lines.append(
            f"warning: the matching projects {projection.ratio:.0f}x the experts' work (~{human_seconds(projection.matching_seconds)}): "
            "far beyond what this data warrants; lower tm.iterations or tm.syn_steps, or name a smaller tm.preset"
        )
        if report:
            self.announce()
        return projection

    def label_kind(self, initial: str | None) -> str | None:
        """Soft (the experts' logits) with ``tm.init = 'correct'``; else the initial set's kind, kept by matching."""
        return "soft" if self.options.init == "correct" else initial

    def expert_epochs(self) -> int:
        """Epochs per expert: ``experts.epochs``, or just what the ``[tm]`` window needs."""
        return expert_epochs(self.ctx.config, self.options)

    def expert_buffer(self, session: "DistillSession"):
        """The run's expert trajectories, trained (sharded, cached) on first use; also ``ctx.experts``."""
        self.announce()
        if self._experts is None:
            from ddcore.tm.experts import ensure_experts

            ctx = self.ctx
            with session.stage("experts"):
                self._experts = ensure_experts(
                    ctx, ctx.dataset, resolve_expert_recipe(ctx, self.options), data_root=ctx.config.data_root or None
                )
            ctx.experts = self._experts
        return self._experts

    def initial_set(self, session: "DistillSession") -> "DistilledSet | None":
        if not self.replaces_selection:
            return None
        from ddcore.tm.correct_init import correct_initialization

        ctx = self.ctx
        experts = self.expert_buffer(session)
        with session.stage("initialize"):
            return correct_initialization(ctx, ctx.dataset, experts, ctx.model_spec, ctx.config.ipc, self.options.lr_teacher)

    def distill(self, initial: "DistilledSet", session: "DistillSession") -> "DistilledSet":
        from ddcore.tm.loop import distill_tm

        ctx, options = self.ctx, self.options
        buffer = self.expert_buffer(session)
        if session.resume_state is not None:
            ctx.reporter.info(f"resuming trajectory matching at iteration {session.resume_state['iteration']}")

        def evaluate(distilled: "DistilledSet") -> float:
            return session.evaluate(distilled, options.eval_runs)

        with session.stage("distill"):
            distilled, log = distill_tm(ctx, initial, buffer, ctx.model_spec, options, session, evaluate, self.memory_plan)
        if "best_accuracy" in distilled.meta:  # periodic evaluation measures the validation split (Pipeline.periodic_evaluation)
            meta = dict(distilled.meta)
            meta["best_val_accuracy"] = meta.pop("best_accuracy")
            meta["initial_val_accuracy"] = meta.pop("initial_accuracy", None)
            distilled.meta = meta
        last = log[-10:]
        ctx.record("tm", {
            "model": ctx.model_spec.__dict__, "iterations": len(log), "skipped": sum(row["skipped"] for row in log),
            "first_loss": log[0]["loss"], "last_loss_mean10": sum(row["loss"] for row in last) / len(last),
            "syn_lr": distilled.lr, "best_iteration": distilled.meta.get("best_iteration"),
            "best_val_accuracy": distilled.meta.get("best_val_accuracy"),
            "initial_val_accuracy": distilled.meta.get("initial_val_accuracy"),
        })  # fmt: skip
        session.add_artifact(LOG_FILE, log)
        return distilled

