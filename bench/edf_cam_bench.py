#!/usr/bin/env python
"""What EDF's activation maps cost, measured side by side in one run (digits; CPU unless ``--device``).

    .venv/bin/python bench/edf_cam_bench.py            # about 3-6 min on a 2-core CPU
    .venv/bin/python bench/edf_cam_bench.py --quick    # smoke test

For the synthetic set at IPC 1 (10 images) and IPC 10 (100 images) of digits, with ddcore's digits
network (ConvNet-D3, the width of the digits preset, instance norm) as both the matched network and
the CAM model (the run's own classifier is that network):

(a) one CAM refresh of the whole set (``ddcore.cam.grad_cam``, plain Grad-CAM and Smooth Grad-CAM++
    with 4 noisy copies, the default layer) against one outer matching step (``ddcore.tm.matching``:
    ``syn_steps`` unrolled steps on all images, DSA, backward); the ratio says how much a refresh
    adds to the iteration it happens in (divide by ``plugin.edf.interval`` for the average share).
(b) batched Grad-CAM (all images in one call, as ddcore does) against the EDF release's way, one call
    per class on that class's images (the best plain baseline; at IPC 1 it is one image per call),
    both methods; and, for reference only, a per-image loop. The maps of all three are compared.
(c) with ``--memory``: the peak memory of one refresh in each of the three ways, each configuration
    in a fresh child process. On the CPU the child warms up with one refresh, returns free heap to
    the OS (``malloc_trim``), records its RSS, resets the kernel's peak-RSS mark
    (``/proc/self/clear_refs``), runs one refresh and reads ``VmHWM``: the figure is that peak minus
    the RSS before (``ru_maxrss`` over the child's life if the mark cannot be reset). With
    ``--device cuda`` it is ``torch.cuda.max_memory_allocated()`` minus the memory allocated before.
(d) with ``--resnet-check`` only: an ImageNet-shaped ResNet-18 at 128 px (the EDF authors' CAM model),
    the time of one ``grad_cam`` call on ``--device`` and how far its maps are from the CPU's (the
    GPU figures of docs/edf.md; run with ``--device cuda``).

Repetitions are interleaved (a, b, c, a, b, c, ...; the order rotates), so a change in machine load
hits every variant alike; medians are reported, the ratios are of medians, and for batched against
per-class also the median of the ratios within a repetition. Random weights: the cost of a
forward/backward does not depend on them. ``--device cuda`` is written for a GPU but was only run on
the CPU here.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from ddcore.augment import DSA, DSAugment
from ddcore.cam import default_layer_name, grad_cam
from ddcore.config import EvalConfig
from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.tm.matching import matching_step, minibatch_order
from ddcore.models import build_model
from ddcore.presets import resolve_eval

METHODS = {"gradcam": "gradcam", "smooth": "smooth_gradcampp"}


def digits_images(ipc: int):
    """The first ``ipc`` training images of each digits class: ``([10*ipc, 1, 32, 32], [10*ipc])``."""
    from ddcore.data.base import DatasetOptions
    from ddcore.data.digits import load_digits_dataset

    dataset = load_digits_dataset(DatasetOptions())
    chosen = [i for per_class in dataset.indices_by_class("train") for i in per_class[:ipc]]
    return dataset, *dataset.load("train", chosen)


def timed(fn, device: torch.device) -> float:
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def refresh(way: str, model, images, labels, method: str):
    """One CAM refresh of the whole set: ``batched`` (one call), ``per-class`` (one call per class,
    the EDF release) or ``per-image`` (one call per image)."""
    if way == "batched":
        return grad_cam(model, None, images, labels, method=method)
    if way == "per-class":
        maps = torch.empty(images.shape[0], *images.shape[2:], device=images.device)
        for c in labels.unique().tolist():
            rows = torch.nonzero(labels == c).flatten()
            maps[rows] = grad_cam(model, None, images[rows], labels[rows], method=method)
        return maps
    return torch.cat([grad_cam(model, None, images[i : i + 1], labels[i : i + 1], method=method)
                      for i in range(images.shape[0])])  # fmt: skip


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def memory_child(ipc: int, way: str, method: str, device_name: str) -> dict:
    """Peak memory of one refresh above the state before it (see the module docstring, (c))."""
    device = torch.device(device_name)
    dataset, images, labels = digits_images(ipc)
    spec = resolve_eval(EvalConfig(), dataset).model
    torch.manual_seed(0)
    model = build_model(spec, 10, 1, 32).to(device).eval().requires_grad_(False)
    images, labels = images.to(device), labels.to(device)
    refresh(way, model, images, labels, METHODS[method])  # warm-up: oneDNN primitives, caches
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        refresh(way, model, images, labels, METHODS[method])
        torch.cuda.synchronize(device)
        return {"peak_mib": (torch.cuda.max_memory_allocated(device) - before) / 2**20, "measure": "torch.cuda peak"}
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    before = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        measure = "VmHWM - VmRSS before"
    except OSError:
        measure = "ru_maxrss - VmRSS before"
    refresh(way, model, images, labels, METHODS[method])
    peak = _status_kib("VmHWM") if measure.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_mib": (peak - before) / 1024, "measure": measure}


def memory_table(ipcs: list[int], device: str, threads: int) -> list[dict]:
    rows = []
    for ipc in ipcs:
        for method in METHODS:
            for way in ("batched", "per-class", "per-image"):
                env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
                out = subprocess.run([sys.executable, __file__, "--memory-child", f"{ipc},{way},{method},{device}"],
                                     check=True, capture_output=True, text=True, env=env)  # fmt: skip
                rows.append({"ipc": ipc, "method": method, "way": way, **json.loads(out.stdout.strip().splitlines()[-1])})
                print(f"  IPC {ipc:>2} {method:<8} {way:<10} peak {rows[-1]['peak_mib']:7.1f} MiB ({rows[-1]['measure']})",
                      flush=True)  # fmt: skip
    return rows


def resnet_check(args) -> None:
    """(d) The GPU figures of docs/edf.md: an ImageNet-shaped ResNet-18 (torchvision, random weights, 1000
    classes) on ``--resnet-images`` random 128 px images with random targets. For each layer (``layer3``,
    ``layer4``) and method: the median time of one ``grad_cam`` call on ``--device``, and the largest
    difference between the maps on ``--device`` and on the CPU (both in [0, 1])."""
    import copy

    from torchvision.models import resnet18

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = resnet18(num_classes=1000).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.resnet_images, 3, 128, 128, generator=generator)
    targets = torch.randint(0, 1000, (args.resnet_images,), generator=generator)
    on_device = copy.deepcopy(model).to(device)
    if device.type == "cuda":
        print(f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}")
    for layer in ("layer3", "layer4"):
        for short, method in METHODS.items():
            def run(net, dev):
                return grad_cam(net, layer, images.to(dev), targets.to(dev), method=method,
                                generator=torch.Generator().manual_seed(1))  # fmt: skip
            cpu_maps = run(model, torch.device("cpu"))
            device_maps = run(on_device, device)  # also the warm-up
            gap = (device_maps.cpu() - cpu_maps).abs().max().item()
            times = [timed(lambda: run(on_device, device), device) for _ in range(args.reps)]
            print(f"  ResNet-18 {layer} {short:<8} {args.resnet_images} images at 128 px on {device}: median "
                  f"{1000 * statistics.median(times):.1f} ms; largest |maps on {device} - maps on cpu| {gap:.2e}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--syn-steps", type=int, default=10, help="unrolled steps of the matching step (digits preset: 10)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions of every variant")
    parser.add_argument("--ipcs", default="1,10", help="synthetic set sizes, images per class (comma-separated)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--memory", action="store_true", help="also (c): peak memory of one refresh, per way")
    parser.add_argument("--no-per-image", action="store_true", help="skip the per-image reference loop")
    parser.add_argument("--resnet-check", action="store_true", help="only (d): ResNet-18 at 128 px, time and device/CPU map gap")
    parser.add_argument("--resnet-images", type=int, default=64)
    parser.add_argument("--memory-child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        ipc, way, method, device = args.memory_child.split(",")
        print(json.dumps(memory_child(int(ipc), way, method, device)))
        return
    device = torch.device(args.device)
    reps = 2 if args.quick else args.reps
    syn_steps = 2 if args.quick else args.syn_steps
    ipcs = [int(k) for k in args.ipcs.split(",")]
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"edf_cam_bench: torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}, reps {reps}, syn_steps {syn_steps}")  # fmt: skip

    if args.resnet_check:
        resnet_check(args)
        return
    ways = ["batched", "per-class"] + ([] if args.no_per_image else ["per-image"])
    for ipc in ipcs:
        dataset, images, labels = digits_images(ipc)
        images, labels = images.to(device), labels.to(device)
        spec = resolve_eval(EvalConfig(), dataset).model
        torch.manual_seed(0)
        model = build_model(spec, 10, 1, 32).to(device)
        shapes = param_shapes_of(model)
        start = flatten_params(model).detach()
        trajectory = torch.stack([start, start + 0.01 * torch.randn_like(start), start + 0.02 * torch.randn_like(start)])
        syn_lr = torch.tensor(0.01, requires_grad=True, device=device)
        x = images.clone().requires_grad_(True)
        generator = torch.Generator().manual_seed(0)
        augment = DSAugment(DSA(), torch.Generator().manual_seed(1))
        cam_model = build_model(spec, 10, 1, 32).to(device).eval().requires_grad_(False)

        def matching() -> None:
            x.grad = None
            chunks = minibatch_order(x.shape[0], x.shape[0], syn_steps, generator)
            matching_step(model, shapes, trajectory, 0, 2, x, labels, syn_lr, chunks,
                          lambda l, d: None, lambda i, y: None, augment)  # fmt: skip

        variants = {"matching step": matching}
        for way in ways:
            for short, method in METHODS.items():
                variants[f"{short} {way}"] = (lambda w, m: lambda: refresh(w, cam_model, images, labels, m))(way, method)
        for fn in variants.values():  # warm-up (oneDNN primitives, kornia)
            fn()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(reps):
            names = list(variants)
            names = names[rep % len(names):] + names[: rep % len(names)]  # rotate the order each repetition
            for name in names:
                times[name].append(timed(variants[name], device))
        median = {name: statistics.median(values) for name, values in times.items()}

        reference = {m: refresh("batched", cam_model, images, labels, method) for m, method in METHODS.items()}
        same = {f"{m} {way}": torch.allclose(reference[m], refresh(way, cam_model, images, labels, METHODS[m]), atol=1e-5)
                for m in METHODS for way in ways[1:]}  # fmt: skip
        print(f"\nIPC {ipc}: {images.shape[0]} images, {spec.name} width {spec.width} depth {spec.resolved_depth()}, "
              f"CAM layer {default_layer_name(cam_model)}")  # fmt: skip
        for name, value in median.items():
            print(f"  {name:<20} median {1000 * value:9.1f} ms   (runs: {', '.join(f'{1000 * t:.0f}' for t in times[name])})")
        step = median["matching step"]
        print(f"  refresh / matching step: gradcam {median['gradcam batched'] / step:.3f}, "
              f"smooth {median['smooth batched'] / step:.3f}")  # fmt: skip
        for m in METHODS:
            within = [c / b for b, c in zip(times[f"{m} batched"], times[f"{m} per-class"])]
            line = (f"  {m:<8} per-class (EDF release) / batched: {median[f'{m} per-class'] / median[f'{m} batched']:.2f}x "
                    f"(median within repetitions {statistics.median(within):.2f}x)")  # fmt: skip
            if "per-image" in ways:
                line += f"; per-image loop (reference) / batched: {median[f'{m} per-image'] / median[f'{m} batched']:.2f}x"
            print(line)
        print(f"  maps equal to the batched ones: {same}")
    if args.memory:
        print("\n(c) peak memory of one refresh, fresh child process per configuration:")
        memory_table(ipcs, args.device, args.threads)
    print(f"load at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
