"""Plugins and foreign models on ZCA-whitened data (``zca = true``): right pixels, or a one-line refusal.

A ZCA dataset hands out whitened images with mean/std 0/1. A foreign model (EDF's torchvision CAM model,
diffsel's torchvision teacher) must see the same pixels as for the same images of the plain dataset
(:func:`ddcore.adapt.adapted_dataset` undoes the whitening first); diffsel, which cuts and scores patches
as pixels, refuses ``zca = true`` before any work. The CIFAR files are tiny pickles in the real layout.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ddcore.adapt import IMAGENET_MEAN, IMAGENET_STD, ModelInput, adapted, adapted_dataset, adapted_torchvision_dataset
from ddcore.data.base import DatasetOptions
from ddcore.data.standard.cifar import load_cifar
from ddcore.errors import ConfigError

SIDE = 8  # the images are resized to 8 px: a 192-feature ZCA fits in milliseconds


def write_cifar(root: Path, per_batch: int = 3, seed: int = 0) -> None:
    """CIFAR-10 python batches (``cifar-10-batches-py``) of random pixels, every class in the training split."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        first = 0 if name == "test_batch" else b * per_batch
        entry = {"data": rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8),
                 "labels": [(first + j) % 10 for j in range(per_batch)]}  # fmt: skip
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


