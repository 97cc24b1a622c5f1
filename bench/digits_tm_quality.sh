#!/usr/bin/env bash
# Trajectory matching vs random real images on digits at IPC 1 and 10, same selection seed, same
# evaluator (3 networks each), digits presets (digits-ipc1, digits-ipc10). Prints one table.
#   bash bench/digits_tm_quality.sh [RUNS]
set -euo pipefail
runs="${1:-3}"
dd="${DD:-dd}"
out=runs/tm-quality
mkdir -p "$out"
for ipc in 1 10; do
  $dd run --ipc "$ipc" --eval-runs "$runs" --out "$out/random-ipc$ipc" --overwrite --quiet --json > "$out/random-ipc$ipc.json"
  $dd run --ipc "$ipc" --set 'distill="tm"' --eval-runs "$runs" --out "$out/tm-ipc$ipc" --overwrite --quiet --json > "$out/tm-ipc$ipc.json"
done
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print(f"{'IPC':<5}{'random real':>18}{'trajectory matching':>24}{'distill s':>11}")
for ipc in (1, 10):
    r = json.loads((out / f"random-ipc{ipc}.json").read_text())["metrics"]
    t = json.loads((out / f"tm-ipc{ipc}.json").read_text())["metrics"]
    stages = json.loads((out / f"tm-ipc{ipc}" / "manifest.json").read_text())["stages"]
    print(f"{ipc:<5}{r['eval/acc_mean']:>11.2f} ± {r['eval/acc_std']:.2f}{t['eval/acc_mean']:>17.2f} ± {t['eval/acc_std']:.2f}"
          f"{stages['distill']['seconds']:>11.0f}")
PY
