"""``dd compare``: several finished runs side by side, grouped by what made them, paired by seed.

What is compared. Each run contributes the accuracies of one evaluator (``<evaluator>/acc_runs`` of its
``metrics.json``, one value per evaluation network, percent; ``eval`` by default) and, when present, the
accuracies of the images its distiller started from (``<evaluator>/initial_acc_runs``).

Groups. Runs are grouped by dataset, IPC, evaluation protocol (:func:`ddcore.protocol_key.run_protocol`:
network, recipe, labels, image shape; accuracies measured differently are never pooled or subtracted),
*method* (``distill`` plus the active non-built-in plugins in activation order: ``tm+edf``, ``none``,
``none+herding``) and *settings*: every other key of the run's fingerprint that shapes the distilled set
(``tm.iterations``, ``experts.*``, ``plugin.*``, ``select``, ``validation``, ...; not ``seed``, not
``eval.*``, not the data content hash, which changes with the seeded validation split). Runs of one method
whose settings differ form separate groups, labelled with the keys that differ
(``tm [tm.iterations=50]``); a key that only one of two runs records (an option added by a later ddcore)
is not a difference. A *family* is the groups of one dataset, IPC and protocol; groups are compared
only within their family.

Statistics. A group's ``acc_mean``/``acc_std`` are the mean and population std over all its networks (no std, ``None``, for one network)
(pooled over its runs, as a run's own ``eval/acc_std``); ``seed_std`` is the sample std of its runs' means
(the seed-to-seed spread, with two runs or more). Each group is compared with its family's *baseline*
(``baseline=`` a group label; by default the group of method ``none``, the selected real images, when the
family has one, else the family's first group in the order the runs were given). Runs are paired by seed
(the run config's ``seed``): with two common seeds or more, the paired difference is over seeds (group run
mean - baseline run mean, one pair per seed) and its 95% Student-t interval has ``pairs - 1`` degrees of
freedom (:func:`ddcore.evaluation.paired_difference`, the function behind the runs' own
``gain_vs_initial``); with one common seed, it is over the two runs' evaluation networks paired by index
(network ``r`` of both runs has the same initialisation and batch order: its seed derives from the run
seed and ``r`` alone), which measures evaluation noise only, not the spread over distillation seeds (a
note says so); with none, no difference is given.

Runs that cannot be compared (unreadable or unfinished manifest, no accuracies, no recorded protocol, a
second run of one seed in one group) are *skipped* with the reason, never dropped silently. Importing this
module imports no torch.
"""

from __future__ import annotations

import glob
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ddcore.errors import ConfigError, DDError
from ddcore.evaluation import paired_difference
from ddcore.protocol_key import EvalProtocol, run_protocol

#: File names of a run directory (:mod:`ddcore.artifacts`; not imported from there, which imports torch).
MANIFEST_FILE, METRICS_FILE = "manifest.json", "metrics.json"
#: Fingerprint keys that do not make a group: the pairing key, what the group key already says, the
#: evaluation (the protocol covers it) and the data content hash (it changes with the seeded validation split).
NOT_SETTINGS = ("seed", "dataset", "ipc", "distill", "plugins", "data.fingerprint", "data.dataset")
NOT_SETTINGS_PREFIXES = ("eval.",)
#: The method whose group is the default baseline: selection only, the real images themselves.
DEFAULT_BASELINE_METHOD = "none"
GLOB_CHARACTERS = "*?["


