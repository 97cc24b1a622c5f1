#!/usr/bin/env python
"""Trajectory matching at scale: the full unroll against the constant-memory one (``tm.unroll``).

    .venv/bin/python bench/tm_scale.py                 # CPU: sections a, b, c (about 10 min on an idle 2-core CPU)
    .venv/bin/python bench/tm_scale.py --quick         # smoke test: one small configuration, 1 pair
    .venv/bin/python bench/tm_scale.py --device cuda   # adds (d) on a GPU

(a) One outer step (``ddcore.tm.matching.matching_step``: DSA, ``batch_syn`` = all images, soft labels
    learnt, the hook callbacks answering nothing) in both unrolls, side by side in this process, for
    ``syn_steps`` 10/20/40 at 32 px (ConvNet-D3) and 64 px (ConvNet-D4), width ``--width``, ``--images``
    images, 10 classes, random data. *Time*: alternating pairs (full-constant, then constant-full, ...),
    the same seeds in both members of a pair; medians, the ratio of the medians and the quartiles of the
    in-pair ratios. *Memory*: the peak of live tensor bytes of one step
    (``ddcore.tm.memory.LiveTensorBytes`` on the real CPU tensors: allocator independent, the same in
    every run, so measured once), next to the projection ``tm.unroll = "auto"`` plans with.
(b) The full unroll's cost per image per inner step at 128 px, ConvNet-D5 width 128 (the EDF release's
    network), float32: measured on the CPU (two real steps of 2 images, live tensor bytes) and projected.
(c) The projected peak of one outer step of every ``spec-*`` preset at 128 px (ConvNet-D5 width 128,
    10 classes, learnt soft labels, 100-epoch experts), in both unrolls, per process.
(d) ``--device cuda`` only: a few outer iterations of the ``spec-ipc10`` and ``spec-ipc50`` shapes at
    128 px on random 10-class data, in both unrolls (the full one only where the plan says it fits):
    peak GPU memory (``torch.cuda.max_memory_allocated``) and iterations/s.

Targets (printed with each figure): (a) constant-mode peak at 40 steps within 1.3x of its peak at 10,
and at least 6x below the full unroll at 40 steps; time per outer step within 1.35x of the full
unroll; (c) spec-ipc50 under 40 GiB and spec-ipc10 under 24 GiB in constant mode.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ddcore.augment import DSA, DSAugment  # noqa: E402
from ddcore.models import ModelSpec, build_model  # noqa: E402
from ddcore.tm.flatparams import flatten_params, param_shapes_of  # noqa: E402
from ddcore.tm.matching import matching_step, minibatch_order  # noqa: E402
from ddcore.tm.memory import GiB, MiB, OVERHEAD, device_budget, peak_live_bytes, plan_unroll, step_costs  # noqa: E402
from ddcore.tm.presets import TM_PRESETS  # noqa: E402

CLASSES = 10
SPEC_128 = ModelSpec(name="convnetd5", width=128)
EXPERT_EPOCHS_SPEC = 100  # the release's experts: 100 epochs, one snapshot per epoch
TARGET_FLAT, TARGET_SAVING, TARGET_TIME = 1.3, 6.0, 1.35
TARGET_GIB = {"spec-ipc50": 40.0, "spec-ipc10": 24.0}


def q(values: list[float], p: float) -> float:
    s = sorted(values)
    pos = p * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class Step:
    """One outer matching step of a fixed problem, re-runnable with the same seeds in either unroll."""

    def __init__(self, spec: ModelSpec, size: int, images: int, batch: int, syn_steps: int, device: torch.device):
        torch.manual_seed(0)
        self.model = build_model(spec, CLASSES, 3, size).to(device)
        self.shapes = param_shapes_of(self.model)
        start = flatten_params(self.model)
        g = torch.Generator().manual_seed(1)
        drift = [0.01 * torch.randn(start.shape, generator=g).to(device) for _ in range(2)]
        self.trajectory = torch.stack([start, start + drift[0], start + drift[0] + drift[1]])
        self.images = torch.randn(images, 3, size, size, generator=g).to(device).requires_grad_(True)
        self.labels = torch.randn(images, CLASSES, generator=g).to(device).requires_grad_(True)
        self.syn_lr = torch.tensor(0.01, device=device, requires_grad=True)
        self.batch, self.syn_steps, self.device = batch, syn_steps, device

    def __call__(self, mode: str, seed: int = 0) -> float:
        for t in (self.images, self.labels, self.syn_lr):
            t.grad = None
        chunks = minibatch_order(self.images.shape[0], self.batch, self.syn_steps, torch.Generator().manual_seed(seed))
        augment = DSAugment(DSA(), torch.Generator().manual_seed(seed + 1))
        result = matching_step(
            self.model, self.shapes, self.trajectory, 0, 2, self.images, self.labels, self.syn_lr, chunks,
            supervision_weights=lambda l, d: None, pixel_weights=lambda x, y: None, augment=augment, mode=mode,
        )  # fmt: skip
        return result.loss


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def section_a(args) -> None:
    print("\n(a) one outer step, full vs constant unroll, side by side (CPU, float32, DSA, learnt soft labels)")
    print(f"    ConvNet width {args.width}, {args.images} images (batch_syn = all), {args.pairs} alternating pairs\n")
    print("| px | syn_steps | full peak MiB (projected) | constant peak MiB (projected) | full / constant | "
          "full s (median) | constant s (median) | time ratio | pair ratios q25 / median / q75 | grads rel. diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    constant_peaks: dict[int, dict[int, int]] = {}
    ratios = []
    for size, depth in args.sizes:
        spec = ModelSpec(name="convnet", width=args.width, depth=depth)
        for syn_steps in args.steps:
            step = Step(spec, size, args.images, args.images, syn_steps, torch.device("cpu"))
            peaks = {mode: peak_live_bytes(lambda m=mode: step(m)) for mode in ("full", "constant")}
            costs = step_costs(spec, CLASSES, 3, size, args.images, args.images, True, True, 3)
            projected = {mode: costs.peak(mode, syn_steps) - costs.resident for mode in ("full", "constant")}
            constant_peaks.setdefault(size, {})[syn_steps] = peaks["constant"]
            # gradients of the two unrolls, same seeds
            step("full", 0)
            full_grad = step.images.grad.clone()
            step("constant", 0)
            diff = float((step.images.grad - full_grad).norm() / full_grad.norm())
            times = {"full": [], "constant": []}
            pair_ratios = []
            for pair in range(args.pairs):
                order = ("full", "constant") if pair % 2 == 0 else ("constant", "full")
                got = {mode: timed(lambda m=mode: step(m, pair)) for mode in order}
                for mode in order:
                    times[mode].append(got[mode])
                pair_ratios.append(got["constant"] / got["full"])
            full_s, constant_s = statistics.median(times["full"]), statistics.median(times["constant"])
            ratio = constant_s / full_s
            ratios.append(ratio)
            print(f"| {size} | {syn_steps} | {peaks['full'] / MiB:.1f} ({projected['full'] / MiB:.1f}) | "
                  f"{peaks['constant'] / MiB:.1f} ({projected['constant'] / MiB:.1f}) | "
                  f"{peaks['full'] / peaks['constant']:.1f}x | {full_s:.3f} | {constant_s:.3f} | **{ratio:.3f}** | "
                  f"{q(pair_ratios, 0.25):.3f} / {q(pair_ratios, 0.5):.3f} / {q(pair_ratios, 0.75):.3f} | {diff:.1e} |",
                  flush=True)  # fmt: skip
            if syn_steps == max(args.steps):
                saving = peaks["full"] / peaks["constant"]
                print(f"    target: constant >= {TARGET_SAVING}x below full at {syn_steps} steps: {saving:.1f}x "
                      f"{'MET' if saving >= TARGET_SAVING else 'NOT MET'}")  # fmt: skip
    for size, by_steps in constant_peaks.items():
        low, high = min(by_steps), max(by_steps)
        growth = by_steps[high] / by_steps[low]
        print(f"    target: {size} px constant peak at {high} steps within {TARGET_FLAT}x of {low} steps: {growth:.3f}x "
              f"{'MET' if growth <= TARGET_FLAT else 'NOT MET'}")  # fmt: skip
    worst = max(ratios)
    print(f"    target: time within {TARGET_TIME}x of the full unroll: worst {worst:.3f}x, median {statistics.median(ratios):.3f}x "
          f"{'MET' if worst <= TARGET_TIME else 'NOT MET'}")  # fmt: skip


def section_b(args) -> None:
    print("\n(b) full unroll, cost per image per inner step, ConvNet-D5 width 128, 3x128x128, float32")
    step = Step(SPEC_128, 128, 2, 2, 1, torch.device("cpu"))
    measured = []
    for syn_steps in (1, 2):
        step.syn_steps = syn_steps
        measured.append(peak_live_bytes(lambda: step("full")))
    per_image = (measured[1] - measured[0]) / 2
    costs = step_costs(SPEC_128, CLASSES, 3, 128, 10, 10, True, True, EXPERT_EPOCHS_SPEC + 1)
    print(f"    measured (CPU, 2 images, 1 and 2 inner steps, DSA, live tensor bytes): {per_image / MiB:.2f} MiB")
    print(f"    projected (meta device, no augmentation):                            {costs.per_image_step / MiB:.2f} MiB")


def spec_rows() -> list[tuple[str, int, int, int]]:
    """``(name, images, batch, syn_steps)`` of the spec presets at 10 classes, plus the release's largest IPC 50 run."""
    rows = []
    for name, ipc in (("spec-ipc1", 1), ("spec-ipc10", 10), ("spec-ipc50", 50)):
        preset = TM_PRESETS[name]
        images = ipc * CLASSES
        rows.append((name, images, min(preset["batch_syn"] or images, images), preset["syn_steps"]))
    rows.append(("spec-ipc50, release max (250 x 80)", 500, 250, 80))
    return rows


