"""diffsel cost benchmark: Stage-I throughput against per-crop scoring, Stage-II time, memory against pool size.

Everything is measured side by side in one run of this script, on the same machine state:

1. Stage I: pool images per second for the map-and-box-filter scorer (one prior pass per image and
   noise draw) against scoring every candidate window with its own prior call (the crop resized to
   the prior's resolution), for the same windows, noise draws and timestep; the ratio of the two.
2. Stage II: seconds for per-class nested bisecting k-means and flat k-means over a scored pool.
3. Memory: peak RSS above the RSS at the start (after a one-batch warm-up) of Stage I over a pool of P images per class and of
   10 P, each in a fresh subprocess, on a synthetic dataset generated image by image (the dataset
   itself takes no memory), so the ratio shows whether memory follows the pool size.

The prior is ddcore's pixel prior architecture (default options) freshly initialised: cost does not
depend on the weights. Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/diffsel_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch


def make_prior(size: int, channels: list[int], classes: int):
    from ddcore_diffsel.pixel_prior import PixelPrior, build_scheduler, build_unet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = build_unet(size, 1, classes, channels)
    return PixelPrior(unet, build_scheduler(), [str(c) for c in range(classes)])


def stage1_throughput(args) -> dict:
    """Images/s of the map scorer and of one prior call per candidate crop."""
    from ddcore_diffsel.priors import discriminativeness_map
    from ddcore_diffsel.windows import box_means, crop_resize, square_windows

    prior = make_prior(args.prior_size, args.channels, 10)
    side, window = 32, 16
    boxes = square_windows(side, side, window, args.stride)
    images = torch.rand(args.images, 1, side, side, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.images) % 10
    timesteps = [500]

    started = time.perf_counter()
    for start in range(0, args.images, args.batch):
        chunk = slice(start, start + args.batch)
        maps = discriminativeness_map(prior, images[chunk], labels[chunk], timesteps, args.n_noise,
                                      torch.Generator().manual_seed(start), resolution=args.prior_size)  # fmt: skip
        box_means(maps, boxes)
    map_seconds = time.perf_counter() - started

    per_crop_images = max(1, args.images // 8)  # the slow way on a subset, scaled per image
    started = time.perf_counter()
    for i in range(per_crop_images):
        crops = crop_resize(images[i : i + 1].expand(len(boxes), -1, -1, -1), boxes, args.prior_size)
        for b in range(0, len(boxes)):  # one prior call (cond + null batched) per crop and draw
            discriminativeness_map(prior, crops[b : b + 1], labels[i : i + 1], timesteps, args.n_noise,
                                   torch.Generator().manual_seed(b))  # fmt: skip
    crop_seconds = time.perf_counter() - started
    map_rate = args.images / map_seconds
    crop_rate = per_crop_images / crop_seconds
    return {"windows_per_image": len(boxes), "map_images_per_s": map_rate, "per_crop_images_per_s": crop_rate,
            "speedup": map_rate / crop_rate}  # fmt: skip


def stage2_time(args) -> dict:
    from ddcore_diffsel.ranking import bisecting_order, kmeans_order

    generator = torch.Generator().manual_seed(0)
    out = {}
    for k in (k for k in (10, 40) if k <= args.pool):
        features = torch.randn(args.classes, args.pool, 512, generator=generator)
        scores = torch.rand(args.classes, args.pool, generator=generator)
        for name, fn in (("bisecting", bisecting_order), ("kmeans", kmeans_order)):
            started = time.perf_counter()
            for c in range(args.classes):
                fn(features[c], scores[c], k, seed=c)
            out[f"{name}_k{k}_s"] = time.perf_counter() - started
    return out


MEMORY_CHILD = r"""
import json, sys, time, torch
from types import SimpleNamespace
from ddcore.data.base import ImageDataset
from ddcore_diffsel.pool import score_pool
from ddcore_diffsel.scorers import DiffusionScorer
sys.path.insert(0, "bench")
from diffsel_bench import make_prior

