"""The constant-memory unroll (``tm.unroll = "constant"``) computes the full unroll's gradients, and the outer
loop runs it unchanged: weighting hooks, soft labels, DSA, the NaN guard, resume, several processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
import torch

from ddcore import DistilledSet, hookimpl
from ddcore.augment import DSA, FAMILIES, DSAugment
from ddcore.errors import DDError, PluginCrash
from ddcore.models import ModelSpec, build_model
from ddcore.testing import InterruptAt
from ddcore.tm.config import TMConfig
from ddcore.tm.flatparams import flatten_params, param_shapes_of
from ddcore.tm.loop import TrajectoryMatcher
from ddcore.tm.matching import matching_step, minibatch_order
from ddcore.tm.memory import StepCosts, plan_unroll

SPEC = ModelSpec(width=8, depth=2)
IMAGES, CLASSES, SIZE, BATCH, STEPS = 8, 4, 16, 3, 5  # batch_syn 3 < 8 images: chunks 3, 3, 2, then a new permutation


@dataclass(frozen=True)
class RecordingDSA(DSA):
    """DSA that notes the family of every draw."""

    drawn: list = field(default_factory=list, compare=False, repr=False)

    def sample(self, *args, **kwargs):
        params = super().sample(*args, **kwargs)
        self.drawn.append(params.family)
        return params


def cpd(losses: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """CPD-like supervision weights: drop the quarter of the elements with the smallest loss."""
    return (losses >= losses.quantile(0.25)).to(losses.dtype)


def one_step(mode: str, dtype: torch.dtype, strategy: str = "color_crop_cutout_flip_scale_rotate", soft: bool = True, seed: int = 0):
    """One outer step on a small ConvNet with DSA, batch_syn < N, CPD weights and pixel weights; returns what it produced."""
    torch.manual_seed(0)
    model = build_model(SPEC, CLASSES, 3, SIZE).to(dtype)
    start, shapes = flatten_params(model), param_shapes_of(model)
    g = torch.Generator().manual_seed(1)
    noise = [torch.randn(start.shape, generator=g, dtype=dtype) for _ in range(2)]
    trajectory = torch.stack([start, start + 0.05 * noise[0], start + 0.1 * noise[1]])
    images = torch.randn(IMAGES, 3, SIZE, SIZE, generator=g, dtype=dtype).requires_grad_(True)
    if soft:
        labels = torch.randn(IMAGES, CLASSES, generator=g, dtype=dtype).requires_grad_(True)
    else:
        labels = torch.arange(IMAGES) % CLASSES
    pixel = 1.0 + torch.rand(IMAGES, 1, SIZE, SIZE, generator=g, dtype=dtype)
    syn_lr = torch.tensor(0.05, dtype=dtype, requires_grad=True)
    chunks = minibatch_order(IMAGES, BATCH, STEPS, torch.Generator().manual_seed(2))
    augment = DSAugment(RecordingDSA(strategy), torch.Generator().manual_seed(seed))
    result = matching_step(model, shapes, trajectory, 0, 2, images, labels, syn_lr, chunks,
                           supervision_weights=cpd, pixel_weights=lambda x, y: pixel, augment=augment, mode=mode)  # fmt: skip
    return {
        "result": result, "images": images.grad, "labels": labels.grad if soft else None, "syn_lr": syn_lr.grad,
        "stream": augment.generator.get_state(), "families": augment.dsa.drawn,
    }  # fmt: skip


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-9), (torch.float32, 1e-4)])
@pytest.mark.parametrize("soft", [True, False], ids=["soft-labels", "hard-labels"])
def test_constant_unroll_gives_the_full_unrolls_gradients(dtype, tolerance, soft):
    full, constant = one_step("full", dtype, soft=soft), one_step("constant", dtype, soft=soft)
    assert 0.5 < full["result"].kept_fraction < 1.0 and full["result"].pixel_weighted  # both weightings act
    assert len(set(full["families"])) >= 3  # several DSA families replayed (seed 0 draws 4 of 6)
    assert constant["result"].loss == pytest.approx(full["result"].loss, rel=tolerance)
    assert constant["result"].kept_fraction == full["result"].kept_fraction
    for key in ("images", "syn_lr") + (("labels",) if soft else ()):
        assert full[key] is not None and full[key].abs().sum() > 0, key
        assert relative(constant[key], full[key]) < tolerance, key
    # the same augmentations were drawn, in the same order: the random stream ends in the same state
    assert constant["families"] == full["families"]
    assert torch.equal(constant["stream"], full["stream"])


@pytest.mark.parametrize("family", FAMILIES)
def test_every_dsa_family_is_replayed_exactly(family):
    full, constant = one_step("full", torch.float64, strategy=family), one_step("constant", torch.float64, strategy=family)
    assert set(full["families"]) == {family}
    for key in ("images", "labels", "syn_lr"):
        assert relative(constant[key], full[key]) < 1e-9, key


def test_an_augmentation_that_cannot_be_replayed_is_refused():
    model = build_model(SPEC, CLASSES, 3, SIZE)
    start, shapes = flatten_params(model), param_shapes_of(model)
    images = torch.zeros(2, 3, SIZE, SIZE, requires_grad=True)
    args = (model, shapes, torch.stack([start, start, start]), 0, 2, images, torch.tensor([0, 1]),
            torch.tensor(0.01, requires_grad=True), [torch.tensor([0, 1])], lambda l, d: None, lambda x, y: None)  # fmt: skip
    with pytest.raises(TypeError, match="cannot be replayed"):
        matching_step(*args, augment=lambda x: x.flip(3), mode="constant")
    with pytest.raises(ValueError, match="unknown unroll mode 'lazy'"):
        matching_step(*args, mode="lazy")


# ----------------------------------------------------------------------------------------------
# The outer loop in constant mode
# ----------------------------------------------------------------------------------------------


class Trajectories:
    """Random-walk trajectories of the run's network (no training needed: the gradients are what is compared)."""

    def __init__(self, shapes, start: torch.Tensor, count: int = 2, epochs: int = 3):
        g = torch.Generator().manual_seed(5)
        self.param_shapes = shapes
        self.trajectories = [
            torch.cumsum(torch.cat([start[None], 0.02 * torch.randn(epochs, start.numel(), generator=g)]), dim=0)
            for _ in range(count)
        ]

    def __len__(self) -> int:
        return len(self.trajectories)

    def trajectory(self, index: int) -> torch.Tensor:
        return self.trajectories[index]


