"""Helpers for evaluators (``dd_evaluate`` implementations): repeats over processes, and their summary.

An evaluator trains several fresh networks ("repeats"), each seeded from the run's seed and its repeat
number, so the result does not depend on how many processes ran it. :func:`shard_repeats` deals the
repeats round-robin to the Accelerate processes and gathers the results on every process;
:func:`summarise` turns the accuracies into the usual ``<prefix>_mean`` / ``_std`` / ``_runs`` metrics;
:func:`paired_difference` summarises two rows paired by seed (mean difference and its 95% t-interval);
:func:`evaluate_once` is the built-in evaluator's one repeat (train on the distilled set, test on real
data) for evaluators that only change its settings::

    from ddcore.evaluation import evaluate_once, shard_repeats, summarise

    accuracies = shard_repeats(ctx, settings.runs, lambda r: evaluate_once(ctx, settings, distilled, "distilled", r),
                               title=f"my protocol ({settings.runs} networks)")
    return summarise(accuracies)             # {"acc_mean": ..., "acc_std": ..., "acc_runs": [...]}

Importing this module imports no torch.
"""

from __future__ import annotations

import statistics
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, Callable, Sequence, TypeVar

if TYPE_CHECKING:
    from ddcore.context import RunContext
    from ddcore.distilled import DistilledSet
    from ddcore.presets import ResolvedEval

T = TypeVar("T")


def shard_repeats(ctx: "RunContext", jobs: int | Sequence[Any], fn: Callable[[Any], T], *, title: str | None = None) -> list[T]:
    """``[fn(job) for job in jobs]``, computed by the run's processes together; the same list on every process.

    Args:
        ctx: the run context (its accelerator's process index and count; its reporter).
        jobs: ``n`` for the jobs ``0 .. n-1`` (repeat numbers), or a sequence of jobs (picklable).
        fn: computes one job's result (picklable, e.g. a float); seed it from the job, never from the
            process, so the results do not depend on the number of processes.
        title: a progress bar over this process's jobs (``None``: no bar).

    Process ``p`` of ``N`` runs jobs ``p, p + N, ...``; the results are gathered (``gather_object``) and
    returned in job order.
    """
    items = list(range(jobs)) if isinstance(jobs, int) else list(jobs)
    mine = list(range(len(items)))[ctx.process_index :: ctx.num_processes]
    results: list[tuple[int, T]] = []
    bar = ctx.reporter.progress(title, total=len(mine)) if title else nullcontext(lambda _n=1: None)
    with bar as advance:
        for index in mine:
            results.append((index, fn(items[index])))
            advance(1)
    if ctx.num_processes > 1:
        from accelerate.utils import gather_object

        results = gather_object(results)
    return [value for _, value in sorted(results, key=lambda row: row[0])]


def spread(values: Sequence[float]) -> float | None:
    """The population std of ``values``; ``None`` for a single value (its spread is unknown, not 0).

    >>> spread([90.0, 92.0]), spread([50.0])
    (1.0, None)
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread: no values")
    return statistics.pstdev(values) if len(values) > 1 else None


def summarise(values: Sequence[float], prefix: str = "acc") -> dict[str, Any]:
    """``{prefix}_mean``, ``{prefix}_std`` (the population std; left out for one value, whose spread is
    unknown: :func:`spread`) and ``{prefix}_runs``.

    >>> summarise([90.0, 92.0])
    {'acc_mean': 91.0, 'acc_std': 1.0, 'acc_runs': [90.0, 92.0]}
    >>> summarise([50.0], prefix="kd_acc")
    {'kd_acc_mean': 50.0, 'kd_acc_runs': [50.0]}
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarise: no values")
    std = spread(values)
    return {f"{prefix}_mean": statistics.fmean(values), **({f"{prefix}_std": std} if std is not None else {}),
            f"{prefix}_runs": values}  # fmt: skip


#: Two-sided 95% critical values of Student's t (the 0.975 quantile) for 1-30 degrees of freedom, then
#: 40, 60, 120 and infinity (standard tables, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
    11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086,
    21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
    40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip
Z_975 = 1.960


