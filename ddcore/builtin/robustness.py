"""Built-in plugin ``robustness``: DD-Ranking's label-robust score (LRS) and augmentation-robust score (ARS).

Off unless ``[robustness] scores`` names ``"lrs"`` and/or ``"ars"``. It trains, for every repeat ``r`` of
``robustness.runs`` (0: ``eval.runs``), one fresh network per *row* below with the built-in evaluator's
network, recipe and **seeds** (:func:`ddcore.builtin.evaluate.job_member`: ``derive_seed(seed, "eval", kind,
r, ...)``, never the clock), and measures each once on the real test split. The rows (accuracies in percent,
as everywhere in ddcore; the scores take them as fractions):

- LRS (arXiv 2505.13300): ``syn`` the distilled set with its own labels and the evaluator's augmentation
  (``Acc(syn-any)``), ``syn_hard`` the same with hard labels (``Acc(syn-hard)``), ``full`` the whole training
  split (``Acc(real-hard)``, ``eval.full_epochs``), ``rdm`` a random real subset of the same per-class size,
  drawn per repeat, trained like ``syn`` but at ``eval.lr`` (a learned lr belongs to the set) (``Acc(rdm-any)``);
- ARS: ``syn_aug``/``rdm_aug`` trained with ``robustness.augment`` and ``syn_naug``/``rdm_naug`` without
  augmentation.

Rows whose training is identical are trained once and share the numbers (a hard-label set: ``syn_hard`` is
``syn``; ``robustness.augment`` equal to the evaluator's: ``syn_aug`` is ``syn``); the manifest records which
(``records["robustness"]["shared"]``). The ``distilled``/``random``/``full`` seeds are those of the ``eval``
plugin's rows, so ``syn`` repeats ``eval/acc_runs`` network for network when both train one by one.

The scores are computed per repeat (repeat ``r`` of every row pairs up: same initialisation and batch order
for the synthetic rows, the same random subset for the random rows) by :mod:`ddcore.robustness`, then averaged.

lr search (``robustness.lr_search``, off by default): the ``rdm*`` rows and the synthetic rows that do not
train at the set's learned lr train one network per candidate lr (same seeds), and the lr whose network scores
highest on the **validation split** carved from the training split (``holdout = "always"``; ties: the first
candidate) is kept; the test split is measured, never chosen on. Every candidate network's validation and test
accuracy stays in the metrics (``<row>_search_val_acc_runs``, ``<row>_search_acc_runs``: repeat-major, candidate
minor). The ``full`` row never searches (its own recipe).

A soft-label set is refused (its IOR needs the random subset soft-labelled the same way, by a teacher, which
this plugin does not do): ``eval.labels = "hard"`` scores it with hard labels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ddcore.builtin.evaluate import job_member, learned_lr
from ddcore.errors import PluginError
from ddcore.evaluation import shard_repeats, summarise
from ddcore.hookspecs import hookimpl
from ddcore.models import build_model
from ddcore.presets import ResolvedEval, resolve_eval
from ddcore.robustness import ars_from_accuracies, fraction_from_percent, lrs_from_accuracies, per_run
from ddcore.training import TrainingDiverged, accuracy_on, fork_devices, train_network

NAME = "robustness"


@dataclasses.dataclass(frozen=True)
class Row:
    """How one row's networks are trained: ``kind`` (``"distilled"``, ``"random"``, ``"full"``: the evaluator's
    job kinds, hence its seeds), ``labels`` (``"own"``: ``eval.labels``; ``"hard"``) and ``augment`` (a
    :data:`ddcore.vocab.Augment` name; ignored by ``"full"``, which keeps ``eval``'s full-data recipe)."""

    kind: str
    labels: str
    augment: str


#: What each row is, in words (docs/robustness.md, the manifest).
ROW_MEANING = {
    "syn": "the distilled set, its own labels, the evaluator's augmentation: Acc(syn-any)",
    "syn_hard": "the distilled set with hard labels: Acc(syn-hard)",
    "full": "the whole training split with hard labels: Acc(real-hard)",
    "rdm": "a random real subset of the same per-class size (drawn per repeat), trained like syn at eval.lr: Acc(rdm-any)",
    "syn_aug": "the distilled set trained with robustness.augment: Acc(syn-aug)",
    "rdm_aug": "the random subset trained with robustness.augment: Acc(rdm-aug)",
    "syn_naug": "the distilled set trained without augmentation: Acc(syn-naug)",
    "rdm_naug": "the random subset trained without augmentation: Acc(rdm-naug)",
}
SCORE_ROWS = {"lrs": ("full", "syn_hard", "syn", "rdm"), "ars": ("syn_aug", "rdm_aug", "syn_naug", "rdm_naug")}


def ars_augment(option: str, evaluator_augment: str) -> str:
    """ARS's "with augmentation" condition: ``option`` (``robustness.augment``), where ``"auto"`` is the
    evaluator's augmentation, or ``"dsa"`` when that is ``"none"`` (DSA: the MTT/DATM family's evaluation).

    >>> ars_augment("auto", "crop"), ars_augment("auto", "none"), ars_augment("crop_flip", "crop")
    ('crop', 'dsa', 'crop_flip')
    """
    if option != "auto":
        return option
    return evaluator_augment if evaluator_augment != "none" else "dsa"


def plan_rows(scores: list[str], evaluator_augment: str, with_augment: str, own_labels: str) -> dict[str, Row]:
    """Each needed row's :class:`Row`, in a fixed order. ``own_labels``: what ``"own"`` labels are for this set
    (``"hard"`` or ``"soft"``), so that identical rows compare equal."""
    specs = {
        "syn": Row("distilled", own_labels, evaluator_augment),
        "syn_hard": Row("distilled", "hard", evaluator_augment),
        "full": Row("full", "hard", "full"),
        "rdm": Row("random", "hard", evaluator_augment),
        "syn_aug": Row("distilled", own_labels, with_augment),
        "rdm_aug": Row("random", "hard", with_augment),
        "syn_naug": Row("distilled", own_labels, "none"),
        "rdm_naug": Row("random", "hard", "none"),
    }
    needed = [name for score in ("lrs", "ars") if score in scores for name in SCORE_ROWS[score]]
    return {name: specs[name] for name in specs if name in needed}


def row_settings(settings: ResolvedEval, row: Row) -> ResolvedEval:
    """The evaluator's settings changed for ``row``: its labels (``"hard"`` forces hard) and augmentation."""
    recipe = settings.recipe if row.kind == "full" else dataclasses.replace(settings.recipe, augment=row.augment)
    labels = "hard" if row.labels == "hard" else settings.labels
    return dataclasses.replace(settings, recipe=recipe, labels=labels)


def train_row(ctx, settings: ResolvedEval, distilled, name: str, row: Row, repeat: int, lr: float | None = None) -> torch.nn.Module:
    """Train row ``name``'s network of ``repeat`` (its evaluator seeds), at ``lr`` when given; return it.

    Raises:
        TrainingDiverged: one line naming the row, the repeat and the lr option to lower.
    """
    channels, size, _ = ctx.dataset.image_shape
    member = job_member(ctx, row_settings(settings, row), distilled, row.kind, repeat)
    recipe = member.recipe if lr is None else dataclasses.replace(member.recipe, lr=lr)
    with torch.random.fork_rng(devices=fork_devices(ctx.device)):
        torch.manual_seed(member.seed)
        model = build_model(settings.model, ctx.dataset.num_classes, channels, size)
        try:
            train_network(model, member.batches, recipe, ctx.device, size)
        except TrainingDiverged as exc:
            which = "robustness.lr_search" if lr is not None else "eval.lr (or the set's learned lr, eval.use_learned_lr)"
            raise exc.advised(f"the robustness network of row {name} (repeat {repeat}, lr {recipe.lr:g})",
                              f"lower {which}") from None  # fmt: skip
    return model


def searches(settings: ResolvedEval, distilled, row: Row, candidates: list[float]) -> bool:
    """Whether ``row`` picks its lr among ``candidates``: random rows always, synthetic rows unless they train
    at the distilled set's learned lr, the full row never."""
    if not candidates or row.kind == "full":
        return False
    return row.kind == "random" or learned_lr(settings, distilled, row.kind) is None


def measure(ctx, settings: ResolvedEval, distilled, name: str, row: Row, repeat: int, candidates: list[float]) -> dict[str, Any]:
    """One job: ``{"test": %, "val": % (when carved), "lr": chosen, "search_val": [...], "search_test": [...]}``."""
    splits = ctx.dataset.scored_splits

    def accuracies(model) -> dict[str, float]:
        return {s: 100.0 * accuracy_on(model, ctx.dataset.loader(s, settings.test_batch_size), ctx.device) for s in splits}

    if not searches(settings, distilled, row, candidates):
        return accuracies(train_row(ctx, settings, distilled, name, row, repeat))
    tried = [accuracies(train_row(ctx, settings, distilled, name, row, repeat, lr)) for lr in candidates]
    best = max(range(len(tried)), key=lambda k: (tried[k]["val"], -k))  # the validation split chooses; ties: first
    return {**tried[best], "lr": candidates[best], "search_val": [t["val"] for t in tried], "search_test": [t["test"] for t in tried]}


def own_label_kind(settings: ResolvedEval, distilled) -> str:
    """``"soft"`` when the evaluator trains this set with soft labels, else ``"hard"``."""
    return "soft" if settings.labels == "soft" or (settings.labels == "auto" and distilled.soft) else "hard"


def _plus_minus(std: float | None) -> str:
    return "(one network: no std)" if std is None else f"± {std:.4f}"


@hookimpl
def dd_evaluate(ctx, distilled):
    config = getattr(ctx.config, NAME, None)
    if config is None or not config.scores:
        return None
    settings = resolve_eval(ctx.config.eval, ctx.dataset)
    settings = dataclasses.replace(settings, runs=config.runs or settings.runs)
    own = own_label_kind(settings, distilled)
    if own == "soft":
        raise PluginError(
            "the distilled set trains with soft labels, and its IOR/ARS need the random real subset soft-labelled the "
            "same way (a teacher's labels), which ddcore does not do; set eval.labels = 'hard' to score it with hard labels",
            plugin=NAME,
        )
    evaluator_augment = settings.recipe.augment
    with_augment = ars_augment(config.augment, evaluator_augment)
    rows = plan_rows(config.scores, evaluator_augment, with_augment, own)
    trained: dict[Row, str] = {}
    shared = {}
    for name, row in rows.items():
        if row in trained:
            shared[name] = trained[row]
        else:
            trained[row] = name
    candidates = [float(lr) for lr in config.lr_search]
    if candidates and getattr(ctx.dataset, "val", None) is None:  # the config check asks holdout = 'always'
        raise PluginError("robustness.lr_search needs the validation split, and this run carved none; "
                          "set holdout = 'always' and validation > 0", plugin=NAME)  # fmt: skip
    jobs = [(name, repeat) for name in trained.values() for repeat in range(settings.runs)]
    networks = sum(len(candidates) if searches(settings, distilled, rows[name], candidates) else 1 for name, _ in jobs)
    results = shard_repeats(
        ctx, jobs, lambda job: measure(ctx, settings, distilled, job[0], rows[job[0]], job[1], candidates),
        title=f"robustness scores ({networks} networks)" if networks == len(jobs) else
              f"robustness scores ({len(jobs)} jobs, {networks} networks with the lr search)",
    )
    by_job = dict(zip(jobs, results))
    metrics: dict[str, Any] = {}
    percent: dict[str, list[float]] = {}
    for name, row in rows.items():
        source = shared.get(name, name)
        done = [by_job[(source, r)] for r in range(settings.runs)]
        percent[name] = [d["test"] for d in done]
        metrics.update(summarise(percent[name], prefix=f"{name}_acc"))
        if "val" in done[0]:
            metrics.update(summarise([d["val"] for d in done], prefix=f"{name}_val_acc"))
        if "lr" in done[0]:
            metrics[f"{name}_lr_runs"] = [d["lr"] for d in done]
            metrics[f"{name}_search_val_acc_runs"] = [v for d in done for v in d["search_val"]]
            metrics[f"{name}_search_acc_runs"] = [v for d in done for v in d["search_test"]]
    if candidates:
        metrics["lr_candidates"] = candidates
    fractions = {name: [fraction_from_percent(v, f"{name} accuracy") for v in values] for name, values in percent.items()}
    lines = []
    if "lrs" in config.scores:
        parts = per_run(lrs_from_accuracies, *(fractions[n] for n in SCORE_ROWS["lrs"]), w=config.lrs_weight)
        for key in ("hlr", "ior", "alpha", "lrs"):
            metrics.update(summarise(parts[key], prefix=key))
        metrics["lrs_weight"] = config.lrs_weight
        lines.append(
            f"LRS = {metrics['lrs_mean']:.4f} {_plus_minus(metrics.get('lrs_std'))} (w = {config.lrs_weight:g}; "
            f"HLR = {metrics['hlr_mean']:+.4f}, IOR = {metrics['ior_mean']:+.4f})"
        )
    if "ars" in config.scores:
        parts = per_run(ars_from_accuracies, *(fractions[n] for n in SCORE_ROWS["ars"]), gamma=config.ars_weight)
        for key in ("aug_gain", "naug_gain", "beta", "ars"):
            metrics.update(summarise(parts[key], prefix=key))
        metrics["ars_weight"] = config.ars_weight
        lines.append(
            f"ARS = {metrics['ars_mean']:.4f} {_plus_minus(metrics.get('ars_std'))} (gamma = {config.ars_weight:g}; "
            f"gain with {with_augment} = {metrics['aug_gain_mean']:+.4f}, without = {metrics['naug_gain_mean']:+.4f})"
        )
    ctx.record(NAME, {
        "scores": list(config.scores), "runs": settings.runs, "lrs_weight": config.lrs_weight,
        "ars_weight": config.ars_weight, "augment": {"evaluator": evaluator_augment, "ars_with": with_augment},
        "rows": {name: ROW_MEANING[name] for name in rows}, "shared": shared,
        "lr_search": {"candidates": candidates, "chosen_on": "val",
                      "rows": [n for n, r in rows.items() if searches(settings, distilled, r, candidates)]} if candidates else None,
        "units": "accuracies in percent; hlr, ior, alpha, gains, beta and the scores in fractions (arXiv 2505.13300)",
    })  # fmt: skip
    for line in lines:
        ctx.reporter.info(f"robustness: {line}, mean over {settings.runs} network(s); fractions of the test set")
    return metrics
