#!/usr/bin/env bash
# Mutation testing of ddcore's result-computing modules (issue 18, part 6); report: docs/mutation.md.
#
#   bench/mutation.sh                      # every module in bench/mutation.py's MODULES table
#   bench/mutation.sh edf.cpd tm.matching  # some of them
#   bench/mutation.sh --list               # module -> focused test files
#   bench/mutation.sh --rerun-survivors cam # after adding tests: only the last run's survivors
#
# Needs mutmut 3 in the venv:  .venv/bin/pip install -c constraints-ci.txt -e '.[test]' mutmut==3.8.1
# Slow (minutes per module, single-threaded torch): not part of CI. Work folder: $DD_MUTATION_WORK
# (default /tmp/ddcore-mutation); parallel mutants: $DD_MUTATION_CHILDREN (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec "$PY" bench/mutation.py "$@"
