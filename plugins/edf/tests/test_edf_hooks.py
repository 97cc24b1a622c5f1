"""The edf hooks on a real digits context: refresh schedule, exact weights, switches, soft labels, resume."""

from __future__ import annotations

import pytest
import torch

import ddcore_edf.maps
from ddcore import ConfigError, PluginError
from ddcore.cam import grad_cam
from ddcore_edf import plugin
from ddcore_edf.dae import soft_mask


def test_pixel_weights_are_the_soft_mask_of_the_cam_maps(edf_context, synthetic):
    ctx = edf_context(beta=1.5, interval=3, cam_method="gradcam")
    images, labels = synthetic(ctx)
    weights = plugin.dd_pixel_weights(ctx, images, labels, 0)
    assert weights.shape == (10, 1, 32, 32) and weights.dtype == torch.float32
    model = ctx.stash["edf_maps"].model
    expected = soft_mask(grad_cam(model, "features.2.2", images, labels), beta=1.5)
    torch.testing.assert_close(weights, expected)
    active = weights != 1
    assert active.any() and (~active).any()
    assert weights[active].min() >= 1.5 and weights.max() == 2.5  # M + beta with M in [tau, 1]
    assert ctx.records["edf"]["cam"]["layer"] == "features.2.2"


def test_maps_are_refreshed_every_interval_and_reused_between(edf_context, synthetic, monkeypatch):
    ctx = edf_context(interval=3, beta=1.5)  # weights: 1 outside the emphasised pixels, M + 1.5 >= 1.5 inside
    images, labels = synthetic(ctx)
    computed = []
    real = ddcore_edf.maps.CamMaps.compute
    monkeypatch.setattr(ddcore_edf.maps.CamMaps, "compute", lambda self, c, o, x, y, s: computed.append(s) or real(self, c, o, x, y, s))
    outputs = []
    for step in range(7):
        outputs.append(plugin.dd_pixel_weights(ctx, images + 0.3 * step, labels, step))  # the images change every step
    assert computed == [0, 3, 6]
    assert torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
    assert not torch.equal(outputs[2], outputs[3])
    # the share of emphasised pixels, from the weights each refresh produced (not from the plugin's counters)
    emphasised = [float((outputs[step] != 1).float().mean()) for step in (0, 3, 6)]
    assert all(0 < share < 1 for share in emphasised) and len(set(emphasised)) > 1
    assert plugin.dd_evaluate(ctx, None) == {"cam_refreshes": 3, "active_fraction": pytest.approx(sum(emphasised) / 3),
                                             "empty_maps": 0}


def test_smooth_gradcampp_is_seeded_by_the_run(edf_context, synthetic):
    a, b = edf_context(interval=1, cam_layer="features.0.2"), edf_context(interval=1, cam_layer="features.0.2")
    images, labels = synthetic(a)
    assert torch.equal(plugin.dd_pixel_weights(a, images, labels, 0), plugin.dd_pixel_weights(b, images, labels, 0))
    assert not torch.equal(plugin.dd_pixel_weights(a, images, labels, 1), plugin.dd_pixel_weights(b, images, labels, 0))


def test_soft_labels_give_their_initial_class_for_good(edf_context, synthetic, monkeypatch):
    ctx = edf_context(interval=1, cam_method="gradcam")
    images, labels = synthetic(ctx)
    soft = torch.nn.functional.one_hot(labels, 10).float() * 5
    seen = []
    real = ddcore_edf.maps.grad_cam
    monkeypatch.setattr(ddcore_edf.maps, "grad_cam", lambda m, l, x, t, **k: seen.append(t.clone()) or real(m, l, x, t, **k))
    plugin.dd_pixel_weights(ctx, images, soft, 0)
    plugin.dd_pixel_weights(ctx, images, soft.roll(1, dims=1), 1)  # learned labels drifted: the class stays
    assert torch.equal(seen[0], labels) and torch.equal(seen[1], labels)


def test_switches_and_cpd_weights(edf_context, synthetic):
    losses, distances = torch.rand(1000, generator=torch.Generator().manual_seed(0)), torch.ones(1000)
    ctx = edf_context(alpha=0.25)
    weights = plugin.dd_supervision_weights(ctx, losses, distances, 0)
    assert int((weights == 0).sum()) == 250 and losses[weights == 0].max() < losses[weights == 1].min()
    assert plugin.dd_supervision_weights(edf_context(alpha=0.25, cpd=False), losses, distances, 0) is None
    assert plugin.dd_supervision_weights(edf_context(), losses, distances, 0) is None  # ipc 1 preset: alpha 0
    off = edf_context(dae=False)
    images, labels = synthetic(off)
    assert plugin.dd_pixel_weights(off, images, labels, 0) is None and "edf_maps" not in off.stash


