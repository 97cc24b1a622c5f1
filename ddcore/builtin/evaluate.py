"""Built-in plugin ``eval``: train ``eval.runs`` fresh networks on the distilled set, test on real data.

Each repeat ``r`` gets its own seed (``derive_seed(seed, "eval", kind, r)``), so a result does not
depend on how many processes ran it. Repeats are dealt round-robin to the Accelerate processes and
gathered. The rows, all with the same evaluator (:data:`ROW_MEANING` says what each one is):

- ``distilled`` (``acc_*``): the run's result.
- ``initial`` (``initial_acc_*``), automatic whenever a distiller ran (``distill`` other than ``none``
  and ``ctx.initial`` set): the images the distiller started from (the run's own selection), trained
  with **the same per-repeat seeds** as the distilled set (network initialisation and batch order), so
  repeat ``r`` of both rows differs only in the images (and their labels and learned lr). This is the
  headline comparison: ``gain_vs_initial_*`` is the paired difference distilled - initial per repeat,
  its mean and a 95% Student-t interval over the repeats (:func:`ddcore.evaluation.paired_difference`).
- ``random`` (``random_real_acc_*``, ``--baseline random``): a *fresh* random real subset with the
  distilled set's per-class counts, drawn again for every repeat (not the run's own selection).
- ``full`` (``full_acc_*``, ``--baseline full``): the whole training split, ``full_epochs``.

The networks of one row are trained together as one vmapped batch (:mod:`ddcore.ensemble`, ``eval.batched``:
``auto`` on a GPU where the network allows it, e.g. not BatchNorm, one by one on the CPU; ``on``; ``off``), with
each repeat's own seeds, so the numbers are those of training them one by one (to float rounding); the plan
is recorded as ``eval_batched``.

A network whose training diverges (NaN or infinite loss or weights: an lr or weight decay too large) ends
the evaluation with one line naming the options to lower (:func:`divergence_advice`), never a result.

Accuracy is in percent on the real test split, measured once at the end; std is the population std over
repeats, left out for a single repeat (its spread is unknown, not 0: :func:`ddcore.evaluation.spread`).
When the run carved a validation split (:mod:`ddcore.data.split`), every row also reports
``*val_acc*`` of the same networks on it (``val_acc_*``, ``initial_val_acc_*``, ...): what a script may
choose on. ``acc_runs_process`` tells which process ran each repeat.
"""

from __future__ import annotations

import statistics
from collections import Counter

import torch
from accelerate.utils import gather_object

from ddcore.builtin.selection import random_per_class
from ddcore.distilled import DistilledSet
from ddcore.ensemble import EnsemblePlan, Member, ensemble_accuracy, loop_reason, train_ensemble, unbatchable_reason
from ddcore.errors import ConfigError, PluginError
from ddcore.evaluation import paired_difference, spread
from ddcore.hookspecs import hookimpl
from ddcore.models import build_model
from ddcore.presets import ResolvedEval, resolve_eval
from ddcore.training import TrainingDiverged, TrainRecipe, accuracy_on, fork_devices, tensor_batches, train_network

KIND_PREFIX = {"distilled": "acc", "initial": "initial_acc", "random": "random_real_acc", "full": "full_acc"}
#: What each row of the metrics is, in words (printed under the metrics table by ``dd run``).
ROW_MEANING = {
    "acc": "the distilled set",
    "initial_acc": "the images the distiller started from (this run's own selection), trained with the same per-network "
    "seeds as the distilled set",
    "random_real_acc": "a fresh random real subset of the same per-class size, drawn again for every network "
    "(not this run's selection)",
    "full_acc": "the whole training split",
}
#: The prefix of the paired headline metrics (distilled - initial, per repeat).
GAIN_PREFIX = "gain_vs_initial"


def _training_labels(distilled: DistilledSet, mode: str) -> torch.Tensor:
    if mode == "hard" or (mode == "auto" and not distilled.soft):
        return distilled.hard_labels()
    if not distilled.soft:
        raise PluginError("eval.labels = 'soft' but the distilled set has hard labels; use 'auto' or 'hard'", plugin="eval")
    return distilled.labels


