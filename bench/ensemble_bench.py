#!/usr/bin/env python
"""Batched ensembles (ddcore.ensemble) against one-by-one training, side by side in one run.

    .venv/bin/python bench/ensemble_bench.py                  # the issue's settings (evaluation: 300 epochs)
    .venv/bin/python bench/ensemble_bench.py --quick          # smoke test: few epochs, K = 3 and 6, 2 experts' epoch

Two measurements on the embedded ``digits`` data (1x32x32, the digits preset network: ConvNet-D3-W32,
instance norm), each configuration timed one by one (``train_ensemble(mode="off")``: the sequential path,
``train_network`` per network) and batched (``mode="on"``) in the same process, alternating:

(a) evaluation networks: K = 3, 6, 10 networks trained on the README's IPC 1 and IPC 10 digits sets (a
    random real subset of 1 / 10 images per class, as ``dd run --ipc N`` selects) with the evaluator's
    resolved recipe (``[eval]`` defaults for digits: SGD, lr 0.01, 300 epochs, step schedule, the preset
    augmentation), each network with its own seeds. Reported: seconds for one network, for K one by one
    and K batched; ``batched/one`` (issue target: at most 2x at K = 6, IPC 1 on a 2-core CPU; 1.5x at
    K = 10 on a GPU) and the speed-up ``loop/batched``. The largest parameter difference between the
    batched and the one-by-one networks is printed too (they are the same computation: float rounding).
(b) experts: N = 5 experts (``recipe_for_dataset(digits, 5, epochs)``, full training split, batch 256)
    for ``--expert-epochs`` epochs, without the trajectory snapshots and accuracy passes. Reported: the
    speed-up loop/batched (issue target: at least 2x).

(c) roofline: the floating-point operations of one training step (forward, backward; counted with
    ``torch.utils.flop_counter.FlopCounterMode``, augmentation and the optimiser's element-wise update not
    counted) for one network, and K times that for K batched (:class:`ddcore.ensemble.StackedNetworks`: the
    same arithmetic; the counter's own figure for the vmapped step is printed too, but it counts a grouped
    convolution's input gradient as if ungrouped) on the IPC sets' batches, the time per step (median of
    ``--roofline-steps`` after 3 warm-up steps) and the achieved GFLOP/s, next to two ceilings measured in the same process: a 1024x1024 float32 matmul (the CPU's
    practical peak) and one network on a batch of 256 (this network's kernels when they are large). When one
    network already reaches a large share of the ceiling, K networks need about K times its FLOPs and batching
    cannot make K = 6 cost <= 2x one network; when it is far below, the step is overhead-bound and batching helps.

Times are wall-clock seconds on whatever else the machine is running: the load average is printed
before and after; re-measure on an idle machine before quoting a figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from ddcore.ensemble import Member, train_ensemble  # noqa: E402
from ddcore.training import tensor_batches  # noqa: E402


def largest_difference(a, b) -> float:
    return max((p - q).abs().max().item() for x, y in zip(a, b) for p, q in zip(x.parameters(), y.parameters()))


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def eval_members(images, labels, recipe, count, seed=0):
    return [
        Member(seed * 1000 + k, tensor_batches(images, labels, recipe.batch_size, torch.Generator().manual_seed(seed * 1000 + 500 + k)), recipe)
        for k in range(count)
    ]


def step_cost(build, images, labels, k: int, recipe, device, steps: int) -> tuple[float, float]:
    """``(FLOPs of one training step, median seconds per step)`` of ``k`` networks on ``images [B, C, H, W]``:
    one plain module when ``k == 1``, else K stacked networks (each its own copy of the batch)."""
    import statistics

    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from ddcore.ensemble import StackedNetworks
    from ddcore.training import make_optimizer

    images, labels = images.to(device), labels.to(device)
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(build().to(device).train())
    if k == 1:
        params = list(models[0].parameters())

        def loss():
            return F.cross_entropy(models[0](images), labels)
    else:
        stacked = StackedNetworks(models)
        params = stacked.parameters()
        xs, ys = images.expand(k, *images.shape), labels.expand(k, *labels.shape)

        def loss():
            logits = stacked(xs)
            return F.cross_entropy(logits.flatten(0, 1), ys.flatten(), reduction="none").view(k, -1).mean(1).sum()

    optimizer = make_optimizer(recipe, params)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return float(flops), statistics.median(times)


def matmul_peak(device, n: int = 1024, reps: int = 10) -> float:
    """GFLOP/s of an ``n x n`` float32 matmul on ``device`` (median of ``reps``)."""
    import statistics

    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    a @ b
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def roofline(build, dataset, by_class, ipcs, ks, recipe, device, steps: int) -> None:
    peak = matmul_peak(device)
    big_images, big_labels = dataset.load("train", list(range(256)))
    big_flops, big_s = step_cost(build, big_images, big_labels, 1, recipe, device, max(3, steps // 4))
    print()
    print(f"(c) roofline: one training step (forward + backward + update), FLOPs by torch.utils.flop_counter; "
          f"median of {steps} steps")  # fmt: skip
    print(f"  ceilings: 1024x1024 matmul {peak:.1f} GFLOP/s; one network at batch 256: "
          f"{big_flops / 1e9:.3f} GFLOP/step in {1e3 * big_s:.1f} ms = {big_flops / big_s / 1e9:.1f} GFLOP/s")  # fmt: skip
    print("  GFLOP/step: K x one network's count (the same arithmetic); 'counted' is FlopCounterMode's own figure for the")
    print("  vmapped step, which counts a grouped convolution's input gradient as if ungrouped (K times too many)")
    print(f"  {'IPC':>3} {'K':>3} {'batch':>5} {'GFLOP/step':>11} {'counted':>8} {'ms/step':>8} {'GFLOP/s':>8} {'of matmul':>10} {'step/one':>9}")
    for ipc in ipcs:
        images, labels = dataset.load("train", [i for idx in by_class for i in idx[:ipc]])
        one = None
        for k in [1, *ks]:
            counted, seconds = step_cost(build, images, labels, k, recipe, device, steps)
            one = one or (counted, seconds)
            flops = k * one[0]
            print(f"  {ipc:>3} {k:>3} {images.shape[0]:>5} {flops / 1e9:11.4f} {counted / 1e9:8.3f} {1e3 * seconds:8.2f} "
                  f"{flops / seconds / 1e9:8.2f} {flops / seconds / 1e9 / peak:9.1%} {seconds / one[1]:8.2f}x")  # fmt: skip
            sys.stdout.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few epochs, K = 3 and 6, IPC 1 only")
    parser.add_argument("--epochs", type=int, default=0, help="evaluation epochs (0: the preset's, 300; --quick: 10)")
    parser.add_argument("--ks", default="", help="comma-separated K values (default 3,6,10; --quick: 3,6)")
    parser.add_argument("--ipcs", default="", help="comma-separated IPC values (default 1,10; --quick: 1)")
    parser.add_argument("--experts", type=int, default=5, help="N experts (0: skip)")
    parser.add_argument("--expert-epochs", type=int, default=0, help="expert epochs (0: 2; --quick: 1)")
    parser.add_argument("--roofline-steps", type=int, default=0, help="timed steps per roofline line (0: 20; --quick: 10; -1: skip)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    ks = [int(k) for k in (args.ks or ("3,6" if args.quick else "3,6,10")).split(",")]
    ipcs = [int(i) for i in (args.ipcs or ("1" if args.quick else "1,10")).split(",")]
    expert_epochs = args.expert_epochs or (1 if args.quick else 2)
    device = torch.device(args.device)

    print("ensemble_bench: K networks batched (torch.func.vmap) vs one by one (ddcore, digits 32x32)")
    print(f"command: {shlex.join(getattr(sys, 'orig_argv', [sys.executable, *sys.argv]))}   (cwd {os.getcwd()})")
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}   host: {platform.node()}")
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), device {device}")  # fmt: skip
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))

    from ddcore.presets import resolve_eval
    from ddcore.runner import Pipeline

    pipeline = Pipeline({"ipc": 1, "workers": 0, "eval": {"runs": 0}}, write=False)
    dataset = pipeline.build_dataset()
    settings = resolve_eval(pipeline.ctx.config.eval, dataset)
    epochs = args.epochs or (10 if args.quick else settings.recipe.epochs)
    recipe = type(settings.recipe)(**{**settings.recipe.to_dict(), "epochs": epochs})
    channels, size, _ = dataset.image_shape
    from ddcore.models import build_model

    build = lambda: build_model(settings.model, dataset.num_classes, channels, size)  # noqa: E731
    m = settings.model
    print(f"network: {m.name} width {m.width} depth {m.depth} {m.norm}; eval recipe: {recipe.optimizer} lr {recipe.lr} "
          f"{recipe.schedule}, {recipe.epochs} epochs, batch {recipe.batch_size}, augment {recipe.augment}")  # fmt: skip
    print()
    print("(a) evaluation networks (seconds; batched/one: target <= 2 at K = 6, IPC 1)")
    print(f"  {'IPC':>3} {'K':>3} {'one':>8} {'K loop':>8} {'K batched':>10} {'batched/one':>12} {'loop/batched':>13} {'max |dparam|':>13}")
    by_class = dataset.indices_by_class("train")
    warm = type(recipe)(**{**recipe.to_dict(), "epochs": 1})  # imports (kornia), oneDNN primitives: not timed
    for mode in ("off", "on"):
        images, labels = dataset.load("train", [idx[0] for idx in by_class])
        train_ensemble(build, eval_members(images, labels, warm, 2), device, dataset.image_shape, mode=mode)
    for ipc in ipcs:
        images, labels = dataset.load("train", [i for idx in by_class for i in idx[:ipc]])
        one, _ = timed(lambda: train_ensemble(build, eval_members(images, labels, recipe, 1), device, dataset.image_shape, mode="off"))
        for k in ks:
            loop_s, loop = timed(lambda: train_ensemble(build, eval_members(images, labels, recipe, k), device, dataset.image_shape, mode="off"))
            batch_s, batched = timed(lambda: train_ensemble(build, eval_members(images, labels, recipe, k), device, dataset.image_shape, mode="on"))
            diff = largest_difference(loop.models, batched.models)
            print(f"  {ipc:>3} {k:>3} {one:8.2f} {loop_s:8.2f} {batch_s:10.2f} {batch_s / one:11.2f}x {loop_s / batch_s:12.2f}x {diff:13.2e}")
            sys.stdout.flush()

    if args.experts:
        from ddcore.tm.experts import expert_seed, recipe_for_dataset

        expert = recipe_for_dataset(dataset, args.experts, expert_epochs)

        def expert_members():
            return [
                Member(
                    expert_seed(expert, i, "init"),
                    (lambda loader: (lambda _epoch: loader))(dataset.loader(
                        "train", expert.train.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(expert_seed(expert, i, "shuffle")))),
                    expert.train,
                )
                for i in range(args.experts)
            ]  # fmt: skip

        t = expert.train
        print()
        print(f"(b) {args.experts} experts, {expert_epochs} epoch(s) of {len(dataset.train)} images, {t.optimizer} lr {t.lr} "
              f"batch {t.batch_size} augment {t.augment} (speed-up loop/batched: target >= 2)")  # fmt: skip
        loop_s, loop = timed(lambda: train_ensemble(build, expert_members(), device, dataset.image_shape, mode="off"))
        batch_s, batched = timed(lambda: train_ensemble(build, expert_members(), device, dataset.image_shape, mode="on"))
        print(f"  one by one {loop_s:.2f} s, batched {batch_s:.2f} s: {loop_s / batch_s:.2f}x; "
              f"max |dparam| {largest_difference(loop.models, batched.models):.2e}; plan {batched.plan.to_dict()}")  # fmt: skip
    steps = args.roofline_steps or (10 if args.quick else 20)
    if steps > 0:
        roofline(build, dataset, by_class, ipcs, ks, recipe, device, steps)
    print()
    print("load average at end: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
