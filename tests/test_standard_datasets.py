"""The standard benchmarks read from tiny files in their real on-disk formats (nothing is downloaded).

CIFAR python pickle batches, MNIST/Fashion-MNIST idx files, a Tiny-ImageNet tree with its flat val/ and
annotations file, ImageNette/ImageWoof trees of the subsets' wnids; ZCA whitening and its inverse; one
``dd run --dataset cifar10`` end to end.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ddcore.data.base import DatasetOptions
from ddcore.data.standard.cifar import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, load_cifar
from ddcore.data.standard.imagenette import SUBSETS, load_imagenette
from ddcore.data.standard.mnist import load_mnist
from ddcore.data.standard.tinyimagenet import load_tiny_imagenet
from ddcore.datasig import data_signature, dataset_fingerprint
from ddcore.errors import ConfigError
from ddcore.presets import resolve_model

# ----------------------------------------------------------------------------------------------
# Writers of the real formats
# ----------------------------------------------------------------------------------------------


def write_cifar(root: Path, *, per_batch: int = 3, classes: int = 10, hundred: bool = False, seed: int = 0) -> dict:
    """CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) pickles; returns what was written."""
    rng = np.random.default_rng(seed)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = {}
    for b, name in enumerate(names):
        data = rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8)  # rows: R plane, G plane, B plane
        first = 0 if "test" in name else b * per_batch  # every class present once there are enough images
        labels = [(first + j) % classes for j in range(per_batch)]
        entry = {"data": data, ("fine_labels" if hundred else "labels"): labels}
        if hundred:
            entry["coarse_labels"] = [0] * per_batch
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
        written[name] = (data, labels)
    meta = {"fine_label_names": [f"fine{i}" for i in range(classes)]} if hundred else {"label_names": [f"class{i}" for i in range(classes)]}
    with open(folder / ("meta" if hundred else "batches.meta"), "wb") as f:
        pickle.dump(meta, f)
    return written


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file (big-endian header: 0, 0, type 0x08 = ubyte, number of dims; then each dim as int32)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">i", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 6, n_test: int = 4) -> dict:
    rng = np.random.default_rng(1)
    written = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        written[prefix] = (images, labels)
    return written


TINY_WNIDS = ["n02", "n01", "n03"]  # not sorted on purpose: classes are the sorted wnids
TINY_WORDS = {"n01": "goldfish, Carassius auratus", "n02": "crane", "n03": "crane", "n99": "unused"}
TINY_COLOURS = {"n01": (255, 0, 0), "n02": (0, 255, 0), "n03": (0, 0, 255)}


def write_tiny(root: Path) -> Path:
    """A Tiny-ImageNet tree: 2 training images per class, 4 flat val images with annotations (JPEG, 64 px)."""
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    (root / "words.txt").write_text("".join(f"{w}\t{n}\n" for w, n in TINY_WORDS.items()))
    for wnid in TINY_WNIDS:
        folder = root / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(folder / f"{wnid}_{i}.JPEG", quality=95)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    (root / "val" / "images").mkdir(parents=True)
    val = [("val_0.JPEG", "n03"), ("val_1.JPEG", "n01"), ("val_2.JPEG", "n02"), ("val_3.JPEG", "n01")]
    for file, wnid in val:
        Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(root / "val" / "images" / file, quality=95)
    (root / "val" / "val_annotations.txt").write_text("".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in val))
    return root


def write_imagenette(root: Path, subset: str = "imagenette") -> list[str]:
    """fast.ai's layout: train/<wnid>/ and val/<wnid>/, one JPEG each of a class-specific grey level, odd sizes."""
    from ddcore_data import imagenet_class_index

    index = imagenet_class_index()
    wnids = sorted(index[i][0] for i in SUBSETS[subset])
    for split in ("train", "val"):
        for k, wnid in enumerate(wnids):
            (root / split / wnid).mkdir(parents=True)
            Image.new("RGB", (160 + 10 * k, 120), (20 * k, 20 * k, 20 * k)).save(root / split / wnid / f"{wnid}_1.JPEG")
    return wnids


# ----------------------------------------------------------------------------------------------
# CIFAR
# ----------------------------------------------------------------------------------------------


