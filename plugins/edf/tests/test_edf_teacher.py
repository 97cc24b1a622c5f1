"""EDF's CAM model options: ``cam_model = "teacher"`` (a network trained on the whole training split, cached) and
``cam_variant = "torchcam"`` (the release library's order of operations) through the plugin's hooks."""

from __future__ import annotations

import os

import pytest
import torch

from ddcore import ConfigError
from ddcore.cam import grad_cam
from ddcore.teacher import trained_teacher
from ddcore_edf import plugin
from ddcore_edf.config import EDFConfig


@pytest.mark.slow
def test_teacher_is_trained_on_the_training_split_cached_and_recorded(edf_context, synthetic):
    """The maps come from the cached teacher (the run's network, ``cam_teacher_epochs`` epochs), whose file,
    recipe and test accuracy the manifest records; a second run with the same recipe trains nothing."""
    ctx = edf_context(cam_model="teacher", cam_teacher_epochs=1, cam_method="gradcam", interval=5)
    images, labels = synthetic(ctx)
    weights = plugin.dd_pixel_weights(ctx, images, labels, 0)
    source = ctx.records["edf"]["cam"]["source"]
    assert source["kind"] == "teacher" and source["epochs"] == 1 and source["model"] == ctx.model_spec.name
    saved = torch.load(source["path"], map_location="cpu", weights_only=True)
    assert saved["recipe"]["epochs"] == 1 and saved["recipe"]["train"]["lr"] == source["lr"] == 0.01
    assert source["test_acc"] == saved["test_acc"] and 10.0 < saved["test_acc"] <= 100.0
    assert plugin.dd_evaluate(ctx, None)["cam_teacher_test_acc"] == saved["test_acc"]
    # the same network, loaded independently: the maps are its Grad-CAM maps (soft mask of them, beta from the preset)
    teacher = trained_teacher(ctx, model=ctx.model_spec, epochs=1)
    expected = grad_cam(teacher, None, images, labels)
    torch.testing.assert_close(ctx.stash["edf_maps"].maps, expected)
    assert torch.equal(weights[:, 0] != 1, (expected >= expected.mean(dim=(1, 2), keepdim=True)) & (expected > 0))
    # the second context finds the file: same path, nothing written again
    mtime = os.stat(source["path"]).st_mtime_ns
    again = edf_context(cam_model="teacher", cam_teacher_epochs=1, cam_method="gradcam", interval=5)
    plugin.dd_pixel_weights(again, images, labels, 0)
    assert again.records["edf"]["cam"]["source"]["path"] == source["path"]
    assert os.stat(source["path"]).st_mtime_ns == mtime


def test_teacher_recipe_is_part_of_its_cache_key(edf_context):
    from ddcore_edf.cam_model import teacher_options

    ctx = edf_context(cam_model="teacher")
    default = teacher_options(ctx, EDFConfig(cam_model="teacher"))
    assert default["epochs"] == 50 and "lr" not in default  # digits' full-data epochs (ddcore.presets)
    assert default["model"] == ctx.model_spec
    chosen = teacher_options(ctx, EDFConfig(cam_model="teacher", cam_teacher_epochs=3, cam_teacher_lr=0.05))
    assert chosen["epochs"] == 3 and chosen["lr"] == 0.05


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"cam_teacher_epochs": 5}, r"'plugin.edf.cam_teacher_epochs' is only for cam_model = 'teacher' \(cam_model is 'run'\)"),
        ({"cam_teacher_lr": 0.1}, r"'plugin.edf.cam_teacher_lr' is only for cam_model = 'teacher'"),
        ({"cam_model": "teacher", "cam_weights": "w.pt"}, r"'plugin.edf.cam_weights' is only for cam_model = 'torchvision:<arch>' \(cam_model is 'teacher'\)"),
        ({"cam_model": "teacher", "cam_input_norm": "imagenet"}, r"'plugin.edf.cam_input_norm' = 'imagenet' is only for .*the teacher's"),
        ({"cam_model": "teacher", "cam_teacher_epochs": -1}, r"'plugin.edf.cam_teacher_epochs' must be at least 0"),
        ({"cam_variant": "pytorch-grad-cam"}, r"'plugin.edf.cam_variant': expected one of 'paper', 'torchcam'"),
    ],
)
def test_bad_cam_model_options_name_the_key(dd_context, section, message):
    with pytest.raises(ConfigError, match=message):
        dd_context(plugins=["edf"], distill="tm", plugin={"edf": section}).plugin_config("edf")


@pytest.mark.parametrize("method", ["smooth_gradcampp", "gradcam"])
def test_torchcam_variant_reaches_the_maps(edf_context, synthetic, method):
    """``cam_variant = "torchcam"``: the maps are ddcore.cam's torchcam variant with the run's per-image seeds, and
    differ from the paper variant's (recorded in the manifest)."""
    ctx = edf_context(interval=1, cam_method=method, cam_variant="torchcam", cam_layer="features.1.2")
    paper = edf_context(interval=1, cam_method=method, cam_layer="features.1.2")
    images, labels = synthetic(ctx)
    plugin.dd_pixel_weights(ctx, images, labels, 0)
    plugin.dd_pixel_weights(paper, images, labels, 0)
    maps = ctx.stash["edf_maps"]
    seeds = [ctx.derive_seed("edf", "cam", 0, i) for i in range(10)]
    expected = grad_cam(maps.model, "features.1.2", images, labels, method=method, seeds=seeds, variant="torchcam")
    assert torch.equal(maps.maps, expected)
    assert ctx.records["edf"]["cam"]["variant"] == "torchcam" and paper.records["edf"]["cam"]["variant"] == "paper"
    assert (maps.maps - paper.stash["edf_maps"].maps).abs().max() > 1e-3


def test_torchcam_variant_adds_the_noise_behind_the_input_adapter(dd_context, tmp_path):
    """A torchvision CAM model sees grey digits through ddcore.adapt's adapter (RGB, ImageNet statistics); with
    ``cam_variant = "torchcam"`` the noise is added to the ResNet's own input, as torchcam (which wraps the ResNet)
    does, not to the dataset's images in front of the adapter."""
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = torchvision.models.resnet18(weights=None, num_classes=10).state_dict()
    weights = tmp_path / "resnet18.pt"
    torch.save(state, weights)
    edf = {"cam_model": "torchvision:resnet18", "cam_weights": str(weights), "cam_variant": "torchcam",
           "cam_layer": "layer2", "interval": 1}  # fmt: skip
    ctx = dd_context(plugins=["edf"], distill="tm", tm={"checkpoint_every": 0}, plugin={"edf": edf})
    images, labels = ctx.dataset.load("train", [0, 1, 2])
    plugin.dd_pixel_weights(ctx, images, labels, 0)
    maps = ctx.stash["edf_maps"]
    assert maps.inner is maps.model.model and maps.noise_module(ctx.stash["edf_options"]) is maps.inner
    seeds = [ctx.derive_seed("edf", "cam", 0, i) for i in range(3)]
    options = {"method": "smooth_gradcampp", "seeds": seeds, "variant": "torchcam"}
    behind = grad_cam(maps.model, maps.layer, images, labels, noise_module=maps.inner, **options)
    in_front = grad_cam(maps.model, maps.layer, images, labels, **options)
    torch.testing.assert_close(maps.maps, behind)
    assert (behind - in_front).abs().max() > 1e-3
