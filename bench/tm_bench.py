#!/usr/bin/env python
"""Trajectory-matching micro-benchmarks on the embedded ``digits`` data (CPU).

    .venv/bin/python bench/tm_bench.py            # full run, a few minutes on a 2-core CPU
    .venv/bin/python bench/tm_bench.py --quick    # smoke test, well under a minute

Three measurements, printed as a plain-text report (see bench/README.md, section "tm_bench.py"):

(a) overhead: one outer matching step as ddcore does it (``minibatch_order`` + ``matching_step``
    with the real ``Hooks`` facade callbacks, no plugin answering, DSA through ``DSAugment``) against
    the same unrolled computation written bare below (``torch.func.functional_call`` on hand-split
    flat parameters, the same DSA draws, the same losses, ``loss.backward()``). Both run in this
    process, interleaved pair by pair (the order inside a pair alternates), on the same model,
    expert start/target, images and seeds, so each pair computes the same thing; the image
    gradients of the first pair are compared to prove it. Reported: medians and their ratio. Past a
    per-row time cap no new pair starts once a minimum number is done (a loaded machine stays in time).
(b) peak memory of one matching step against ``syn_steps``: every configuration runs in a fresh
    child process (this script with ``--child``). The child warms up with one step (at most 5 inner
    steps: one-time allocations such as oneDNN primitives and kornia's import), returns free heap
    to the OS (``malloc_trim``), records its RSS, resets the kernel's peak-RSS mark
    (``/proc/self/clear_refs``), runs one step and reads the peak (``VmHWM``); it also replays one
    step under ``torch.profiler`` and sums the allocation events to get the peak of live tensor
    bytes (allocator independent). Falls back to ``ru_maxrss`` when the peak mark cannot be reset.
(c) expert training throughput: ``train_expert`` for one epoch of the digits training split with
    ``recipe_for_dataset(dataset, 1, 1)`` (ConvNet-D3-W32, batch 256, crop augmentation), timed to the
    end-of-epoch callback (images/s) and to the return (adds the train/test accuracy passes).

Model: ddcore's digits preset (ConvNet width 32, depth 3, instance norm, 1x32x32 inputs); images:
random real digits picked by the built-in ``dd_select``/``dd_initialize`` (IPC1 = 10, IPC10 = 100);
``batch_syn`` = all images; the expert start/target come from the expert trained in (c).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psutil  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.func import functional_call  # noqa: E402

# Full and --quick settings. Overhead rows: (ipc, warm-up pairs, min pairs, max pairs, seconds after which
# no new pair starts once the min is reached); the time cap keeps a loaded machine within the run time.
FULL = {
    "overhead_syn_steps": 10,
    "overhead": [(1, 3, 10, 30, 45.0), (10, 1, 6, 12, 110.0)],
    "memory_ipcs": (1, 10),
    "memory_syn_steps": (5, 10, 20, 40),
    "expert_reps": 3,
}
QUICK = {
    "overhead_syn_steps": 2,
    "overhead": [(1, 1, 4, 4, 10.0), (10, 1, 2, 2, 10.0)],
    "memory_ipcs": (1,),
    "memory_syn_steps": (1, 2),
    "expert_reps": 1,
}
WARMUP_SYN_STEPS = 5  # the memory child's warm-up step unrolls at most this many steps
OVERHEAD_TARGET = 1.15
START_EPOCH, EXPERT_EPOCHS = 0, 1  # the expert from (c) has one epoch: trajectory [2, P]
SYN_LR = 0.01
MiB = 2.0**20
BUSY_CORES = 0.25  # other processes' average core use above which a section's load line carries a warning


# ----------------------------------------------------------------------------------------------
# Load and timing helpers
# ----------------------------------------------------------------------------------------------


class LoadWatch:
    """Load average and the CPU the *other* processes used while a section ran.

    ``others_cores`` = (busy CPU-seconds of the whole machine - this process's and its waited-for
    children's CPU-seconds) / wall seconds, i.e. how many cores something else kept busy.
    """

    def __init__(self) -> None:
        self.proc = psutil.Process()

    def __enter__(self) -> "LoadWatch":
        self.load_before = os.getloadavg()[0]
        self.sys_before = _busy_seconds()
        self.own_before = _own_seconds(self.proc)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self.t0
        self.load_after = os.getloadavg()[0]
        busy = _busy_seconds() - self.sys_before
        own = _own_seconds(self.proc) - self.own_before
        self.own_cores = own / self.wall
        self.others_cores = max(0.0, busy - own) / self.wall

    def line(self) -> str:
        warning = ""
        if self.others_cores > BUSY_CORES:
            warning = (
                "\n  WARNING: other processes were busy; with torch's threads competing for the cores, absolute"
                " times can be many times slower (seen: 20x) and noisier; ratios measured side by side suffer less"
            )
        return (
            f"  load: 1-min loadavg {self.load_before:.2f} -> {self.load_after:.2f}; this benchmark used "
            f"{self.own_cores:.2f} cores, other processes {self.others_cores:.2f} cores "
            f"(of {psutil.cpu_count()}), over {self.wall:.1f} s"
        ) + warning


def _busy_seconds() -> float:
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def _own_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _q(values: list[float], q: float) -> float:
    """Linear-interpolated quantile ``q`` in [0, 1]."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ----------------------------------------------------------------------------------------------
# The two implementations of one outer step
# ----------------------------------------------------------------------------------------------


class DdcoreStep:
    """What ``distill_tm`` does per iteration between picking the start epoch and stepping the optimisers."""

    def __init__(self, ctx, model, shapes, trajectory, images, labels, syn_lr, syn_steps):
        from ddcore.augment import DSA, DSAugment

        self.ctx, self.model, self.shapes, self.trajectory = ctx, model, shapes, trajectory
        self.images, self.labels, self.syn_lr, self.syn_steps = images, labels, syn_lr, syn_steps
        self.order = torch.Generator()
        self.augment = DSAugment(DSA(), torch.Generator())

    def seed(self, seed: int) -> None:
        self.order.manual_seed(seed)
        self.augment.generator.manual_seed(seed + 1)

    def __call__(self, iteration: int) -> float:
        from ddcore.tm.matching import matching_step, minibatch_order

        ctx = self.ctx
        n = self.images.shape[0]
        chunks = minibatch_order(n, n, self.syn_steps, self.order)
        result = matching_step(
            self.model, self.shapes, self.trajectory, START_EPOCH, EXPERT_EPOCHS, self.images, self.labels,
            self.syn_lr, chunks,
            supervision_weights=lambda l, d, it=iteration: ctx.hooks.supervision_weights(ctx, l, d, it),
            pixel_weights=lambda x, y, it=iteration: ctx.hooks.pixel_weights(ctx, x, y, it),
            augment=self.augment,
        )  # fmt: skip
        return result.loss


class BareStep:
    """The same unrolled computation with nothing of ddcore's matching code, facade or flat-param helpers."""

    def __init__(self, model, shapes, trajectory, images, labels, syn_lr, syn_steps):
        from ddcore.augment import DSA

        self.model, self.images, self.labels, self.syn_lr, self.syn_steps = model, images, labels, syn_lr, syn_steps
        self.names = [name for name, _ in shapes]
        self.shapes = [tuple(shape) for _, shape in shapes]
        self.sizes = [int(torch.Size(shape).numel()) for shape in self.shapes]
        self.start = trajectory[START_EPOCH]
        self.target = trajectory[START_EPOCH + EXPERT_EPOCHS]
        self.dsa = DSA()
        self.order = torch.Generator()
        self.aug = torch.Generator()

    def seed(self, seed: int) -> None:
        self.order.manual_seed(seed)
        self.aug.manual_seed(seed + 1)

    def __call__(self, iteration: int) -> float:
        n = self.images.shape[0]
        chunks: list[torch.Tensor] = []
        while len(chunks) < self.syn_steps:
            chunks.extend(torch.randperm(n, generator=self.order).split(n))
        theta = self.start.detach().clone().requires_grad_(True)
        for index in chunks[: self.syn_steps]:
            x, _ = self.dsa(self.images[index], self.aug)
            parts = torch.split(theta, self.sizes)
            params = {name: part.view(shape) for name, part, shape in zip(self.names, parts, self.shapes)}
            logits = functional_call(self.model, params, (x,))
            ce = F.cross_entropy(logits, self.labels[index])
            (grad,) = torch.autograd.grad(ce, theta, create_graph=True)
            theta = theta - self.syn_lr * grad
        loss = ((theta - self.target) ** 2).sum() / ((self.start - self.target) ** 2).sum()
        loss.backward()
        return float(loss.detach())


def build_student(num_classes: int = 10, channels: int = 1, size: int = 32):
    from ddcore.models import ModelSpec, build_model

    spec = ModelSpec(name="convnet", width=32, depth=3, norm="instancenorm")  # the digits preset
    torch.manual_seed(0)
    return spec, build_model(spec, num_classes, channels, size)


# ----------------------------------------------------------------------------------------------
# (a) overhead
# ----------------------------------------------------------------------------------------------


def bench_overhead(ctx, dataset, trajectory, shapes, ipc, warmup, min_pairs, max_pairs, budget_s, syn_steps):
    from ddcore.tm.flatparams import param_shapes_of

    selection = ctx.hooks.select(ctx, dataset, ipc)
    initial = ctx.hooks.initialize(ctx, selection)
    _, model = build_student()
    assert param_shapes_of(model) == [(n, tuple(s)) for n, s in shapes], "student and expert shapes differ"
    images = initial.images.detach().clone().requires_grad_(True)
    labels = initial.labels.detach().clone()
    syn_lr = torch.tensor(SYN_LR, requires_grad=True)
    steps = {
        "ddcore": DdcoreStep(ctx, model, shapes, trajectory, images, labels, syn_lr, syn_steps),
        "bare": BareStep(model, shapes, trajectory, images, labels, syn_lr, syn_steps),
    }
    times: dict[str, list[float]] = {"ddcore": [], "bare": []}
    check: dict[str, tuple[float, torch.Tensor, float]] = {}
    started = time.perf_counter()
    for rep in range(warmup + max_pairs):
        done = rep - warmup
        if done >= min_pairs and time.perf_counter() - started > budget_s:
            break
        order = ("ddcore", "bare") if rep % 2 == 0 else ("bare", "ddcore")
        for name in order:
            step = steps[name]
            step.seed(1000 + rep)  # same seed for both members of a pair: same chunks, same DSA draws
            images.grad = None
            syn_lr.grad = None
            t0 = time.perf_counter()
            loss = step(rep)
            elapsed = time.perf_counter() - t0
            if rep >= warmup:
                times[name].append(elapsed)
            if rep == 0:
                check[name] = (loss, images.grad.detach().clone(), float(syn_lr.grad))
    grad_diff = float((check["ddcore"][1] - check["bare"][1]).abs().max())
    grad_scale = float(check["bare"][1].abs().max())
    loss_diff = abs(check["ddcore"][0] - check["bare"][0])
    ratios = [a / b for a, b in zip(times["ddcore"], times["bare"])]
    return {
        "ipc": ipc,
        "n": images.shape[0],
        "pairs": len(ratios),
        "ddcore": statistics.median(times["ddcore"]),
        "bare": statistics.median(times["bare"]),
        "ratio": statistics.median(times["ddcore"]) / statistics.median(times["bare"]),
        "pair_ratio_median": statistics.median(ratios),
        "pair_ratio_q25": _q(ratios, 0.25),
        "pair_ratio_q75": _q(ratios, 0.75),
        "grad_diff": grad_diff,
        "grad_scale": grad_scale,
        "loss_diff": loss_diff,
    }


# ----------------------------------------------------------------------------------------------
# (b) peak memory, one child process per configuration
# ----------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_child(spec: dict) -> dict:
    """One memory measurement (called in a fresh process): see the module docstring, (b)."""
    import kornia.geometry.transform  # noqa: F401  (DSA imports it lazily; load it before the baseline)

    from ddcore.hooks import Hooks
    from ddcore.plugins import get_plugin_manager

    data = torch.load(spec["data"], weights_only=True)
    images = data[f"images{spec['ipc']}"].clone().requires_grad_(True)
    labels = data[f"labels{spec['ipc']}"].clone()
    trajectory = data["trajectory"]
    shapes = [(name, tuple(shape)) for name, shape in data["shapes"]]
    hooks = Hooks(get_plugin_manager([]))  # the same plugin set as Pipeline({}) builds

    class _Ctx:  # the facade hands ctx to plugins; none answer these hooks here
        pass

    ctx = _Ctx()
    ctx.hooks = hooks
    _, model = build_student()
    syn_lr = torch.tensor(SYN_LR, requires_grad=True)
    step = DdcoreStep(ctx, model, shapes, trajectory, images, labels, syn_lr, spec["syn_steps"])

    def once(seed: int) -> float:
        step.seed(seed)
        images.grad = None
        syn_lr.grad = None
        t0 = time.perf_counter()
        step(seed)
        return time.perf_counter() - t0

    step.syn_steps = min(spec["syn_steps"], WARMUP_SYN_STEPS)
    warm_s = once(1)
    step.syn_steps = spec["syn_steps"]
    _trim_heap()
    baseline = _status_kib("VmRSS")
    reset = _reset_peak()
    step_s = once(2)
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _trim_heap()

    from torch.profiler import ProfilerActivity, profile

    step.seed(2)
    images.grad = None
    syn_lr.grad = None
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(2)
    live = tensor_peak = 0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        tensor_peak = max(tensor_peak, live)
    return {
        "ipc": spec["ipc"],
        "syn_steps": spec["syn_steps"],
        "baseline_mib": baseline / 1024,
        "peak_mib": peak / 1024,
        "extra_mib": (peak - baseline) / 1024,
        "tensor_peak_mib": tensor_peak / MiB,
        "peak_reset": reset,
        "warm_s": warm_s,
        "step_s": step_s,
    }


def bench_memory(data_path: Path, ipcs, syn_steps_list) -> list[dict]:
    rows = []
    for ipc in ipcs:
        for syn_steps in syn_steps_list:
            spec = {"data": str(data_path), "ipc": ipc, "syn_steps": syn_steps}
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--threads", str(torch.get_num_threads()),
                 "--child", json.dumps(spec)],
                capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"},
            )  # fmt: skip
            lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
            if proc.returncode != 0 or not lines:
                raise RuntimeError(f"memory child {spec} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
            rows.append(json.loads(lines[-1]))
    return rows


# ----------------------------------------------------------------------------------------------
# (c) expert throughput
# ----------------------------------------------------------------------------------------------


def bench_expert(dataset, reps: int):
    from ddcore.tm.experts import recipe_for_dataset, train_expert

    recipe = recipe_for_dataset(dataset, 1, 1)
    runs = []
    result = None
    for rep in range(reps):
        marks: list[float] = []
        t0 = time.perf_counter()
        result = train_expert(dataset, recipe, 0, "cpu", on_epoch=lambda _e: marks.append(time.perf_counter()))
        total = time.perf_counter() - t0
        runs.append({"epoch_s": marks[0] - t0, "total_s": total})
    assert result is not None
    return recipe, runs, result


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shrink everything (smoke test, < 60 s)")
    parser.add_argument("--sections", default="abc", help="which of a (overhead), b (memory), c (expert) to run")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(run_child(json.loads(args.child))), flush=True)
        return 0

    started = time.perf_counter()
    settings = QUICK if args.quick else FULL
    print("tm_bench: trajectory-matching benchmarks (ddcore, digits 32x32, ConvNet-D3-W32)")
    print(f"command: {shlex.join(getattr(sys, 'orig_argv', [sys.executable, *sys.argv]))}   (cwd {os.getcwd()})")
    print(f"date: {datetime.now().astimezone().isoformat(timespec='seconds')}   host: {platform.node()}")
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, {platform.machine()}, "
        f"{psutil.cpu_count()} logical CPUs, torch threads: {torch.get_num_threads()} intra-op / "
        f"{torch.get_num_interop_threads()} inter-op (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})"
    )
    print(f"mode: {'quick' if args.quick else 'full'}; load average at start: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    sys.stdout.flush()

    from ddcore.runner import Pipeline

    t0 = time.perf_counter()
    pipeline = Pipeline({"ipc": 1, "workers": 0, "eval": {"runs": 0}}, write=False)
    dataset = pipeline.build_dataset()
    ctx = pipeline.ctx
    answering = {h: [i.plugin_name for i in ctx.hooks._impls(h)] for h in ("dd_pixel_weights", "dd_supervision_weights")}
    print(f"setup: Pipeline + digits in {time.perf_counter() - t0:.1f} s; train {len(dataset.train)} / test "
          f"{len(dataset.test)}; weighting hook implementers: {answering}")  # fmt: skip
    print()

    # (c) first: its expert provides the start/target parameters of (a) and (b).
    recipe, expert_runs, expert = None, [], None
    if "c" in args.sections or "a" in args.sections or "b" in args.sections:
        reps = settings["expert_reps"] if "c" in args.sections else 1
        with LoadWatch() as watch:
            recipe, expert_runs, expert = bench_expert(dataset, reps)
        if "c" in args.sections:
            n = len(dataset.train)
            epoch = statistics.median(r["epoch_s"] for r in expert_runs)
            total = statistics.median(r["total_s"] for r in expert_runs)
            print("(c) expert training throughput: train_expert(digits, recipe_for_dataset(digits, 1, 1), 0)")
            m, t = recipe.model, recipe.train
            print(f"  recipe: {m.name} width {m.width} depth {m.depth} {m.norm}; {t.optimizer} lr {t.lr} "
                  f"batch {t.batch_size} augment {t.augment}; 1 epoch = {n} images")  # fmt: skip
            for i, r in enumerate(expert_runs):
                print(f"  rep {i}: epoch {r['epoch_s']:.2f} s ({n / r['epoch_s']:.0f} images/s); "
                      f"with the accuracy passes {r['total_s']:.2f} s")  # fmt: skip
            print(f"  median: {n / epoch:.0f} images/s training (epoch {epoch:.2f} s); "
                  f"{total:.2f} s per train_expert call incl. train+test accuracy")  # fmt: skip
            print(f"  expert after 1 epoch: train acc {expert['final_train_acc']:.1f}%, test acc {expert['test_acc']:.1f}%")
            print(watch.line())
            print()
            sys.stdout.flush()
    trajectory = expert["trajectory"]
    shapes = [(name, tuple(shape)) for name, shape in expert["param_shapes"]]

    overhead_rows = []
    if "a" in args.sections:
        syn_steps = settings["overhead_syn_steps"]
        print(f"(a) overhead of one outer matching step, ddcore vs bare (syn_steps {syn_steps}, batch_syn = all, "
              f"DSA, P = {trajectory.shape[1]})")  # fmt: skip
        print("  ddcore = minibatch_order + matching_step with ctx.hooks.{supervision,pixel}_weights (no plugin "
              "answering) + DSAugment")  # fmt: skip
        print("  bare   = hand-written unroll: functional_call on split flat params, same DSA draws, same loss, "
              "loss.backward()")  # fmt: skip
        print(f"  {'images':>7} {'pairs':>5} {'ddcore ms':>10} {'bare ms':>9} {'ratio':>6} "
              f"{'pair ratios q25/med/q75':>24}  {'same result?':<s}")  # fmt: skip
        with LoadWatch() as watch:
            for ipc, warmup, min_pairs, max_pairs, budget_s in settings["overhead"]:
                row = bench_overhead(
                    ctx, dataset, trajectory, shapes, ipc, warmup, min_pairs, max_pairs, budget_s, syn_steps
                )
                overhead_rows.append(row)
                same = f"max |dgrad| {row['grad_diff']:.1e} (of {row['grad_scale']:.1e}), |dloss| {row['loss_diff']:.1e}"
                verdict = "ok" if row["ratio"] <= OVERHEAD_TARGET else "ABOVE TARGET"
                if args.quick:
                    verdict = "quick: too few pairs for a verdict"
                print(f"  {row['n']:>4} (IPC{ipc:<2}) {row['pairs']:>3} {1000 * row['ddcore']:>10.1f} "
                      f"{1000 * row['bare']:>9.1f} {row['ratio']:>6.3f} "
                      f"{row['pair_ratio_q25']:>8.3f}/{row['pair_ratio_median']:.3f}/{row['pair_ratio_q75']:.3f}"
                      f"  {same}  [{verdict}, target <= {OVERHEAD_TARGET}]")  # fmt: skip
                sys.stdout.flush()
        print("  ratio = median(ddcore) / median(bare); timings exclude zeroing grads and seeding the generators")
        print(watch.line())
        print()

    memory_rows = []
    if "b" in args.sections:
        print("(b) peak memory of one matching step (fresh process per row; extra = peak RSS during the step - RSS "
              "before it)")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="tm_bench_") as tmp:
            data_path = Path(tmp) / "data.pt"
            payload = {"trajectory": trajectory, "shapes": [[n, list(s)] for n, s in shapes]}
            for ipc in settings["memory_ipcs"]:
                initial = ctx.hooks.initialize(ctx, ctx.hooks.select(ctx, dataset, ipc))
                payload[f"images{ipc}"] = initial.images.detach()
                payload[f"labels{ipc}"] = initial.labels.detach()
            torch.save(payload, data_path)
            with LoadWatch() as watch:
                memory_rows = bench_memory(data_path, settings["memory_ipcs"], settings["memory_syn_steps"])
        print(f"  {'images':>11} {'syn_steps':>9} {'extra RSS MiB':>13} {'x base':>6} {'tensor peak MiB':>15} "
              f"{'x base':>6} {'peak RSS MiB':>12} {'step s':>7}")  # fmt: skip
        for ipc in settings["memory_ipcs"]:
            rows = [r for r in memory_rows if r["ipc"] == ipc]
            base = rows[0]
            for r in rows:
                print(f"  {10 * ipc:>4} (IPC{ipc:<2}) {r['syn_steps']:>9} {r['extra_mib']:>13.1f} "
                      f"{r['extra_mib'] / max(base['extra_mib'], 1e-9):>6.2f} {r['tensor_peak_mib']:>15.1f} "
                      f"{r['tensor_peak_mib'] / max(base['tensor_peak_mib'], 1e-9):>6.2f} {r['peak_mib']:>12.1f} "
                      f"{r['step_s']:>7.2f}")  # fmt: skip
            if len(rows) >= 2:
                xs = [r["syn_steps"] for r in rows]
                for key, label in (("extra_mib", "extra RSS"), ("tensor_peak_mib", "tensor peak")):
                    ys = [r[key] for r in rows]
                    mx, my = statistics.fmean(xs), statistics.fmean(ys)
                    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
                    print(f"  IPC{ipc}: {label} grows {slope:.2f} MiB per inner step (least squares), "
                          f"intercept {my - slope * mx:.1f} MiB")  # fmt: skip
        if not all(r["peak_reset"] for r in memory_rows):
            print("  note: /proc/self/clear_refs was not writable; peaks are ru_maxrss over the child's lifetime")
        print(f"  x base = ratio to syn_steps={settings['memory_syn_steps'][0]}; tensor peak = peak of live tensor "
              "bytes from torch.profiler memory events (allocator independent)")  # fmt: skip
        print(watch.line())
        print()

    print(f"total wall time {time.perf_counter() - started:.1f} s; load average at end: "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
