"""Two real processes give exactly what one process computes the same work to be.

One two-process ``dd run --distill tm`` (torchrun, gloo on the CPU) trains the expert trajectories
(sharded: process ``p`` trains experts ``p, p + 2, ...``) and then matches them. Two references are
built in this process, directly from the pieces, not by another run:

- experts: every expert file the two processes wrote equals ``train_expert`` run here, expert by expert;
- matching: each iteration, process ``p`` draws its expert, start epoch and minibatch order from
  ``derive_generator("tm", p)`` and its DSA transforms from ``derive_generator("tm", "dsa", p)``. The
  reference replays both draws here, runs the matching step for each, **averages** the two image
  (and lr) gradients and steps the optimisers; the two-process images must equal it to float
  tolerance. A sum instead of the mean (or one process's gradient alone) lands elsewhere.
"""

from __future__ import annotations

import json

import pytest
import torch

from core_support import launch_two_processes, single_process

pytestmark = [pytest.mark.slow, pytest.mark.multiprocess]

SEED = 3
EXPERTS = 3  # dealt 0, 2 to process 0 and 1 to process 1
WIDTH = 8
TM = {"iterations": 3, "syn_steps": 2, "expert_epochs": 1, "max_start_epoch": 2, "cur_max_start_epoch": 2}  # experts: 3 epochs


def run_config(cache) -> dict:
    return {
        "ipc": 1, "seed": SEED, "cpu": True, "workers": 0, "distill": "tm", "cache_dir": str(cache),
        "eval": {"runs": 0, "width": WIDTH}, "tm": dict(TM), "experts": {"num": EXPERTS, "batch_size": 512},
    }  # fmt: skip


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """The run directory and cache of one two-process trajectory-matching run."""
    tmp_path = tmp_path_factory.mktemp("tm2")
    out, cache = tmp_path / "run", tmp_path / "cache"
    sets = [f"tm.{key}={value}" for key, value in TM.items()] + [f"experts.num={EXPERTS}", "experts.batch_size=512",
                                                                  f"eval.width={WIDTH}", "workers=0"]  # fmt: skip
    launch_two_processes(
        ["run", "--cpu", "--ipc", "1", "--seed", SEED, "--eval-runs", "0", "--distill", "tm",
         *[a for s in sets for a in ("--set", s)], "--cache-dir", cache, "--out", out, "--quiet"],
        cwd=tmp_path,
    )  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["accelerate"]["num_processes"] == 2
    return out, cache, manifest


def reference_context(cache):
    """The run's context in this process (one process), its dataset built."""
    from ddcore.runner import Pipeline

    pipeline = Pipeline(run_config(cache), write=False)
    pipeline.build_dataset()
    assert pipeline.ctx.num_processes == 1
    return pipeline.ctx


def test_experts_trained_by_two_processes_equal_one_process_training(two_processes):
    from ddcore.tm.distiller import expert_recipe
    from ddcore.tm.experts import cache_key, dataset_identity, expert_path, experts_dir, read_expert, train_expert

    out, cache, manifest = two_processes
    record = manifest["records"]["experts"]
    assert record["trained"] == list(range(EXPERTS)) and record["num_experts"] == EXPERTS  # none came from a cache
    with single_process():
        ctx = reference_context(cache)
        options = ctx.config.distill_options
        recipe = expert_recipe(ctx, options.max_start_epoch + options.expert_epochs)
        folder = experts_dir(cache, cache_key(dataset_identity(ctx.dataset), recipe))
        assert str(folder) == record["folder"]
        for index in range(EXPERTS):
            mine = train_expert(ctx.dataset, recipe, index)
            theirs = read_expert(expert_path(folder, index))
            assert theirs["index"] == index and theirs["trajectory"].shape == mine["trajectory"].shape
            torch.testing.assert_close(theirs["trajectory"], mine["trajectory"], rtol=0, atol=1e-6, msg=f"expert {index}")
            assert theirs["test_acc"] == pytest.approx(mine["test_acc"])
            assert theirs["final_train_acc"] == pytest.approx(mine["final_train_acc"])
        # the experts differ from each other, so a process training the wrong index would show
        first, second = (read_expert(expert_path(folder, i))["trajectory"] for i in (0, 1))
        assert not torch.allclose(first, second)