class Weights:
    """Answers both weighting hooks as EDF does (CPD-like supervision weights, DAE-like pixel weights)."""

    name = "weights"

    def __init__(self, zero_supervision: bool = False):
        self.zero = zero_supervision

    @hookimpl
    def dd_supervision_weights(self, ctx, losses, distances, step):
        return torch.zeros_like(losses) if self.zero else cpd(losses, distances)

    @hookimpl
    def dd_pixel_weights(self, ctx, images, labels, step):
        return 1.0 + (images[:, :1] > images.mean()).float()


def matcher(unroll: str, plugin=None, plan=None, **tm) -> TrajectoryMatcher:
    from ddcore.runner import Pipeline

    pipeline = Pipeline({"ipc": 2, "workers": 0, "distill": "tm", "eval": {"runs": 0}}, [plugin or Weights()], write=False)
    dataset = pipeline.build_dataset()
    indices = [i for per_class in dataset.indices_by_class("train") for i in per_class[:2]]
    images, labels = dataset.load("train", indices)
    soft = torch.nn.functional.one_hot(labels, 10).float() * 3.0
    initial = DistilledSet(images, soft, dataset.class_names, dataset.mean, dataset.std)
    model = build_model(SPEC, 10, 1, 32)
    experts = Trajectories(param_shapes_of(model), flatten_params(model))
    config = TMConfig(**{"iterations": 4, "syn_steps": 3, "batch_syn": 8, "max_start_epoch": 1, "cur_max_start_epoch": 1,
                         "expert_epochs": 2, "learn_labels": True, "unroll": unroll, **tm})  # fmt: skip
    return TrajectoryMatcher(pipeline.ctx, initial, experts, SPEC, config, plan)


def test_the_outer_loop_gives_the_same_images_in_both_modes():
    full, constant = matcher("full"), matcher("constant")
    assert (full.unroll, constant.unroll) == ("full", "constant")
    for _ in range(4):
        a, b = full.step(), constant.step()
        assert (a["experts"], a["start_epoch"], a["skipped"], a["kept"]) == (b["experts"], b["start_epoch"], b["skipped"], b["kept"])
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
    moved = float((full.images.detach() - full.initial.images).abs().max())
    assert moved > 1e-3
    torch.testing.assert_close(constant.images.detach(), full.images.detach(), rtol=0, atol=1e-5 * moved + 1e-6)
    torch.testing.assert_close(constant.labels.detach(), full.labels.detach(), rtol=1e-4, atol=1e-6)
    assert constant.syn_lr.item() == pytest.approx(full.syn_lr.item(), rel=1e-5)


