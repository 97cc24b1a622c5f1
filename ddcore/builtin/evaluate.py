"""Built-in plugin ``eval``: train ``eval.runs`` fresh networks on the distilled set, test on real data.

Each repeat ``r`` gets its own seed (``derive_seed(seed, "eval", kind, r)``), so a result does not
depend on how many processes ran it. Repeats are dealt round-robin to the Accelerate processes and
gathered. Optional baselines with the same evaluator: ``random`` (a fresh random real subset with the
distilled set's per-class counts, per repeat) and ``full`` (the whole training split, ``full_epochs``).

Metrics (accuracy in percent; std is the population std over repeats):
``acc_mean``, ``acc_std``, ``acc_runs``, ``acc_runs_process`` (which process ran each repeat), and
``random_real_acc_*`` / ``full_acc_*`` for the baselines.
"""

from __future__ import annotations

import statistics
from collections import Counter

import torch
from accelerate.utils import gather_object

from ddcore.builtin.selection import random_per_class
from ddcore.distilled import DistilledSet
from ddcore.errors import PluginError
from ddcore.hookspecs import hookimpl
from ddcore.models import build_model
from ddcore.presets import ResolvedEval, resolve_eval
from ddcore.training import accuracy_on, fork_devices, tensor_batches, train_network

KIND_PREFIX = {"distilled": "acc", "random": "random_real_acc", "full": "full_acc"}


def _training_labels(distilled: DistilledSet, mode: str) -> torch.Tensor:
    if mode == "hard" or (mode == "auto" and not distilled.soft):
        return distilled.hard_labels()
    if not distilled.soft:
        raise PluginError("eval.labels = 'soft' but the distilled set has hard labels; use 'auto' or 'hard'", plugin="eval")
    return distilled.labels


def evaluate_once(ctx, settings: ResolvedEval, distilled: DistilledSet, kind: str, repeat: int) -> float:
    """Train one fresh network for job ``(kind, repeat)`` and return its test accuracy in percent."""
    dataset = ctx.dataset
    channels, size, _ = dataset.image_shape
    shuffle = ctx.derive_generator("eval", kind, repeat, "shuffle")
    recipe = settings.recipe
    if kind == "distilled":
        labels = _training_labels(distilled, settings.labels)
        if settings.use_learned_lr and distilled.lr is not None:
            recipe = type(recipe)(**{**recipe.to_dict(), "lr": float(distilled.lr)})
        batches = tensor_batches(distilled.images.detach(), labels.detach(), recipe.batch_size, shuffle)
    elif kind == "random":
        counts = Counter(distilled.hard_labels().tolist())
        by_class = dataset.indices_by_class("train")
        picks = ctx.derive_generator("eval", kind, repeat, "subset")
        chosen = [i for c, idx in enumerate(by_class) for i in random_per_class([idx], counts.get(c, 0), picks)]
        images, labels = dataset.load("train", chosen)
        batches = tensor_batches(images, labels, recipe.batch_size, shuffle)
    elif kind == "full":
        recipe = settings.full_recipe
        loader = dataset.loader("train", recipe.batch_size, shuffle=True, generator=shuffle)
        batches = lambda _epoch: loader  # noqa: E731
    else:  # pragma: no cover - kinds come from the config validator
        raise ValueError(kind)
    with torch.random.fork_rng(devices=fork_devices(ctx.device)):
        torch.manual_seed(ctx.derive_seed("eval", kind, repeat, "init"))
        model = build_model(settings.model, dataset.num_classes, channels, size)
        train_network(model, batches, recipe, ctx.device, size)
    test_loader = dataset.loader("test", settings.test_batch_size)
    return 100.0 * accuracy_on(model, test_loader, ctx.device)


@hookimpl
def dd_evaluate(ctx, distilled):
    settings = resolve_eval(ctx.config.eval, ctx.dataset)
    if settings.runs == 0:
        return None
    ctx.record("eval", settings.to_dict())
    jobs = [(kind, r) for kind in ("distilled", *settings.baseline) for r in range(settings.runs)]
    mine = jobs[ctx.process_index :: ctx.num_processes]
    results = []
    with ctx.reporter.progress(f"evaluating ({len(jobs)} networks)", total=len(mine)) as advance:
        for kind, repeat in mine:
            accuracy = evaluate_once(ctx, settings, distilled, kind, repeat)
            results.append((kind, repeat, accuracy, ctx.process_index))
            advance(1)
    gathered = sorted(gather_object(results) if ctx.num_processes > 1 else results)
    metrics: dict[str, object] = {}
    for kind, prefix in KIND_PREFIX.items():
        rows = [row for row in gathered if row[0] == kind]
        if not rows:
            continue
        accuracies = [row[2] for row in rows]
        metrics[f"{prefix}_mean"] = statistics.fmean(accuracies)
        metrics[f"{prefix}_std"] = statistics.pstdev(accuracies)
        metrics[f"{prefix}_runs"] = accuracies
        metrics[f"{prefix}_runs_process"] = [row[3] for row in rows]
    return metrics