class Recorder(nn.Module):
    """A stand-in foreign classifier: remembers its input, returns one logit per channel mean."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.mean(dim=(2, 3))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("data")
    write_cifar(root)
    plain = load_cifar("cifar10", DatasetOptions(root=root, image_size=SIDE))
    white = load_cifar("cifar10", DatasetOptions(root=root, image_size=SIDE, zca=True))
    assert plain.whitening is None and white.whitening is not None and white.mean == (0.0, 0.0, 0.0)
    return root, plain, white


def _images(dataset, count: int = 6) -> torch.Tensor:
    return dataset.load("train", list(range(count)))[0]


def test_a_foreign_model_sees_the_same_pixels_on_a_zca_dataset_as_on_the_plain_one(datasets) -> None:
    _, plain, white = datasets
    target = ModelInput()  # ImageNet statistics, any size
    pixels = plain.denormalize(_images(plain))  # [6, 3, 8, 8] in [0, 1]
    expected = (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for dataset in (plain, white):
        recorder = Recorder()
        adapted_dataset(recorder, dataset, target)(_images(dataset))
        (seen,) = recorder.seen
        assert seen.shape == (6, 3, SIDE, SIDE)
        torch.testing.assert_close(seen, expected, atol=2e-4, rtol=0)
    # what the plain adapter made of the whitened values (taken for pixels) is far from them: the bug fixed here
    wrong = Recorder()
    adapted(wrong, white.mean, white.std, target)(_images(white))
    assert (wrong.seen[0] - expected).abs().max() > 0.5


def test_a_resizing_torchvision_adapter_gets_the_same_pixels_and_passes_gradients(datasets) -> None:
    _, plain, white = datasets
    outputs = []
    for dataset in (plain, white):
        recorder = Recorder()
        model = adapted_torchvision_dataset(recorder, "vit_b_16", dataset)  # fixed 224 px input
        images = _images(dataset, 2).requires_grad_(True)
        model(images).sum().backward()  # Grad-CAM differentiates through the adapter (and the inverse ZCA)
        assert images.grad is not None and images.grad.abs().sum() > 0
        outputs.append(recorder.seen[0])
    assert outputs[0].shape == (2, 3, 224, 224)
    torch.testing.assert_close(outputs[1], outputs[0], atol=5e-4, rtol=0)
    assert isinstance(adapted_torchvision_dataset(Recorder(), "vit_b_16", white).model.model, Recorder)  # reachable


def test_diffsel_prior_trains_on_the_pixels_of_a_zca_dataset(datasets) -> None:
    from ddcore_diffsel.train_prior import _training_images

    _, plain, white = datasets
    plain_pixels, plain_labels = _training_images(plain, SIDE)
    white_pixels, white_labels = _training_images(white, SIDE)
    assert torch.equal(plain_labels, white_labels)
    torch.testing.assert_close(white_pixels, plain_pixels, atol=2e-4, rtol=0)
    assert 0.0 <= float(white_pixels.min()) and float(white_pixels.max()) <= 1.0


def test_diffsel_selection_refuses_a_whitened_dataset_with_one_line(datasets) -> None:
    from ddcore_diffsel.selection import refuse_whitened

    _, plain, white = datasets
    refuse_whitened(plain, "plugin diffsel's selection")  # plain data passes
    with pytest.raises(ConfigError) as err:
        refuse_whitened(white, "plugin diffsel's selection")
    text = str(err.value)
    assert "\n" not in text and "zca" in text and "diffsel" in text


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_dd_run_refuses_diffsel_with_zca_before_any_work(cli, tiny_run_args, datasets, tmp_path: Path) -> None:
    root, _, _ = datasets
    out = tmp_path / "run"
    code, _, err = cli(*tiny_run_args("--plugin", "diffsel", "--dataset", "cifar10", "--data-root", root,
                                      "--image-size", SIDE, "--set", "zca=true", out=out))  # fmt: skip
    line = _one_error_line(err)
    assert code == 2 and "diffsel" in line and "zca" in line and "Traceback" not in err
    assert not out.exists()  # refused before the run folder (and before the dataset is even built)


def test_zca_on_a_compdd_dataset_is_refused_with_one_line(cli, tiny_run_args, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, err = cli(*tiny_run_args("--plugin", "compdd", "--dataset", "compdd/proxy-easy", "--set", "zca=true", out=out))
    line = _one_error_line(err)
    assert code == 2 and "zca" in line and "compdd/proxy-easy" in line and "Traceback" not in err
    assert not out.exists()


def test_edf_torchvision_cam_model_gets_the_same_input_on_zca_data(dd_context, datasets, tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    from ddcore_edf.config import EDFConfig
    from ddcore_edf.maps import CamMaps

    root, _, _ = datasets
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = torchvision.models.resnet18(weights=None, num_classes=10).state_dict()
    weights = tmp_path / "resnet18.pt"
    torch.save(state, weights)
    edf = {"cam_model": "torchvision:resnet18", "cam_weights": str(weights), "cam_method": "gradcam"}
    logits = []
    for zca in (False, True):
        ctx = dd_context(plugins=["edf"], dataset="cifar10", data_root=str(root), image_size=SIDE, zca=zca,
                         distill="tm", tm={"checkpoint_every": 0}, plugin={"edf": edf})  # fmt: skip
        maps = CamMaps.build(ctx, EDFConfig(**edf).resolved(1))
        with torch.no_grad():
            logits.append(maps.model(_images(ctx.dataset, 4).to(ctx.device)).cpu())
    torch.testing.assert_close(logits[1], logits[0], atol=1e-3, rtol=1e-3)  # same pixels in, same logits out


def test_an_external_set_of_pixels_is_whitened_on_a_zca_dataset(datasets, tmp_path) -> None:
    """``dd eval --distilled`` of pixel values (another repository's PNGs or [0, 1] tensors) on ``zca = true``:
    the images evaluated are the dataset's own whitened images, not raw pixels with mean/std 0/1."""
    from ddcore.external import read_external, to_distilled

    _, plain, white = datasets
    images, labels = plain.load("train", list(range(10)))
    torch.save({"images": plain.denormalize(images), "labels": labels}, tmp_path / "pixels.pt")
    distilled, record = to_distilled(read_external(tmp_path / "pixels.pt", "01"), white)
    assert torch.allclose(distilled.images, white.load("train", list(range(10)))[0], atol=1e-4)
    assert "whitened with the dataset's ZCA" in record["assumed"]
    torch.save({"images": white.load("train", list(range(10)))[0], "labels": labels}, tmp_path / "white.pt")
    distilled, record = to_distilled(read_external(tmp_path / "white.pt"), white)  # MTT's ZCA sets: taken as saved
    assert torch.equal(distilled.images, white.load("train", list(range(10)))[0])
    assert "already ZCA-whitened" in record["assumed"]
