"""A torchvision observer / teacher on grey digits (issue 19, kinds 3 and 6): the images are adapted (ddcore.adapt),
the weights file is matched to the architecture (ddcore.weights), a DataParallel file is accepted."""

from __future__ import annotations

import pytest
import torch

from diffsel_support import TINY_PRIOR

torchvision = pytest.importorskip("torchvision")


def resnet_file(tmp_path, *, prefix: str = "", classes: int = 10) -> str:
    """A randomly initialised torchvision ResNet-18 (``classes`` outputs) saved as a local weights file."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = torchvision.models.resnet18(weights=None, num_classes=classes).state_dict()
    path = tmp_path / f"resnet18{prefix.strip('.')}.pt"
    torch.save({f"{prefix}{k}": v for k, v in state.items()}, path)
    return str(path)


def test_the_teacher_takes_grey_dataset_images(dd_context, tmp_path):
    from ddcore.adapt import IMAGENET_MEAN, IMAGENET_STD
    from ddcore_diffsel.features import load_teacher, penultimate

    path = resnet_file(tmp_path, prefix="module.")  # saved from nn.DataParallel
    ctx = dd_context()
    teacher = load_teacher(ctx, ctx.dataset, f"torchvision:resnet18:{path}")
    images = ctx.dataset.load("train", [0, 1, 2])[0]  # [3, 1, 32, 32], digits' own normalisation
    plain = torchvision.models.resnet18(weights=None, num_classes=10)
    plain.load_state_dict({k.removeprefix("module."): v for k, v in torch.load(path, weights_only=True).items()})
    pixels = (images * torch.tensor(ctx.dataset.std) + torch.tensor(ctx.dataset.mean)).expand(-1, 3, -1, -1)
    expected_input = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(teacher(images), plain.eval()(expected_input))
    assert penultimate(teacher, images).shape == (3, 512)


def test_observer_scorer_run_on_digits(run_tiny, tmp_path):
    """The reported input: scorer = observer with teacher = torchvision:resnet18:<local weights> on digits."""
    path = resnet_file(tmp_path)
    options = {"pool_per_class": 2, "n_noise": 1, "batch_size": 20, "train": dict(TINY_PRIOR), "scorer": "observer",
               "teacher": f"torchvision:resnet18:{path}", "features": "pixels"}  # fmt: skip
    result = run_tiny(plugins=["diffsel"], cache_dir=str(tmp_path / "cache"), eval={"runs": 0}, plugin={"diffsel": options})
    assert result.distilled.images.shape == (10, 1, 32, 32)
    assert result.manifest["records"]["diffsel/pool"]["candidates"] == 20


def test_a_weights_file_that_does_not_fit_is_one_line(dd_context, tmp_path):
    from ddcore import ConfigError
    from ddcore_diffsel.features import load_teacher

    path = tmp_path / "other.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=10).state_dict(), path)
    ctx = dd_context()
    with pytest.raises(ConfigError) as caught:
        load_teacher(ctx, ctx.dataset, f"torchvision:resnet18:{path}")
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600
    assert f"weights file {path} does not fit resnet18 with 1000 classes: 122 missing (conv1.weight, bn1.weight, bn1.bias and 119 more); " in message
    assert "52 unexpected (features.0.weight, features.0.bias, features.3.squeeze.weight and 49 more)" in message
    assert message.endswith("(config key 'plugin.diffsel.teacher')")


def test_the_options_check_opens_the_weights(tmp_path):
    """``check_teacher_weights`` (for DiffselConfig's check, before any work): a DataParallel file passes, a
    file for another architecture is one line."""
    from ddcore import ConfigError
    from ddcore_diffsel.features import check_teacher_weights

    check_teacher_weights(f"torchvision:resnet18:{resnet_file(tmp_path, prefix='module.')}")
    check_teacher_weights("trained")
    other = tmp_path / "other.pt"
    torch.save(torchvision.models.squeezenet1_1(weights=None, num_classes=10).state_dict(), other)
    with pytest.raises(ConfigError, match=r"does not fit resnet18 with 1000 classes: 122 missing .*'plugin.diffsel.teacher'"):
        check_teacher_weights(f"torchvision:resnet18:{other}")
