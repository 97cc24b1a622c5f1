#!/usr/bin/env python
"""What EDF's activation maps cost, measured side by side in one run (CPU, digits).

    .venv/bin/python bench/edf_cam_bench.py            # about 2-4 min on a 2-core CPU
    .venv/bin/python bench/edf_cam_bench.py --quick    # smoke test

For the synthetic set at IPC 1 (10 images) and IPC 10 (100 images) of digits, with ddcore's digits
network (ConvNet-D3, the width of the digits preset, instance norm) as both the matched network and
the CAM model (the run's own classifier is that network):

(a) one CAM refresh of the whole set (``ddcore.cam.grad_cam``, plain Grad-CAM and Smooth Grad-CAM++
    with 4 noisy copies, the default layer) against one outer matching step (``ddcore.tm.matching``:
    ``syn_steps`` unrolled steps on all images, DSA, backward); the ratio says how much a refresh
    adds to the iteration it happens in (divide by ``plugin.edf.interval`` for the average share).
(b) batched Grad-CAM against a per-image loop (``grad_cam`` on one image at a time), both methods;
    the maps of the two are compared.

Repetitions are interleaved (a, b, c, a, b, c, ...), so a change in machine load hits every
variant alike; medians are reported, and the ratios are of medians. Random weights: the cost of a
forward/backward does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from ddcore.augment import DSA, DSAugment
from ddcore.cam import default_layer_name, grad_cam
from ddcore.config import EvalConfig
from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.tm.matching import matching_step, minibatch_order
from ddcore.models import build_model
from ddcore.presets import resolve_eval


def digits_images(ipc: int):
    """The first ``ipc`` training images of each digits class: ``([10*ipc, 1, 32, 32], [10*ipc])``."""
    from ddcore.data.base import DatasetOptions
    from ddcore.data.digits import load_digits_dataset

    dataset = load_digits_dataset(DatasetOptions())
    chosen = [i for per_class in dataset.indices_by_class("train") for i in per_class[:ipc]]
    return dataset, *dataset.load("train", chosen)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--syn-steps", type=int, default=10, help="unrolled steps of the matching step (digits preset: 10)")
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions of every variant")
    parser.add_argument("--ipcs", default="1,10", help="synthetic set sizes, images per class (comma-separated)")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 2 if args.quick else args.reps
    syn_steps = 2 if args.quick else args.syn_steps
    print(f"edf_cam_bench: torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load {os.getloadavg()[0]:.2f}, reps {reps}, syn_steps {syn_steps}")  # fmt: skip

    for ipc in [int(k) for k in args.ipcs.split(",")]:
        dataset, images, labels = digits_images(ipc)
        spec = resolve_eval(EvalConfig(), dataset).model
        torch.manual_seed(0)
        model = build_model(spec, 10, 1, 32)
        shapes = param_shapes_of(model)
        start = flatten_params(model).detach()
        trajectory = torch.stack([start, start + 0.01 * torch.randn_like(start), start + 0.02 * torch.randn_like(start)])
        syn_lr = torch.tensor(0.01, requires_grad=True)
        x = images.clone().requires_grad_(True)
        generator = torch.Generator().manual_seed(0)
        augment = DSAugment(DSA(), torch.Generator().manual_seed(1))
        cam_model = build_model(spec, 10, 1, 32).eval().requires_grad_(False)

        def matching() -> None:
            x.grad = None
            chunks = minibatch_order(x.shape[0], x.shape[0], syn_steps, generator)
            matching_step(model, shapes, trajectory, 0, 2, x, labels, syn_lr, chunks,
                          lambda l, d: None, lambda i, y: None, augment)  # fmt: skip

        def batched(method: str):
            return lambda: grad_cam(cam_model, None, images, labels, method=method)

        def per_image(method: str):
            return lambda: [grad_cam(cam_model, None, images[i : i + 1], labels[i : i + 1], method=method)
                            for i in range(images.shape[0])]  # fmt: skip

        variants = {
            "matching step": matching,
            "gradcam batched": batched("gradcam"),
            "smooth batched": batched("smooth_gradcampp"),
            "gradcam per-image": per_image("gradcam"),
            "smooth per-image": per_image("smooth_gradcampp"),
        }
        for fn in variants.values():  # warm-up (oneDNN primitives, kornia)
            fn()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(reps):
            names = list(variants)
            names = names[rep % len(names):] + names[: rep % len(names)]  # rotate the order each repetition
            for name in names:
                times[name].append(timed(variants[name]))
        median = {name: statistics.median(values) for name, values in times.items()}

        same = torch.allclose(
            grad_cam(cam_model, None, images, labels),
            torch.cat([grad_cam(cam_model, None, images[i : i + 1], labels[i : i + 1]) for i in range(images.shape[0])]),
            atol=1e-5,
        )
        print(f"\nIPC {ipc}: {images.shape[0]} images, {spec.name} width {spec.width} depth {spec.resolved_depth()}, "
              f"CAM layer {default_layer_name(cam_model)}")  # fmt: skip
        for name, value in median.items():
            print(f"  {name:<20} median {1000 * value:9.1f} ms   (runs: {', '.join(f'{1000 * t:.0f}' for t in times[name])})")
        step = median["matching step"]
        print(f"  refresh / matching step: gradcam {median['gradcam batched'] / step:.3f}, "
              f"smooth {median['smooth batched'] / step:.3f}")  # fmt: skip
        print(f"  per-image / batched:     gradcam {median['gradcam per-image'] / median['gradcam batched']:.2f}x, "
              f"smooth {median['smooth per-image'] / median['smooth batched']:.2f}x; maps equal: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
