"""One quality script (issue 17, part 5): a declared grid of ``dd run`` cells, paired by seed, one table.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/quality.py --out runs/quality            # the default grid
    .venv/bin/python bench/quality.py --out runs/quality --methods tm --ipc 10 --seeds 0-2      # narrowed
    .venv/bin/python bench/quality.py --grid my-grid.toml --device cuda --out runs/quality-gpu
    .venv/bin/python bench/quality.py --out runs/quality --report --markdown table.md --json table.json  # the file's grid
    .venv/bin/python bench/quality.py --out runs/quality --dry-run                               # cells, commands, time left
    .venv/bin/python bench/quality.py --out runs/q-mnist --datasets mnist --data-root ~/data     # datasets read from files

Exit status 0, or 1 when any cell of the grid failed (the table lists it), 2 for bad input, 130 when
interrupted (Ctrl-C or SIGTERM; finished cells are kept).

**Grid.** methods x datasets x IPC x seeds (default: ``random tm edf observer diffusion`` on
``compdd/proxy-easy compdd/proxy-hard``, IPC 1 and 10, seeds 0-4). A method is a ``dd run`` recipe
(:data:`METHODS`: plugins, distiller, selection, options), the evaluations it reports (``hard``: the
built-in evaluator's ``eval/acc_*``; ``kd``: diffsel's KD evaluator's ``diffsel/kd_acc_*``) and the
methods it is compared with. A method's baselines join the grid when it is narrowed (``--methods tm``
also runs ``random``). ``--grid FILE`` (TOML) declares another grid, see :func:`read_grid`.

**Cells.** Each cell is one ``dd run`` in a subprocess (``python -m ddcore_cli run``; a failing or
interrupted cell leaves the others intact), run directory ``OUT/runs/<dataset>-ipc<k>-<method>-seed<s>-<key>``,
options in this order, later wins: ``holdout = "always"``, ``validation = 0.1`` (the same validation
split carved from the training split in every cell, so every cell selects from the same training
images), the dataset's options (``compdd/*``: ``--plugin compdd``, ``plugin.compdd.evaluate = "off"``, so
every accuracy is the built-in evaluator's), the method's, then the grid file's ``set`` and ``--set``.

**Pairing.** A run's selection is ``derive_generator(seed, "select", "random-real")`` and its evaluation
network ``r`` gets ``derive_seed(seed, "eval", "distilled", r, ...)`` (ddcore/builtin/*), so seed ``s`` of
``random``, ``tm`` and ``edf`` evaluates the same random real images, and ``tm``/``edf`` start matching from
them, with the same evaluation seeds. The script checks it: a matching cell's ``eval/initial_acc_runs``
(its starting images, evaluated by its own evaluator) must equal the ``random`` cell's ``eval/acc_runs``
of that seed; the table reports the largest difference (0 on a CPU).

**Results file.** ``OUT/results.jsonl``, one JSON line per finished (or failed) cell, appended with one
``write`` under ``O_APPEND`` and fsynced; the key is a hash of the cell's full config (dataset, IPC,
seed, method, plugins, every option, device). A rerun skips complete cells and reruns failed ones
(``--skip-failed`` keeps them). A results file holding cells made with other global options (device,
``set``) is refused unless ``--allow-other-globals``; the table only ever uses the current grid's cells.
``--report`` reads the grid and the global options from the results file (flags narrow it), see :func:`report`.
``--cache-dir`` and ``--data-root`` reach every cell but not its key (each line records the data root).

**Table.** Per dataset x IPC x method x evaluation: seeds, mean ± std of the per-seed accuracy (each the
mean over the run's evaluation networks, test split, as the evaluator reports it), and the mean paired
difference against each baseline with its 95% Student-t interval over seeds (``scipy.stats.t``), then
the command that reproduces the table. The script selects nothing: options come from the grid.
Bad input is one line, exit 2, before any file is written: the grid, then ``dd run``'s checks of each
distinct cell config, each dataset built once (its data root), and that every evaluation the table needs is on.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import fcntl
import functools
import hashlib
import json
import math
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ddcore.config import deep_merge, parse_assignment, read_config_file
from ddcore.errors import ConfigError, DDError

RESULTS_FILE = "results.jsonl"
LOCK_FILE = "quality.lock"
FORMAT = 1

#: What an evaluation reads from a run's metrics: ``<prefix>_mean`` and ``<prefix>_runs`` (accuracy %; ``hard``, ``kd``: test split).
#: ``val`` / ``kd-val``: the same networks on the validation split carved from the training split (what a
#: grid that chooses presets reports; never the test split).
EVALUATIONS: dict[str, str] = {
    "hard": "eval/acc", "val": "eval/val_acc", "kd": "diffsel/kd_acc", "kd-val": "diffsel/kd_val_acc",
}  # fmt: skip

#: Options every cell starts from (``holdout = "always"``: every method carves the same validation split).
BASE_OPTIONS: dict[str, Any] = {"holdout": "always", "validation": 0.1}


@dataclasses.dataclass(frozen=True)
class Method:
    """A ``dd run`` recipe and how it is reported.

    ``options``: dotted config keys -> values (``--set``). ``evaluations``: keys of :data:`EVALUATIONS`
    it reports. ``baselines``: methods it is compared with, per evaluation both report. ``starts_from``:
    the method whose selection this one starts matching from (its ``eval/initial_acc_runs`` must equal
    that method's ``eval/acc_runs``), or ``""``.
    """

    name: str
    plugins: tuple[str, ...] = ()
    distill: str = ""
    select: str = ""
    options: tuple[tuple[str, Any], ...] = ()
    evaluations: tuple[str, ...] = ("hard",)
    baselines: tuple[str, ...] = ()
    starts_from: str = ""
    about: str = ""


KD = (("plugin.diffsel.kd.runs", 3),)

#: The built-in methods (a grid file may add or replace methods in ``[method.NAME]`` tables).
METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("random", about="the seed's random real images (built-in random-real), evaluated as selected"),
        Method("tm", distill="tm", baselines=("random",), starts_from="random",
               about="trajectory matching from the seed's random real images (tm.preset = auto)"),
        Method("edf", plugins=("edf",), distill="tm", baselines=("random", "tm"), starts_from="random",
               about="tm weighted by the edf plugin (plugin.edf.preset = auto)"),
        Method("random-kd", plugins=("diffsel",), select="random-real", options=(("eval.runs", 0), *KD),
               evaluations=("kd",), about="the seed's random real images under diffsel's KD evaluator"),
        Method("observer", plugins=("diffsel",), options=(("plugin.diffsel.scorer", "observer"), *KD),
               evaluations=("hard", "kd"), baselines=("random", "random-kd"),
               about="diffsel's RDED-style observer selection"),
        Method("diffusion", plugins=("diffsel",), options=(("plugin.diffsel.scorer", "diffusion"), *KD),
               evaluations=("hard", "kd"), baselines=("random", "random-kd"),
               about="diffsel's diffusion-driven selection"),
    )
}  # fmt: skip

DEFAULT_GRID: dict[str, Any] = {
    "methods": ["random", "tm", "edf", "observer", "diffusion"],
    "datasets": ["compdd/proxy-easy", "compdd/proxy-hard"],
    "ipc": [1, 10],
    "seeds": [0, 1, 2, 3, 4],
}


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the grid: its name, the plugins it needs and its options (dotted keys)."""

    name: str
    plugins: tuple[str, ...] = ()
    options: tuple[tuple[str, Any], ...] = ()


def default_dataset(name: str) -> DatasetSpec:
    """``compdd/*`` needs ``--plugin compdd``; its protocol evaluator is off, so every cell uses the built-in one."""
    if name.startswith("compdd/"):
        return DatasetSpec(name, ("compdd",), (("plugin.compdd.evaluate", "off"),))
    return DatasetSpec(name)


# ----------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------


def paired_stats(diffs: Sequence[float]) -> dict[str, Any]:
    """Mean of paired differences and its two-sided 95% Student-t interval over the pairs.

    ``diffs``: per-seed differences (accuracy points). Returns ``n``, ``mean``, ``std`` (sample std,
    ``None`` for one pair), ``t`` (``scipy.stats.t.ppf(0.975, n - 1)``), ``low``/``high``
    (``mean ± t * std / sqrt(n)``; ``None`` for one pair: no interval from one seed).

    Raises ``ValueError`` for no differences or a non-finite one.

    >>> s = paired_stats([1.0, 2.0, 3.0])
    >>> s["mean"], round(s["t"], 4), round(s["high"] - s["mean"], 4)
    (2.0, 4.3027, 2.4841)
    """
    values = [float(d) for d in diffs]
    if not values:
        raise ValueError("paired_stats: no differences")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"paired_stats: non-finite difference in {values}")
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return {"n": n, "mean": mean, "std": None, "t": None, "low": None, "high": None, "diffs": values}
    from scipy.stats import t as student_t

    std = statistics.stdev(values)
    t = float(student_t.ppf(0.975, n - 1))
    half = t * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "t": t, "low": mean - half, "high": mean + half, "diffs": values}