def test_constant_mode_resumes_bit_for_bit():
    whole = matcher("constant")
    for _ in range(4):
        whole.step()
    cut = matcher("constant")
    cut.step(), cut.step()
    state = cut.state_dict()
    assert state["unroll"] == "constant"
    resumed = matcher("constant")
    resumed.load_state_dict(state)
    resumed.step(), resumed.step()
    assert torch.equal(resumed.images, whole.images) and torch.equal(resumed.labels, whole.labels)
    assert resumed.syn_lr.item() == whole.syn_lr.item() and resumed.log == whole.log


def test_auto_resumes_with_the_checkpoints_unroll():
    """Both unrolls agree only to rounding: a resumed ``auto`` run keeps the unroll its checkpoint was made with."""
    saved = matcher("constant")
    saved.step()
    costs = StepCosts(full_base=0, full_per_step=1, constant_base=0, constant_per_step=1, batch=1, params=1, resident=0)
    plan = plan_unroll("auto", costs, 3, budget=2**30)
    assert plan.unroll == "full"
    resumed = matcher("auto", plan=plan)
    assert resumed.unroll == "full"
    resumed.load_state_dict(saved.state_dict())
    assert resumed.unroll == "constant"


def test_the_skip_threshold_skips_constant_mode_updates():
    skipping = matcher("constant", skip_threshold=1e-12)
    skipping.step(), skipping.step()
    assert all(row["skipped"] for row in skipping.log)
    assert torch.equal(skipping.images, skipping.initial.images) and torch.equal(skipping.labels, skipping.initial.labels)


def test_the_nan_guard_stops_a_constant_mode_run():
    diverging = matcher("constant", Weights(zero_supervision=True))  # 0 / 0
    with pytest.raises(DDError, match="diverged at iteration 0"):
        diverging.step()


# ----------------------------------------------------------------------------------------------
# Whole runs: resume after a crash, two processes
# ----------------------------------------------------------------------------------------------


def run_config(tmp_path, out: str) -> dict:
    return {
        "ipc": 1, "workers": 0, "distill": "tm", "out": str(tmp_path / out), "cache_dir": str(tmp_path / "cache"),
        "tm": {"iterations": 4, "syn_steps": 2, "max_start_epoch": 2, "cur_max_start_epoch": 1, "checkpoint_every": 2,
               "unroll": "constant"},
        "experts": {"num": 2, "batch_size": 512}, "eval": {"runs": 0, "width": 8},
    }  # fmt: skip


@pytest.mark.slow
def test_a_resumed_constant_mode_run_is_bit_identical(tmp_path):
    from ddcore.runner import resume_run, run

    whole = run(run_config(tmp_path, "whole"))
    assert whole.manifest["records"]["tm_memory"]["unroll"] == "constant"
    with pytest.raises(PluginCrash, match="killed at 3"):
        run(run_config(tmp_path, "cut"), [InterruptAt(at=3)])
    resumed = resume_run(tmp_path / "cut")
    assert torch.equal(resumed.distilled.images, whole.distilled.images)
    assert resumed.distilled.lr == whole.distilled.lr
    assert json.loads((tmp_path / "cut" / "tm_log.json").read_text()) == json.loads((whole.out_dir / "tm_log.json").read_text())


DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


def _two_processes(tmp_path, unroll: str) -> DistilledSet:
    out = tmp_path / unroll
    tm = ["--set", 'distill="tm"', "--set", "tm.iterations=3", "--set", "tm.syn_steps=3", "--set", "tm.batch_syn=5",
          "--set", "tm.max_start_epoch=2", "--set", "tm.cur_max_start_epoch=1", "--set", f'tm.unroll="{unroll}"',
          "--set", "experts.num=2", "--set", "experts.batch_size=512", "--set", "eval.width=8", "--set", "workers=0"]  # fmt: skip
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ddcore_cli", "run", "--cpu", "--ipc", "1", "--seed", "3", "--eval-runs", "0", *tm,
        "--cache-dir", str(tmp_path / "cache"), "--out", str(out), "--quiet",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["accelerate"]["num_processes"] == 2
    assert manifest["records"]["tm_memory"]["unroll"] == unroll
    return DistilledSet.load(out / "distilled.pt")


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_give_the_same_images_in_both_modes(tmp_path):
    full, constant = _two_processes(tmp_path, "full"), _two_processes(tmp_path, "constant")
    initial = DistilledSet.load(tmp_path / "full" / "checkpoints" / "initial.pt")
    moved = float((full.images - initial.images).abs().max())
    assert moved > 1e-3
    torch.testing.assert_close(constant.images, full.images, rtol=0, atol=1e-5 * moved + 1e-6)
    assert constant.lr == pytest.approx(full.lr, rel=1e-5)
