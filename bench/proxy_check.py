"""The proxy pair's properties (issue 17), measured: full-data accuracy, random real IPC 10, Comp-DD complexity.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/proxy_check.py [--runs 2] [--seed 0] [--json FILE]

For each of ``compdd/proxy-easy`` and ``compdd/proxy-hard`` (or ``--datasets``):

1. one ``ddcore.run`` (no distillation, IPC ``--ipc``) with the built-in evaluator at the dataset's preset
   (the network :func:`ddcore.presets.resolve_model` gives at that size, ``--runs`` networks per row) and
   ``--baseline random full``. A validation split is carved from the training split (config keys
   ``validation = 0.1``, ``holdout = "always"``), so neither baseline trains on it; accuracy is on the test split.
   ``random real`` is ``eval/random_real_acc_mean`` (a fresh random subset per network), ``full`` is
   ``eval/full_acc_mean`` (the training split less the validation images, ``full_epochs``);
2. ``dd compdd complexity --dataset NAME`` (the default trained teacher and Grad-CAM), its ``complexity`` mean.

Then it checks the targets: full >= 90 (easy) and >= 80 (hard), hard complexity above easy's by at least
``--margin`` (percentage points), full - random >= 15 on hard, and prints one table and the verdicts.
Exit status 1 when a target fails. About 10-20 minutes per dataset on one CPU thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_FULL = {"easy": 90.0, "hard": 80.0}
TARGET_GAP_HARD = 15.0


def evaluator_figures(name: str, args) -> dict:
    """Random real IPC ``args.ipc`` and full-data accuracy of ``name`` with ddcore's built-in evaluator."""
    import ddcore

    config = {
        "dataset": name, "ipc": args.ipc, "seed": args.seed, "validation": 0.1, "holdout": "always",
        "eval": {"runs": args.runs, "baseline": ["random", "full"]}, "plugin": {"compdd": {"evaluate": "off"}},
    }  # fmt: skip
    if args.cache_dir:
        config["cache_dir"] = args.cache_dir
    started = time.perf_counter()
    result = ddcore.run(config, ["compdd"], write=False, quiet=True)
    m = result.metrics
    return {
        "random": m["eval/random_real_acc_mean"], "random_runs": m["eval/random_real_acc_runs"],
        "selection": m["eval/acc_mean"], "full": m["eval/full_acc_mean"], "full_runs": m["eval/full_acc_runs"],
        "full_val": m.get("eval/full_val_acc_mean"), "model": result.manifest["records"].get("model"),
        "eval_seconds": time.perf_counter() - started,
    }  # fmt: skip


def generation_seconds(level: str, repeats: int = 3) -> float:
    """Median wall time of building both raw splits of ``compdd/proxy-<level>`` (after one warm-up)."""
    from ddcore_compdd.proxydata import build_proxy

    build_proxy(level)  # warm-up: scikit-learn import, file cache
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        build_proxy(level)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def complexity(name: str, args) -> dict:
    """``dd compdd complexity --dataset name``: the dataset's mean class complexity (percent) and its teacher."""
    with tempfile.TemporaryDirectory() as out:
        command = [str(Path(sys.executable).with_name("dd")), "compdd", "complexity", "--dataset", name, "--out", out,
                   "--seed", str(args.seed)]  # fmt: skip
        if args.cache_dir:
            command += ["--cache-dir", args.cache_dir]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        entry = json.loads((Path(out) / "complexity.json").read_text())["datasets"][0]
    return {"complexity": 100 * entry["complexity"], "teacher": entry.get("classifier"), "complexity_seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs=2, default=["compdd/proxy-easy", "compdd/proxy-hard"], metavar=("EASY", "HARD"))
    parser.add_argument("--runs", type=int, default=2, help="networks per evaluator row")
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=float, default=3.0, help="hard complexity must exceed easy's by this (points)")
    parser.add_argument("--cache-dir", default="")
    parser.add_argument("--json", dest="json_out", default="")
    args = parser.parse_args()
    rows = {}
    for level, name in zip(("easy", "hard"), args.datasets):
        row = {"dataset": name, "generation_seconds": generation_seconds(level) if name.startswith("compdd/proxy-") else None,
               **complexity(name, args), **evaluator_figures(name, args)}  # fmt: skip
        rows[level] = row
        print(json.dumps(row, default=str), flush=True)
    easy, hard = rows["easy"], rows["hard"]
    print(f"\nseed {args.seed}, {args.runs} networks per row, IPC {args.ipc}, validation 0.1 carved from train; "
          f"evaluator {hard['model']}\n")  # fmt: skip
    print(f"| dataset | full data % | random real IPC {args.ipc} % | full - random | complexity % | generation s |")
    print("|---|---|---|---|---|---|")
    for row in (easy, hard):
        made = "" if row["generation_seconds"] is None else f"{row['generation_seconds']:.2f}"
        print(f"| {row['dataset']} | {row['full']:.1f} | {row['random']:.1f} | {row['full'] - row['random']:.1f} "
              f"| {row['complexity']:.2f} | {made} |")  # fmt: skip
    checks = {
        f"full data on easy >= {TARGET_FULL['easy']:g}": easy["full"] >= TARGET_FULL["easy"],
        f"full data on hard >= {TARGET_FULL['hard']:g}": hard["full"] >= TARGET_FULL["hard"],
        f"complexity hard - easy >= {args.margin:g} points": hard["complexity"] - easy["complexity"] >= args.margin,
        f"full - random real on hard >= {TARGET_GAP_HARD:g}": hard["full"] - hard["random"] >= TARGET_GAP_HARD,
    }
    print()
    for claim, holds in checks.items():
        print(f"{'holds ' if holds else 'FAILS '} {claim}")
    if args.json_out:
        from ddcore.atomic import write_json

        write_json(Path(args.json_out), {"args": vars(args), "rows": rows, "checks": checks})
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