def evaluate_once(ctx, settings: ResolvedEval, distilled: DistilledSet, kind: str, repeat: int, split: str = "test") -> float:
    """Train one fresh network for job ``(kind, repeat)`` and return its accuracy in percent on ``split``
    (``"test"``, or ``"val"`` when the run carved a validation split)."""
    return evaluate_splits(ctx, settings, distilled, kind, repeat, (split,))[split]


def train_once(ctx, settings: ResolvedEval, distilled: DistilledSet | None, kind: str, repeat: int) -> torch.nn.Module:
    """Train the fresh network of job ``(kind, repeat)`` (module docstring) and return it.

    ``kind``: ``"distilled"`` or ``"initial"`` (train on ``distilled``, the set given: both use the seeds of
    ``"distilled"``, so they are paired), ``"random"`` or ``"full"``.

    Raises:
        TrainingDiverged: the network's loss or weights stopped being finite; the message names the job and
            the options to lower (:func:`divergence_advice`).
    """
    channels, size, _ = ctx.dataset.image_shape
    member = job_member(ctx, settings, distilled, kind, repeat)
    with torch.random.fork_rng(devices=fork_devices(ctx.device)):
        torch.manual_seed(member.seed)
        model = build_model(settings.model, ctx.dataset.num_classes, channels, size)
        try:
            train_network(model, member.batches, member.recipe, ctx.device, size)
        except TrainingDiverged as exc:
            raise diverged(ctx, settings, distilled, kind, repeat, member.recipe, exc) from None
    return model


def learned_lr(settings: ResolvedEval, distilled: DistilledSet | None, kind: str) -> float | None:
    """The distilled set's learned lr when job ``kind`` trains with it (``eval.use_learned_lr``), else ``None``."""
    if kind in ("distilled", "initial") and settings.use_learned_lr and distilled is not None and distilled.lr is not None:
        return float(distilled.lr)
    return None


def divergence_advice(ctx, settings: ResolvedEval, distilled: DistilledSet | None, kind: str, recipe: TrainRecipe) -> str:
    """What to lower when job ``kind``'s network (trained with ``recipe``) diverged, in words naming the options.

    The lr it used is named: ``eval.lr (now X)``, or the distilled set's learned lr (``eval.use_learned_lr``);
    the weight decay as ``eval.weight_decay`` when it is that option's value (a plugin's protocol may fix it).
    """
    config = getattr(ctx.config, "eval", None)
    decay = f"{recipe.weight_decay:g}"
    if config is not None and recipe.weight_decay == config.weight_decay:
        decay = f"eval.weight_decay (now {decay})"
    else:
        decay = f"the weight decay ({decay})"
    learned = learned_lr(settings, distilled, kind)
    if learned is not None:
        return (
            f"it trained at the distilled set's learned lr {learned:g} (eval.use_learned_lr = true): set "
            f"eval.use_learned_lr=false to train at eval.lr (now {settings.recipe.lr:g}), or lower {decay}"
        )
    return f"lower eval.lr (now {recipe.lr:g}) or {decay}"


def diverged(ctx, settings: ResolvedEval, distilled: DistilledSet | None, kind: str, repeat: int,
             recipe: TrainRecipe, exc: TrainingDiverged) -> TrainingDiverged:  # fmt: skip
    """``exc`` re-phrased for job ``(kind, repeat)``: the row and repeat, and :func:`divergence_advice`."""
    subject = f"the evaluation network of row {KIND_PREFIX.get(kind, kind)} (repeat {repeat})"
    return exc.advised(subject, divergence_advice(ctx, settings, distilled, kind, recipe))