def test_cifar10_reads_the_pickle_batches_with_their_layout_names_and_normalisation(tmp_path: Path) -> None:
    written = write_cifar(tmp_path)
    ds = load_cifar("cifar10", DatasetOptions(root=tmp_path))
    assert ds.name == "cifar10" and ds.image_shape == (3, 32, 32) and (len(ds.train), len(ds.test)) == (15, 3)
    assert ds.class_names == [f"class{i}" for i in range(10)]  # from batches.meta
    assert ds.mean == CIFAR10_MEAN and ds.std == CIFAR10_STD and ds.whitening is None
    data, labels = written["data_batch_2"]  # the 5th training image is batch 2's 2nd row
    image, label = ds.train[4]
    row = data[1].reshape(3, 32, 32).astype(np.float32) / 255.0  # channel planes in the order R, G, B
    expected = (torch.from_numpy(row) - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert label == labels[1] and torch.allclose(image, expected, atol=1e-6)
    test_data, test_labels = written["test_batch"]
    assert ds.test.targets == test_labels
    assert torch.allclose(ds.denormalize(ds.test[2][0][None])[0], torch.from_numpy(test_data[2].reshape(3, 32, 32) / 255.0).float(), atol=1e-6)
    assert resolve_model(ds).depth == 3  # ConvNetD3 at 32 px


def test_cifar100_reads_fine_labels_and_its_own_statistics(tmp_path: Path) -> None:
    written = write_cifar(tmp_path, per_batch=4, classes=100, hundred=True)
    ds = load_cifar("cifar100", DatasetOptions(root=tmp_path))
    assert ds.num_classes == 100 and ds.class_names[7] == "fine7" and ds.mean == CIFAR100_MEAN
    assert ds.train.targets == written["train"][1] and ds.test.targets == written["test"][1]


def test_cifar_missing_root_or_file_is_one_line_naming_the_layout(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_cifar("cifar10", DatasetOptions(root=None))
    text = str(err.value)
    assert "\n" not in text and "cifar-10-batches-py/{data_batch_1" in text and "--data-root" in text and "downloaded" in text
    with pytest.raises(ConfigError, match=r"does not exist; dataset cifar10 expects <root>/cifar-10-batches-py/.*--data-root"):
        load_cifar("cifar10", DatasetOptions(root=tmp_path / "nowhere"))
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ConfigError) as err:
        load_cifar("cifar10", DatasetOptions(root=tmp_path))
    text = str(err.value)
    assert "\n" not in text and f"{tmp_path / 'cifar-10-batches-py' / 'data_batch_3'} is missing" in text and "--data-root" in text


def test_a_file_that_is_not_a_cifar_batch_is_one_line(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match=r"cannot read the CIFAR files in .*cifar-10-batches-py: .*--data-root") as err:
        load_cifar("cifar10", DatasetOptions(root=tmp_path))
    assert "\n" not in str(err.value)


def test_empty_batches_are_refused_with_one_line(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=0)
    with pytest.raises(ConfigError, match=r"dataset cifar10 has 0 training and 0 test images; it needs at least 2 and 1"):
        load_cifar("cifar10", DatasetOptions(root=tmp_path, zca=True))


def test_cifar_image_size_resizes_and_the_fingerprint_follows_the_pixels(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    ds = load_cifar("cifar10", DatasetOptions(root=tmp_path, image_size=64))
    assert ds.image_shape == (3, 64, 64) and ds.train[0][0].shape == (3, 64, 64) and resolve_model(ds).depth == 4
    first = dataset_fingerprint(load_cifar("cifar10", DatasetOptions(root=tmp_path)))
    assert dataset_fingerprint(load_cifar("cifar10", DatasetOptions(root=tmp_path))) == first  # same files, same value
    path = tmp_path / "cifar-10-batches-py" / "data_batch_5"
    entry = pickle.loads(path.read_bytes())
    entry["data"][0, 0] ^= 1  # one pixel of one image
    path.write_bytes(pickle.dumps(entry))
    assert dataset_fingerprint(load_cifar("cifar10", DatasetOptions(root=tmp_path))) != first


# ----------------------------------------------------------------------------------------------
# ZCA
# ----------------------------------------------------------------------------------------------


def reference_zca(x: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """MTT's ZCA by hand (float64): mean and ``W = U (S + eps)^-1/2 U^T`` of the unbiased covariance."""
    flat = x.reshape(len(x), -1)
    mu = flat.mean(0, keepdims=True)
    cov = (flat - mu).T @ (flat - mu) / (len(x) - 1)
    s, u = np.linalg.eigh(cov)
    return mu, u @ np.diag(1.0 / np.sqrt(s + eps)) @ u.T


def test_zca_whitens_with_the_train_fit_and_its_inverse_restores_the_pixels(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_batch=6)
    plain = load_cifar("cifar10", DatasetOptions(root=tmp_path, image_size=4))
    ds = load_cifar("cifar10", DatasetOptions(root=tmp_path, image_size=4, zca=True))
    assert ds.mean == (0.0, 0.0, 0.0) and ds.std == (1.0, 1.0, 1.0)  # MTT: ZCA replaces the mean/std normalisation
    pixels = plain.denormalize(plain.load("train", range(30))[0]).double().numpy()  # [30, 3, 4, 4] in [0, 1]
    test_pixels = plain.denormalize(plain.load("test", range(6))[0]).double().numpy()
    mu, w = reference_zca(pixels, 0.1)
    white_train, _ = ds.load("train", range(30))
    white_test, _ = ds.load("test", range(6))
    assert np.allclose(white_train.reshape(30, -1).numpy(), (pixels.reshape(30, -1) - mu) @ w, atol=1e-4)
    assert np.allclose(white_test.reshape(6, -1).numpy(), (test_pixels.reshape(6, -1) - mu) @ w, atol=1e-4)  # train fit
    assert torch.allclose(ds.denormalize(white_test), torch.from_numpy(test_pixels).float(), atol=1e-4)
    from ddcore.distilled import DistilledSet

    distilled = DistilledSet(white_test, torch.zeros(6, dtype=torch.long), ds.class_names, ds.mean, ds.std)
    assert torch.allclose(ds.viewable(distilled).images, torch.from_numpy(test_pixels).float(), atol=1e-4)
    assert plain.viewable(distilled) is distilled  # no whitening: the set itself


def test_zca_is_recorded_in_the_signature_and_changes_the_fingerprint(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    plain = load_cifar("cifar10", DatasetOptions(root=tmp_path, image_size=4))
    white = load_cifar("cifar10", DatasetOptions(root=tmp_path, image_size=4, zca=True))
    assert "whitening" not in data_signature(plain)
    record = data_signature(white)["whitening"]
    assert record["method"] == "zca" and record["eps"] == 0.1 and record["fitted_images"] == 15 and record["features"] == 48
    assert dataset_fingerprint(plain) != dataset_fingerprint(white)
    json.dumps(data_signature(white))  # JSON-able, as saved with a distilled set
    from ddcore.datasig import check_signature

    for saved, other in ((white, plain), (plain, white)):  # a ZCA set on plain data and back: refused
        with pytest.raises(ConfigError, match=r"normalisation mean .* saved, the data uses"):
            check_signature(data_signature(saved), other, what="the set", fix="fix")


def test_zca_on_a_dataset_without_it_is_refused_by_the_registry(tmp_path: Path) -> None:
    from ddcore.builtin import datasets
    from ddcore.data.registry import DatasetRegistry

    registry = DatasetRegistry()
    datasets.dd_register_datasets(registry.registrar("datasets"))
    write_imagenette(tmp_path)
    with pytest.raises(ConfigError, match=r'dataset "imagenette" does not support ZCA whitening .*zca = false'):
        registry.build("imagenette", DatasetOptions(root=tmp_path, zca=True))
    assert registry.build("imagenette", DatasetOptions(root=tmp_path)).whitening is None
    with pytest.raises(ConfigError, match=r"dataset mnist reads local files"):
        registry.build("mnist", DatasetOptions(zca=True))  # layout problems come first
    for name in ("cifar10", "cifar100", "mnist", "fashion-mnist", "tiny-imagenet", "imagenette", "imagewoof"):
        assert name in registry.names()


# ----------------------------------------------------------------------------------------------
# MNIST, Fashion-MNIST
# ----------------------------------------------------------------------------------------------


def test_mnist_reads_idx_files_at_28_px(tmp_path: Path) -> None:
    written = write_mnist(tmp_path)
    ds = load_mnist("mnist", DatasetOptions(root=tmp_path))
    assert ds.image_shape == (1, 28, 28) and (len(ds.train), len(ds.test)) == (6, 4)
    assert ds.class_names == [str(d) for d in range(10)] and ds.mean == (0.1307,) and ds.std == (0.3081,)
    images, labels = written["t10k"]
    image, label = ds.test[3]
    assert label == labels[3] and torch.allclose(image[0], (torch.from_numpy(images[3]).float() / 255 - 0.1307) / 0.3081, atol=1e-5)
    assert ds.extra["default_augment"] == "crop" and resolve_model(ds).depth == 3  # ConvNetD3 at 28 px
    bigger = load_mnist("mnist", DatasetOptions(root=tmp_path, image_size=32))
    assert bigger.image_shape == (1, 32, 32) and bigger.train[0][0].shape == (1, 32, 32)


def test_fashion_mnist_has_its_own_folder_names_and_statistics(tmp_path: Path) -> None:
    write_mnist(tmp_path, folder="FashionMNIST")
    ds = load_mnist("fashion-mnist", DatasetOptions(root=tmp_path))
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot" and ds.mean == (0.2861,)
    with pytest.raises(ConfigError, match=r"MNIST/raw/train-images-idx3-ubyte is missing and 3 more.*--data-root"):
        load_mnist("mnist", DatasetOptions(root=tmp_path))  # an MNIST run pointed at Fashion-MNIST's files


def test_a_gzipped_idx_file_asks_to_unpack_it(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "t10k-labels-idx1-ubyte").rename(raw / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(ConfigError, match=r"t10k-labels-idx1-ubyte.gz is still compressed; unpack it"):
        load_mnist("mnist", DatasetOptions(root=tmp_path))


# ----------------------------------------------------------------------------------------------
# Tiny-ImageNet
# ----------------------------------------------------------------------------------------------


def test_tiny_imagenet_reads_its_tree_and_the_flat_val_split_by_its_annotations(tmp_path: Path) -> None:
    root = write_tiny(tmp_path / "tiny-imagenet-200")
    ds = load_tiny_imagenet(DatasetOptions(root=root))
    assert ds.image_shape == (3, 64, 64) and (len(ds.train), len(ds.test)) == (6, 4)
    assert ds.class_names == ["goldfish", "crane (n02)", "crane (n03)"]  # sorted wnids; first synonym, made unique
    assert ds.test.targets == [2, 0, 1, 0]  # val_0..3 annotated n03, n01, n02, n01
    assert resolve_model(ds).depth == 4  # ConvNetD4 at 64 px
    for split in ("train", "test"):
        for index, label in enumerate(ds.split(split).targets):  # each image has its class's colour
            pixels = ds.denormalize(ds.split(split)[index][0][None])[0].mean(dim=(1, 2))
            assert int(pixels.argmax()) == {0: 0, 1: 1, 2: 2}[label]  # goldfish red, n02 green, n03 blue
    assert load_tiny_imagenet(DatasetOptions(root=root, image_size=32)).train[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "val" / "val_annotations.txt").unlink(), r"val_annotations.txt is missing.*--data-root"),
        (lambda r: (r / "wnids.txt").unlink(), r"wnids.txt is missing; expected <root>/wnids.txt"),
        (lambda r: (r / "val" / "images" / "val_2.JPEG").unlink(), r"line 3: .*val_2.JPEG is missing"),
        (lambda r: (r / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn77\t0 0 1 1\n"), r"wnid n77 is not in wnids.txt"),
        (lambda r: [p.unlink() for p in (r / "train" / "n01" / "images").iterdir()], r"no images .* train/n01/images"),
    ],
)
def test_tiny_imagenet_layout_problems_are_one_line(tmp_path: Path, damage, message: str) -> None:
    root = write_tiny(tmp_path / "tiny")
    damage(root)
    with pytest.raises(ConfigError, match=message) as err:
        load_tiny_imagenet(DatasetOptions(root=root))
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------
# ImageNette, ImageWoof
# ----------------------------------------------------------------------------------------------


def test_imagenette_reads_fastai_folders_with_imagenet_names_at_128_px(tmp_path: Path) -> None:
    wnids = write_imagenette(tmp_path)
    ds = load_imagenette("imagenette", DatasetOptions(root=tmp_path))
    assert wnids[0] == "n01440764" and ds.class_names[0] == "tench" and ds.class_names[-1] == "parachute"
    assert ds.image_shape == (3, 128, 128) and ds.train[3][0].shape == (3, 128, 128) and resolve_model(ds).depth == 5
    grey = ds.denormalize(ds.test[3][0][None])[0]
    assert torch.allclose(grey, torch.full_like(grey, 60 / 255), atol=2 / 255)  # class 3's level, any JPEG rounding
    assert load_imagenette("imagenette", DatasetOptions(root=tmp_path, image_size=64)).image_shape == (3, 64, 64)


def test_imagewoof_names_the_missing_wnids_when_pointed_at_imagenette(tmp_path: Path) -> None:
    write_imagenette(tmp_path)
    with pytest.raises(ConfigError, match=r"class folders of .*train are not the imagewoof wnids \(missing n02086240") as err:
        load_imagenette("imagewoof", DatasetOptions(root=tmp_path))
    assert "\n" not in str(err.value) and "--data-root" in str(err.value)
    woof = tmp_path / "woof"
    write_imagenette(woof, "imagewoof")
    ds = load_imagenette("imagewoof", DatasetOptions(root=woof))
    assert ds.class_names[0] == "Shih-Tzu" and len(ds.class_names) == 10


# ----------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_dd_run_on_a_cifar10_tree_end_to_end(cli, tiny_run_args, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_cifar(root)
    args = tiny_run_args("--dataset", "cifar10", "--data-root", root)
    code, out, err = cli(*args, "--eval-runs", "1", "--eval-epochs", "1", "--set", "eval.width=4", "--set", "eval.batch_size=8")
    assert code == 0, err
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["dataset"] == "cifar10" and manifest["config"]["zca"] is False
    assert manifest["dataset"]["class_names"][0] == "class0" and manifest["dataset"]["image_shape"] == [3, 32, 32]
    assert manifest["dataset"]["mean"] == list(CIFAR10_MEAN) and manifest["records"]["model"]["depth"] == 3
    saved = torch.load(run / "distilled.pt", weights_only=True)
    assert list(saved["images"].shape) == [10, 3, 32, 32] and "whitening" not in saved["data"]
    with Image.open(run / "grid.png") as grid:
        assert grid.mode == "RGB"
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["eval/acc_mean"] <= 100.0


@pytest.mark.slow
def test_a_zca_run_draws_its_grid_with_the_whitening_undone(cli, tiny_run_args, tmp_path: Path, monkeypatch) -> None:
    from ddcore import artifacts

    root = tmp_path / "data"
    write_cifar(root)
    drawn = []
    original = artifacts.save_grid
    monkeypatch.setattr(artifacts, "save_grid", lambda distilled, path: (drawn.append(distilled), original(distilled, path)))
    code, _, err = cli(*tiny_run_args("--dataset", "cifar10", "--data-root", root, "--image-size", 8, "--set", "zca=true"))
    assert code == 0, err
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["config"]["zca"] is True and "ZCA-whitened" in manifest["dataset"]["description"]
    saved = torch.load(run / "distilled.pt", weights_only=True)
    assert saved["data"]["whitening"]["method"] == "zca" and saved["mean"] == [0.0, 0.0, 0.0]
    plain = load_cifar("cifar10", DatasetOptions(root=root, image_size=8))
    pixels = plain.denormalize(plain.load("train", range(len(plain.train)))[0])  # [15, 3, 8, 8] in [0, 1]
    (shown,) = drawn
    assert shown.images.shape == (10, 3, 8, 8) and not torch.allclose(saved["images"], shown.images, atol=1e-2)
    for image in shown.images:  # each drawn image is one of the real images' pixels, not its whitened values
        assert (pixels - image).flatten(1).abs().amax(1).min() < 1e-3
    assert (run / "grid.png").is_file()


def test_dd_run_without_the_files_is_one_line_and_writes_nothing(cli, tiny_run_args, tmp_path: Path) -> None:
    for extra in ((), ("--data-root", tmp_path / "missing")):
        code, _, err = cli(*tiny_run_args("--dataset", "cifar10", *extra))
        errors = [line for line in err.splitlines() if line.startswith("Error")]
        assert code == 2 and "Traceback" not in err and len(errors) == 1, err
        assert "cifar-10-batches-py/{data_batch_1" in errors[0] and "--data-root" in errors[0]
        assert not (tmp_path / "run").exists()


def test_dd_datasets_lists_the_standard_benchmarks(cli, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code, out, err = cli("datasets", "--active-only")
    assert code == 0, err
    for name in ("cifar10", "cifar100", "mnist", "fashion-mnist", "tiny-imagenet", "imagenette", "imagewoof"):
        assert f"\n│ {name} " in out or f"\n┃ {name} " in out, out
