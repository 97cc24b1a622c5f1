#!/usr/bin/env bash
# Comp-DD on the offline miniature: random real, trajectory matching and (when installed) EDF at IPC 1
# on compdd/mini-easy and compdd/mini-hard, all evaluated with the Comp-DD protocol (ConvNetD3 width 32,
# DSA, 300 epochs, RUNS networks), then `dd compdd report` over the runs and the complexity of the pair.
# Writes runs/compdd-mini/ and copies the chart to docs/img/compdd_mini_report.png.
#   bash bench/compdd_mini_report.sh [RUNS]        (about 20-40 minutes on an idle 2-core CPU)
# TM_ITERATIONS (default 200, the digits-ipc1 preset) shortens the matching on a busy machine.
set -euo pipefail
runs="${1:-3}"
dd="${DD:-.venv/bin/dd}"
out=runs/compdd-mini
mkdir -p "$out"
# Every run is measured by the Comp-DD protocol alone (evaluate = "on", built-in evaluator off), so the report pairs
# like with like; `dd compdd report` refuses to take a gap between runs measured differently.
common=(--plugin compdd --ipc 1 --eval-runs 0 --set 'plugin.compdd.evaluate="on"' --set "plugin.compdd.runs=$runs" --set eval.width=32 --overwrite --quiet)
tm=(--distill tm --set tm.preset=digits-ipc1 --set "tm.iterations=${TM_ITERATIONS:-200}")
methods=(random tm)
if "$dd" plugins --json | python3 -c 'import json,sys; sys.exit(0 if any(p["name"]=="edf" and p["status"]=="ok" for p in json.load(sys.stdin)) else 1)'; then
  methods+=(edf)
fi
dirs=()
for level in easy hard; do
  for method in "${methods[@]}"; do
    dir="$out/$method-$level"
    case "$method" in
      random) extra=() ;;
      tm) extra=("${tm[@]}") ;;
      edf) extra=(--plugin edf "${tm[@]}") ;;
    esac
    echo "== $method on compdd/mini-$level" >&2
    if "$dd" run --dataset "compdd/mini-$level" "${common[@]}" "${extra[@]}" --out "$dir" > /dev/null; then
      dirs+=("$dir")
    else
      echo "!! $method on compdd/mini-$level failed; left out of the report" >&2
    fi
  done
done
"$dd" compdd report "${dirs[@]}" --out "$out/report"
"$dd" compdd complexity --dataset compdd/mini-easy --dataset compdd/mini-hard --out "$out/complexity"
mkdir -p docs/img
cp "$out/report/report.png" docs/img/compdd_mini_report.png