def job_member(ctx, settings: ResolvedEval, distilled: DistilledSet | None, kind: str, repeat: int) -> Member:
    """Job ``(kind, repeat)``'s network as a :class:`ddcore.ensemble.Member`: its init seed
    (``derive_seed(seed, "eval", kind, repeat, "init")``), its batches (own shuffle generator; for
    ``"random"`` its own subset) and its recipe (the learned lr of ``distilled`` when used)."""
    dataset = ctx.dataset
    seed_kind = "distilled" if kind == "initial" else kind  # the paired row shares the distilled row's seeds
    shuffle = ctx.derive_generator("eval", seed_kind, repeat, "shuffle")
    recipe = settings.recipe
    if kind in ("distilled", "initial"):
        labels = _training_labels(distilled, settings.labels)
        lr = learned_lr(settings, distilled, kind)
        if lr is not None:
            recipe = type(recipe)(**{**recipe.to_dict(), "lr": lr})
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
    return Member(ctx.derive_seed("eval", seed_kind, repeat, "init"), batches, recipe)


def train_jobs(ctx, settings: ResolvedEval, sets, jobs, splits: tuple[str, ...], mode: str, advance) -> list[tuple]:
    """Train and test this process's ``jobs`` (``(kind, repeat)`` pairs): ``[(kind, repeat, {split: accuracy %})]``.

    The networks of one kind are trained together (:func:`ddcore.ensemble.train_ensemble`) when ``mode`` =
    ``eval.batched`` says so (:func:`ddcore.ensemble.loop_reason`; the ``"full"`` row streams the training
    split and is trained one by one), else one by one with :func:`train_once`; each network's seeds are its
    job's either way. Records ``eval_batched`` (each kind's :class:`~ddcore.ensemble.EnsemblePlan`).
    """
    channels, size, _ = ctx.dataset.image_shape
    build = lambda: build_model(settings.model, ctx.dataset.num_classes, channels, size)  # noqa: E731
    rows, plans = [], {}
    for kind in dict.fromkeys(kind for kind, _ in jobs):
        repeats = [repeat for job_kind, repeat in jobs if job_kind == kind]
        with torch.random.fork_rng(devices=fork_devices(ctx.device)):
            reason = loop_reason(build(), "off" if kind == "full" else mode, ctx.device, len(repeats))
        if reason is not None:
            models = [train_once(ctx, settings, sets.get(kind), kind, repeat) for repeat in repeats]
            plan = EnsemblePlan.one_by_one(reason, len(repeats), ctx.device)
        else:
            members = [job_member(ctx, settings, sets.get(kind), kind, repeat) for repeat in repeats]
            try:
                run = train_ensemble(build, members, ctx.device, ctx.dataset.image_shape, mode=mode)
            except TrainingDiverged as exc:
                k = exc.member or 0
                raise diverged(ctx, settings, sets.get(kind), kind, repeats[k], members[k].recipe, exc) from None
            models, plan = run.models, run.plan
        plans[kind] = plan.to_dict()
        accuracy = {
            split: ensemble_accuracy(models, ctx.dataset.loader(split, settings.test_batch_size), ctx.device,
                                     group_size=plan.group_size, batched=plan.batched)  # fmt: skip
            for split in splits
        }
        rows += [(kind, repeat, {split: 100.0 * accuracy[split][i] for split in splits}) for i, repeat in enumerate(repeats)]
        advance(len(repeats))
    ctx.record("eval_batched", plans)
    return rows


def evaluate_splits(ctx, settings: ResolvedEval, distilled: DistilledSet | None, kind: str, repeat: int,
                    splits: tuple[str, ...] = ("test",)) -> dict[str, float]:  # fmt: skip
    """Train job ``(kind, repeat)``'s network once (:func:`train_once`); its accuracy in percent on each split."""
    model = train_once(ctx, settings, distilled, kind, repeat)
    return {
        split: 100.0 * accuracy_on(model, ctx.dataset.loader(split, settings.test_batch_size), ctx.device)
        for split in splits
    }


def paired_initial(ctx) -> DistilledSet | None:
    """The set the distiller started from, when a distiller ran (``ctx.initial``), else ``None``."""
    initial = getattr(ctx, "initial", None)
    if initial is None or ctx.config.distill == "none":
        return None
    return initial


