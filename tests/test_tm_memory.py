"""Projected memory of a matching step (ddcore.tm.memory): exact against the real step, linear in syn_steps,
and the choice of tm.unroll: full when it fits comfortably, constant otherwise, a one-line refusal before any work."""

from __future__ import annotations

import pytest
import torch

from core_support import assert_cli_error
from ddcore.errors import ConfigError
from ddcore.models import ModelSpec, build_model
from ddcore.tm.flatparams import param_shapes_of
from ddcore.tm.matching import matching_backward
from ddcore.tm.memory import COMFORT, FIT, GiB, OVERHEAD, StepCosts, peak_live_bytes, plan_unroll, step_costs

SPEC = ModelSpec(width=8, depth=2)
IMAGES, CLASSES, SIZE, BATCH = 6, 4, 16, 4


def real_step_peak(mode: str, syn_steps: int) -> int:
    """Peak live tensor bytes of one real matching step on the CPU (hard labels, no augmentation)."""
    torch.manual_seed(0)
    model = build_model(SPEC, CLASSES, 3, SIZE)
    shapes = param_shapes_of(model)
    params = sum(p.numel() for p in model.parameters())
    trajectory = torch.randn(3, params)
    images = torch.randn(IMAGES, 3, SIZE, SIZE, requires_grad=True)
    labels = torch.arange(IMAGES) % CLASSES
    syn_lr = torch.tensor(0.01, requires_grad=True)
    chunks = [torch.randperm(IMAGES)[:BATCH] for _ in range(syn_steps)]
    return peak_live_bytes(
        lambda: matching_backward(model, shapes, trajectory, 0, 2, images, labels, syn_lr, chunks, lambda l, d: None, None, mode)
    )


@pytest.mark.parametrize("mode", ["full", "constant"])
def test_the_projection_is_the_real_steps_live_tensor_peak(mode):
    """Simulated on the meta device at two small syn_steps, extended to 5: the real CPU step's peak, byte for byte."""
    costs = step_costs(SPEC, CLASSES, 3, SIZE, IMAGES, BATCH)
    assert costs.peak(mode, 5) - costs.resident == real_step_peak(mode, 5)


def test_the_constant_unroll_grows_by_parameter_vectors_only():
    costs = step_costs(SPEC, CLASSES, 3, SIZE, IMAGES, BATCH)
    # the full unroll keeps every step's activations; the constant one a few [P] float32 vectors per step
    assert costs.constant_per_step == 4 * costs.params < costs.full_per_step  # theta_k, float32
    assert costs.peak("constant", 40) < costs.peak("full", 40) / 6
    assert costs.per_image_step == costs.full_per_step / BATCH


COSTS = StepCosts(full_base=0, full_per_step=GiB, constant_base=2 * GiB, constant_per_step=0, batch=100, params=1, resident=0)


def test_auto_takes_the_full_unroll_only_while_it_fits_comfortably():
    # 10 steps: full 10 GiB, constant 2 GiB (x OVERHEAD each)
    roomy = 10 * GiB * OVERHEAD / COMFORT
    assert plan_unroll("auto", COSTS, 10, int(roomy)).unroll == "full"
    tight = plan_unroll("auto", COSTS, 10, int(roomy) - 1)
    assert tight.unroll == "constant" and tight.requested == "auto"
    assert (tight.full_bytes, tight.constant_bytes, tight.per_image_step_bytes) == (10 * GiB, 2 * GiB, GiB / 100)
    assert plan_unroll("full", COSTS, 10, int(10 * GiB * OVERHEAD / FIT) + 1).unroll == "full"
    record = tight.to_record()
    assert record["unroll"] == "constant" and record["full_gib"] == 10.0 and record["constant_gib"] == 2.0


def test_what_fits_in_neither_mode_is_refused_naming_the_settings_to_lower():
    with pytest.raises(ConfigError) as caught:
        plan_unroll("auto", COSTS, 10, GiB, "available RAM", image_size=128, batch_setting=100)
    message = str(caught.value)
    assert "\n" not in message
    for fragment in ("tm.unroll = 'constant'", "tm.batch_syn (now 100", "--image-size (now 128)", "tm.syn_steps (now 10)",
                     "available RAM"):  # fmt: skip
        assert fragment in message, fragment
    with pytest.raises(ConfigError, match="set tm.unroll = 'constant'"):  # full asked for, constant would fit
        plan_unroll("full", COSTS, 10, 4 * GiB)
    with pytest.raises(ConfigError, match="even with tm.unroll = 'constant'"):
        plan_unroll("constant", COSTS, 10, 2 * GiB)


def test_the_run_records_its_plan_before_any_work(tmp_path):
    from ddcore.runner import Pipeline

    pipeline = Pipeline({"ipc": 1, "workers": 0, "distill": "tm", "eval": {"runs": 0}, "cache_dir": str(tmp_path)}, write=False)
    pipeline.build_dataset()
    pipeline.distiller.check()
    record = pipeline.ctx.records["tm_memory"]
    assert record["requested"] == "auto" and record["unroll"] == "full"  # digits: a few MiB
    assert 0 < record["constant_bytes"] < record["full_bytes"] < record["budget_bytes"]
    assert (record["image_size"], record["num_images"]) == (32, 10)


def test_a_run_that_cannot_fit_exits_2_before_any_file_is_written(cli, tiny_run_args, tmp_path, monkeypatch):
    import ddcore.tm.memory

    monkeypatch.setattr(ddcore.tm.memory, "device_budget", lambda device, processes=1: (2**20, "available RAM"))
    out = tmp_path / "run"
    line = assert_cli_error(cli(*tiny_run_args("--distill", "tm", out=out)), "tm.batch_syn", "--image-size", "tm.syn_steps")
    assert "even with tm.unroll = 'constant'" in line
    assert not out.exists() and not (tmp_path / "cache").exists()