# ----------------------------------------------------------------------------------------------
# Option values as `--set` text
# ----------------------------------------------------------------------------------------------


def toml_value(value: Any, key: str) -> str:
    """``value`` as a TOML value for ``--set key=...``; refuses what would not read back identically.

    >>> toml_value("observer", "plugin.diffsel.scorer"), toml_value(1e-05, "tm.lr_lr"), toml_value([1, 2], "k")
    ('"observer"', '1e-05', '[1, 2]')
    """
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"option {key} = {value}: not a finite number")
        text = repr(value)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(toml_value(v, key) for v in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(v, key)}" for k, v in value.items()) + "}"
    else:
        raise ConfigError(f"option {key} = {value!r}: not a TOML value (string, number, boolean, list, table)")
    if parse_assignment(f"v={text}")["v"] != (list(value) if isinstance(value, tuple) else value):
        raise ConfigError(f"option {key} = {value!r} does not survive --set {key}={text}; write it another way")
    return text


def flat_options(assignments: Iterable[str], where: str) -> dict[str, Any]:
    """``["eval.runs=3", ...]`` -> ``{"eval.runs": 3}`` (values read as TOML, as ``dd run --set`` does)."""
    out: dict[str, Any] = {}
    for text in assignments:
        key, sep, _ = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} {text!r}: expected KEY=VALUE, e.g. eval.runs=3")
        value = parse_assignment(text)
        for part in key.strip().split("."):
            value = value[part]
        out[key.strip()] = value
    return out


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested TOML table as dotted keys: ``{"tm": {"iterations": 2}}`` -> ``{"tm.iterations": 2}``."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


# ----------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Grid:
    methods: list[Method]
    datasets: list[DatasetSpec]
    ipc: list[int]
    seeds: list[int]
    options: dict[str, Any]  # the global options: BASE_OPTIONS, the grid file's `set`, then --set
    overrides: dict[str, Any]  # the grid file's `set`, then --set: they win over the datasets' and methods' options
    device: str
    added: list[str]  # baselines that joined the grid


def _list(value: Any, key: str, kind: type, where: str) -> list:
    if not isinstance(value, list) or not value or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{where}: key '{key}' must be a non-empty list of {kind.__name__}s, got {value!r}")
    return value