def test_resumed_run_reuses_the_saved_maps_and_counters(edf_context, synthetic, monkeypatch):
    """The state EDF puts into a checkpoint (dd_state_dict) restores the maps in use and the counters."""
    first = edf_context(interval=4, cam_method="gradcam")
    images, labels = synthetic(first)
    at_zero = plugin.dd_pixel_weights(first, images, labels, 0)
    state = plugin.dd_state_dict(first)
    assert state["step"] == 0 and state["refreshes"] == 1 and len(state["active"]) == 1
    assert torch.equal(state["maps"], first.stash["edf_maps"].maps.cpu())

    resumed = edf_context(interval=4, cam_method="gradcam")
    assert plugin.dd_state_dict(resumed) is None  # nothing to save before the first refresh
    plugin.dd_load_state_dict(resumed, state)
    monkeypatch.setattr(ddcore_edf.maps.CamMaps, "compute", lambda *a: pytest.fail("recomputed instead of reloaded"))
    assert torch.equal(plugin.dd_pixel_weights(resumed, images + 1.0, labels, 2), at_zero)
    metrics = plugin.dd_evaluate(resumed, None)
    assert metrics == {"cam_refreshes": 1, "active_fraction": state["active"][0], "empty_maps": 0}


def test_edf_without_a_distiller_that_calls_it_is_refused_before_any_work(dd_context):
    with pytest.raises(ConfigError, match="plugin 'edf' answers dd_pixel_weights, dd_supervision_weights, which "
                                          "distiller 'none' never calls; distillers that call them: tm"):
        dd_context(plugins=["edf"])


def squeezenet_weights(tmp_path):
    """A 1000-class torchvision classifier's weights in a local file (random: no download)."""
    torchvision = pytest.importorskip("torchvision")
    path = tmp_path / "squeeze.pt"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), path)
    return str(path)


def test_cam_model_problems_are_one_line_errors(dd_context, tmp_path):
    weights = squeezenet_weights(tmp_path)
    for options, message in [
        ({}, r"the CAM model has 1000 classes and the dataset 10: set plugin.edf.class_index"),
        ({"class_index": [1, 2]}, r"plugin.edf.class_index has 2 entries for 10 dataset classes"),
        ({"cam_layer": "layer4"}, r"SqueezeNet has no layer 'layer4' \(plugin.edf.cam_layer\); available: features, features.0"),
    ]:
        ctx = dd_context(plugins=["edf"], distill="tm", tm={"checkpoint_every": 0},
                         plugin={"edf": {"cam_model": "torchvision:squeezenet1_1", "cam_weights": weights, **options}})  # fmt: skip
        images = ctx.dataset.load("train", [0])[0]
        with pytest.raises(PluginError, match=message):
            plugin.dd_pixel_weights(ctx, images, torch.tensor([0]), 0)


def test_a_1000_class_model_gets_the_imagenet_classes_of_the_subset(dd_context, tmp_path, monkeypatch):
    from ddcore.data.base import ImageDataset, TensorSplit

    weights = squeezenet_weights(tmp_path)
    ctx = dd_context(plugins=["edf"], distill="tm", tm={"checkpoint_every": 0},
                     plugin={"edf": {"cam_model": "torchvision:squeezenet1_1", "cam_weights": weights, "cam_method": "gradcam"}})  # fmt: skip
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    split = TensorSplit(images, torch.arange(3))
    ctx.dataset = ImageDataset(name="subset", class_names=["tench", "springer", "cassette"], train=split, test=split,
                               image_shape=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
                               extra={"imagenet_index": [0, 217, 482]})  # fmt: skip
    seen = []
    real = ddcore_edf.maps.grad_cam
    monkeypatch.setattr(ddcore_edf.maps, "grad_cam", lambda m, l, x, t, **k: seen.append((m, x, t)) or real(m, l, x, t, **k))
    weights_out = plugin.dd_pixel_weights(ctx, images, torch.tensor([2, 0, 1]), 0)
    assert weights_out.shape == (3, 1, 64, 64)
    model, images_in, targets = seen[0]
    assert torch.equal(images_in, images)  # the dataset's images; the model adapts them (ddcore.adapt)
    inputs = model.adapter(images_in)
    assert targets.tolist() == [482, 0, 217]  # the true classes in ImageNet's label space, not 2, 0, 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(inputs, (images * 0.25 + 0.5 - mean) / std)  # re-normalised for an ImageNet model
    assert ctx.records["edf"]["cam"]["class_index"] == [0, 217, 482]
