"""ddcore.adapt (dataset images -> a foreign model's input) and ddcore.weights (weights files matched to an
architecture, one-line errors): issue 19, kinds 3 and 6."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddcore.adapt import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Adapted,
    InputAdapter,
    ModelInput,
    adapted,
    adapted_torchvision,
    torchvision_input,
)
from ddcore.errors import ConfigError
from ddcore.weights import load_torchvision, mismatch, read_state_dict

torchvision = pytest.importorskip("torchvision")


def test_grey_to_an_imagenet_model_known_values():
    """A grey pixel stored as 1.0 with dataset statistics (0.5, 0.25) is 0.75 in [0, 1]; ImageNet's
    normalisation of 0.75 in R, G, B is (0.75 - 0.485) / 0.229, (0.75 - 0.456) / 0.224, (0.75 - 0.406) / 0.225."""
    adapter = InputAdapter((0.5,), (0.25,), ModelInput())
    out = adapter(torch.ones(2, 1, 4, 4))
    assert out.shape == (2, 3, 4, 4)
    expected = torch.tensor([(0.75 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(out[1, :, 3, 2], expected)
    assert expected[0].item() == pytest.approx(1.157205, abs=1e-6)


def test_rgb_to_a_grey_model_takes_the_luminance():
    adapter = InputAdapter((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), ModelInput(1, (0.5,), (0.5,)))
    image = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)  # pure red
    torch.testing.assert_close(adapter(image), torch.tensor((0.2989 - 0.5) / 0.5).view(1, 1, 1, 1))


def test_sizes_fixed_minimum_and_kept():
    x = torch.rand(1, 3, 32, 24)
    assert InputAdapter((0.0,) * 3, (1.0,) * 3, ModelInput(size=224))(x).shape == (1, 3, 224, 224)
    assert InputAdapter((0.0,) * 3, (1.0,) * 3, ModelInput(min_size=48))(x).shape == (1, 3, 64, 48)  # both sides scaled
    assert InputAdapter((0.0,) * 3, (1.0,) * 3, ModelInput(min_size=15))(x).shape == (1, 3, 32, 24)
    # a constant image stays constant whichever way it is resized
    flat = InputAdapter((0.0,), (1.0,), ModelInput(1, (0.0,), (1.0,), size=5))(torch.full((1, 1, 8, 8), 0.3))
    torch.testing.assert_close(flat, torch.full((1, 1, 5, 5), 0.3))


def test_torchvision_expectations_come_from_the_weights_metadata():
    assert torchvision_input("resnet18") == ModelInput(3, IMAGENET_MEAN, IMAGENET_STD, size=None, min_size=1)
    assert torchvision_input("vit_b_16").size == 224  # min_size == crop size: a fixed input
    assert torchvision_input("inception_v3") == ModelInput(size=None, min_size=75)


def test_identity_is_not_wrapped_and_gradients_flow():
    model = nn.Conv2d(3, 2, 1)
    assert adapted(model, IMAGENET_MEAN, IMAGENET_STD, ModelInput()) is model
    wrapped = adapted(model, (0.5,), (0.5,), ModelInput())
    assert isinstance(wrapped, Adapted) and wrapped.model is model
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    wrapped(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert list(wrapped.state_dict()) == ["model.weight", "model.bias"]  # the adapter adds no saved state


def test_grey_digits_through_a_torchvision_resnet():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    wrapped = adapted_torchvision(model, "resnet18", (0.1,), (0.3,))
    with torch.no_grad():
        assert wrapped(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
        with pytest.raises(RuntimeError):
            model(torch.zeros(2, 1, 32, 32))  # what plugins fed it before: a traceback


def test_channel_pairs_that_cannot_be_adapted():
    with pytest.raises(ConfigError, match="cannot show 2-channel images to a model with 3 input channels"):
        InputAdapter((0.0, 0.0), (1.0, 1.0), ModelInput())
    with pytest.raises(ConfigError, match=r"expects \[N, 1, H, W\] images, got \[1, 3, 4, 4\]"):
        InputAdapter((0.0,), (1.0,), ModelInput())(torch.zeros(1, 3, 4, 4))


# ---------------------------------------------------------------------------------------------- weights


def resnet_state(classes: int = 10) -> dict:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None, num_classes=classes).state_dict()


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod."])
@pytest.mark.parametrize("wrapper", [None, "state_dict", "model"])
def test_wrapped_and_prefixed_files_load(tmp_path, prefix, wrapper):
    state = {f"{prefix}{k}": v for k, v in resnet_state().items()}
    path = tmp_path / "w.pt"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    model = load_torchvision("resnet18", path)
    assert model.fc.out_features == 10 and not model.training
    torch.testing.assert_close(model.state_dict()["conv1.weight"], resnet_state()["conv1.weight"])


def test_a_mismatch_is_one_short_line(tmp_path):
    state = resnet_state(1000)
    del state["fc.bias"], state["layer4.1.bn2.weight"]
    state["head.weight"] = torch.zeros(1)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ConfigError) as caught:
        load_torchvision("resnet18", path, option="config key 'x.weights'")
    message = str(caught.value)
    assert message == (
        f"weights file {path} does not fit resnet18 with 1000 classes: 2 missing (layer4.1.bn2.weight, fc.bias); "
        "1 unexpected (head.weight); 1 with another shape (file vs model) (layer1.0.conv1.weight [64, 64, 1, 1] vs "
        "[64, 64, 3, 3]) (config key 'x.weights')"
    )
    many = {f"k{i}": torch.zeros(1) for i in range(500)}  # nothing fits: still one short line
    text = mismatch(nn.Linear(2, 2), many)
    assert text == "2 missing (weight, bias); 500 unexpected (k0, k1, k2 and 497 more)"


def test_files_that_are_not_weights(tmp_path):
    with pytest.raises(ConfigError, match=r"weights file .*nope.pt does not exist \(--weights\)"):
        read_state_dict(tmp_path / "nope.pt", option="--weights")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(ConfigError, match=r"text.pt cannot be read as torch weights \(\w+\)"):
        read_state_dict(tmp_path / "text.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ConfigError, match=r"list.pt does not hold a state dict"):
        read_state_dict(tmp_path / "list.pt")
    with pytest.raises(ConfigError, match=r"unknown torchvision architecture 'resnet999'; close: resnet101"):
        load_torchvision("resnet999", tmp_path / "list.pt")
