"""Trajectory-matching presets fit the data and the machine (issue kind 9): the run says which preset it took
and why, projects the matching's cost, and refuses a GPU-sized preset on a CPU when that is far beyond what
the data warrants (60 small images: the release's 10,000 iterations x 40 steps), before any work or file."""

from __future__ import annotations

import pytest
import torch

from ddcore import hookimpl
from ddcore.errors import ConfigError
from ddcore.tm.presets import FAR_RATIO, FAR_SECONDS, TM_PRESETS, human_seconds, project_matching, resolve_tm_preset


def shapes_dataset(_options):
    """60 small RGB images of 3 classes at 32 px (20 per class), no preset family: like an imagefolder of shapes."""
    from ddcore.data.base import ImageDataset, TensorSplit

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(20)
    images = torch.randn(60, 3, 32, 32, generator=generator)
    return ImageDataset(name="toy/shapes", class_names=["circle", "square", "triangle"],
                        train=TensorSplit(images, labels), test=TensorSplit(images[:12], labels[:12]),
                        image_shape=(3, 32, 32), mean=(0.0,) * 3, std=(1.0,) * 3)  # fmt: skip


class Shapes:
    name = "toy-shapes"

    @hookimpl
    def dd_register_datasets(self, register):
        register("toy/shapes", shapes_dataset)


def _pipeline(tmp_path, **config):
    from ddcore.runner import Pipeline

    base = {"dataset": "toy/shapes", "ipc": 2, "distill": "tm", "workers": 0, "cpu": True, "cache_dir": str(tmp_path / "cache")}
    pipeline = Pipeline({**base, **config}, [Shapes()], write=False)
    pipeline.build_dataset()
    return pipeline


def test_a_gpu_sized_preset_on_a_cpu_for_60_images_is_refused_before_any_file(tmp_path):
    from ddcore.runner import run

    out = tmp_path / "run"
    with pytest.raises(ConfigError) as error:
        run({"dataset": "toy/shapes", "ipc": 2, "distill": "tm", "workers": 0, "cpu": True, "out": str(out),
             "cache_dir": str(tmp_path / "cache")}, [Shapes()])  # fmt: skip
    message = str(error.value)
    assert "\n" not in message and message.startswith("tm.preset 'spec-ipc1' is sized for GPUs: 10000 iterations x 40 inner steps")
    assert "60 training images" in message and "pass --set tm.preset=cpu-ipc1" in message and "tm.iterations" in message
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing written, no expert trained


def test_the_cpu_sized_preset_is_taken_said_and_recorded(tmp_path):
    pipeline = _pipeline(tmp_path, tm={"preset": "cpu-ipc1"})
    lines = []
    pipeline.ctx.reporter.info = lines.append
    projection = pipeline.distiller.check_preset()
    record = pipeline.ctx.records["tm_preset"]
    assert record["preset"] == "cpu-ipc1" and record["iterations"] == 200 and record["syn_steps"] == 10
    assert record["train_images"] == 60 and record["images_per_step"] == 6 and record["device"] == "cpu"
    assert not record["far_beyond"] and projection.matching_seconds < FAR_SECONDS
    assert "named in the config (auto would take spec-ipc1)" in record["reason"]
    assert len(lines) == 1 and lines[0].startswith("tm preset cpu-ipc1: the CPU-sized recipe")


def test_auto_says_why_it_took_a_preset(tmp_path):
    digits = _pipeline(tmp_path, dataset="digits", ipc=1)
    record = digits.distiller.check_preset().to_record()
    assert record["preset"] == "digits-ipc1" and not record["far_beyond"]
    assert "what auto takes for 'digits' (its preset family) at ipc 1" in record["reason"]


def test_far_beyond_with_a_cpu_sized_preset_warns(tmp_path):
    pipeline = _pipeline(tmp_path, tm={"preset": "cpu-ipc1", "iterations": 2_000_000})
    lines = []
    pipeline.ctx.reporter.info = lines.append
    projection = pipeline.distiller.check_preset()
    assert projection.far_beyond and projection.ratio > FAR_RATIO
    assert lines[-1].startswith("warning: the matching projects") and "lower tm.iterations" in lines[-1]


def test_the_projection_depends_on_the_device_and_the_data(tmp_path):
    pipeline = _pipeline(tmp_path, tm={"preset": "cpu-ipc1"})
    ctx, options = pipeline.ctx, pipeline.config.distill_options
    spec = type(options)(**{**options.to_dict(), **TM_PRESETS["spec-ipc1"], "preset": "spec-ipc1"})
    args = ("toy/shapes", 2, ctx.model_spec, ctx.dataset)
    cpu = project_matching(spec, *args, "cpu", 5, 12, 6)
    gpu = project_matching(spec, *args, "cuda", 5, 12, 6)
    assert cpu.far_beyond and not gpu.far_beyond and cpu.matching_seconds == 100 * gpu.matching_seconds
    assert cpu.matching_flops == 2 * cpu.step_flops_per_image * 10000 * 40 * 6
    assert cpu.experts_flops == cpu.step_flops_per_image * 5 * 12 * 60


def test_cpu_presets_are_the_cpu_sized_recipe():
    for k in (1, 10, 50):
        assert resolve_tm_preset(f"cpu-ipc{k}", "imagefolder", k) == (f"cpu-ipc{k}", TM_PRESETS[f"digits-ipc{k}"])
    assert human_seconds(14 * 3600) == "14 h"


def test_a_family_name_takes_its_row_at_the_nearest_preset_ipc(tmp_path):
    for ipc, k in ((1, 1), (3, 1), (8, 10), (30, 10), (31, 50), (200, 50)):
        for family in ("cpu", "digits", "spec"):
            assert resolve_tm_preset(family, "imagefolder", ipc) == (f"{family}-ipc{k}", TM_PRESETS[f"{family}-ipc{k}"])
    with pytest.raises(ConfigError, match=r"unknown preset 'gpu'.*cpu, digits, spec"):
        resolve_tm_preset("gpu", "digits", 1)
    # through a run: the resolved name is what the run records, and explicit keys still win
    pipeline = _pipeline(tmp_path, tm={"preset": "cpu", "iterations": 7})
    pipeline.ctx.reporter.info = lambda line: None
    pipeline.distiller.check_preset()
    record = pipeline.ctx.records["tm_preset"]
    assert record["preset"] == "cpu-ipc1" and record["iterations"] == 7 and record["syn_steps"] == 10