per_class, size, channels, batch, run = int(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"

class Synthetic(torch.utils.data.Dataset):
    def __init__(self, n): self.n = n; self.targets = [i % 10 for i in range(n)]
    def __len__(self): return self.n
    def __getitem__(self, i): return torch.rand(1, 32, 32, generator=torch.Generator().manual_seed(i)), self.targets[i]

data = Synthetic(per_class * 10)
dataset = ImageDataset("synthetic", [str(c) for c in range(10)], data, data, (1, 32, 32), (0.0,), (1.0,))
prior = make_prior(size, channels, 10)
scorer = DiffusionScorer(prior, image_side=32, window=16, stride=4, per_image=2, max_iou=0.5, timesteps=[500], n_noise=1,
                         contrast="null", num_classes=10, resolution=size, mean=(0.0,), std=(1.0,))
class Reporter:
    def progress(self, *a, **k):
        from contextlib import contextmanager
        @contextmanager
        def cm(): yield lambda n=1: None
        return cm()
from ddcore.context import derive_seed
ctx = SimpleNamespace(process_index=0, num_processes=1, reporter=Reporter(),
                      derive_generator=lambda *k: torch.Generator().manual_seed(derive_seed(0, *k)))
import threading, psutil
me = psutil.Process()
embed = lambda p: torch.nn.functional.adaptive_avg_pool2d(p, 8).flatten(1)
if run:  # warm-up on one batch so that one-off allocations (kernels, caches) are in the baseline
    score_pool(ctx, dataset, scorer, embed, per_class=min(per_class, batch // 10 or 1), batch_size=batch, cell=16, meta={})
before = me.memory_info().rss
peak = [before]
done = threading.Event()
def sample():
    while not done.wait(0.005):
        peak[0] = max(peak[0], me.memory_info().rss)
sampler = threading.Thread(target=sample, daemon=True); sampler.start()
started = time.perf_counter()
pool = None
if run:
    pool = score_pool(ctx, dataset, scorer, embed, per_class=per_class, batch_size=batch, cell=16, meta={})
done.set(); sampler.join()
peak[0] = max(peak[0], me.memory_info().rss)
print(json.dumps({"peak_above_start_kib": (peak[0] - before) / 1024, "seconds": time.perf_counter() - started,
                  "candidates": 0 if pool is None else len(pool.scores)}))
"""


def memory_growth(args) -> dict:
    def child(per_class: int, run: bool) -> dict:
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(per_class), str(args.prior_size),
                              json.dumps(args.channels), str(args.batch), "1" if run else "0"],
                             check=True, capture_output=True, text=True)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])

    small = child(args.memory_pool, True)
    large = child(10 * args.memory_pool, True)
    grow_small = max(1.0, small["peak_above_start_kib"])
    grow_large = max(1.0, large["peak_above_start_kib"])
    return {"pool_small": args.memory_pool * 10, "pool_large": args.memory_pool * 100,
            "peak_above_baseline_small_mib": grow_small / 1024, "peak_above_baseline_large_mib": grow_large / 1024,
            "memory_ratio_10x_pool": grow_large / grow_small, "seconds_small": small["seconds"],
            "seconds_large": large["seconds"], "candidates_large": large["candidates"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--prior-size", type=int, default=16)
    parser.add_argument("--channels", type=lambda s: [int(c) for c in s.split(",")], default=[32, 64, 64])
    parser.add_argument("--n-noise", type=int, default=2)
    parser.add_argument("--stride", type=int, default=4, help="window stride (16 px windows in 32 px images)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    args.images = 16 if args.quick else 64
    args.pool, args.classes = (12, 3) if args.quick else (300, 10)
    args.memory_pool = 12 if args.quick else 30
    print(f"torch threads {torch.get_num_threads()}, prior {args.prior_size} px {args.channels}, n_noise {args.n_noise}")
    s1 = stage1_throughput(args)
    print(f"Stage I: {s1['windows_per_image']} windows/image; map + box filter {s1['map_images_per_s']:.1f} images/s, "
          f"one prior call per crop {s1['per_crop_images_per_s']:.2f} images/s: ratio {s1['speedup']:.1f}x")  # fmt: skip
    s2 = stage2_time(args)
    print("Stage II (" + f"{args.classes} classes x {args.pool} candidates, 512-d): "
          + ", ".join(f"{k} {v:.2f}s" for k, v in s2.items()))  # fmt: skip
    mem = memory_growth(args)
    print(f"Memory: peak RSS above baseline {mem['peak_above_baseline_small_mib']:.1f} MiB for {mem['pool_small']} pool images, "
          f"{mem['peak_above_baseline_large_mib']:.1f} MiB for {mem['pool_large']}: ratio {mem['memory_ratio_10x_pool']:.2f} "
          f"for a 10x pool (time {mem['seconds_small']:.1f}s vs {mem['seconds_large']:.1f}s)")  # fmt: skip
    print(json.dumps({"stage1": s1, "stage2": s2, "memory": mem}))


if __name__ == "__main__":
    main()
