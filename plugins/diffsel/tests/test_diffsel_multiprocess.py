"""diffsel under two real processes (gloo on the CPU), checked against one process.

Launched as tests/test_multiprocess.py does: ``python -m torch.distributed.run --standalone
--nproc_per_node 2`` with ``ACCELERATE_USE_CPU=1``, ``--cpu`` and ``OMP_NUM_THREADS=1``; the
one-process references run the same command line without torchrun, so both sides use one thread.

- **Stage I.** Batches are dealt round-robin to the processes and gathered, and batch ``b`` of class
  ``c`` draws its noise from ``derive_generator("diffsel", "stage1", c, b)``: each batch is computed
  by one process, on the same images with the same noise and the same thread count as in a single
  process, so the saved pool (labels, sources, boxes, scores, features) and the selection must be
  **equal**, not just close.
- **Prior training.** Every step draws the whole batch and process ``p`` trains on rows ``p, p+2, ...``;
  Accelerate averages the two processes' gradients. Each process's loss is weighed by its share of
  the batch, so the average is the whole batch's mean gradient even when the halves differ in size
  (batch 9: 5 + 4 rows; unweighted, the first gradient was off by 11%). The trainings are **not
  bit-identical**: one process sums the per-row gradients in one order, two processes sum each half
  and then add the halves (the all-reduce), and float addition is not associative. The test checks
  the first step's gradient (after the all-reduce) against the one-process gradient to 1e-5 of its
  norm (measured: 4e-7), and the trained priors' predictions after 4 steps to 1e-4. The weights
  themselves may differ by up to twice the learning rate per step in parameters whose gradient is
  zero in exact arithmetic (a bias or time-embedding shift right before a GroupNorm): there the
  gradient is rounding noise, AdamW divides it by its own size and takes a full step of random sign.
  GroupNorm removes such a shift again, so the predictions do not see it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

LAUNCH_TIMEOUT_S = 300
DISTRIBUTED_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")
#: a tiny prior; batch 9 splits 5 + 4 over two processes (unequal halves)
PRIOR_ARGS = ["--steps", "{steps}", "--size", "8", "--channels", "8,16", "--batch-size", "9", "--checkpoint-every", "0"]


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in DISTRIBUTED_ENV}
    env.update(ACCELERATE_USE_CPU="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    return env


#: ``dd`` that saves the first optimiser step's gradients (rank 0, after the all-reduce) to $GRAD_OUT.
GRADIENT_DRIVER = r"""
import os, sys, torch
original = torch.optim.AdamW.step
def step(self, *args, **kwargs):
    if not getattr(step, "done", False) and int(os.environ.get("RANK", "0")) == 0 and os.environ.get("GRAD_OUT"):
        torch.save([p.grad.detach().clone() for g in self.param_groups for p in g["params"]], os.environ["GRAD_OUT"])
    step.done = True
    return original(self, *args, **kwargs)
