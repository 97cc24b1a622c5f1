"""``dd_evaluate`` for this plugin: the KD evaluator (``[plugin.diffsel.kd] runs > 0``).

Metrics (test accuracy in percent): ``kd_acc_mean``, ``kd_acc_std``, ``kd_acc_runs``; when the run carved a
validation split from the training split (:mod:`ddcore.data.split`), the same students on it:
``kd_val_acc_mean``, ``kd_val_acc_std``, ``kd_val_acc_runs`` (what a script may choose settings on; the
test figures are never for choosing). The run
records the resolved recipe, the student network, the teacher's test accuracy and ``batched``: how this
process trained its students (:class:`ddcore.ensemble.EnsemblePlan`).

``eval.batched`` decides, as for the built-in evaluator (:func:`ddcore.ensemble.loop_reason`): ``auto``
trains a process's students together on a GPU (:func:`ddcore_diffsel.kd.train_students`, groups sized by
the memory guard: each student's training, plus the teacher's activations on its batch), one by one on the
CPU or for a student that cannot be batched (BatchNorm, e.g. ``kd.model = "resnet18"``; the reason is
recorded); ``on`` batches on any device and refuses such a student; ``off``: one by one. Each student keeps
its seeds either way, so the accuracies are the same to float rounding.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from ddcore.ensemble import (
    EnsemblePlan,
    activation_bytes,
    ensemble_accuracy,
    loop_reason,
    plan_groups,
    shard_ensemble,
    unbatchable_reason,
)
from ddcore.errors import ConfigError
from ddcore.evaluation import summarise
from ddcore.models import ModelSpec, build_model
from ddcore.training import TrainRecipe, accuracy_on, fork_devices
from ddcore.vocab import default_augment
from ddcore_diffsel.config import DiffselConfig
from ddcore_diffsel.kd import KDRecipe, train_student, train_students

#: Epochs when ``kd.epochs = 0``: the spec's 300.
DEFAULT_EPOCHS = 300


def kd_recipe(config: DiffselConfig, dataset) -> KDRecipe:
    kd = config.kd
    flip = kd.flip == "yes" or (kd.flip == "auto" and default_augment(dataset) != "crop")
    return KDRecipe(epochs=kd.epochs or DEFAULT_EPOCHS, batch_size=kd.batch_size, lr=kd.lr, weight_decay=kd.weight_decay,
                    temperature=kd.temperature, cutmix=kd.cutmix, min_scale=kd.min_scale, flip=flip)  # fmt: skip


def student_spec(ctx, config: DiffselConfig) -> ModelSpec:
    if ctx.model_spec is not None:
        spec = ctx.model_spec
    else:  # ddcore's one rule for the run's [eval] network on this data
        from ddcore.presets import resolve_eval

        spec = resolve_eval(ctx.config.eval, ctx.dataset).model
    if not config.kd.model:
        return spec
    from ddcore.presets import resolve_model

    return resolve_model(ctx.dataset, config.kd.model, spec.width, spec.depth, spec.norm)


def kd_evaluate(ctx, distilled, config: DiffselConfig) -> dict | None:
    """Train ``kd.runs`` students by knowledge distillation on ``distilled.images``; test on real data."""
    if config.kd.runs == 0:
        return None
    from ddcore_diffsel.selection import _teacher

    dataset = ctx.dataset
    recipe = kd_recipe(config, dataset)
    spec = student_spec(ctx, config)
    channels, size, _ = dataset.image_shape

    def student(run: int) -> torch.nn.Module:
        with torch.random.fork_rng(devices=fork_devices(ctx.device)):
            torch.manual_seed(ctx.derive_seed("diffsel-kd", run, "init"))
            return build_model(spec, dataset.num_classes, channels, size)

    mode = getattr(ctx.config.eval, "batched", "auto")
    probe = student(0)
    if mode == "on" and unbatchable_reason(probe) is not None:
        source = f"plugin.diffsel.kd.model = {config.kd.model!r}" if config.kd.model else "the [eval] network"
        raise ConfigError(f"config key 'eval.batched' is 'on' but the KD student ({source}) cannot be batched: "
                          f"{unbatchable_reason(probe)}; set eval.batched to 'auto' or 'off'")  # fmt: skip
    teacher = _teacher(ctx, dataset, config)  # after the checks: it may be trained
    splits = dataset.scored_splits

    def train_share(runs: list[int], advance) -> tuple[list[list[float]], EnsemblePlan]:
        """Each of ``runs``' students trained; returns ``[[test, val?] per student]`` in percent."""
        reason = loop_reason(probe, mode, ctx.device, len(runs))
        if reason is not None:
            accuracies = []
            for run in runs:
                model = train_student(student(run), teacher, distilled.images.detach(), recipe,
                                      ctx.derive_generator("diffsel-kd", run), ctx.device)  # fmt: skip
                accuracies.append([100.0 * accuracy_on(model, dataset.loader(split, 500), ctx.device) for split in splits])
                advance(1)
            plan = EnsemblePlan.one_by_one(reason, len(runs), ctx.device)
        else:
            memory = TrainRecipe(recipe.epochs, recipe.batch_size, "adamw", recipe.lr, 0.0, recipe.weight_decay, "cosine")
            plan = plan_groups(probe, memory, dataset.image_shape, len(runs), ctx.device,
                               reason="batched (torch.func.vmap), one teacher forward per step for the group",
                               extra_bytes=activation_bytes(teacher, dataset.image_shape) * recipe.batch_size)  # fmt: skip
            accuracies = []
            for group in plan.groups:
                chosen = [runs[i] for i in group]
                models = train_students([student(r) for r in chosen], teacher, distilled.images.detach(), recipe,
                                        [ctx.derive_generator("diffsel-kd", r) for r in chosen], ctx.device)  # fmt: skip
                per_split = [ensemble_accuracy(models, dataset.loader(split, 500), ctx.device) for split in splits]
                accuracies += [[100.0 * figures[i] for figures in per_split] for i in range(len(chosen))]
                advance(len(chosen))
        plan.groups = [[runs[i] for i in group] for group in plan.groups]  # run numbers, not positions
        return accuracies, plan

    accuracies, plan = shard_ensemble(ctx, config.kd.runs, train_share, title=f"KD evaluation ({config.kd.runs} students)")
    teacher_acc = 100.0 * accuracy_on(teacher, dataset.loader("test", 500), ctx.device)
    ctx.record("diffsel/kd", {"recipe": asdict(recipe), "student": asdict(spec), "teacher_acc": teacher_acc,
                              "batched": plan.to_dict() if plan is not None else None})  # fmt: skip
    metrics = {**summarise([a[0] for a in accuracies], prefix="kd_acc"), "kd_teacher_acc": teacher_acc}
    if "val" in splits:
        metrics.update(summarise([a[1] for a in accuracies], prefix="kd_val_acc"))
    return metrics