def t_critical_95(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom; between tabulated values the
    next smaller ``df`` (a slightly wider, conservative interval); ``df > 120``: the normal 1.960.

    >>> t_critical_95(2), t_critical_95(45), t_critical_95(1000)
    (4.303, 2.021, 1.96)
    """
    if df < 1:
        raise ValueError(f"t_critical_95: degrees of freedom must be >= 1, got {df}")
    if df > 120:
        return Z_975
    return T_975[max(k for k in T_975 if k <= df)]


def t_interval_95(values: Sequence[float]) -> tuple[float, float, float] | None:
    """``(mean, low, high)``: the mean of ``values`` and its two-sided 95% Student-t interval
    (``mean ± t(n-1) x s / sqrt(n)``, ``s`` the sample std); ``None`` for fewer than two values.

    >>> [round(v, 3) for v in t_interval_95([1.0, 2.0, 3.0])]
    [2.0, -0.484, 4.484]
    """
    values = [float(v) for v in values]
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = t_critical_95(len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return mean, mean - half, mean + half


def paired_difference(after: Sequence[float], before: Sequence[float]) -> dict[str, Any]:
    """The paired difference ``after[r] - before[r]`` (accuracy points) summarised: ``mean``, ``std``
    (sample std; absent for one pair), ``ci95_low``/``ci95_high`` (:func:`t_interval_95`; absent for one
    pair) and ``runs`` (the differences). Pair ``r`` must share everything but what is compared (seeds).

    Raises ``ValueError`` when the two lists differ in length or are empty.

    >>> paired_difference([91.0, 93.0, 92.0], [77.0, 78.0, 76.0])["mean"]
    15.0
    """
    if len(after) != len(before) or not after:
        raise ValueError(f"paired_difference: {len(after)} and {len(before)} values cannot be paired")
    diffs = [float(a) - float(b) for a, b in zip(after, before)]
    result: dict[str, Any] = {"mean": statistics.fmean(diffs)}
    if len(diffs) > 1:
        result["std"] = statistics.stdev(diffs)
    interval = t_interval_95(diffs)
    if interval is not None:
        result["ci95_low"], result["ci95_high"] = interval[1], interval[2]
    result["runs"] = diffs
    return result


def evaluate_once(ctx: "RunContext", settings: "ResolvedEval", distilled: "DistilledSet", kind: str = "distilled",
                  repeat: int = 0, split: str = "test") -> float:  # fmt: skip
    """The built-in evaluator's job ``(kind, repeat)``: train one fresh network, return its accuracy in percent
    on ``split`` (``"test"``; ``"val"`` when the run carved a validation split: choose on that one, never on test).

    ``settings``: a :class:`~ddcore.presets.ResolvedEval` (``ddcore.presets.resolve_eval(ctx.config.eval,
    ctx.dataset)``, or changed with ``dataclasses.replace``); ``kind``: ``"distilled"`` (train on
    ``distilled``), ``"random"`` (a random real subset of the same per-class counts) or ``"full"`` (the
    training split). Seeded by ``(run seed, "eval", kind, repeat)`` alone.
    """
    from ddcore.builtin.evaluate import evaluate_once as run_once

    return run_once(ctx, settings, distilled, kind, repeat, split)


def train_repeats(ctx: "RunContext", settings: "ResolvedEval", distilled: "DistilledSet", repeats: Sequence[int], *,
                  kind: str = "distilled", mode: str = "auto", on_group: Callable[..., None] | None = None):  # fmt: skip
    """The built-in evaluator's jobs ``(kind, r) for r in repeats`` trained by :func:`ddcore.ensemble.train_ensemble`
    under ``mode`` (``eval.batched``: together where it applies, else one by one), each with exactly the seeds
    and recipe of :func:`evaluate_once`'s network, so its accuracy is :func:`evaluate_once`'s (to float rounding
    when batched; bit for bit one by one). ``kind``: ``"distilled"`` or ``"random"`` (``"full"`` streams the
    training split: use :func:`evaluate_once`). ``on_group``: see ``train_ensemble``.

    Returns the :class:`~ddcore.ensemble.EnsembleRun` (``models[i]`` is repeat ``repeats[i]``'s; measure them
    with :func:`ddcore.ensemble.ensemble_accuracy`) whose plan says how they were trained.

    Raises:
        TrainingDiverged: a network diverged; ``member`` is its index into ``repeats`` (re-phrase it with
            :meth:`~ddcore.training.TrainingDiverged.advised`).
        ConfigError: ``mode="on"`` for a network that cannot be batched (BatchNorm).
    """
    from ddcore.builtin.evaluate import job_member
    from ddcore.ensemble import train_ensemble
    from ddcore.models import build_model

    if kind == "full":
        raise ValueError("train_repeats: kind 'full' streams the training split; use evaluate_once")
    channels, size, _ = ctx.dataset.image_shape
    members = [job_member(ctx, settings, distilled, kind, r) for r in repeats]
    build = lambda: build_model(settings.model, ctx.dataset.num_classes, channels, size)  # noqa: E731
    return train_ensemble(build, members, ctx.device, ctx.dataset.image_shape, mode=mode, on_group=on_group)  # type: ignore[arg-type]
