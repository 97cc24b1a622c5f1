"""``dd_evaluate`` for this plugin: the KD evaluator (``[plugin.diffsel.kd] runs > 0``).

Metrics (test accuracy in percent): ``kd_acc_mean``, ``kd_acc_std``, ``kd_acc_runs``; the run
records the resolved recipe, the student network and the teacher's test accuracy.
"""

from __future__ import annotations

from dataclasses import asdict

import torch

from ddcore.evaluation import shard_repeats, summarise
from ddcore.models import ModelSpec, build_model
from ddcore.training import accuracy_on, fork_devices
from ddcore.vocab import default_augment
from ddcore_diffsel.config import DiffselConfig
from ddcore_diffsel.kd import KDRecipe, train_student

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
    teacher = _teacher(ctx, dataset, config)
    channels, size, _ = dataset.image_shape

    def one_student(run: int) -> float:
        with torch.random.fork_rng(devices=fork_devices(ctx.device)):
            torch.manual_seed(ctx.derive_seed("diffsel-kd", run, "init"))
            student = build_model(spec, dataset.num_classes, channels, size)
        generator = ctx.derive_generator("diffsel-kd", run)
        train_student(student, teacher, distilled.images.detach(), recipe, generator, ctx.device)
        return 100.0 * accuracy_on(student, dataset.loader("test", 500), ctx.device)

    accuracies = shard_repeats(ctx, config.kd.runs, one_student, title=f"KD evaluation ({config.kd.runs} students)")
    teacher_acc = 100.0 * accuracy_on(teacher, dataset.loader("test", 500), ctx.device)
    ctx.record("diffsel/kd", {"recipe": asdict(recipe), "student": asdict(spec), "teacher_acc": teacher_acc})
    return {**summarise(accuracies, prefix="kd_acc"), "kd_teacher_acc": teacher_acc}