@hookimpl
def dd_evaluate(ctx, distilled):
    settings = resolve_eval(ctx.config.eval, ctx.dataset)
    if settings.runs == 0:
        return None
    ctx.record("eval", settings.to_dict())
    initial = paired_initial(ctx)
    splits = ctx.dataset.scored_splits
    kinds = ("distilled", *(("initial",) if initial is not None else ()), *settings.baseline)
    sets = {kind: initial if kind == "initial" else distilled for kind in kinds}
    jobs = [(kind, r) for kind in kinds for r in range(settings.runs)]
    mine = jobs[ctx.process_index :: ctx.num_processes]
    mode = getattr(ctx.config.eval, "batched", "auto")
    if mode == "on":
        channels, size, _ = ctx.dataset.image_shape
        with torch.random.fork_rng(devices=fork_devices(ctx.device)):
            reason = unbatchable_reason(build_model(settings.model, ctx.dataset.num_classes, channels, size))
        if reason is not None:
            raise ConfigError(f"config key 'eval.batched' is 'on' but {reason}; set eval.batched to 'auto' or 'off'")
    with ctx.reporter.progress(f"evaluating ({len(jobs)} networks)", total=len(mine)) as advance:
        rows = train_jobs(ctx, settings, sets, mine, splits, mode, advance)
    results = [(kind, repeat, accuracy, ctx.process_index) for kind, repeat, accuracy in rows]
    gathered = sorted(gather_object(results) if ctx.num_processes > 1 else results, key=lambda row: (row[0], row[1]))
    metrics: dict[str, object] = {}
    for kind, prefix in KIND_PREFIX.items():
        rows = [row for row in gathered if row[0] == kind]
        if not rows:
            continue
        accuracies = [row[2]["test"] for row in rows]
        metrics[f"{prefix}_mean"] = statistics.fmean(accuracies)
        if len(accuracies) > 1:  # one network: no std (not 0)
            metrics[f"{prefix}_std"] = spread(accuracies)
        metrics[f"{prefix}_runs"] = accuracies
        metrics[f"{prefix}_runs_process"] = [row[3] for row in rows]
        if "val" in splits:
            val_prefix = prefix.replace("acc", "val_acc")
            val = [row[2]["val"] for row in rows]
            metrics[f"{val_prefix}_mean"] = statistics.fmean(val)
            if len(val) > 1:
                metrics[f"{val_prefix}_std"] = spread(val)
            metrics[f"{val_prefix}_runs"] = val
    if initial is not None:
        gain = paired_difference(metrics["acc_runs"], metrics["initial_acc_runs"])  # type: ignore[arg-type]
        metrics.update({f"{GAIN_PREFIX}_{key}": value for key, value in gain.items()})
    ctx.record("eval_rows", {prefix: ROW_MEANING[prefix] for prefix in KIND_PREFIX.values() if f"{prefix}_mean" in metrics})
    return metrics


def describe_rows(metrics, namespace: str = "eval/", *, distiller: str | None = None) -> list[str]:
    """Plain lines saying what each built-in row of ``metrics`` is, and the paired headline when present.

    ``metrics``: a run's metrics (keys ``"<namespace><prefix>_mean"``). ``distiller``: the run's ``distill``
    (``"none"``: no distiller ran, so the ``acc`` row is the selected real images). Returns ``[]`` when no
    built-in row is there.
    """
    meaning = dict(ROW_MEANING)
    if distiller == "none":
        meaning["acc"] = "the selected real images (no distiller ran: distill = none)"
    lines = [f"{prefix}: {text}" for prefix, text in meaning.items() if f"{namespace}{prefix}_mean" in metrics]
    key = f"{namespace}{GAIN_PREFIX}"
    if f"{key}_mean" in metrics:
        n = len(metrics.get(f"{key}_runs") or [])
        low, high = metrics.get(f"{key}_ci95_low"), metrics.get(f"{key}_ci95_high")
        interval = f", 95% t-interval [{low:+.2f}, {high:+.2f}]" if low is not None and high is not None else " (one network: no interval)"
        lines.append(
            f"headline (paired): distilled - initial = {metrics[f'{key}_mean']:+.2f} points, mean over {n} "
            f"network{'' if n == 1 else 's'} with the same seeds{interval}"
        )
    return lines
