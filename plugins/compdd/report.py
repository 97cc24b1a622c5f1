"""``dd compdd report``: easy vs hard accuracy per subset and method, from finished run directories.

Each run directory contributes the accuracy samples of every evaluator it ran (the protocol's
``compdd/acc_runs``, the built-in evaluator's ``eval/acc_runs``), each with the evaluation protocol
its manifest records (:func:`ddcore.protocol_key.run_protocol`: evaluator, network, epochs, batch,
optimiser, augmentation, labels, image shape). Runs are grouped by *subset* (the dataset name
without ``-easy``/``-hard``: ``compdd/bird``, ``compdd/mini``), *method* (the run's ``name`` when one
was given, else derived from its plugins and ``distill``) and IPC, and only runs measured by the same
protocol share a row: a group uses the first evaluator of :data:`METRIC_SOURCES` that every run of it
ran with one protocol; otherwise each run's own first evaluator is used and the group is split into
one row per protocol, with a note saying what differs (no gap is ever taken between two protocols).
Runs that share a row pool their networks. ``gap = easy mean - hard mean``.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ddcore import DDError
from ddcore.artifacts import MANIFEST_FILE, METRICS_FILE, read_json
from ddcore.protocol_key import EvalProtocol, run_protocol
from ddcore_compdd.subsets import split_name

#: Evaluators whose accuracies a report can use, preferred first.
METRIC_SOURCES = ("compdd", "eval")


@dataclass(frozen=True)
class Evaluation:
    """One evaluator's accuracy samples (percent, one per network) and the protocol that measured them."""

    source: str
    protocol: EvalProtocol
    accuracies: tuple[float, ...]


@dataclass(frozen=True)
class RunRecord:
    """What one run contributes to the report: its evaluations, preferred (``METRIC_SOURCES`` order) first."""

    path: str
    subset: str
    level: str
    method: str
    ipc: int
    evaluations: tuple[Evaluation, ...]

    @property
    def accuracies(self) -> tuple[float, ...]:
        return self.evaluations[0].accuracies

    @property
    def source(self) -> str:
        return self.evaluations[0].source

    def evaluation(self, source: str) -> Evaluation | None:
        return next((e for e in self.evaluations if e.source == source), None)

    def to_dict(self) -> dict:
        return {"path": self.path, "subset": self.subset, "level": self.level, "method": self.method, "ipc": self.ipc,
                "evaluations": [{"source": e.source, "accuracies": list(e.accuracies), "protocol": e.protocol.to_dict()}
                                for e in self.evaluations]}  # fmt: skip


