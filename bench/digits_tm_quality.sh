#!/usr/bin/env bash
# Trajectory matching vs random real images on digits, paired by seed.
#
# For each seed s and IPC k: `dd run --ipc k --seed s` evaluates the random real subset that seed
# selects; `dd run --ipc k --seed s --distill tm` starts trajectory matching from that same subset
# (digits-ipc<k> preset). Both use the same evaluator (RUNS networks each). One random subset of
# 100 digits varies by +-1.5 points from seed to seed, so a single seed says little at IPC 10: the
# table gives the mean over seeds and how many seeds matching won.
#   bash bench/digits_tm_quality.sh [SEEDS] [RUNS] [IPCS]      defaults: 3 3 "1 10"
#   DD=.venv/bin/dd DEVICE_ARGS=--cpu bash bench/digits_tm_quality.sh 5 5 "1 10 50"
set -euo pipefail
seeds="${1:-3}"
runs="${2:-3}"
ipcs="${3:-1 10}"
dd="${DD:-dd}"
out="${OUT_DIR:-runs/tm-quality}"
mkdir -p "$out"
for ipc in $ipcs; do
  for seed in $(seq 0 $((seeds - 1))); do
    for method in random tm; do
      name="$method-ipc$ipc-seed$seed"
      [ -f "$out/$name.json" ] && continue  # resumable: finished runs are kept
      extra=()
      [ "$method" = tm ] && extra=(--distill tm)
      $dd run --ipc "$ipc" --seed "$seed" "${extra[@]}" ${DEVICE_ARGS:-} --eval-runs "$runs" \
        --out "$out/$name" --overwrite --quiet --json > "$out/$name.json.tmp"
      mv "$out/$name.json.tmp" "$out/$name.json"
    done
  done
done
python3 - "$out" "$seeds" "$ipcs" <<'PY'
import json, pathlib, statistics, sys
out, seeds, ipcs = pathlib.Path(sys.argv[1]), int(sys.argv[2]), [int(k) for k in sys.argv[3].split()]
def acc(name):
    return json.loads((out / f"{name}.json").read_text())["metrics"]["eval/acc_mean"]
def seconds(name):
    stages = json.loads((out / name / "manifest.json").read_text())["stages"]
    return stages["distill"]["seconds"]
print(f"{'IPC':<5}{'seed':<6}{'random real':>13}{'matching':>10}{'gain':>8}{'distill s':>11}")
for ipc in ipcs:
    pairs = []
    for seed in range(seeds):
        r, t = acc(f"random-ipc{ipc}-seed{seed}"), acc(f"tm-ipc{ipc}-seed{seed}")
        pairs.append((r, t))
        print(f"{ipc:<5}{seed:<6}{r:>13.2f}{t:>10.2f}{t - r:>+8.2f}{seconds(f'tm-ipc{ipc}-seed{seed}'):>11.0f}")
    rs, ts = [p[0] for p in pairs], [p[1] for p in pairs]
    spread = lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0
    wins = sum(t > r for r, t in pairs)
    print(f"{ipc:<5}{'mean':<6}{statistics.mean(rs):>8.2f}±{spread(rs):.2f}{statistics.mean(ts):>7.2f}±{spread(ts):.2f}"
          f"{statistics.mean(ts) - statistics.mean(rs):>+8.2f}   matching won {wins}/{len(pairs)} seeds")
PY
