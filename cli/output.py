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


def format_value(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, digits) for v in value)
    return str(value)


def metrics_table(metrics: Mapping[str, Any], title: str = "metrics") -> Table:
    """One row per metric; ``*_mean`` rows are paired with their ``*_std`` as ``mean ± std``.

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
        if key.endswith("_mean") and f"{key[:-5]}_std" in metrics:
            std_key = f"{key[:-5]}_std"
            table.add_row(key[:-5] + label, f"{value:.{digits}f} ± {metrics[std_key]:.{digits}f}")
            shown.update({key, std_key})
            continue
        table.add_row(key + label, format_value(value, digits))
    return table
