"""The Comp-DD evaluation protocol: the built-in evaluator's training loop with the protocol's settings.

What the benchmark prescribes (EDF paper and release; ../shared/spec/compdd.md, edf.md "Evaluation"):
a fresh ConvNet of the depth for the image size (ConvNetD5 at 128 px), width 128, instance norm, SGD
at the distilled set's learned lr (else ``eval.lr``), momentum 0.9, weight decay 5e-4, lr x0.1 at half
the epochs, batch 128, DSA on every batch, soft cross-entropy against the distilled labels when they
are soft (cross-entropy when they are hard), no knowledge distillation, 1000 epochs, accuracy on the
real validation images of the subset's classes.

The miniature (``compdd/mini-*``, 32 px grey digits on a CPU) keeps every choice but the size of the
network and the epochs: ConvNetD3 (the depth for 32 px), width 32 and 300 epochs, ddcore's ``digits``
evaluator preset. Nothing here trains a network itself: each repeat is the built-in evaluator's network
(:func:`ddcore.evaluation.evaluate_once`) with these settings. A process's repeats are trained by
:func:`ddcore.evaluation.train_repeats` under ``eval.batched`` (``auto``: together on a GPU, one by one on
the CPU; ``on``; ``off``), each with its own seeds, so the accuracies are the same to float rounding; the plan
is recorded as ``compdd/protocol_batched`` (this process's).
"""

from __future__ import annotations

import dataclasses

from ddcore import DistilledSet, ImageDataset
from ddcore.ensemble import EnsemblePlan, ensemble_accuracy, shard_ensemble
from ddcore.evaluation import summarise, train_repeats
from ddcore.presets import ResolvedEval, resolve_eval, resolve_model
from ddcore.training import TrainingDiverged

IMAGENET_EPOCHS, IMAGENET_WIDTH = 1000, 128
MINI_EPOCHS, MINI_WIDTH = 300, 32
BATCH_SIZE = 128


def is_compdd(dataset: ImageDataset) -> bool:
    return "compdd_subset" in dataset.extra


def protocol_settings(ctx, dataset: ImageDataset, runs: int, epochs: int = 0, width: int = 0) -> ResolvedEval:
    """The resolved protocol for ``dataset``; ``epochs``/``width`` 0 take the defaults above.

    Datasets that are not Comp-DD subsets keep the ``[eval]`` preset's epochs and width.
    """
    base = resolve_eval(ctx.config.eval, dataset)
    if dataset.extra.get("compdd_mini"):
        default_epochs, default_width = MINI_EPOCHS, MINI_WIDTH
    elif is_compdd(dataset):
        default_epochs, default_width = IMAGENET_EPOCHS, IMAGENET_WIDTH
    else:
        default_epochs, default_width = base.recipe.epochs, base.model.width
    recipe = dataclasses.replace(
        base.recipe,
        epochs=epochs or default_epochs,
        batch_size=BATCH_SIZE,
        optimizer="sgd",
        momentum=0.9,
        weight_decay=5e-4,
        schedule="step",
        augment="dsa",
    )
    # ddcore's one rule (depth from the image size), as the run's experts and matching use it
    model = resolve_model(dataset, "convnet", width or default_width, 0, "instancenorm")
    return ResolvedEval(
        runs=runs,
        model=model,
        recipe=recipe,
        full_recipe=recipe,
        labels="auto",
        use_learned_lr=True,
        baseline=(),
        test_batch_size=base.test_batch_size,
    )


def evaluate_protocol(ctx, distilled: DistilledSet, settings: ResolvedEval) -> dict[str, object]:
    """Train ``settings.runs`` networks (dealt round-robin to processes), gather, summarise.

    Returns ``acc_mean``, ``acc_std`` (population std; left out for one network), ``acc_runs`` (percent) and ``epochs``.

    Raises:
        TrainingDiverged: a network's training diverged; one line naming the lr it used (``eval.lr`` or the
            distilled set's learned lr) and the protocol's fixed weight decay.
    """
    mode = getattr(ctx.config.eval, "batched", "auto")

    def train_share(repeats: list[int], advance) -> tuple[list[float], EnsemblePlan]:
        try:
            run = train_repeats(ctx, settings, distilled, repeats, mode=mode, on_group=lambda group, _models: advance(len(group)))
        except TrainingDiverged as exc:
            raise _advised(exc, settings, distilled, repeats[exc.member or 0]) from None
        loader = ctx.dataset.loader("test", settings.test_batch_size)
        accuracies = ensemble_accuracy(run.models, loader, ctx.device, group_size=run.plan.group_size, batched=run.plan.batched)
        run.plan.groups = [[repeats[i] for i in group] for group in run.plan.groups]  # repeat numbers, not positions
        return [100.0 * a for a in accuracies], run.plan

    accuracies, plan = shard_ensemble(ctx, settings.runs, train_share, title=f"Comp-DD protocol ({settings.runs} networks)")
    ctx.record("compdd/protocol_batched", plan.to_dict() if plan is not None else None)
    return {**summarise(accuracies), "epochs": settings.recipe.epochs}


def _advised(exc: TrainingDiverged, settings: ResolvedEval, distilled: DistilledSet, repeat: int) -> TrainingDiverged:
    """``exc`` re-phrased for the protocol's network ``repeat``: the lr it used and the protocol's fixed settings."""
    if settings.use_learned_lr and distilled.lr is not None:
        cause = (f"it trained at the distilled set's learned lr {float(distilled.lr):g}, which the protocol "
                 "prescribes: distil again so that the learned lr stays smaller")  # fmt: skip
    else:
        cause = f"lower eval.lr (now {settings.recipe.lr:g})"
    return exc.advised(
        f"the Comp-DD protocol's network (repeat {repeat})",
        f"{cause}; the protocol fixes weight decay {settings.recipe.weight_decay:g} and momentum "
        f"{settings.recipe.momentum:g}",
    )
