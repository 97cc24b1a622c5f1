"""A prior training killed by SIGKILL and resumed ends with the weights of an uninterrupted one.

Every training runs ``dd diffsel train-prior`` in its own process (one thread, as the references), through
a small driver that can kill the process with SIGKILL at a chosen point and counts the optimiser
steps the process really ran (so a resume that silently restarted from step 0 is caught):

- ``between``: killed inside the optimiser step after ``K`` steps, i.e. mid-training, after the
  checkpoint at step ``K`` and before the next one;
- ``torn``: killed while the checkpoint at step ``K`` is being written, after its
  ``training_state.pt`` and before its ``prior.pt`` and ``diffsel_prior.json``.

Checkpoints are written every 2 steps of 6 (``--checkpoint-every 2``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow

STEPS, EVERY = 6, 2
DRIVER = r"""
import os, signal, sys, torch
mode, at, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
steps = [0]
original_step = torch.optim.AdamW.step
def counted_step(self, *a, **k):
    steps[0] += 1
    if mode == "between" and steps[0] == at + 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return original_step(self, *a, **k)
torch.optim.AdamW.step = counted_step
if mode == "torn":
    import ddcore_diffsel.pixel_prior as pixel_prior
    original_save = pixel_prior.torch_save
    def torn_save(obj, path):
        if path.name == pixel_prior.WEIGHTS_FILE and steps[0] == at:
            os.kill(os.getpid(), signal.SIGKILL)  # training_state.pt of step `at` is already written
        return original_save(obj, path)
    pixel_prior.torch_save = torn_save
from ddcore_cli.app import main
try:
    main(args)
finally:
    print("OPTIMISER_STEPS", steps[0], flush=True)
"""


def _train(cache, steps: int, mode: str = "none", at: int = 0) -> subprocess.CompletedProcess:
    args = ["diffsel", "train-prior", "--cpu", "--quiet", "--dataset", "digits", "--cache-dir", str(cache),
            "--steps", str(steps), "--size", "8", "--channels", "8,16", "--batch-size", "8",
            "--checkpoint-every", str(EVERY)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", DRIVER, mode, str(at), *args], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def _ok(proc) -> int:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return int(proc.stdout.split("OPTIMISER_STEPS")[-1].split()[0])


def _folder(cache):
    (folder,) = [p.parent for p in (cache / "diffsel" / "priors").glob("*/prior.pt")]
    return folder


def _weights(folder):
    return torch.load(folder / "prior.pt", map_location="cpu", weights_only=True)["unet"]


def _equal(a, b) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted trainings of STEPS and of 4 steps (the mid-training checkpoint's step)."""
    base = tmp_path_factory.mktemp("prior-references")
    out = {}
    for steps in (STEPS, 4):
        assert _ok(_train(base / str(steps), steps)) == steps
        out[steps] = _weights(_folder(base / str(steps)))
    return out


def test_a_prior_killed_between_checkpoints_resumes_from_the_last_one(references, tmp_path):
    from ddcore_diffsel.pixel_prior import STATE_FILE, load_prior, read_meta

    killed = _train(tmp_path, STEPS, "between", 4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    folder = _folder(tmp_path)
    # the mid-training checkpoint: a complete prior at step 4, equal to a prior trained for 4 steps
    meta = read_meta(folder)
    assert meta["steps"] == 4
    assert torch.load(folder / STATE_FILE, weights_only=True)["step"] == 4
    assert _equal(_weights(folder), references[4])
    assert load_prior(folder).meta["steps"] == 4
    assert not [p.name for p in folder.iterdir() if ".tmp" in p.name]
    # resumed: only the 2 missing steps run, and the result is bit-identical to the uninterrupted run
    resumed = _train(tmp_path, STEPS)
    assert _ok(resumed) == 2
    assert "6 steps (2 trained now)" in resumed.stdout
    assert read_meta(folder)["steps"] == STEPS
    assert _equal(_weights(folder), references[STEPS])


def test_a_prior_killed_while_writing_a_checkpoint_still_ends_identical(references, tmp_path):
    """A torn checkpoint (training state of step 4, weights and metadata of step 2) is not resumed
    from: the state does not match the weights. The training starts over and ends identical."""
    from ddcore_diffsel.pixel_prior import STATE_FILE, read_meta, state_sha

    killed = _train(tmp_path, STEPS, "torn", 4)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    folder = _folder(tmp_path)
    assert read_meta(folder)["steps"] == 2 and torch.load(folder / STATE_FILE, weights_only=True)["step"] == 4
    resumed = _train(tmp_path, STEPS)
    ran = _ok(resumed)
    assert ran in (STEPS, STEPS - 2), ran  # from scratch, or from step 2 if a later version can
    assert read_meta(folder)["steps"] == STEPS
    assert _equal(_weights(folder), references[STEPS])
    assert read_meta(folder)["weights_sha"] == state_sha(_weights(folder))