def read_grid(path: Path | None) -> tuple[dict[str, Any], dict[str, Method], dict[str, DatasetSpec]]:
    """The grid file (TOML), or the default grid.

    Keys (all optional; absent ones take the default grid's): ``methods``, ``datasets`` (names),
    ``ipc``, ``seeds`` (lists), ``set`` (a table of global options, as ``--set``), ``[method.NAME]``
    (``base`` a method to start from; ``plugins``, ``distill``, ``select``, ``set``, ``evaluations``,
    ``baselines``, ``starts_from``, ``about``: given keys replace the base's) and ``[dataset."NAME"]``
    (``plugins``, ``set``). Unknown keys and wrong types are one-line :class:`ConfigError` s naming the file.
    """
    methods, datasets = dict(METHODS), {}
    grid = dict(DEFAULT_GRID)
    grid["set"] = {}
    if path is None:
        return grid, methods, datasets
    where = f"grid file {path} (option --grid)"
    try:
        data = read_config_file(path)
    except ConfigError as exc:  # its message names dd run's --config; here the file is --grid's
        raise ConfigError(str(exc).replace("config file", "grid file").replace("(option --config)", "(option --grid)")) from None
    unknown = set(data) - {"methods", "datasets", "ipc", "seeds", "set", "method", "dataset"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    for key, kind in (("methods", str), ("datasets", str), ("ipc", int), ("seeds", int)):
        if key in data:
            grid[key] = _list(data[key], key, kind, where)
    if "set" in data:
        if not isinstance(data["set"], Mapping):
            raise ConfigError(f"{where}: key 'set' must be a table of options")
        grid["set"] = flatten(data["set"])
    for name, table in (data.get("method") or {}).items():
        fields = {"base", "plugins", "distill", "select", "set", "evaluations", "baselines", "starts_from", "about"}
        if not isinstance(table, Mapping) or set(table) - fields:
            raise ConfigError(f"{where}: [method.{name}] may hold only {', '.join(sorted(fields))}")
        base = table.get("base", name if name in methods else "")
        if base and base not in methods:
            raise ConfigError(f"{where}: [method.{name}] base {base!r} is not a method ({', '.join(methods)})")
        method = methods[base] if base else Method(name)
        changes: dict[str, Any] = {"name": name}
        for key in ("plugins", "evaluations", "baselines"):
            if key in table:
                changes[key] = tuple(_list(table[key], key, str, f"{where} [method.{name}]")) if table[key] else ()
        for key in ("distill", "select", "starts_from", "about"):
            if key in table:
                if not isinstance(table[key], str):
                    raise ConfigError(f"{where}: [method.{name}] key '{key}' must be a string")
                changes[key] = table[key]
        if "set" in table:
            changes["options"] = tuple({**dict(method.options), **flatten(table["set"])}.items())
        methods[name] = dataclasses.replace(method, **changes)
    for name, table in (data.get("dataset") or {}).items():
        if not isinstance(table, Mapping) or set(table) - {"plugins", "set"}:
            raise ConfigError(f'{where}: [dataset."{name}"] may hold only plugins, set')
        plugins = tuple(_list(table["plugins"], "plugins", str, where)) if table.get("plugins") else ()
        datasets[name] = DatasetSpec(name, plugins, tuple(flatten(table.get("set") or {}).items()))
    return grid, methods, datasets


def parse_seeds(words: Sequence[str]) -> list[int]:
    """``["0-4"]`` or ``["0", "2"]`` or ``["0,1"]`` -> seeds (sorted, unique); bad text is a ConfigError.

    >>> parse_seeds(["0-2", "5"])
    [0, 1, 2, 5]
    """
    seeds: set[int] = set()
    for word in (w for text in words for w in text.split(",") if w):
        low, dash, high = word.partition("-")
        try:
            start, stop = int(low), int(high) if dash else int(low)
        except ValueError:
            raise ConfigError(f"--seeds {word!r}: expected integers or ranges like 0-4") from None
        if start < 0 or stop < start:
            raise ConfigError(f"--seeds {word!r}: expected seeds >= 0 and ranges low-high with low <= high")
        seeds.update(range(start, stop + 1))
    if not seeds:
        raise ConfigError("--seeds: no seed given")
    return sorted(seeds)


def build_grid(args: argparse.Namespace) -> Grid:
    """The grid file (or default), narrowed by the flags; every check before any file is written."""
    grid, methods, datasets = read_grid(args.grid)
    names = args.methods or grid["methods"]
    for name in names:
        if name not in methods:
            hint = "" if args.grid else "; a grid file's [method.NAME] needs that --grid"
            raise ConfigError(f"method {name!r} is not defined (option --methods); methods: {', '.join(methods)}{hint}")
    chosen, added = list(dict.fromkeys(names)), []
    pending = list(chosen)
    while pending:  # a method's baselines (and what it starts from) join the grid
        method = methods[pending.pop(0)]
        for needed in (*method.baselines, *([method.starts_from] if method.starts_from else [])):
            if needed not in methods:
                raise ConfigError(f"method {method.name!r} compares with {needed!r}, which is not defined (option --grid)")
            if needed not in chosen:
                chosen.append(needed)
                added.append(needed)
                pending.append(needed)
    order = list(methods)
    chosen.sort(key=order.index)  # the declared order (built-ins: baselines first)
    for name in chosen:
        for evaluation in methods[name].evaluations:
            if evaluation not in EVALUATIONS:
                raise ConfigError(f"method {name!r}: evaluation {evaluation!r} unknown; known: {', '.join(EVALUATIONS)}")
    ipcs = args.ipc or grid["ipc"]
    if any(k < 1 for k in ipcs):
        raise ConfigError(f"--ipc {ipcs}: every IPC must be >= 1")
    seeds = parse_seeds([str(s) for s in grid["seeds"]] if args.seeds is None else args.seeds)
    if any(s >= 2**32 for s in seeds):
        raise ConfigError("--seeds: a seed must be below 2^32")
    overrides = {**grid["set"], **flat_options(args.sets, "--set")}
    options = {**BASE_OPTIONS, **overrides}
    for key, value in options.items():
        toml_value(value, key)
    for method in (methods[n] for n in chosen):
        for key, value in method.options:
            toml_value(value, f"[method.{method.name}] {key}")
    names = args.datasets or grid["datasets"]
    specs = [datasets.get(n) or default_dataset(n) for n in dict.fromkeys(names)]
    return Grid([methods[n] for n in chosen], specs, list(dict.fromkeys(ipcs)), seeds, options, overrides,
                args.device or "cpu", added)


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    dataset: DatasetSpec
    ipc: int
    seed: int
    method: Method
    options: dict[str, Any]  # every --set, merged in precedence order
    device: str

    @property
    def plugins(self) -> list[str]:
        return list(dict.fromkeys([*self.dataset.plugins, *self.method.plugins]))

    def config(self) -> dict[str, Any]:
        """Everything that shapes the cell's result (the key hashes this)."""
        return {
            "dataset": self.dataset.name, "ipc": self.ipc, "seed": self.seed, "method": self.method.name,
            "plugins": self.plugins, "distill": self.method.distill or "none", "select": self.method.select,
            "options": dict(sorted(self.options.items())), "device": self.device,
        }  # fmt: skip

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.config(), sort_keys=True).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        return f"{self.dataset.name.replace('/', '-')}-ipc{self.ipc}-{self.method.name}-seed{self.seed}-{self.key[:8]}"

    def run_args(self) -> list[str]:
        """The ``dd run`` arguments of this cell (without ``--out``)."""
        argv = [arg for plugin in self.plugins for arg in ("--plugin", plugin)]
        argv += ["--dataset", self.dataset.name, "--ipc", str(self.ipc), "--seed", str(self.seed)]
        if self.method.distill:
            argv += ["--distill", self.method.distill]
        if self.method.select:
            argv += ["--select", self.method.select]
        if self.device == "cpu":
            argv.append("--cpu")
        for key, value in self.options.items():
            argv += ["--set", f"{key}={toml_value(value, key)}"]
        return argv

    def run_config(self, cache_dir: str, data_root: str = "") -> dict[str, Any]:
        """The config ``dd run <run_args>`` builds (for validating a cell before any work)."""
        data: dict[str, Any] = {}
        for key, value in self.options.items():
            data = deep_merge(data, parse_assignment(f"{key}={toml_value(value, key)}"))
        data.update(dataset=self.dataset.name, ipc=self.ipc, seed=self.seed, plugins=self.plugins, cpu=self.device == "cpu")
        for key in ("distill", "select"):
            if getattr(self.method, key):
                data[key] = getattr(self.method, key)
        if cache_dir:
            data["cache_dir"] = cache_dir
        if data_root:
            data["data_root"] = data_root
        return data


def applies(key: str, distill: str, plugins: Sequence[str]) -> bool:
    """Whether global option ``key`` concerns a cell: a distiller's table (``tm.*``) only cells with that
    distiller, a plugin's section (``plugin.edf.*``) only cells with that plugin; core keys every cell."""
    from ddcore.config import RunConfig

    top, _, rest = key.partition(".")
    if top == "plugin":
        return rest.partition(".")[0] in plugins
    core = {f.name for f in dataclasses.fields(RunConfig) if f.init}
    return top in core or top == distill


def cells_of(grid: Grid) -> list[Cell]:
    """Every cell of the grid, dataset-major, then IPC, method, seed."""
    cells = []
    for dataset in grid.datasets:
        for ipc in grid.ipc:
            for method in grid.methods:
                plugins = [*dataset.plugins, *method.plugins]
                mine = {k: v for k, v in grid.overrides.items() if applies(k, method.distill or "none", plugins)}
                # later wins: the base, the dataset's, the method's, then the grid file's `set` and --set
                options = {**BASE_OPTIONS, **dict(dataset.options), **dict(method.options), **mine}
                for seed in grid.seeds:
                    cells.append(Cell(dataset, ipc, seed, method, dict(options), grid.device))
    return cells