torch.optim.AdamW.step = step
from ddcore_cli.app import main
main(sys.argv[1:])
"""


def _dd(args: list[str], cwd, processes: int, driver=None, env=None) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    program = [str(driver)] if driver else ["-m", "ddcore_cli"]
    command = [*(launcher if processes > 1 else [sys.executable]), *program, *args]
    try:
        proc = subprocess.run(command, cwd=cwd, env={**_env(), **(env or {})}, capture_output=True, text=True,
                              timeout=LAUNCH_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired as exc:  # a deadlock in a collective, most likely
        pytest.fail(f"{' '.join(args[:2])} on {processes} processes did not finish in {LAUNCH_TIMEOUT_S} s\n{exc.stderr or ''}")
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-6000:]}"
    return proc


def _train_prior(cache, cwd, processes: int, steps: int, gradients=None):
    args = ["diffsel", "train-prior", "--cpu", "--quiet", "--dataset", "digits", "--cache-dir", str(cache)]
    driver = None
    if gradients is not None:
        driver = cwd / "gradient_driver.py"
        driver.write_text(GRADIENT_DRIVER, encoding="utf-8")
    _dd(args + [a.format(steps=steps) for a in PRIOR_ARGS], cwd, processes, driver, {"GRAD_OUT": str(gradients or "")})
    (folder,) = [p.parent for p in (cache / "diffsel" / "priors").glob("*/diffsel_prior.json")]
    return folder


def _weights(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "prior.pt", map_location="cpu", weights_only=True)["unet"]


def test_two_process_stage_one_pool_equals_the_one_process_pool(tmp_path):
    from ddcore_diffsel.pool import Pool

    prior = _train_prior(tmp_path / "prior-cache", tmp_path, 1, steps=3)
    options = ["--set", f"plugin.diffsel.prior='local-dir:{prior}'", "--set", "plugin.diffsel.pool_per_class=7",
               "--set", "plugin.diffsel.batch_size=3", "--set", "plugin.diffsel.n_noise=2",
               "--set", "plugin.diffsel.window=16", "--set", "plugin.diffsel.stride=8", "--set", "plugin.diffsel.per_image=2",
               "--set", "plugin.diffsel.timesteps=[300, 600]", "--set", "workers=0"]  # fmt: skip
    runs = {}
    for processes in (2, 1):
        out = tmp_path / f"run{processes}"
        _dd(["run", "--cpu", "--plugin", "diffsel", "--ipc", "2", "--seed", "3", "--eval-runs", "0", "--quiet",
             "--cache-dir", str(tmp_path / f"cache{processes}"), "--out", str(out), *options], tmp_path, processes)  # fmt: skip
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["accelerate"]["num_processes"] == processes
        record = manifest["records"]["diffsel/pool"]
        assert not record["reused"]
        (path,) = (tmp_path / f"cache{processes}" / "diffsel" / "pools").glob("*.pt")
        runs[processes] = (Pool.load(path), json.loads((out / "diffsel_selection.json").read_text()), out, record)
    (two, chosen2, out2, record2), (one, chosen1, out1, record1) = runs[2], runs[1]
    # 7 images per class in batches of 3: 3 batches per class, 30 batches dealt over the processes
    assert len(one.scores) == 10 * 7 * 2 and record1["key"] == record2["key"]
    for name in ("labels", "index", "boxes", "scores", "features"):
        assert torch.equal(getattr(two, name), getattr(one, name)), name
    assert chosen2 == chosen1
    from ddcore.distilled import DistilledSet

    assert torch.equal(DistilledSet.load(out2 / "distilled.pt").images, DistilledSet.load(out1 / "distilled.pt").images)


def test_two_process_prior_training_matches_one_process_to_rounding(tmp_path):
    from ddcore_diffsel.pixel_prior import load_prior

    folders, gradients = {}, {}
    for processes in (2, 1):
        gradients[processes] = tmp_path / f"gradients{processes}.pt"
        folders[processes] = _train_prior(tmp_path / f"cache{processes}", tmp_path, processes, 4, gradients[processes])
    two, one = (torch.cat([g.flatten() for g in torch.load(gradients[n], weights_only=True)]) for n in (2, 1))
    gradient_gap = ((two - one).norm() / one.norm()).item()
    assert gradient_gap < 1e-5, gradient_gap  # unweighted halves (5 + 4 rows): 0.11

    priors = {n: load_prior(folders[n]) for n in (2, 1)}
    assert priors[2].meta["steps"] == priors[1].meta["steps"] == 4
    generator = torch.Generator().manual_seed(0)
    noisy = torch.randn(20, 1, 8, 8, generator=generator)
    steps, classes = torch.randint(0, 1000, (20,), generator=generator), torch.arange(20) % 11 - 1  # -1: null
    with torch.no_grad():
        out = {n: priors[n].predict(noisy, steps, classes) for n in (2, 1)}
    output_gap = ((out[2] - out[1]).abs().max() / out[1].abs().max()).item()
    assert output_gap < 1e-4, output_gap
    weights = {n: _weights(folders[n]) for n in (2, 1)}
    weight_gap = max((weights[2][k] - weights[1][k]).abs().max().item() for k in weights[1])
    print(f"2 vs 1 process: first gradient {gradient_gap:.1e} of its norm, predictions after 4 steps {output_gap:.1e}, "
          f"largest weight difference {weight_gap:.1e}")  # fmt: skip
