"""``dd compdd report``: easy vs hard accuracy per subset and method, from finished run directories.

Each run directory contributes one accuracy sample set: the protocol's ``compdd/acc_runs`` when the
run had the ``compdd`` plugin, else the built-in evaluator's ``eval/acc_runs``. Runs are grouped by
*subset* (the dataset name without ``-easy``/``-hard``: ``compdd/bird``, ``compdd/mini``), *method*
(the run's ``name`` when one was given, else derived from its plugins and ``distill``) and IPC. Runs
that share all three and the level pool their networks. ``gap = easy mean - hard mean``.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ddcore import DDError
from ddcore.artifacts import MANIFEST_FILE, METRICS_FILE, read_json
from ddcore_compdd.subsets import split_name

METRIC_SOURCES = ("compdd", "eval")


@dataclass(frozen=True)
class RunRecord:
    """What one run contributes to the report."""

    path: str
    subset: str
    level: str
    method: str
    ipc: int
    accuracies: tuple[float, ...]
    source: str


@dataclass
class ReportRow:
    subset: str
    method: str
    ipc: int
    easy: list[float] = field(default_factory=list)
    hard: list[float] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    def stats(self, level: str) -> tuple[float, float] | None:
        values = self.easy if level == "easy" else self.hard
        return (statistics.fmean(values), statistics.pstdev(values)) if values else None

    def gap(self) -> float | None:
        easy, hard = self.stats("easy"), self.stats("hard")
        return easy[0] - hard[0] if easy and hard else None

    def to_dict(self) -> dict:
        easy, hard = self.stats("easy"), self.stats("hard")
        return {
            "subset": self.subset, "method": self.method, "ipc": self.ipc,
            "easy_mean": easy and easy[0], "easy_std": easy and easy[1], "easy_networks": len(self.easy),
            "hard_mean": hard and hard[0], "hard_std": hard and hard[1], "hard_networks": len(self.hard),
            "gap": self.gap(), "runs": self.runs,
        }  # fmt: skip


def method_label(manifest: dict) -> str:
    """The run's ``name`` if it was given, else its plugins (without compdd) and distillation.

    >>> method_label({"config": {"name": "", "distill": "none"}, "plugins": []})
    'random real'
    >>> method_label({"config": {"name": "", "distill": "tm"}, "plugins": [{"name": "edf", "source": "entry-point"}]})
    'edf (TM)'
    """
    config = manifest.get("config") or {}
    if config.get("name"):
        return str(config["name"])
    plugins = [p["name"] for p in manifest.get("plugins", []) if p.get("source") != "builtin" and p.get("name") != "compdd"]
    tm = config.get("distill") == "tm"
    if not plugins:
        return "TM" if tm else "random real"
    return "+".join(plugins) + (" (TM)" if tm else "")


def read_run(run_dir: str | Path) -> RunRecord:
    """One finished run; anything that keeps it out of the report is a one-line DDError naming it."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DDError(f"{run_dir} is not a run directory (argument RUN_DIR)")
    manifest = read_json(run_dir / MANIFEST_FILE, "run manifest")
    if manifest.get("status") != "complete":
        raise DDError(f"{run_dir} holds a run with status {manifest.get('status')!r}, not a complete one (argument RUN_DIR)")
    metrics = read_json(run_dir / METRICS_FILE, "metrics file").get("metrics") or {}
    for source in METRIC_SOURCES:
        runs = metrics.get(f"{source}/acc_runs")
        if isinstance(runs, list) and runs:
            break
    else:
        raise DDError(f"{run_dir} has no accuracy (compdd/acc_runs or eval/acc_runs); run it with --plugin compdd or --eval-runs > 0")
    config = manifest.get("config") or {}
    dataset = str(config.get("dataset", ""))
    subset, level = split_name(dataset)
    if not level:
        raise DDError(f"{run_dir} ran on {dataset!r}, which is not an easy/hard dataset (e.g. compdd/mini-hard)")
    return RunRecord(str(run_dir), subset, level, method_label(manifest), int(config.get("ipc", 0)), tuple(map(float, runs)), source)


def build_report(records: list[RunRecord]) -> dict[str, list[ReportRow]]:
    """``{subset: rows}`` with rows in first-seen order of (method, ipc)."""
    rows: dict[tuple[str, str, int], ReportRow] = {}
    for record in records:
        key = (record.subset, record.method, record.ipc)
        row = rows.setdefault(key, ReportRow(record.subset, record.method, record.ipc))
        (row.easy if record.level == "easy" else row.hard).extend(record.accuracies)
        row.runs.append(record.path)
    grouped: dict[str, list[ReportRow]] = {}
    for row in rows.values():
        grouped.setdefault(row.subset, []).append(row)
    return grouped


def _cell(stats: tuple[float, float] | None) -> str:
    return f"{stats[0]:.2f} ± {stats[1]:.2f}" if stats else "—"


def markdown(report: dict[str, list[ReportRow]]) -> str:
    """One Markdown table per subset: method, IPC, easy, hard (accuracy %, mean ± std) and the gap."""
    parts = []
    for subset, rows in report.items():
        lines = [
            f"### {subset}",
            "",
            "| method | IPC | easy acc % | hard acc % | gap (easy − hard) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in rows:
            gap = row.gap()
            lines.append(
                f"| {row.method} | {row.ipc} | {_cell(row.stats('easy'))} | {_cell(row.stats('hard'))} | "
                f"{'—' if gap is None else f'{gap:+.2f}'} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def to_json(report: dict[str, list[ReportRow]], records: list[RunRecord]) -> dict:
    return {
        "subsets": {subset: [row.to_dict() for row in rows] for subset, rows in report.items()},
        "runs": [asdict(record) for record in records],
    }
