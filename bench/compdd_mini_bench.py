"""How long the Comp-DD miniature takes to build, side by side with ddcore's own ``digits``.

    .venv/bin/python bench/compdd_mini_bench.py [--repeats 5]

Prints the median wall time of ``load_digits_dataset`` (the digits every ddcore install has), of
``compdd/mini-easy`` and of ``compdd/mini-hard`` (both splits, in memory), and their ratios to digits.
The first call of each is a warm-up (scikit-learn import, file cache) and is not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ddcore import DatasetOptions
from ddcore.data.digits import load_digits_dataset
from ddcore_compdd.minidata import load_mini


def median_seconds(build, repeats: int) -> float:
    build()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        build()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    options = DatasetOptions()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    digits = median_seconds(lambda: load_digits_dataset(options), args.repeats)
    rows = [("digits", digits)]
    for level in ("easy", "hard"):
        rows.append((f"compdd/mini-{level}", median_seconds(lambda level=level: load_mini(level, options), args.repeats)))
    print(f"{'dataset':<20}{'median s':>10}{'x digits':>10}")
    for name, seconds in rows:
        print(f"{name:<20}{seconds:>10.3f}{seconds / digits:>10.2f}")


if __name__ == "__main__":
    main()
