"""Helpers for evaluators (``dd_evaluate`` implementations): repeats over processes, and their summary.

An evaluator trains several fresh networks ("repeats"), each seeded from the run's seed and its repeat
number, so the result does not depend on how many processes ran it. :func:`shard_repeats` deals the
repeats round-robin to the Accelerate processes and gathers the results on every process;
:func:`summarise` turns the accuracies into the usual ``<prefix>_mean`` / ``_std`` / ``_runs`` metrics;
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


def summarise(values: Sequence[float], prefix: str = "acc") -> dict[str, Any]:
    """``{prefix}_mean``, ``{prefix}_std`` (the population std, 0 for one value) and ``{prefix}_runs``.

    >>> summarise([90.0, 92.0])
    {'acc_mean': 91.0, 'acc_std': 1.0, 'acc_runs': [90.0, 92.0]}
    >>> summarise([50.0], prefix="kd_acc")["kd_acc_std"]
    0.0
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("summarise: no values")
    return {f"{prefix}_mean": statistics.fmean(values), f"{prefix}_std": statistics.pstdev(values), f"{prefix}_runs": values}


def evaluate_once(ctx: "RunContext", settings: "ResolvedEval", distilled: "DistilledSet", kind: str = "distilled",
                  repeat: int = 0) -> float:  # fmt: skip
    """The built-in evaluator's job ``(kind, repeat)``: train one fresh network, return its test accuracy in percent.

    ``settings``: a :class:`~ddcore.presets.ResolvedEval` (``ddcore.presets.resolve_eval(ctx.config.eval,
    ctx.dataset)``, or changed with ``dataclasses.replace``); ``kind``: ``"distilled"`` (train on
    ``distilled``), ``"random"`` (a random real subset of the same per-class counts) or ``"full"`` (the
    training split). Seeded by ``(run seed, "eval", kind, repeat)`` alone.
    """
    from ddcore.builtin.evaluate import evaluate_once as run_once

    return run_once(ctx, settings, distilled, kind, repeat)