def averaged_reference(ctx, initial, experts, processes: int = 2):
    """Trajectory matching as ``processes`` processes do it, computed here: per iteration, each process's
    own draws and matching step, then the mean of their gradients, then one optimiser step.

    Returns ``(images, syn_lr, log)`` with one ``{"experts", "start_epoch", "loss"}`` row per iteration
    (``start_epoch`` is process 0's, as the run logs it).
    """
    from ddcore.augment import DSA, DSAugment
    from ddcore.models import build_model
    from ddcore.tm.loop import sample_start_epoch
    from ddcore.tm.matching import matching_step, minibatch_order

    config = ctx.config.distill_options
    assert not config.learn_labels and config.skip_threshold == 0 and config.augment == "dsa"
    channels, size, _ = ctx.dataset.image_shape
    model = build_model(ctx.model_spec, ctx.dataset.num_classes, channels, size)
    images = initial.images.detach().clone().requires_grad_(True)
    labels = initial.labels.detach().clone()
    syn_lr = torch.tensor(initial.lr or config.lr_teacher, requires_grad=True)
    optimisers = [torch.optim.SGD([images], lr=config.lr_img, momentum=0.5),
                  torch.optim.SGD([syn_lr], lr=config.lr_lr, momentum=0.5)]  # fmt: skip
    streams = [ctx.derive_generator("tm", p) for p in range(processes)]
    augments = [DSAugment(DSA(), ctx.derive_generator("tm", "dsa", p)) for p in range(processes)]
    log = []
    for iteration in range(config.iterations):
        image_grads, lr_grads, losses, picks, starts = [], [], [], [], []
        for p in range(processes):
            expert = int(torch.randint(len(experts), (1,), generator=streams[p]))
            start = sample_start_epoch(config, iteration, streams[p])
            chunks = minibatch_order(images.shape[0], config.batch_syn or images.shape[0], config.syn_steps, streams[p])
            images.grad, syn_lr.grad = None, None
            result = matching_step(
                model, experts.param_shapes, experts.trajectory(expert), start, config.expert_epochs,
                images, labels, syn_lr, chunks, lambda l, d: None, lambda x, y: None, augment=augments[p],
            )  # fmt: skip
            image_grads.append(images.grad.clone())
            lr_grads.append(syn_lr.grad.clone())
            losses.append(result.loss)
            picks.append(expert)
            starts.append(start)
        images.grad = torch.stack(image_grads).mean(dim=0)
        syn_lr.grad = torch.stack(lr_grads).mean(dim=0)
        for optimiser in optimisers:
            optimiser.step()
        with torch.no_grad():
            syn_lr.clamp_(min=1e-8)
        log.append({"experts": picks, "start_epoch": starts[0], "loss": sum(losses) / processes, "grads": image_grads})
    return images.detach(), float(syn_lr.detach()), log


def test_two_process_matching_equals_the_average_of_both_processes_gradients(two_processes):
    from ddcore.distilled import DistilledSet
    from ddcore.tm.distiller import expert_recipe
    from ddcore.tm.experts import ensure_experts

    out, cache, manifest = two_processes
    run_log = json.loads((out / "tm_log.json").read_text())
    distilled = DistilledSet.load(out / "distilled.pt")
    initial = DistilledSet.load(out / "checkpoints" / "initial.pt")  # the set both processes started from
    with single_process():
        ctx = reference_context(cache)
        assert ctx.config.distill_options.to_dict() == manifest["config"]["tm"]  # the run's resolved [tm]
        options = ctx.config.distill_options
        experts = ensure_experts(ctx, ctx.dataset, expert_recipe(ctx, options.max_start_epoch + options.expert_epochs))
        assert ctx.records["experts"]["trained"] == []  # the two processes' files, reused
        images, syn_lr, log = averaged_reference(ctx, initial, experts)

    # the same draws: one trajectory per process and iteration, process 0's start epoch logged
    assert [row["experts"] for row in run_log] == [row["experts"] for row in log]
    assert [row["start_epoch"] for row in run_log] == [row["start_epoch"] for row in log]
    # the check has teeth: the two processes' gradients differ, and the images moved
    assert all(not torch.allclose(row["grads"][0], row["grads"][1]) for row in log)
    assert (images - initial.images).abs().max() > 1e-2
    torch.testing.assert_close(distilled.images, images, rtol=1e-4, atol=1e-5)
    assert distilled.lr == pytest.approx(syn_lr, rel=1e-6)
    assert [row["loss"] for row in run_log] == pytest.approx([row["loss"] for row in log], rel=1e-5)
