"""diffsel quality table: diffusion selection vs random real vs observer (RDED-style) selection.

For each IPC and method, one ``ddcore.run`` with the plugin active (so every method gets the same
KD evaluator), reporting the built-in evaluator (hard labels, ``eval.runs`` networks) and the KD
evaluator (``kd.runs`` students, the teacher's soft targets on augmented batches). The teacher and
the diffusion prior are trained once and cached (``--cache-dir``).

    OMP_NUM_THREADS=1 .venv/bin/python bench/diffsel_quality.py --ipc 1 10 --runs 3
    OMP_NUM_THREADS=1 .venv/bin/python bench/diffsel_quality.py --dataset compdd/mini-hard --plugin compdd

Prints a markdown table and, with ``--json FILE``, writes every metric.
"""

from __future__ import annotations

import argparse
import json
import time

METHODS = {
    "random real": {"select": "random-real"},
    "observer (RDED-style)": {"diffsel": {"scorer": "observer"}},
    "diffusion (diffsel)": {"diffsel": {"scorer": "diffusion"}},
}


def run_one(args, method: str, ipc: int) -> dict:
    import ddcore

    spec = METHODS[method]
    diffsel = {**args.common, **spec.get("diffsel", {})}
    config = {
        "dataset": args.dataset, "ipc": ipc, "seed": args.seed, "cache_dir": args.cache_dir,
        "eval": {"runs": args.runs}, "plugin": {"diffsel": diffsel},
    }  # fmt: skip
    if "select" in spec:
        config["select"] = spec["select"]
    if "compdd" in args.plugin:  # every cell is the built-in evaluator's (and KD's); the Comp-DD protocol would differ
        config["plugin"]["compdd"] = {"evaluate": "off"}
    started = time.perf_counter()
    result = ddcore.run(config, ["diffsel", *args.plugin], write=False, quiet=not args.verbose)
    m = result.metrics
    return {
        "method": method, "ipc": ipc, "acc": m.get("eval/acc_mean"), "acc_std": m.get("eval/acc_std"),
        "kd": m.get("diffsel/kd_acc_mean"), "kd_std": m.get("diffsel/kd_acc_std"),
        "teacher": m.get("diffsel/kd_teacher_acc"), "select_s": result.manifest["stages"].get("select", {}).get("seconds"),
        "seconds": time.perf_counter() - started, "acc_runs": m.get("eval/acc_runs"), "kd_runs": m.get("diffsel/kd_acc_runs"),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--plugin", action="append", default=[], help="extra plugin (for its datasets)")
    parser.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--runs", type=int, default=3, help="networks per evaluator and setting")
    parser.add_argument("--kd-epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--cache-dir", default="")
    parser.add_argument("--set", dest="extra", default="{}", help="JSON of extra [plugin.diffsel] options")
    parser.add_argument("--json", dest="json_out", default="")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    args.common = {"kd": {"runs": args.runs, "epochs": args.kd_epochs}, **json.loads(args.extra)}
    rows = []
    for ipc in args.ipc:
        for method in args.methods:
            row = run_one(args, method, ipc)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{args.dataset}, seed {args.seed}, {args.runs} networks per cell (mean +- std), teacher "
          f"{rows[0]['teacher']:.1f}%\n")  # fmt: skip
    print("| IPC | method | eval (hard labels) | KD eval | selection s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['ipc']} | {r['method']} | {r['acc']:.1f} +- {r['acc_std']:.1f} | {r['kd']:.1f} +- {r['kd_std']:.1f} "
              f"| {r['select_s']:.1f} |")  # fmt: skip
    if args.json_out:
        from ddcore.atomic import write_json

        write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
