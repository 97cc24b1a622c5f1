"""EDF under the real-world inputs of issue 19: chunk-independent CAM noise (kind 5), all-zero maps (kind 8),
cam_weights opened before any work (kind 6), a batch-norm run classifier that works (kind 1), grey images
to a torchvision CAM model (kind 3)."""

from __future__ import annotations

import pytest
import torch

import ddcore_edf.maps
from ddcore import ConfigError
from ddcore_edf import plugin

EARLY = "features.0.2"  # a layer where the gradient depends on the input, so the noise matters


@pytest.mark.parametrize("method", ["smooth_gradcampp", "gradcam"])
def test_maps_do_not_depend_on_the_chunking(edf_context, synthetic, monkeypatch, method):
    """cam_batch_size 0 (all at once, or the memory-bounded chunk) vs 1, 3 and 4: the same weights, bit for bit."""
    options = {"interval": 1, "cam_layer": EARLY, "cam_method": method}
    images, labels = synthetic(edf_context(**options))
    whole = plugin.dd_pixel_weights(edf_context(**options), images, labels, 5)
    for size in (1, 3, 4):
        chunked = plugin.dd_pixel_weights(edf_context(cam_batch_size=size, **options), images, labels, 5)
        assert torch.equal(chunked, whole), size
    import ddcore.tm.memory

    monkeypatch.setattr(ddcore.tm.memory, "projected_step_bytes", lambda ctx: 1)  # the memory bound: one image per pass
    bounded = edf_context(**options)
    assert torch.equal(plugin.dd_pixel_weights(bounded, images, labels, 5), whole)
    assert bounded.records["edf"]["cam"]["chunk"] == 1
    assert (whole != 1).any() and (whole == 1).any()


def test_an_image_has_its_own_noise_whatever_else_is_in_the_set(edf_context, synthetic):
    """Image i's map at a refresh depends on (seed, refresh, i) only: the first 4 images alone get the maps they
    get among 10 (the noise used to be one draw over the whole set, so it depended on the set's size)."""
    options = {"interval": 1, "cam_layer": EARLY}
    images, labels = synthetic(edf_context(**options))
    all_ten = plugin.dd_pixel_weights(edf_context(**options), images, labels, 2)
    first_four = plugin.dd_pixel_weights(edf_context(**options), images[:4], labels[:4], 2)
    assert torch.equal(first_four, all_ten[:4])
    other_refresh = plugin.dd_pixel_weights(edf_context(**options), images, labels, 3)
    assert not torch.equal(other_refresh, all_ten)


def test_an_all_zero_map_gives_weight_one_and_is_counted(edf_context, synthetic, monkeypatch):
    """No positive evidence for the class: weight 1 on every pixel (the plain gradient), not beta."""
    ctx = edf_context(interval=2, beta=2.0, cam_method="gradcam")
    images, labels = synthetic(ctx)
    real = ddcore_edf.maps.grad_cam

    def two_empty(*args, **kwargs):  # the real maps, with images 3 and 7 left without evidence
        maps = real(*args, **kwargs)
        maps[[3, 7]] = 0.0
        return maps

    monkeypatch.setattr(ddcore_edf.maps, "grad_cam", two_empty)
    weights = plugin.dd_pixel_weights(ctx, images, labels, 0)
    assert torch.equal(weights[[3, 7]], torch.ones(2, 1, 32, 32))
    others = weights[[0, 1, 2, 4, 5, 6, 8, 9]]
    assert (others >= 2.0).any() and (others == 1.0).any()  # the other maps are emphasised as before
    plugin.dd_pixel_weights(ctx, images, labels, 2)
    metrics = plugin.dd_evaluate(ctx, None)
    assert metrics["empty_maps"] == 4 and ctx.records["edf"]["empty_maps"] == [2, 2]
    active = float((weights != 1).float().mean())
    assert ctx.stash["edf_maps"].active[0] == pytest.approx(active)  # the empty maps count as no emphasis


def resnet_weights(tmp_path, name: str, prefix: str = "") -> str:
    torchvision = pytest.importorskip("torchvision")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = torchvision.models.resnet18(weights=None, num_classes=10).state_dict()
    path = tmp_path / name
    torch.save({f"{prefix}{key}": value for key, value in state.items()}, path)
    return str(path)


