"""Rich rendering shared by the commands: metric tables and run summaries (to stdout)."""

from __future__ import annotations

from typing import Any, Mapping

from rich.console import Console
from rich.table import Table


def stdout() -> Console:
    return Console()


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
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
        if key.endswith("_mean") and f"{key[:-5]}_std" in metrics:
            std_key = f"{key[:-5]}_std"
            table.add_row(key[:-5], f"{value:.2f} ± {metrics[std_key]:.2f}")
            shown.update({key, std_key})
            continue
        table.add_row(key, format_value(value))
    return table