def global_options(grid: Grid) -> dict[str, Any]:
    """What applies to every cell: the device and the global options. A results file holds one such set."""
    return {"device": grid.device, "set": dict(sorted(grid.options.items()))}


def globals_hash(globals_: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(globals_, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# The results file
# ----------------------------------------------------------------------------------------------


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The results file's records by cell key (a later line for a key wins; a torn last line is skipped)."""
    if not path.exists():
        return {}
    records: dict[str, dict[str, Any]] = {}
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: a write cut short; that cell runs again
                print(f"note: {path}:{number} is an unfinished line (a cut write); that cell runs again", file=sys.stderr)
                continue
            raise ConfigError(f"{path}:{number} is not a JSON line; repair or remove it (option --out)") from None
        if not isinstance(record, dict) or "key" not in record or "status" not in record:
            raise ConfigError(f"{path}:{number} is not a quality.py record; use another --out")
        records[record["key"]] = record
    return records


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line: a single ``write`` under ``O_APPEND``, then fsync (a line is whole or absent).

    A last line without its newline (a write cut short) is cut off first; its cell was not recorded.
    """
    from ddcore.atomic import non_finite_paths

    bad = non_finite_paths(record)
    if bad:
        raise ValueError(f"record for {record.get('key')} holds non-finite numbers at {', '.join(bad)}")
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        existing = path.read_bytes()
        if existing and not existing.endswith(b"\n"):  # a write cut short (never a whole record): drop it
            os.ftruncate(fd, existing.rfind(b"\n") + 1)
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path}: {written} of {len(data)} bytes")
        os.fsync(fd)
    finally:
        os.close(fd)


def check_globals(records: Mapping[str, Mapping[str, Any]], current: Mapping[str, Any], path: Path, allow: bool) -> None:
    """Refuse a results file whose cells were made with other global options (unless ``allow``)."""
    mine = globals_hash(current)
    others = [r for r in records.values() if r.get("globals_hash") != mine]
    if not others or allow:
        return
    theirs = others[0].get("globals") or {}
    old_set, new_set = theirs.get("set") or {}, current["set"]
    shown = lambda table, key: json.dumps(table[key]) if key in table else "unset"  # noqa: E731
    changes = [f"device {theirs.get('device')} -> {current['device']}"] if theirs.get("device") != current["device"] else []
    changes += [f"{k} {shown(old_set, k)} -> {shown(new_set, k)}" for k in sorted(set(old_set) | set(new_set))
                if old_set.get(k, ...) != new_set.get(k, ...)]  # fmt: skip
    raise ConfigError(
        f"{path} holds {len(others)} cell(s) made with other global options ({'; '.join(changes) or 'another format'}); "
        "use another --out, or pass --allow-other-globals to add this grid's cells beside them"
    )


# ----------------------------------------------------------------------------------------------
# Running a cell
# ----------------------------------------------------------------------------------------------


def one_line_error(stderr: str, returncode: int) -> str:
    """The ``Error: ...`` line ``dd`` printed (the last one), else the last non-empty line, else the exit status."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error")]
    text = errors[-1] if errors else (lines[-1] if lines else "")
    return f"exit {returncode}: {text}" if text else f"exit {returncode} with no message"


def extract(metrics: Mapping[str, Any], method: Method) -> dict[str, Any]:
    """The cell's figures per evaluation (``acc``: the mean over networks; ``runs``: each network); raises
    ``ValueError`` naming a missing or non-finite metric (never a silently missing number)."""
    out: dict[str, Any] = {}
    for evaluation in method.evaluations:
        prefix = EVALUATIONS[evaluation]
        mean, runs = metrics.get(f"{prefix}_mean"), metrics.get(f"{prefix}_runs")
        if not isinstance(mean, (int, float)) or not isinstance(runs, list) or not runs:
            raise ValueError(f"the run reported no {prefix}_mean/{prefix}_runs (evaluation {evaluation!r})")
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in [mean, *runs]):
            raise ValueError(f"the run reported a non-finite {prefix} figure")
        out[evaluation] = {"acc": float(mean), "runs": [float(v) for v in runs]}
    if isinstance(metrics.get("eval/initial_acc_runs"), list):
        out["initial_runs"] = [float(v) for v in metrics["eval/initial_acc_runs"]]
    return out


def run_cell(
    cell: Cell, run_dir: Path, log: Path, cache_dir: str, data_root: str = "", processes: set | None = None,
    stopping: Any = None,
) -> tuple[dict[str, Any], float]:
    """``python -m ddcore_cli run`` for ``cell`` into ``run_dir``; returns (record fields, seconds).

    A run directory left by an interrupted attempt is replaced (``--overwrite``; a folder without a
    manifest is removed first). Its stderr goes to ``log``. KeyboardInterrupt kills the run's process and
    propagates. ``processes``: a set the running process is kept in while it runs (``--jobs``: the main
    thread stops them on an interrupt); ``stopping``: that interrupt's ``threading.Event``, checked once
    the process is in the set, so a cell that starts while the main thread stops the others stops too.
    """
    if run_dir.exists() and not (run_dir / "manifest.json").exists():
        shutil.rmtree(run_dir)
    argv = [sys.executable, "-m", "ddcore_cli", "run", *cell.run_args(), "--out", str(run_dir), "--overwrite", "--quiet", "--json"]
    argv += paths_args(cache_dir, data_root)
    started = time.perf_counter()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        if processes is not None:
            processes.add(process)
            if stopping is not None and stopping.is_set():  # set before the main thread's pass over ``processes``
                process.terminate()
        try:
            _, stderr = process.communicate()
        except BaseException:
            process.kill()
            raise
        finally:
            if processes is not None:
                processes.discard(process)
    seconds = time.perf_counter() - started
    from ddcore.atomic import write_text

    write_text(log, stderr)
    if process.returncode != 0:
        return {"status": "failed", "error": one_line_error(stderr, process.returncode)}, seconds
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))["metrics"]
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        figures = extract(metrics, cell.method)
    except KeyError as exc:
        return {"status": "failed", "error": f"the run finished but {run_dir}/metrics.json has no {exc} entry"}, seconds
    except OSError as exc:
        error = f"the run finished but its results cannot be read: {exc.strerror or exc} ({exc.filename})"
        return {"status": "failed", "error": error}, seconds
    except ValueError as exc:
        return {"status": "failed", "error": f"the run finished but {exc}"}, seconds
    stages = {name: stage.get("seconds") for name, stage in (manifest.get("stages") or {}).items() if isinstance(stage, Mapping)}
    return {"status": "complete", "figures": figures, "metrics": metrics, "stages": stages}, seconds


def paths_args(cache_dir: str, data_root: str) -> list[str]:
    """``--cache-dir``/``--data-root`` for ``dd run`` (where files are, not what a cell computes: not in its key)."""
    return [*(["--cache-dir", cache_dir] if cache_dir else []), *(["--data-root", data_root] if data_root else [])]


