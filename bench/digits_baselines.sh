#!/usr/bin/env bash
# The digits baselines every method is compared with: random real images at IPC 1/10/50 and the
# full training set, all with the default evaluator. Writes runs under runs/baselines/ and prints
# one line per setting. About 25 minutes on a 2-core CPU.
#   bash bench/digits_baselines.sh [RUNS]
set -euo pipefail
runs="${1:-5}"
dd="${DD:-dd}"
out=runs/baselines
mkdir -p "$out"
$dd run --ipc 1 --eval-runs "$runs" --baseline full --out "$out/ipc1" --overwrite --quiet --json > "$out/ipc1.json"
$dd run --ipc 10 --eval-runs "$runs" --out "$out/ipc10" --overwrite --quiet --json > "$out/ipc10.json"
$dd run --ipc 50 --eval-runs "$runs" --out "$out/ipc50" --overwrite --quiet --json > "$out/ipc50.json"
python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
print(f"{'setting':<22}{'accuracy % (mean ± std)':>26}{'runs':>6}")
for ipc in (1, 10, 50):
    m = json.loads((out / f"ipc{ipc}.json").read_text())["metrics"]
    print(f"{'random real IPC ' + str(ipc):<22}{m['eval/acc_mean']:>18.2f} ± {m['eval/acc_std']:.2f}{len(m['eval/acc_runs']):>6}")
m = json.loads((out / "ipc1.json").read_text())["metrics"]
print(f"{'full training set':<22}{m['eval/full_acc_mean']:>18.2f} ± {m['eval/full_acc_std']:.2f}{len(m['eval/full_acc_runs']):>6}")
PY