class RunSkipped(Exception):
    """A run that cannot take part; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class RunEntry:
    """One comparable run.

    Attributes:
        path: its directory, as given or found.
        seed: the run config's seed.
        dataset / ipc: the run config's ``dataset`` and ``ipc``.
        method: ``distill`` plus the active non-built-in plugins (``"tm+edf"``).
        settings: ``(key, JSON value)`` pairs of the fingerprint keys that shape the set (module docstring).
        protocol: how its accuracies were measured.
        acc: the evaluator's accuracy per network (percent).
        initial: the accuracy per network of the images the distiller started from, or ``None``.
    """

    path: str
    seed: int
    dataset: str
    ipc: int
    method: str
    settings: tuple[tuple[str, str], ...]
    protocol: EvalProtocol
    acc: tuple[float, ...]
    initial: tuple[float, ...] | None

    @property
    def acc_mean(self) -> float:
        return statistics.fmean(self.acc)


@dataclass
class Skipped:
    """A run left out, and why."""

    path: str
    reason: str


@dataclass
class Group:
    """The runs of one dataset, IPC, protocol, method and settings (one run per seed, first given first)."""

    label: str
    method: str
    settings: tuple[tuple[str, str], ...]
    runs: list[RunEntry]

    @property
    def seeds(self) -> list[int]:
        return [run.seed for run in self.runs]

    @property
    def networks(self) -> list[float]:
        return [value for run in self.runs for value in run.acc]

    def stats(self) -> dict[str, Any]:
        """``acc_mean``/``acc_std`` (pooled networks, population std; ``None`` for a single network, whose spread
        is unknown rather than 0), ``seed_std`` (sample std of run means, ``None`` for one run),
        ``initial_acc_mean``/``initial_acc_std`` (``None`` unless every run has them; the std ``None`` for one)."""
        pooled = self.networks
        means = [run.acc_mean for run in self.runs]
        initial = [v for run in self.runs for v in run.initial or ()] if all(r.initial for r in self.runs) else []
        return {
            "acc_mean": statistics.fmean(pooled),
            "acc_std": statistics.pstdev(pooled) if len(pooled) > 1 else None,
            "seed_std": statistics.stdev(means) if len(means) > 1 else None,
            "initial_acc_mean": statistics.fmean(initial) if initial else None,
            "initial_acc_std": statistics.pstdev(initial) if len(initial) > 1 else None,
        }


@dataclass
class Difference:
    """``group`` - ``baseline``, paired by seed (:func:`pair_groups`).

    Attributes:
        unit: ``"seeds"`` (one pair per common seed: run means), ``"networks"`` (one common seed: its
            networks paired by index) or ``"none"`` (no common seed: no difference).
        seeds: the common seeds.
        result: :func:`ddcore.evaluation.paired_difference` (``mean``, ``std``, ``ci95_low``/``ci95_high``
            from two pairs on, ``runs``), or ``None``.
        note: what the interval covers, when that is not obvious.
    """

    group: str
    baseline: str
    unit: str
    seeds: list[int]
    result: dict[str, Any] | None
    note: str = ""

    @property
    def pairs(self) -> int:
        return len(self.result["runs"]) if self.result else 0


@dataclass
class Family:
    """The groups of one dataset, IPC and protocol, each compared with ``baseline``."""

    dataset: str
    ipc: int
    protocol: EvalProtocol
    groups: list[Group]
    baseline: str | None = None
    baseline_rule: str = ""
    differences: dict[str, Difference] = field(default_factory=dict)


@dataclass
class Comparison:
    """Everything ``dd compare`` prints or writes."""

    evaluator: str
    families: list[Family]
    skipped: list[Skipped]


# ----------------------------------------------------------------------------------------------
# Finding and reading runs
# ----------------------------------------------------------------------------------------------


def find_runs(arguments: Sequence[str]) -> tuple[list[Path], list[Skipped]]:
    """The run directories that ``arguments`` name, in order, each once.

    Each argument is a run directory (it holds ``manifest.json``), a folder whose subfolders hold runs (those
    subfolders, sorted; one level), or a glob pattern (``runs/*-digits-*``; its matches, sorted, taken as
    the first two kinds; a match that is neither is *skipped* with the reason).

    Raises:
        ConfigError: one line naming the argument, for a path that does not exist, a named path that is
            neither a run nor a folder of runs, and a pattern that matches nothing.
    """
    found: list[Path] = []
    skipped: list[Skipped] = []
    for argument in arguments:
        path = Path(argument)
        if not path.exists() and any(ch in argument for ch in GLOB_CHARACTERS):
            matches = sorted(glob.glob(argument))
            if not matches:
                raise ConfigError(f"RUN_DIR pattern {argument!r} matches nothing")
            for match in matches:
                runs = _runs_in(Path(match))
                if runs:
                    found.extend(runs)
                else:
                    skipped.append(Skipped(match, "not a ddcore run directory (no manifest.json) and holds none"))
            continue
        if not path.exists():
            raise ConfigError(f"RUN_DIR {argument} does not exist")
        runs = _runs_in(path)
        if not runs:
            what = "a file" if not path.is_dir() else "a folder"
            raise ConfigError(f"RUN_DIR {argument} is {what} that is not a ddcore run directory (no manifest.json) and holds none")
        found.extend(runs)
    unique: dict[Path, Path] = {}
    for run in found:
        unique.setdefault(run.resolve(), run)
    return list(unique.values()), skipped


def _runs_in(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    if (path / MANIFEST_FILE).exists():
        return [path]
    return sorted(child for child in path.iterdir() if child.is_dir() and (child / MANIFEST_FILE).exists())


def _read_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunSkipped(f"no {path.name}") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RunSkipped(f"{path.name} is not a readable {what} ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise RunSkipped(f"{path.name} is not a {what} (expected a JSON object)")
    return data


def _accuracies(metrics: dict[str, Any], key: str) -> tuple[float, ...] | None:
    values = metrics.get(key)
    if values is None:
        return None
    ok = isinstance(values, list) and values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if not ok or not all(0.0 <= float(v) <= 100.0 for v in values):
        raise RunSkipped(f"metrics.json {key} is not a list of accuracies in percent")
    return tuple(float(v) for v in values)


def method_of(manifest: dict[str, Any]) -> str:
    """``distill`` plus the active non-built-in plugins, in activation order; a set evaluated with
    ``dd eval --distilled PATH`` (``records["external"]``) is ``external:<name of PATH>``, never the
    selection-only ``none`` it would otherwise look like (its content hash is one of its settings,
    :func:`settings_of`, so two different sets under one name are two groups).

    >>> method_of({"config": {"distill": "tm"}, "plugins": [{"name": "eval", "source": "builtin"}, {"name": "edf", "source": "entry-point"}]})
    'tm+edf'
    >>> method_of({"config": {"distill": "none"}, "plugins": []})
    'none'
    >>> method_of({"config": {"distill": "none"}, "plugins": [], "records": {"external": {"path": "datm/cifar10-ipc10"}}})
    'external:cifar10-ipc10'
    """
    external = (manifest.get("records") or {}).get("external")
    if isinstance(external, dict):
        return f"external:{Path(str(external.get('path') or '?')).name}"
    distill = str((manifest.get("config") or {}).get("distill") or "none")
    plugins = [str(p.get("name")) for p in manifest.get("plugins") or [] if isinstance(p, dict) and p.get("source") != "builtin"]
    return "+".join([distill, *plugins])


def settings_of(manifest: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """The fingerprint keys that shape the set besides dataset, IPC, method and seed, as ``(key, JSON)`` pairs."""
    fingerprint = dict(manifest.get("fingerprint") or {})
    external = (manifest.get("records") or {}).get("external")
    if isinstance(external, dict):  # an evaluated external set: which set it was (content, 12 hex digits)
        fingerprint["external.content"] = str(external.get("content_sha256") or "?")[:12]
    return tuple(
        (key, json.dumps(value, sort_keys=True))
        for key, value in sorted(fingerprint.items())
        if key not in NOT_SETTINGS and not key.startswith(NOT_SETTINGS_PREFIXES)
    )


def read_run(run_dir: Path, evaluator: str = "eval") -> RunEntry:
    """One run's :class:`RunEntry`; raises :class:`RunSkipped` with the reason it cannot be compared."""
    manifest = _read_object(run_dir / MANIFEST_FILE, "run manifest")
    status = manifest.get("status")
    if status != "complete":
        raise RunSkipped(f"status {status!r}, not complete (`dd show {run_dir}` says how far it got)")
    metrics = _read_object(run_dir / METRICS_FILE, "metrics file").get("metrics")
    if not isinstance(metrics, dict):
        raise RunSkipped("metrics.json holds no metrics object")
    acc = _accuracies(metrics, f"{evaluator}/acc_runs")
    if acc is None:
        raise RunSkipped(f"no {evaluator}/acc_runs in metrics.json (evaluated with eval.runs = 0?); "
                         f"results of `dd eval` (eval-*.json) are not read")  # fmt: skip
    initial = _accuracies(metrics, f"{evaluator}/initial_acc_runs")
    config = manifest.get("config") or {}
    seed, ipc = manifest.get("seed", config.get("seed")), config.get("ipc")
    if not isinstance(seed, int) or not isinstance(ipc, int) or not config.get("dataset"):
        raise RunSkipped("the manifest records no seed, ipc or dataset")
    try:
        protocol = run_protocol(manifest, evaluator, run=str(run_dir))
    except DDError as exc:
        raise RunSkipped(str(exc).removeprefix(f"{run_dir} ")) from None
    return RunEntry(str(run_dir), seed, str(config["dataset"]), ipc, method_of(manifest), settings_of(manifest),
                    protocol, acc, initial)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Grouping and pairing
# ----------------------------------------------------------------------------------------------


def _label(method: str, settings: tuple[tuple[str, str], ...], varying: set[str]) -> str:
    shown = [f"{key}={value}" for key, value in settings if key in varying]
    return f"{method} [{', '.join(shown)}]" if shown else method


def _agree(a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...]) -> bool:
    """Whether two runs' settings agree on every key both record (a key one run lacks, e.g. an option added
    by a later ddcore, is not a difference)."""
    mine, theirs = dict(a), dict(b)
    return all(mine[key] == theirs[key] for key in mine.keys() & theirs.keys())


def group_runs(entries: Sequence[RunEntry]) -> tuple[list[Family], list[Skipped]]:
    """Families of groups in first-given order; a run joins the first group of its family and method whose
    settings agree with it (:func:`_agree`); a second run of one seed in one group is skipped."""
    families: dict[tuple, list[tuple[str, tuple[tuple[str, str], ...], list[RunEntry]]]] = {}
    skipped: list[Skipped] = []
    for entry in entries:
        groups = families.setdefault((entry.dataset, entry.ipc, entry.protocol), [])
        home = next((g for g in groups if g[0] == entry.method and _agree(g[1], entry.settings)), None)
        if home is None:
            groups.append((entry.method, entry.settings, [entry]))
            continue
        twin = next((run for run in home[2] if run.seed == entry.seed), None)
        if twin is not None:
            skipped.append(Skipped(entry.path, f"seed {entry.seed} of group {entry.method} is already {twin.path}; one run per seed"))
            continue
        home[2].append(entry)
    result = []
    for (dataset, ipc, protocol), groups in families.items():
        built = []
        for method, settings, runs in groups:
            others = [dict(s) for m, s, _ in groups if m == method and s is not settings]
            mine = dict(settings)
            varying = {k for other in others for k in mine.keys() & other.keys() if mine[k] != other[k]}
            built.append(Group(_label(method, settings, varying), method, settings, runs))
        result.append(Family(dataset, ipc, protocol, built))
    return result, skipped


def pair_groups(group: Group, baseline: Group) -> Difference:
    """``group`` - ``baseline`` paired by seed (module docstring: over seeds, or over networks for one seed)."""
    theirs = {run.seed: run for run in baseline.runs}
    common = [run.seed for run in group.runs if run.seed in theirs]
    mine = {run.seed: run for run in group.runs}
    if not common:
        note = f"no seed in common (seeds {_seeds(group.seeds)} vs {_seeds(baseline.seeds)}): not paired"
        return Difference(group.label, baseline.label, "none", [], None, note)
    if len(common) >= 2:
        result = paired_difference([mine[s].acc_mean for s in common], [theirs[s].acc_mean for s in common])
        return Difference(group.label, baseline.label, "seeds", common, result)
    seed = common[0]
    a, b = mine[seed].acc, theirs[seed].acc
    n = min(len(a), len(b))
    result = paired_difference(a[:n], b[:n])
    note = (f"one common seed ({seed}): paired over its {n} evaluation network{'s' if n != 1 else ''} (same network seeds), "
            "which measures evaluation noise only, not the spread over distillation seeds")  # fmt: skip
    if len(a) != len(b):
        note += f"; the first {n} networks of each ({len(a)} vs {len(b)})"
    return Difference(group.label, baseline.label, "networks", common, result, note)


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(map(str, seeds))


def choose_baseline(family: Family, wanted: str | None) -> tuple[Group | None, str]:
    """The family's baseline group and the rule that chose it (module docstring)."""
    if wanted is not None:
        match = next((g for g in family.groups if g.label == wanted), None)
        if match is None:
            by_method = [g for g in family.groups if g.method == wanted]
            match = by_method[0] if len(by_method) == 1 else None
        return match, f"--baseline {wanted}" + ("" if match else " (not among these groups: no differences)")
    none = [g for g in family.groups if g.method == DEFAULT_BASELINE_METHOD]
    if none:
        return none[0], "default: the selection-only group, distill none without plugins"
    return family.groups[0], "default: the first group given (no selection-only group)"


def compare_runs(run_dirs: Sequence[Path], *, evaluator: str = "eval", baseline: str | None = None,
                 skipped: Sequence[Skipped] = ()) -> Comparison:  # fmt: skip
    """Read, group and pair ``run_dirs`` (:func:`find_runs`); ``skipped``: what :func:`find_runs` left out.

    Raises:
        ConfigError: when no run can be compared (the line names each run's reason) or ``baseline`` names
            no group of any family.
    """
    entries: list[RunEntry] = []
    left_out = list(skipped)
    for run_dir in run_dirs:
        try:
            entries.append(read_run(run_dir, evaluator))
        except RunSkipped as exc:
            left_out.append(Skipped(str(run_dir), str(exc)))
    if not entries:
        reasons = "; ".join(f"{s.path}: {s.reason}" for s in left_out) or "no run given"
        raise ConfigError(f"no run to compare ({reasons})")
    families, twins = group_runs(entries)
    left_out += twins
    found_baseline = False
    for family in families:
        chosen, rule = choose_baseline(family, baseline)
        family.baseline_rule = rule
        if chosen is None:
            continue
        found_baseline = True
        family.baseline = chosen.label
        family.groups = [chosen, *[g for g in family.groups if g is not chosen]]
        for group in family.groups:
            if group is not chosen:
                family.differences[group.label] = pair_groups(group, chosen)
    if baseline is not None and not found_baseline:
        labels = sorted({g.label for f in families for g in f.groups})
        raise ConfigError(f"--baseline {baseline!r} is no group of the runs given; groups: {', '.join(labels)}")
    return Comparison(evaluator, families, left_out)


# ----------------------------------------------------------------------------------------------
# Rows for CSV and JSON
# ----------------------------------------------------------------------------------------------

#: The CSV columns, one row per group.
CSV_COLUMNS = (
    "dataset", "ipc", "evaluator", "protocol", "group", "method", "runs", "seeds", "networks", "acc_mean", "acc_std",
    "seed_std", "initial_acc_mean", "initial_acc_std", "baseline", "diff_mean", "diff_ci95_low", "diff_ci95_high",
    "pairs", "pair_unit", "paired_seeds", "note",
)  # fmt: skip


def group_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One flat row per group (:data:`CSV_COLUMNS`); ``None`` where a value does not exist."""
    rows = []
    for family in comparison.families:
        for group in family.groups:
            stats = group.stats()
            diff = family.differences.get(group.label)
            result = diff.result if diff else None
            rows.append({
                "dataset": family.dataset, "ipc": family.ipc, "evaluator": family.protocol.evaluator,
                "protocol": family.protocol.label(), "group": group.label, "method": group.method,
                "runs": len(group.runs), "seeds": _seeds(group.seeds), "networks": len(group.networks), **stats,
                "baseline": family.baseline, "diff_mean": result and result["mean"],
                "diff_ci95_low": result and result.get("ci95_low"), "diff_ci95_high": result and result.get("ci95_high"),
                "pairs": diff.pairs if diff else None, "pair_unit": diff.unit if diff else None,
                "paired_seeds": _seeds(diff.seeds) if diff else None, "note": diff.note if diff else "",
            })  # fmt: skip
    return rows


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison as JSON: families (protocol, baseline and the rule that chose it, groups with their
    runs and the paired difference) and the skipped runs."""
    families = []
    for family in comparison.families:
        groups = []
        for group in family.groups:
            diff = family.differences.get(group.label)
            groups.append({
                "label": group.label, "method": group.method, "settings": {k: json.loads(v) for k, v in group.settings},
                "seeds": group.seeds, "networks": len(group.networks), **group.stats(),
                "runs": [{"path": r.path, "seed": r.seed, "acc_runs": list(r.acc), "acc_mean": r.acc_mean,
                          "initial_acc_runs": list(r.initial) if r.initial else None} for r in group.runs],
                "vs_baseline": None if diff is None else {"baseline": diff.baseline, "unit": diff.unit, "seeds": diff.seeds,
                                                          "pairs": diff.pairs, **(diff.result or {}), "note": diff.note},
            })  # fmt: skip
        families.append({
            "dataset": family.dataset, "ipc": family.ipc, "evaluator": family.protocol.evaluator,
            "protocol": family.protocol.to_dict(), "protocol_label": family.protocol.label(),
            "baseline": family.baseline, "baseline_rule": family.baseline_rule, "groups": groups,
        })  # fmt: skip
    return {"evaluator": comparison.evaluator, "families": families,
            "skipped": [{"path": s.path, "reason": s.reason} for s in comparison.skipped]}  # fmt: skip


def draw_comparison(comparison: Comparison, path: str | Path) -> None:
    """The bar chart of ``comparison`` (:mod:`ddcore.barchart`) at ``path``: one panel per family, one bar per
    group (mean accuracy ± std over its networks; the baseline grey), captioned with the paired difference
    and its 95% interval."""
    from ddcore.barchart import Bar, Panel, draw_bar_chart

    panels = []
    for family in comparison.families:
        bars = []
        for group in family.groups:
            stats = group.stats()
            diff = family.differences.get(group.label)
            if group.label == family.baseline:
                caption = "baseline"
            elif diff is None or diff.result is None:
                caption = "not paired"
            elif "ci95_low" in diff.result:
                caption = f"diff {diff.result['mean']:+.1f} [{diff.result['ci95_low']:+.1f}, {diff.result['ci95_high']:+.1f}]"
            else:
                caption = f"diff {diff.result['mean']:+.1f} (one pair)"
            bars.append(Bar(group.label, stats["acc_mean"], stats["acc_std"], caption, muted=group.label == family.baseline))
        title = (f"{family.dataset}, IPC {family.ipc}: {comparison.evaluator} test accuracy % (mean ± std over networks); "
                 f"diff: paired difference with {family.baseline or 'no baseline'} [95% CI]")  # fmt: skip
        panels.append(Panel(title, bars, subtitle=family.protocol.label()))
    draw_bar_chart(panels, path)
