"""Rich rendering shared by the commands: metric tables and run summaries (to stdout)."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.table import Table


def stdout() -> Console:
    return Console()


#: Metrics that are fractions, not accuracy % (DD-Ranking's scores and their inputs, ``ddcore.robustness``).
FRACTION_METRICS = ("robustness/lrs", "robustness/ars", "robustness/hlr", "robustness/ior", "robustness/alpha",
                    "robustness/beta", "robustness/aug_gain", "robustness/naug_gain")  # fmt: skip


def is_fraction(key: str) -> bool:
    """Whether metric ``key`` is a fraction (shown with 4 decimals and marked as such)."""
    return str(key).startswith(FRACTION_METRICS)


#: Metrics that are learning rates (the robustness lr search's candidates and choices): shown with ``:g``, since
#: two decimals would print an lr of 0.001 as 0.00.
LR_METRICS = ("robustness/lr_candidates",)


def is_lr(key: str) -> bool:
    """Whether metric ``key`` holds learning rates (``robustness/<row>_lr_runs``, ``robustness/lr_candidates``)."""
    return str(key).startswith(LR_METRICS) or (str(key).startswith("robustness/") and str(key).endswith("_lr_runs"))


def format_value(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, digits) for v in value)
    return str(value)


def one_network(metrics: Mapping[str, Any], prefix: str) -> bool:
    """Whether ``prefix`` was measured on one network (``prefix + "_runs"`` holds one value)."""
    runs = metrics.get(f"{prefix}_runs")
    return isinstance(runs, (list, tuple)) and len(runs) == 1


def std_cell(metrics: Mapping[str, Any], prefix: str, digits: int = 2) -> str:
    """``metrics[prefix + "_std"]`` formatted, or ``n/a`` where it is undefined: one network (the evaluators
    leave the std out, :func:`ddcore.evaluation.summarise`; metrics files written before recorded 0) or none
    recorded.
    """
    std = metrics.get(f"{prefix}_std")
    if std is None or one_network(metrics, prefix):
        return "n/a"
    return f"{std:.{digits}f}"


def metrics_table(metrics: Mapping[str, Any], title: str = "metrics") -> Table:
    """One row per metric; ``*_mean`` rows are paired with their ``*_std`` as ``mean ± std`` (``mean ± n/a`` for
    one network: :func:`std_cell`).

    Per-process bookkeeping (``*_runs_process``: which process trained each network) is not an accuracy
    and is left out of the table; it stays in ``metrics.json``.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    shown: set[str] = set()
    for key, value in metrics.items():
        if key in shown or str(key).endswith("_runs_process"):
            continue
        digits, label = (4, " (fraction)") if is_fraction(key) else (2, "")
        if key.endswith("_mean") and (f"{key[:-5]}_std" in metrics or one_network(metrics, key[:-5])):
            std_key = f"{key[:-5]}_std"
            table.add_row(key[:-5] + label, f"{value:.{digits}f} ± {std_cell(metrics, key[:-5], digits)}")
            shown.update({key, std_key})
            continue
        if is_lr(key):
            table.add_row(key, ", ".join(f"{float(v):g}" for v in (value if isinstance(value, (list, tuple)) else [value])))
            continue
        table.add_row(key + label, format_value(value, digits))
    return table