def test_dataparallel_cam_weights_and_grey_images_work(dd_context, tmp_path):
    """A ResNet-18 saved from nn.DataParallel (``module.`` keys) is accepted; grey digits reach it as RGB with
    ImageNet statistics (ddcore.adapt); its layer4 maps weight the images."""
    weights = resnet_weights(tmp_path, "dp.pt", prefix="module.")
    ctx = dd_context(plugins=["edf"], distill="tm", tm={"checkpoint_every": 0},
                     plugin={"edf": {"cam_model": "torchvision:resnet18", "cam_weights": weights, "cam_method": "gradcam"}})  # fmt: skip
    images = ctx.dataset.load("train", [0, 1, 2])[0]
    out = plugin.dd_pixel_weights(ctx, images, torch.tensor([0, 1, 2]), 0)
    assert out.shape == (3, 1, 32, 32) and (out > 1).any()
    model = ctx.stash["edf_maps"].model
    assert model.adapter(images).shape == (3, 3, 32, 32) and ctx.records["edf"]["cam"]["layer"] == "layer4"


def test_cam_weights_that_do_not_fit_stop_the_run_before_any_work(tmp_path, capsys):
    """Refused at the options check: exit 2, one line naming a few keys and the count of the rest, nothing
    written (no run folder, no experts trained)."""
    from ddcore_cli.app import main

    torchvision = pytest.importorskip("torchvision")
    path = tmp_path / "squeeze.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=10).state_dict(), path)
    out, cache = tmp_path / "run", tmp_path / "cache"
    with pytest.raises(SystemExit) as caught:
        main(["run", "--plugin", "edf", "--distill", "tm", "--ipc", "1", "--out", str(out), "--cache-dir", str(cache),
              "--set", "plugin.edf.cam_model=torchvision:resnet18", "--set", f"plugin.edf.cam_weights={path}"])  # fmt: skip
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and len(err) < 600
    assert "does not fit resnet18 with 1000 classes: 122 missing (conv1.weight, bn1.weight, bn1.bias and 119 more); 52 unexpected" in err
    assert err.endswith("(config key 'plugin.edf.cam_weights')")
    assert not out.exists() and not (cache / "experts").exists()


def test_imagenet_statistics_for_the_run_classifier_are_refused():
    from ddcore_edf.config import EDFConfig

    with pytest.raises(ConfigError, match=r"'plugin.edf.cam_input_norm' = 'imagenet' is only for cam_model = 'torchvision"):
        EDFConfig(cam_input_norm="imagenet")


def test_a_batchnorm_run_classifier_classifies_as_its_expert(dd_context):
    """The reported input (eval.norm = batchnorm, cam_model = run): the CAM model rebuilt from expert 0's final
    parameters has its batch-norm statistics back and classifies as the expert does (not at chance)."""
    from ddcore.models import build_model
    from ddcore.tm.flatparams import flatten_params, param_shapes_of
    from ddcore.training import TrainRecipe, accuracy_on, train_network

    ctx = dd_context(plugins=["edf"], distill="tm", tm={"checkpoint_every": 0},
                     eval={"norm": "batchnorm", "width": 8}, plugin={"edf": {"cam_method": "gradcam"}})  # fmt: skip
    assert ctx.model_spec.norm == "batchnorm"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        expert = build_model(ctx.model_spec, 10, 1, 32)
    loader = ctx.dataset.loader("train", 64, shuffle=True, generator=torch.Generator().manual_seed(0))
    train_network(expert, lambda _e: loader, TrainRecipe(epochs=3, batch_size=64, lr=0.05, augment="none"), torch.device("cpu"), 32)
    test = ctx.dataset.loader("test", 500)
    expert_acc = 100 * accuracy_on(expert.eval(), test, torch.device("cpu"))

    class Buffer:  # what the run's ExpertBuffer offers the classifier: expert 0's trajectory of flat parameters
        folder = "experts/fake"
        param_shapes = param_shapes_of(expert)

        def trajectory(self, index):
            return flatten_params(expert).unsqueeze(0)

    ctx.experts = Buffer()
    images, labels = ctx.dataset.load("train", [0, 1, 2])
    plugin.dd_pixel_weights(ctx, images, labels, 0)
    cam_model = ctx.stash["edf_maps"].model
    cam_acc = 100 * accuracy_on(cam_model, test, torch.device("cpu"))
    assert expert_acc > 80 and abs(cam_acc - expert_acc) <= 2.0, (cam_acc, expert_acc)  # tolerance: tests/test_snapshot.py
    assert ctx.records["classifier"]["norm_stats_images"] == 1437  # every digits training image (fewer than 2048)