def section_c(args) -> dict[str, tuple[int, int]]:
    print("\n(c) projected peak of one outer step per process, 128 px ConvNet-D5 width 128, 10 classes, learnt soft labels")
    print("    (tensor bytes; `tm.unroll = auto` plans with 1.2x this for allocator overhead)\n")
    print("| preset | images | batch_syn | syn_steps | full unroll | constant unroll | full / constant | target |")
    print("|---|---|---|---|---|---|---|---|")
    out = {}
    for name, images, batch, syn_steps in spec_rows():
        costs = step_costs(SPEC_128, CLASSES, 3, 128, images, batch, True, True, EXPERT_EPOCHS_SPEC + 1)
        full, constant = costs.peak("full", syn_steps), costs.peak("constant", syn_steps)
        out[name] = (full, constant)
        target = TARGET_GIB.get(name)
        verdict = "" if target is None else f"< {target:.0f} GiB: {'MET' if constant / GiB < target else 'NOT MET'}"
        print(f"| {name} | {images} | {batch} | {syn_steps} | {full / GiB:.1f} GiB | {constant / GiB:.2f} GiB | "
              f"{full / constant:.0f}x | {verdict} |", flush=True)  # fmt: skip
    return out


def section_d(args) -> None:
    device = torch.device(args.device)
    print(f"\n(d) a few outer iterations at 128 px on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"random 10-class data, ConvNet-D5 width 128, {args.gpu_iterations} iterations after 1 warm-up\n")  # fmt: skip
    budget, source = device_budget(device)
    print(f"    budget {budget / GiB:.1f} GiB ({source})\n")
    print("| shape | unroll | projected GiB | peak allocated GiB | iterations/s |")
    print("|---|---|---|---|---|")
    for name, images, batch, syn_steps in spec_rows()[1:3]:
        costs = step_costs(SPEC_128, CLASSES, 3, 128, images, batch, True, True, 3)
        plan = None
        try:
            plan = plan_unroll("full", costs, syn_steps, budget, source)
        except Exception:  # noqa: BLE001 - the full unroll does not fit: skip it
            plan = None
        for mode in ("full", "constant"):
            if mode == "full" and plan is None:
                print(f"| {name} | full | {costs.peak('full', syn_steps) / GiB:.1f} | does not fit ({OVERHEAD}x projected) | |")
                continue
            step = Step(SPEC_128, 128, images, batch, syn_steps, device)
            step(mode)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            started = time.perf_counter()
            for i in range(args.gpu_iterations):
                step(mode, i + 1)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            rate = args.gpu_iterations / (time.perf_counter() - started)
            peak = torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else float("nan")
            print(f"| {name} ({images} images, batch {batch}, {syn_steps} steps) | {mode} | "
                  f"{costs.peak(mode, syn_steps) / GiB:.1f} | {peak:.1f} | {rate:.3f} |", flush=True)  # fmt: skip
            del step
            if device.type == "cuda":
                torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: 32 px, 10 and 20 steps, 1 pair, no (b)")
    parser.add_argument("--sections", default="abc", help="which of a, b, c (d runs with --device cuda)")
    parser.add_argument("--device", default="cpu", help="cuda: also run (d)")
    parser.add_argument("--width", type=int, default=16, help="(a): ConvNet width")
    parser.add_argument("--images", type=int, default=10, help="(a): synthetic images (all in every inner step)")
    parser.add_argument("--pairs", type=int, default=5, help="(a): alternating timing pairs per configuration")
    parser.add_argument("--gpu-iterations", type=int, default=3, help="(d): timed outer iterations")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.sizes, args.steps = [(32, 3), (64, 4)], [10, 20, 40]
    if args.quick:
        args.sizes, args.steps, args.pairs, args.sections = [(32, 3)], [10, 20], 1, args.sections.replace("b", "")
    print(f"tm_scale: {' '.join(sys.argv)}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, 1-min load {os.getloadavg()[0]:.2f}")  # fmt: skip
    started = time.perf_counter()
    if "a" in args.sections:
        section_a(args)
    if "b" in args.sections:
        section_b(args)
    if "c" in args.sections:
        section_c(args)
    if args.device != "cpu" or "d" in args.sections:
        section_d(args)
    print(f"\ndone in {time.perf_counter() - started:.0f} s; 1-min load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