@dataclass
class ReportRow:
    """Runs of one subset, method and IPC measured by one ``protocol``; ``note`` says why a group was split."""

    subset: str
    method: str
    ipc: int
    protocol: EvalProtocol
    easy: list[float] = field(default_factory=list)
    hard: list[float] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    note: str = ""

    def stats(self, level: str) -> tuple[float, float | None] | None:
        """``(mean, population std)`` of the level's accuracies; the std is ``None`` for one network."""
        values = self.easy if level == "easy" else self.hard
        if not values:
            return None
        return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else None)

    def gap(self) -> float | None:
        easy, hard = self.stats("easy"), self.stats("hard")
        return easy[0] - hard[0] if easy and hard else None

    def to_dict(self) -> dict:
        easy, hard = self.stats("easy"), self.stats("hard")
        return {
            "subset": self.subset, "method": self.method, "ipc": self.ipc,
            "evaluator": self.protocol.evaluator, "protocol": self.protocol.to_dict(),
            "easy_mean": easy and easy[0], "easy_std": easy and easy[1], "easy_networks": len(self.easy),
            "hard_mean": hard and hard[0], "hard_std": hard and hard[1], "hard_networks": len(self.hard),
            "gap": self.gap(), "runs": self.runs, "note": self.note,
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
    """One finished run; anything that keeps it out of the report is a one-line DDError naming it
    (including accuracies whose protocol the manifest does not record)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DDError(f"{run_dir} is not a run directory (argument RUN_DIR)")
    manifest = read_json(run_dir / MANIFEST_FILE, "run manifest")
    if manifest.get("status") != "complete":
        raise DDError(f"{run_dir} holds a run with status {manifest.get('status')!r}, not a complete one (argument RUN_DIR)")
    metrics = read_json(run_dir / METRICS_FILE, "metrics file").get("metrics") or {}
    evaluations = []
    for source in METRIC_SOURCES:
        runs = metrics.get(f"{source}/acc_runs")
        if isinstance(runs, list) and runs:
            protocol = run_protocol(manifest, source, run=str(run_dir))
            evaluations.append(Evaluation(source, protocol, tuple(map(float, runs))))
    if not evaluations:
        raise DDError(f"{run_dir} has no accuracy (compdd/acc_runs or eval/acc_runs); run it with --plugin compdd or --eval-runs > 0")
    config = manifest.get("config") or {}
    dataset = str(config.get("dataset", ""))
    subset, level = split_name(dataset)
    if not level:
        raise DDError(f"{run_dir} ran on {dataset!r}, which is not an easy/hard dataset (e.g. compdd/mini-hard)")
    return RunRecord(str(run_dir), subset, level, method_label(manifest), int(config.get("ipc", 0)), tuple(evaluations))


def common_evaluation(records: list[RunRecord]) -> str | None:
    """The first evaluator of :data:`METRIC_SOURCES` that every record ran, all with one protocol, else ``None``."""
    for source in METRIC_SOURCES:
        found = [record.evaluation(source) for record in records]
        if all(found) and len({e.protocol for e in found if e}) == 1:
            return source
    return None


def _split_note(rows: list[ReportRow]) -> str:
    """Why one group's rows stay apart: which levels each protocol measured and what differs from the first."""

    def levels(row: ReportRow) -> str:
        return "+".join(level for level in ("easy", "hard") if getattr(row, level))

    which = ", ".join(f"{levels(row)} by {row.protocol.evaluator}" for row in rows)
    return f"not comparable, kept apart ({which}): " + " | ".join(rows[0].protocol.differences(row.protocol) for row in rows[1:])


def build_report(records: list[RunRecord]) -> dict[str, list[ReportRow]]:
    """``{subset: rows}`` with rows in first-seen order of (method, ipc), one per protocol.

    A (subset, method, IPC) group whose runs share an evaluator with one protocol is one row (easy and
    hard pooled per level, with the gap); otherwise one row per protocol of the runs' preferred
    evaluators, each carrying a ``note`` that names what differs.
    """
    groups: dict[tuple[str, str, int], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.subset, record.method, record.ipc), []).append(record)
    grouped: dict[str, list[ReportRow]] = {}
    for (subset, method, ipc), members in groups.items():
        source = common_evaluation(members)
        rows: dict[EvalProtocol, ReportRow] = {}
        for record in members:
            evaluation = record.evaluation(source) if source else record.evaluations[0]
            assert evaluation is not None
            row = rows.setdefault(evaluation.protocol, ReportRow(subset, method, ipc, evaluation.protocol))
            (row.easy if record.level == "easy" else row.hard).extend(evaluation.accuracies)
            row.runs.append(record.path)
        split = list(rows.values())
        if len(split) > 1:
            note = _split_note(split)
            for row in split:
                row.note = note
        grouped.setdefault(subset, []).extend(split)
    return grouped


def protocol_tables(rows: list[ReportRow]) -> list[tuple[EvalProtocol, list[ReportRow]]]:
    """The rows of one subset cut into tables, one per protocol, in first-seen order."""
    tables: dict[EvalProtocol, list[ReportRow]] = {}
    for row in rows:
        tables.setdefault(row.protocol, []).append(row)
    return list(tables.items())


def _cell(stats: tuple[float, float | None] | None) -> str:
    if not stats:
        return "—"
    return f"{stats[0]:.2f} ± {'n/a' if stats[1] is None else f'{stats[1]:.2f}'}"


def markdown(report: dict[str, list[ReportRow]]) -> str:
    """Per subset, one Markdown table per evaluation protocol (named above it): method, IPC, easy, hard
    (accuracy %, mean ± std) and the gap; below, a note for every group whose runs were not comparable."""
    parts = []
    for subset, rows in report.items():
        tables = protocol_tables(rows)
        for number, (protocol, table_rows) in enumerate(tables, 1):
            title = f"### {subset}" + (f" ({number}/{len(tables)})" if len(tables) > 1 else "")
            lines = [title, "", f"Evaluation protocol — {protocol.label()}", "",
                     "| method | IPC | easy acc % | hard acc % | gap (easy − hard) |", "|---|---:|---:|---:|---:|"]  # fmt: skip
            for row in table_rows:
                gap = row.gap()
                lines.append(
                    f"| {row.method} | {row.ipc} | {_cell(row.stats('easy'))} | {_cell(row.stats('hard'))} | "
                    f"{'—' if gap is None else f'{gap:+.2f}'} |"
                )
            parts.append("\n".join(lines))
        notes = list(dict.fromkeys(f"- {row.method}, IPC {row.ipc}: {row.note}" for row in rows if row.note))
        if notes:
            parts.append(f"Runs of {subset} measured differently (no gap taken across them):\n\n" + "\n".join(notes))
    return "\n\n".join(parts) + "\n"


def to_json(report: dict[str, list[ReportRow]], records: list[RunRecord]) -> dict:
    return {
        "subsets": {subset: [row.to_dict() for row in rows] for subset, rows in report.items()},
        "runs": [record.to_dict() for record in records],
    }