#: The option that sets how many networks an evaluation trains (it must be >= 1 for the table to have a figure).
EVALUATION_RUNS: dict[str, str] = {
    "hard": "eval.runs", "val": "eval.runs", "kd": "plugin.diffsel.kd.runs", "kd-val": "plugin.diffsel.kd.runs",
}  # fmt: skip


def check_evaluations(cells: Sequence[Cell]) -> None:
    """Refuse a cell whose options turn off an evaluation its method reports (e.g. ``eval.runs = 0``):
    it would run fully and then have no figure for the table. Raises :class:`ConfigError`."""
    for cell in cells:
        for evaluation in cell.method.evaluations:
            key = EVALUATION_RUNS.get(evaluation)
            value = cell.options.get(key) if key else None
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ConfigError(
                    f"{key} = {value}: method {cell.method.name!r} reports {EVALUATIONS[evaluation]}_mean, which needs "
                    f"{key} >= 1 for a quality grid (option --set or the grid file's set)"
                )


def validate_cells(cells: Sequence[Cell], cache_dir: str, data_root: str = "") -> None:
    """Every distinct (dataset, IPC, method) config through ``dd run``'s own checks (no work, nothing written),
    then each dataset built once (a missing or wrong ``--data-root`` fails here, before the first cell).

    Also checks that the checked config evaluates what the method reports (``eval.runs >= 1`` for ``hard``).
    Raises :class:`ConfigError` naming the cell."""
    from ddcore.runner import Pipeline

    seen: set[tuple[str, int, str]] = set()
    built: set[str] = set()
    for cell in cells:
        if (cell.dataset.name, cell.ipc, cell.method.name) in seen:
            continue
        seen.add((cell.dataset.name, cell.ipc, cell.method.name))
        where = f"cell {cell.dataset.name} IPC {cell.ipc} method {cell.method.name}"
        try:
            pipeline = Pipeline(cell.run_config(cache_dir, data_root), write=False)
            builtin = [e for e in cell.method.evaluations if EVALUATION_RUNS[e] == "eval.runs"]
            if builtin and pipeline.config.eval.runs < 1:
                raise ConfigError(f"eval.runs = {pipeline.config.eval.runs}: method {cell.method.name!r} reports "
                                  f"{EVALUATIONS[builtin[0]]}_mean, which needs eval.runs >= 1 for a quality grid (option --set)")  # fmt: skip
            if cell.dataset.name not in built:
                built.add(cell.dataset.name)
                pipeline.build_dataset()
        except DDError as exc:  # dd run names its own --dataset; here the option is --datasets
            raise ConfigError(f"{where}: {str(exc).replace('(option --dataset)', '(option --datasets)')}") from None


# ----------------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------------


