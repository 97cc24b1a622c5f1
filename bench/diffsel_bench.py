"""diffsel cost benchmark: Stage-I throughput against per-crop scoring, Stage-II time, memory against pool size.

Everything is measured side by side in one run of this script, on the same machine state:

1. Stage I: pool images per second for the map-and-box-filter scorer (one prior pass per image and
   noise draw, every window scored from the map) against the plain alternative of scoring every
   candidate window as its own image: **batched per-crop scoring**, all windows of a batch of images
   cut, resized to the prior's resolution and scored in one prior call per noise draw (the best plain
   baseline), for the same windows, noise draws and timestep. The two are timed in alternating pairs
   (map then crops, crops then map, ...) and the speed-up is the median of the pair ratios. For
   reference only, one prior call per crop (the crops of one image one at a time; nobody would write
   this) is timed once on a few images.
2. Stage II: seconds for per-class nested bisecting k-means and flat k-means over a scored pool.
3. Memory: peak RSS above the RSS at the start (after a one-batch warm-up) of Stage I over a pool of P images per class and of
   10 P, each in a fresh subprocess, on a synthetic dataset generated image by image (the dataset
   itself takes no memory), so the ratio shows whether memory follows the pool size.

The prior is ddcore's pixel prior architecture (default options) freshly initialised: cost does not
depend on the weights. Run: ``OMP_NUM_THREADS=1 .venv/bin/python bench/diffsel_bench.py [--quick]``.

``--prior-quality FOLDER`` instead measures what a trained digits prior knows (the figures under
"Priors" in docs/diffsel.md): the first ``--quality-images`` test digits are classified by the lowest
conditional error (one noise draw, the same for every class, seeded) at each of ``--quality-timesteps``,
and the mean of ``D = e_null - e_true_class`` over those images is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def make_prior(size: int, channels: list[int], classes: int):
    from ddcore_diffsel.pixel_prior import PixelPrior, build_scheduler, build_unet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        unet = build_unet(size, 1, classes, channels)
    return PixelPrior(unet, build_scheduler(), [str(c) for c in range(classes)])


def stage1_throughput(args) -> dict:
    """Images/s of the map scorer against batched per-crop scoring (alternating pairs), and one crop at a time."""
    from ddcore_diffsel.priors import discriminativeness_map
    from ddcore_diffsel.windows import box_means, crop_resize, square_windows

    prior = make_prior(args.prior_size, args.channels, 10)
    side, window = 32, 16
    boxes = square_windows(side, side, window, args.stride)  # [P, 4]
    windows = len(boxes)
    images = torch.rand(args.images, 1, side, side, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(args.images) % 10
    timesteps = [500]

    def by_map() -> torch.Tensor:
        scores = []
        for start in range(0, args.images, args.batch):
            chunk = slice(start, start + args.batch)
            maps = discriminativeness_map(prior, images[chunk], labels[chunk], timesteps, args.n_noise,
                                          torch.Generator().manual_seed(start), resolution=args.prior_size)  # fmt: skip
            scores.append(box_means(maps, boxes))
        return torch.cat(scores)  # [N, P]

    def by_batched_crops() -> torch.Tensor:
        """Every window of a batch as its own prior input: [B*P] crops in one call per noise draw."""
        scores = []
        for start in range(0, args.images, args.batch):
            chunk = images[start : start + args.batch]
            b = chunk.shape[0]
            crops = crop_resize(chunk.repeat_interleave(windows, 0), boxes.repeat(b, 1), args.prior_size)  # [B*P, ...]
            crop_labels = labels[start : start + args.batch].repeat_interleave(windows)
            maps = discriminativeness_map(prior, crops, crop_labels, timesteps, args.n_noise,
                                          torch.Generator().manual_seed(start))  # fmt: skip
            scores.append(maps.mean(dim=(1, 2)).view(b, windows))
        return torch.cat(scores)  # [N, P]

    by_map(), by_batched_crops()  # warm-up
    times: dict[str, list[float]] = {"map": [], "crops": []}
    for rep in range(args.reps):
        order = ("map", "crops") if rep % 2 == 0 else ("crops", "map")
        for name in order:
            started = time.perf_counter()
            (by_map if name == "map" else by_batched_crops)()
            times[name].append(time.perf_counter() - started)
    pair_ratios = [c / m for m, c in zip(times["map"], times["crops"])]

    single_images = max(1, args.images // 16)  # one prior call per crop: a few images, once
    started = time.perf_counter()
    for i in range(single_images):
        crops = crop_resize(images[i : i + 1].expand(windows, -1, -1, -1), boxes, args.prior_size)
        for b in range(windows):
            discriminativeness_map(prior, crops[b : b + 1], labels[i : i + 1], timesteps, args.n_noise,
                                   torch.Generator().manual_seed(b))  # fmt: skip
    single_rate = single_images / (time.perf_counter() - started)
    map_rate = args.images / statistics.median(times["map"])
    crop_rate = args.images / statistics.median(times["crops"])
    return {"windows_per_image": windows, "images": args.images, "pairs": args.reps,
            "map_images_per_s": map_rate, "batched_crops_images_per_s": crop_rate,
            "speedup_vs_batched_crops": statistics.median(pair_ratios),
            "pair_ratios": pair_ratios, "map_seconds": times["map"], "crops_seconds": times["crops"],
            "one_crop_per_call_images_per_s": single_rate, "one_crop_per_call_images": single_images,
            "speedup_vs_one_crop_per_call": map_rate / single_rate}  # fmt: skip


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


def prior_quality(args) -> dict:
    """Test-digit classification by the lowest conditional error, and the mean D, per timestep."""
    from ddcore.data.base import DatasetOptions
    from ddcore.data.digits import load_digits_dataset
    from ddcore_diffsel.pixel_prior import load_prior, prior_input

    prior = load_prior(Path(args.prior_quality))
    dataset = load_digits_dataset(DatasetOptions())
    n = min(args.quality_images, len(dataset.test))
    images, labels = dataset.load("test", list(range(n)))
    clean = prior.encode(prior_input(images, dataset.mean, dataset.std, prior.size))
    k = len(prior.class_names)
    out = {"prior": str(args.prior_quality), "steps": prior.meta.get("steps"), "images": n, "timesteps": {}}
    for t in args.quality_timesteps:
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(t))
        steps = torch.full((n,), t, dtype=torch.long)
        noisy = prior.scheduler.add_noise(clean, noise, steps)
        errors = []
        with torch.no_grad():
            for condition in [*range(k), -1]:  # every class, then the null class
                predicted = prior.predict(noisy, steps, torch.full((n,), condition, dtype=torch.long))
                errors.append((predicted - noise).square().flatten(1).sum(1))
        errors = torch.stack(errors, 1)  # [n, K + 1]
        accuracy = (errors[:, :k].argmin(1) == labels).float().mean().item()
        d = (errors[:, k] - errors[torch.arange(n), labels]).mean().item()
        out["timesteps"][t] = {"accuracy": accuracy, "mean_D": d}
        print(f"t = {t}: lowest-conditional-error accuracy {100 * accuracy:.1f}% on {n} test digits, mean D {d:+.4f}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--prior-size", type=int, default=16)
    parser.add_argument("--channels", type=lambda s: [int(c) for c in s.split(",")], default=[32, 64, 64])
    parser.add_argument("--n-noise", type=int, default=2)
    parser.add_argument("--stride", type=int, default=4, help="window stride (16 px windows in 32 px images)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=32, help="pool images timed per Stage-I repetition")
    parser.add_argument("--reps", type=int, default=4, help="alternating pairs (map, batched crops) in Stage I")
    parser.add_argument("--sections", default="123", help="which of 1 (Stage I), 2 (Stage II), 3 (memory) to run")
    parser.add_argument("--prior-quality", metavar="FOLDER", default="", help="measure a saved digits prior instead")
    parser.add_argument("--quality-images", type=int, default=200)
    parser.add_argument("--quality-timesteps", type=int, nargs="+", default=[200, 500, 800])
    args = parser.parse_args()
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    if args.prior_quality:
        print(json.dumps({"prior_quality": prior_quality(args)}))
        return
    if args.quick:
        args.images, args.reps = min(args.images, 16), 2
    args.pool, args.classes = (12, 3) if args.quick else (300, 10)
    args.memory_pool = 12 if args.quick else 30
    print(f"prior {args.prior_size} px {args.channels}, n_noise {args.n_noise}")
    report = {}
    if "1" in args.sections:
        s1 = report["stage1"] = stage1_throughput(args)
        print(f"Stage I: {s1['windows_per_image']} windows/image, {s1['images']} images, {s1['pairs']} alternating pairs; "
              f"map + box filter {s1['map_images_per_s']:.2f} images/s, batched per-crop scoring "
              f"{s1['batched_crops_images_per_s']:.2f} images/s: speed-up {s1['speedup_vs_batched_crops']:.1f}x "
              f"(median of pair ratios {', '.join(f'{r:.1f}' for r in s1['pair_ratios'])})")  # fmt: skip
        print(f"  reference only: one prior call per crop {s1['one_crop_per_call_images_per_s']:.3f} images/s "
              f"({s1['one_crop_per_call_images']} images), map {s1['speedup_vs_one_crop_per_call']:.0f}x faster")  # fmt: skip
    if "2" in args.sections:
        s2 = report["stage2"] = stage2_time(args)
        print("Stage II (" + f"{args.classes} classes x {args.pool} candidates, 512-d): "
              + ", ".join(f"{k} {v:.2f}s" for k, v in s2.items()))  # fmt: skip
    if "3" in args.sections:
        mem = report["memory"] = memory_growth(args)
        print(f"Memory: peak RSS above baseline {mem['peak_above_baseline_small_mib']:.1f} MiB for {mem['pool_small']} pool images, "
              f"{mem['peak_above_baseline_large_mib']:.1f} MiB for {mem['pool_large']}: ratio {mem['memory_ratio_10x_pool']:.2f} "
              f"for a 10x pool (time {mem['seconds_small']:.1f}s vs {mem['seconds_large']:.1f}s)")  # fmt: skip
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