def table_rows(grid: Grid, keys: Mapping[tuple, str], records: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per dataset x IPC x method x evaluation, from the current grid's cells only.

    ``keys``: (dataset, IPC, method, seed) -> the cell key whose record is that cell (absent: not run)."""
    rows = []
    for dataset in grid.datasets:
        for ipc in grid.ipc:
            for method in grid.methods:
                mine = {s: records.get(keys.get((dataset.name, ipc, method.name, s), ""), {}) for s in grid.seeds}
                done = {s: r for s, r in mine.items() if r.get("status") == "complete"}
                failed = {s: r["error"] for s, r in mine.items() if r.get("status") == "failed"}
                for evaluation in method.evaluations:
                    # a cell recorded before its method reported this evaluation has no figure for it: not done
                    per_seed = {s: r["figures"][evaluation]["acc"] for s, r in sorted(done.items()) if evaluation in r["figures"]}
                    accs = list(per_seed.values())
                    row: dict[str, Any] = {
                        "dataset": dataset.name, "ipc": ipc, "method": method.name, "evaluation": evaluation,
                        "n": len(accs), "mean": statistics.fmean(accs) if accs else None,
                        "std": statistics.stdev(accs) if len(accs) > 1 else None,
                        "per_seed": {str(s): {"acc": a, "run_dir": done[s]["run_dir"], "key": done[s]["key"]} for s, a in per_seed.items()},
                        "failed": {str(s): e for s, e in failed.items()}, "missing": len(grid.seeds) - len(accs) - len(failed),
                        "vs": {},
                    }  # fmt: skip
                    for base in method.baselines:
                        base_method = next(m for m in grid.methods if m.name == base)
                        if evaluation not in base_method.evaluations:
                            continue
                        base_records = {s: records.get(keys.get((dataset.name, ipc, base, s), ""), {}) for s in grid.seeds}
                        base_acc = {s: r["figures"][evaluation]["acc"] for s, r in base_records.items()
                                    if r.get("status") == "complete" and evaluation in r["figures"]}  # fmt: skip
                        common = [s for s in per_seed if s in base_acc]
                        if common:
                            stats = paired_stats([per_seed[s] - base_acc[s] for s in common])
                            row["vs"][base] = {**stats, "seeds": common}
                        else:
                            row["vs"][base] = {"n": 0}
                    if method.starts_from and evaluation == "hard":
                        row["start_check"] = start_check(dataset.name, ipc, method, keys, records, done)
                    rows.append(row)
    return rows


def start_check(dataset: str, ipc: int, method: Method, keys, records, done) -> dict[str, Any]:
    """Largest |initial - start method| over networks and seeds: the pairing, measured (0 on a CPU)."""
    worst, checked = 0.0, []
    for seed, record in done.items():
        base = records.get(keys.get((dataset, ipc, method.starts_from, seed), ""), {})
        initial = record["figures"].get("initial_runs")
        if base.get("status") != "complete" or initial is None:
            continue
        start = base["figures"].get("hard", {}).get("runs", [])
        if len(start) != len(initial):
            return {"seeds": checked, "max_abs_diff": None, "note": f"seed {seed}: {len(initial)} vs {len(start)} networks"}
        worst = max(worst, *(abs(a - b) for a, b in zip(initial, start)))
        checked.append(seed)
    return {"seeds": checked, "max_abs_diff": worst if checked else None}


def fmt_diff(vs: Mapping[str, Any]) -> str:
    if not vs.get("n"):
        return "no paired seeds"
    text = f"{vs['mean']:+.2f}"
    if vs.get("low") is None:
        return f"{text} (1 seed, no interval)"
    return f"{text} [{vs['low']:+.2f}, {vs['high']:+.2f}] (n={vs['n']})"


def markdown(rows: Sequence[Mapping[str, Any]], command: str, grid: Grid) -> str:
    out = [
        "| dataset | IPC | method | evaluation | seeds | accuracy % (mean ± std over seeds) | paired difference vs baseline, "
        "points (95% t-interval over seeds) | not done |",
        "|---|---|---|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for row in rows:
        acc = "—" if row["n"] == 0 else f"{row['mean']:.2f}" + (f" ± {row['std']:.2f}" if row["std"] is not None else " (1 seed)")
        vs = "; ".join(f"vs {b}: {fmt_diff(v)}" for b, v in row["vs"].items()) or "(baseline)"
        gaps = [f"{len(row['failed'])} failed"] if row["failed"] else []
        gaps += [f"{row['missing']} not run"] if row["missing"] else []
        out.append(f"| {row['dataset']} | {row['ipc']} | {row['method']} | {row['evaluation']} | {row['n']} | {acc} | {vs} | "
                   f"{', '.join(gaps) or ''} |")  # fmt: skip
        for seed, error in row["failed"].items():
            notes.append(f"- failed: {row['dataset']} IPC {row['ipc']} {row['method']} seed {seed}: {error}")
        check = row.get("start_check")
        if check and check.get("seeds"):
            if check.get("max_abs_diff"):
                notes.append(f"- pairing: {row['dataset']} IPC {row['ipc']} {row['method']}: its starting images evaluate up to "
                             f"{check['max_abs_diff']:.2f} points away from the start method's (seeds {check['seeds']})")  # fmt: skip
            elif check.get("max_abs_diff") == 0:
                notes.append(f"- pairing verified: {row['dataset']} IPC {row['ipc']} {row['method']} starts from the same images "
                             f"as its start method (equal accuracies of the same networks, seeds {check['seeds']})")  # fmt: skip
    used = {e for m in grid.methods for e in m.evaluations}
    splits = " and ".join(
        part for part in (
            f"test split ({', '.join(sorted(used & {'hard', 'kd'}))})" if used & {"hard", "kd"} else "",
            f"validation split carved from the training split ({', '.join(sorted(used & {'val', 'kd-val'}))})"
            if used & {"val", "kd-val"} else "",
        ) if part
    )  # fmt: skip
    header = [
        f"Accuracy (%) on the {splits}, per seed the mean over the run's evaluation networks; seeds {grid.seeds}; "
        f"device {grid.device}; global options {json.dumps(grid.options, sort_keys=True)}.",
        "",
    ]
    if grid.added:
        header += [f"Baselines added to the grid: {', '.join(grid.added)}.", ""]
    footer = ["", *notes, "", "Reproduce: `" + command + "`"]
    return "\n".join([*header, *out, *footer]) + "\n"


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def reproduce_command(args: argparse.Namespace, grid: Grid) -> str:
    argv = ["OMP_NUM_THREADS=1", ".venv/bin/python", "bench/quality.py"]
    if args.grid:
        argv += ["--grid", str(args.grid)]
    if args.methods:
        argv += ["--methods", *args.methods]
    if args.datasets:
        argv += ["--datasets", *args.datasets]
    if args.ipc:
        argv += ["--ipc", *map(str, args.ipc)]
    if args.seeds is not None:
        argv += ["--seeds", *args.seeds]
    argv += ["--device", grid.device]
    for text in args.sets:
        argv += ["--set", text]
    argv += ["--out", str(args.out)]
    return " ".join(shlex.quote(a) if i else a for i, a in enumerate(argv))


def cell_seconds(
    cells: Sequence[Cell], records: Mapping[str, Mapping[str, Any]], elapsed: Mapping[str, float] | None = None
) -> tuple[list[float], int]:
    """Seconds each unfinished cell of ``cells`` would take, from every finished cell of the results file
    (of any grid) with the same method and IPC (same dataset first: the median); and how many had nothing
    to go by. ``elapsed``: seconds already spent by cells still running (by key), taken off their
    estimate (not below 0)."""
    elapsed = elapsed or {}
    seconds: dict[tuple, list[float]] = {}
    for record in records.values():
        cell = record.get("cell") or {}
        if record.get("status") == "complete" and isinstance(record.get("seconds"), (int, float)):
            for key in ((cell.get("dataset"), cell.get("ipc"), cell.get("method")), (cell.get("ipc"), cell.get("method"))):
                seconds.setdefault(key, []).append(record["seconds"])
    each, unknown = [], 0
    for cell in cells:
        if records.get(cell.key, {}).get("status") == "complete":
            continue
        known = seconds.get((cell.dataset.name, cell.ipc, cell.method.name)) or seconds.get((cell.ipc, cell.method.name))
        if known:
            each.append(max(0.0, statistics.median(known) - elapsed.get(cell.key, 0.0)))
        else:
            unknown += 1
    return each, unknown


def time_left(each: Sequence[float], jobs: int, cells_left: int) -> float:
    """Wall seconds left for cells of ``each`` seconds run ``jobs`` at a time: their total shared by the
    jobs, but never less than the longest cell (one long cell is not shared)."""
    return max(sum(each) / parallel(jobs, cells_left), max(each, default=0.0))


def parallel(jobs: int, cells_left: int) -> int:
    """How many cells share the time left: ``--jobs``, or fewer when fewer cells are left."""
    return min(jobs, max(1, cells_left))


def duration(seconds: float) -> str:
    """``42 s``, ``12.5 min`` or ``3.20 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.2f} h"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Exit status: 0 when every cell of the grid is complete or not yet run, 1 when any cell of the grid "
        "failed (the table lists it), 2 for bad input (one line, before any file is written), 130 when interrupted.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder of the results file and the run directories")
    parser.add_argument("--grid", type=Path, help="grid file (TOML) instead of the default grid")
    parser.add_argument("--methods", nargs="+", help=f"methods (built-in: {', '.join(METHODS)})")
    parser.add_argument("--datasets", nargs="+", help="dataset names")
    parser.add_argument("--ipc", nargs="+", type=int, help="images per class")
    parser.add_argument("--seeds", nargs="+", help="seeds: 0 1 2, 0,1,2 or 0-4")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="cpu (dd run --cpu; the default) or cuda (needs a GPU)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="a run option for every cell (dd run --set); wins over the methods' own")  # fmt: skip
    parser.add_argument("--cache-dir", default="", help="dd run --cache-dir for every cell (not part of a cell's key)")
    parser.add_argument("--data-root", default="", metavar="PATH",
                        help="dd run --data-root for every cell (datasets read from files: mnist, cifar10, ...); checked "
                             "before the first cell (unless --no-validate); recorded in each results line, not part of a cell's key")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="cells run at a time (default 1); on a CPU give each OMP_NUM_THREADS=1, e.g. --jobs 2 on 2 cores")  # fmt: skip
    parser.add_argument("--skip-failed", action="store_true", help="do not rerun cells recorded as failed")
    parser.add_argument("--allow-other-globals", action="store_true", help="accept a results file with other global options")
    parser.add_argument("--report", action="store_true",
                        help="only print the table from the results file: its grid and global options, narrowed by "
                             "--methods/--datasets/--ipc/--seeds; --set/--device/--grid pick the global options instead")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="list the cells to run and their commands; run nothing")
    parser.add_argument("--no-validate", action="store_true",
                        help="skip dd run's up-front checks of each cell config and dataset (--data-root included): "
                             "a mistake there then fails every cell")  # fmt: skip
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--json", dest="json_out", type=Path, help="also write the rows (per seed, run dirs) as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, runner: Callable[..., tuple[dict[str, Any], float]] = run_cell) -> int:
    """The script; ``runner(cell, run_dir, log, cache_dir)`` runs one cell (tests may pass their own)."""
    args = parse_args(argv)
    import signal

    def terminate(signum, frame):  # SIGTERM (a job manager, `timeout`) stops the script as Ctrl-C does
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate) if threading_main() else None
    try:
        return _main(args, runner)
    except DDError as exc:
        print(exc.cli_message(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # before any cell ran (the checks); the cells' own handler printed its line
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def threading_main() -> bool:
    """Whether this is the main thread (only it may install signal handlers)."""
    import threading

    return threading.current_thread() is threading.main_thread()


def check_paths(args: argparse.Namespace) -> None:
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: give a number of cells to run at a time, 1 or more")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file; give a folder")
    for path, option in ((args.markdown, "--markdown"), (args.json_out, "--json")):
        if path is not None and path.is_dir():
            raise ConfigError(f"{option} {path} is a folder; give a file name")


def cell_command(cell: Cell, run_dir: Path, args: argparse.Namespace) -> str:
    """The ``dd run`` command of ``cell`` as the script runs it (``--out``, ``--cache-dir``, ``--data-root``)."""
    return "dd run " + shlex.join([*cell.run_args(), "--out", str(run_dir), *paths_args(args.cache_dir, args.data_root)])


def _main(args: argparse.Namespace, runner) -> int:
    if args.report:
        return report(args)
    grid = build_grid(args)
    check_paths(args)
    if grid.device == "cuda" and not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda but torch sees no CUDA device; use --device cpu")
    cells = cells_of(grid)
    check_evaluations(cells)
    results = args.out / RESULTS_FILE
    records = read_results(results)
    current = global_options(grid)
    check_globals(records, current, results, args.allow_other_globals)
    todo = [c for c in cells if records.get(c.key, {}).get("status") != "complete"
            and not (args.skip_failed and records.get(c.key, {}).get("status") == "failed")]  # fmt: skip
    todo.sort(key=lambda c: grid.seeds.index(c.seed))  # seed by seed (stable): an interrupted grid has whole pairs
    command = reproduce_command(args, grid)
    if args.dry_run:
        if todo and not args.no_validate and runner is run_cell:  # what a real run would refuse, refused here too
            validate_cells(todo, args.cache_dir, args.data_root)
        each, unknown = cell_seconds(cells, records)
        left = time_left(each, args.jobs, len(todo))
        for cell in todo:
            print(f"{cell.name}: {cell_command(cell, args.out / 'runs' / cell.name, args)}")
        known = (f"estimated {duration(left)} from finished cells"
                 + (f" with --jobs {args.jobs}" if args.jobs > 1 else "")) if left else "no finished cell to estimate from"  # fmt: skip
        if not todo:
            known = "every cell is complete"
        print(f"{len(todo)} of {len(cells)} cells to run; {known}"
              + (f" (+ {unknown} cells with nothing to go by)" if unknown and left else ""))  # fmt: skip
        return 0
    if todo:
        if not args.no_validate and runner is run_cell:
            validate_cells(todo, args.cache_dir, args.data_root)
        (args.out / "runs").mkdir(parents=True, exist_ok=True)
        (args.out / "logs").mkdir(exist_ok=True)
        lock = open(args.out / LOCK_FILE, "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another bench/quality.py is running on --out {args.out}; wait for it or use another --out") from None
        try:
            run_all(todo, cells, records, results, current, args, runner, grid)
        except KeyboardInterrupt:
            kept = "finished cells are in " + str(results) if results.exists() else "no cell finished"
            print(f"\ninterrupted; {kept}; rerun the same command to continue", file=sys.stderr)
            return 130
        finally:
            lock.close()
        records = read_results(results)
    return write_table(args, grid, {(c.dataset.name, c.ipc, c.method.name, c.seed): c.key for c in cells}, records, command, current)


def write_table(args, grid: Grid, keys: Mapping[tuple, str], records, command: str, current) -> int:
    """Print (and write) the table; 1 when any cell of the grid failed, else 0."""
    rows = table_rows(grid, keys, records)
    text = markdown(rows, command, grid)
    print(text)
    from ddcore.atomic import write_json, write_text

    if args.markdown:
        write_text(args.markdown, text)
    if args.json_out:
        write_json(args.json_out, {"command": command, "globals": current, "seeds": grid.seeds,
                                   "baselines_added": grid.added, "rows": rows})  # fmt: skip
    failed = sum(len(row["failed"]) for row in rows if row["evaluation"] == grid_first_evaluation(grid, row["method"]))
    if failed:
        print(f"{failed} cell(s) of the grid failed (listed under the table; logs in {args.out / 'logs'})", file=sys.stderr)
    return 1 if failed else 0


def grid_first_evaluation(grid: Grid, method: str) -> str:
    return next(m for m in grid.methods if m.name == method).evaluations[0]


def derived_overrides(globals_: Mapping[str, Any]) -> dict[str, Any]:
    """A results line's ``set`` without :data:`BASE_OPTIONS` (for lines recorded before ``overrides`` was)."""
    return {k: v for k, v in (globals_.get("set") or {}).items() if not (k in BASE_OPTIONS and BASE_OPTIONS[k] == v)}


def report(args: argparse.Namespace) -> int:
    """``--report``: the table of what the results file holds.

    The global options are the file's (refused when it holds several sets, unless ``--set``/``--device``/
    ``--grid`` pick one); methods, datasets, IPCs and seeds are those of its cells with those options,
    narrowed by the flags given. A cell is matched by (dataset, IPC, method, seed); when the file holds
    two configs of one, the one the given flags make wins, else it is refused."""
    check_paths(args)
    results = args.out / RESULTS_FILE
    records = read_results(results)
    if not records:
        what = "holds no cells" if results.exists() else "does not exist"
        raise ConfigError(f"{results} {what}; run the grid first (the same command without --report) (option --out)")
    _, methods, _ = read_grid(args.grid)
    if args.sets or args.device or args.grid:
        picked = build_grid(args)
        current, overrides = global_options(picked), picked.overrides
    else:
        sets = {r.get("globals_hash"): r for r in records.values()}
        if len(sets) > 1:
            shown = " or ".join(sorted(as_flags(r["globals"]) for r in sets.values()))
            raise ConfigError(f"{results} holds cells of {len(sets)} sets of global options ({shown}); "
                              "pick one with --set/--device as the grid was run")  # fmt: skip
        first = next(iter(sets.values()))
        current, overrides = first["globals"], first.get("overrides", derived_overrides(first["globals"]))
    mine = [r for r in records.values() if r.get("globals_hash") == globals_hash(current)]
    if not mine:
        held = " or ".join(sorted({as_flags(r["globals"]) for r in records.values() if isinstance(r.get("globals"), dict)}))
        raise ConfigError(f"{results} holds no cells made with {as_flags(current)}; its cells were made with "
                          f"{held or 'unrecorded options'}: pass the --set/--device the grid ran with")  # fmt: skip
    cfgs = [r["cell"] for r in mine]
    unknown = sorted({c["method"] for c in cfgs} - set(methods))
    if unknown and not args.methods:
        if not args.grid:
            raise ConfigError(f"{results} holds cells of method(s) {', '.join(unknown)}, not built in: pass the grid file "
                              "that defines them (option --grid), or narrow to built-in methods with --methods")  # fmt: skip
        # several grids ran into one folder (the EDF selection reuses the TM selection's cells): show this grid's
        print(f"note: {results} also holds method(s) {', '.join(unknown)}, not in {args.grid}; left out", file=sys.stderr)
        cfgs = [c for c in cfgs if c["method"] in methods]
        mine = [r for r in mine if r["cell"]["method"] in methods]
    present = lambda key: list(dict.fromkeys(c[key] for c in cfgs))  # noqa: E731
    for key, given in (("dataset", args.datasets), ("ipc", args.ipc), ("seed", parse_seeds(args.seeds) if args.seeds else None)):
        values = present(key)
        absent = [v for v in given or () if v not in values]
        if absent:  # a typo or a narrowing the file never ran: its rows would all read "not run"
            print(f"note: {results} holds no cells of {key} {', '.join(map(str, absent))} with these global options "
                  f"(it holds {', '.join(map(str, sorted(values)))})", file=sys.stderr)  # fmt: skip
    narrowed = argparse.Namespace(**{
        **vars(args),
        "methods": args.methods or present("method") or None, "datasets": args.datasets or present("dataset") or None,
        "ipc": args.ipc or sorted(present("ipc")) or None,
        "seeds": args.seeds if args.seeds is not None else ([",".join(map(str, sorted(present("seed"))))] if cfgs else None),
        "sets": args.sets if (args.sets or args.device or args.grid) else [f"{k}={toml_value(v, k)}" for k, v in overrides.items()],
        "device": current["device"],
    })  # fmt: skip
    grid = build_grid(narrowed)
    found_at: dict[tuple, set[str]] = {}
    for record in mine:
        c = record["cell"]
        found_at.setdefault((c["dataset"], c["ipc"], c["method"], c["seed"]), set()).add(record["key"])
    made = {(c.dataset.name, c.ipc, c.method.name, c.seed): c.key for c in cells_of(grid)}
    chosen: dict[tuple, str] = {}
    for at, found in found_at.items():
        if made.get(at) in found:
            chosen[at] = made[at]
        elif len(found) == 1:
            chosen[at] = next(iter(found))
        else:
            raise ConfigError(f"{results} holds {len(found)} configs of {at[0]} IPC {at[1]} {at[2]} seed {at[3]} with the same "
                              "global options; pass the grid file that made the ones to show (option --grid)")  # fmt: skip
    return write_table(narrowed, grid, chosen, records, reproduce_command(narrowed, grid), current)


def as_flags(globals_: Mapping[str, Any]) -> str:
    """The ``--set``/``--device`` flags that make ``globals_`` (``no --set`` when the grid's own)."""
    sets = [f"--set {k}={toml_value(v, k)}" for k, v in sorted(derived_overrides(globals_).items())]
    return " ".join([*(sets or ["no --set"]), f"--device {globals_.get('device')}"])


def run_all(todo, cells, records, results: Path, current, args, runner, grid: Grid) -> None:
    """Run ``todo`` (seed by seed), ``args.jobs`` cells at a time; each finished cell is appended at once.

    With ``--jobs N`` (N > 1) N cells run in worker threads and the next start in the given order as
    earlier ones finish, so the cells of one seed run together. An interrupt (Ctrl-C, SIGTERM) starts no
    more cells, stops the running cells' processes and keeps every finished cell; a cell stopped by it
    is not recorded (it runs again).
    """
    if args.jobs == 1:  # in this thread, so an interrupt reaches run_cell, which kills the cell's process
        for number, cell in enumerate(todo, 1):
            announce(number, cell, todo, cells, records, args)
            fields, seconds = runner(cell, args.out / "runs" / cell.name, args.out / "logs" / f"{cell.name}.log", args.cache_dir, args.data_root)
            record_cell(cell, fields, seconds, results, records, current, args, grid)
        return
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock, stopping, processes = threading.Lock(), threading.Event(), set()
    running: dict[str, float] = {}  # key -> start (time.monotonic()) of the cells running now
    if runner is run_cell:
        runner = functools.partial(run_cell, processes=processes, stopping=stopping)

    def work(number: int, cell: Cell) -> None:  # in a worker thread: run the cell, then record it at once
        with lock:
            if stopping.is_set():
                return
            announce(number, cell, todo, cells, records, args, running)
            running[cell.key] = time.monotonic()
        try:
            fields, seconds = runner(cell, args.out / "runs" / cell.name, args.out / "logs" / f"{cell.name}.log", args.cache_dir, args.data_root)
            with lock:
                if not (stopping.is_set() and fields.get("status") != "complete"):  # a cell the signal stopped is no failure
                    record_cell(cell, fields, seconds, results, records, current, args, grid)
        finally:
            with lock:
                running.pop(cell.key, None)

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        try:
            futures = [pool.submit(work, number, cell) for number, cell in enumerate(todo, 1)]
            for future in futures:
                future.result()
        except BaseException as exc:
            stopping.set()
            with lock:
                now = len(running)
            if isinstance(exc, KeyboardInterrupt):
                print(f"\ninterrupted; stopping the {now} running cell(s)", file=sys.stderr, flush=True)
            for process in list(processes):  # as one job does: the interrupt stops the running cells' processes
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def announce(number: int, cell: Cell, todo, cells, records, args, running: Mapping[str, float] | None = None) -> None:
    """The progress line of a cell that starts: its number, name and the time left, shared by the
    ``--jobs`` cells (``running``: key -> start time of the cells still running; their time spent is
    taken off their estimate, and they count among the cells left)."""
    running = running or {}
    now = time.monotonic()
    each, unknown = cell_seconds(cells, records, {key: now - start for key, start in running.items()})
    left = time_left(each, args.jobs, len(todo) - number + 1 + len(running))
    if left:
        eta = f"; about {duration(left)} left" + (" + unmeasured cells" if unknown else "")
    else:
        eta = f"; time left unknown ({unknown} unmeasured cell(s))" if unknown else ""
    print(f"[{number}/{len(todo)}] {cell.name}{eta}", file=sys.stderr, flush=True)


def record_cell(cell: Cell, fields: Mapping[str, Any], seconds: float, results: Path, records, current, args, grid: Grid) -> None:
    """Append ``cell``'s results line (one write) and keep it in ``records``."""
    run_dir = args.out / "runs" / cell.name
    record = {
        "format": FORMAT, "key": cell.key, "cell": cell.config(), "seed": cell.seed,
        "run_dir": str(Path("runs") / cell.name), "command": cell_command(cell, run_dir, args),
        "data_root": args.data_root, "overrides": dict(sorted(grid.overrides.items())),
        "globals": current, "globals_hash": globals_hash(current), "seconds": seconds,
        "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), **fields,
    }  # fmt: skip
    append_record(results, record)
    records[cell.key] = record
    if record["status"] == "failed":
        print(f"  failed ({cell.name}): {record['error']}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    code = main()
    if code == 130:  # interrupted: a second Ctrl-C/SIGTERM while the interpreter exits must not turn 130 into 143
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(code)
