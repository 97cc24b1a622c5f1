"""The standard datasets as a new user meets them: MNIST at its own 28 px, one-network std, ``--data-root``
help and hints, CIFAR pickles with bytes keys (issue 16's fresh-user findings)."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from core_support import assert_cli_error
from rich.console import Console
from test_standard_datasets import write_cifar, write_idx, write_imagenette, write_mnist, write_tiny

from ddcore.data.base import DatasetOptions
from ddcore.data.standard.cifar import CIFAR10_MEAN, CIFAR10_STD, load_cifar
from ddcore.data.standard.imagenette import load_imagenette
from ddcore.data.standard.mnist import load_mnist
from ddcore.data.standard.tinyimagenet import load_tiny_imagenet
from ddcore.errors import ConfigError
from ddcore.evaluation import paired_difference, spread, summarise
from ddcore.models import ConvNet, ModelSpec, build_model
from ddcore.models.convnet import pooled_side

# ----------------------------------------------------------------------------------------------
# 1. ConvNet at 28 px: every 2x2 pooling floors the side (DC/MTT's feature shape)
# ----------------------------------------------------------------------------------------------


def test_convnet_floors_odd_sides_as_the_reference_convnet_does():
    # DC/MTT's ConvNet halves its feature shape with integer division per pooling: 28 -> 14 -> 7 -> 3
    assert [pooled_side(28, d) for d in (1, 2, 3)] == [14, 7, 3]
    model = build_model(ModelSpec(width=8), num_classes=10, in_channels=1, image_size=28)
    assert model.classifier.in_features == 8 * 3 * 3  # 128 * 3 * 3 at the literature's width 128
    assert model.features(torch.zeros(2, 1, 28, 28)).shape == (2, 8, 3, 3)  # what the layers really give
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert ConvNet(10, 1, 28).classifier.in_features == 128 * 3 * 3


@pytest.mark.parametrize("size, depth", [(32, 3), (64, 4), (128, 5), (16, 2)])
def test_sides_divisible_by_the_pooling_keep_their_saved_shapes(size, depth):
    """A checkpoint of a divisible size still fits: the classifier takes width * (size / 2**depth)^2 as before."""
    model = build_model(ModelSpec(width=4, depth=depth), 10, 3, size)
    assert model.classifier.weight.shape == (10, 4 * (size // 2**depth) ** 2)


def test_a_size_a_pooling_would_take_to_zero_is_refused_by_name():
    with pytest.raises(ConfigError, match=r"model convnetd3 \(depth 3\) needs an image size of at least 8 px.*got 7"):
        build_model("convnetd3", 10, 1, 7)
    build_model(ModelSpec(name="convnetd3", width=4), 10, 1, 8)  # 8 -> 4 -> 2 -> 1: taken
    with pytest.raises(ValueError, match="smaller than 2\\*\\*depth"):
        ConvNet(10, 1, 4, depth=3)


MNIST_TM = ["--distill", "tm", "--set", "tm.iterations=2", "--set", "tm.syn_steps=2", "--set", "tm.max_start_epoch=1",
            "--set", "tm.cur_max_start_epoch=1", "--set", "experts.num=1", "--set", "experts.epochs=2",
            "--set", "experts.batch_size=512"]  # fmt: skip
TINY_EVAL = ["--eval-epochs", "1", "--set", "eval.width=8", "--set", "eval.batch_size=8"]


@pytest.mark.slow
def test_dd_run_mnist_at_its_default_28_px_with_trajectory_matching(cli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist(root, n_train=20, n_test=10)
    out = tmp_path / "run"
    code, _, err = cli("run", "--dataset", "mnist", "--data-root", root, "--ipc", "1", "--workers", "0", "--out", out,
                       "--cache-dir", tmp_path / "cache", "--eval-runs", "2", *TINY_EVAL, *MNIST_TM, "-q")  # fmt: skip
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dataset"]["image_shape"] == [1, 28, 28] and manifest["records"]["model"]["depth"] == 3
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert len(metrics["eval/acc_runs"]) == 2 and all(0.0 <= a <= 100.0 for a in metrics["eval/acc_runs"])
    assert metrics["eval/acc_std"] == pytest.approx(abs(metrics["eval/acc_runs"][0] - metrics["eval/acc_runs"][1]) / 2)
    saved = torch.load(out / "distilled.pt", weights_only=True)
    assert list(saved["images"].shape) == [10, 1, 28, 28]


@pytest.mark.slow
def test_dd_run_fashion_mnist_with_one_network_reports_no_std(cli, tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_mnist(root, folder="FashionMNIST", n_train=20, n_test=10)
    out = tmp_path / "run"
    code, stdout, err = cli("run", "--dataset", "fashion-mnist", "--data-root", root, "--ipc", "1", "--workers", "0",
                            "--out", out, "--cache-dir", tmp_path / "cache", "--eval-runs", "1", *TINY_EVAL)  # fmt: skip
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert len(metrics["eval/acc_runs"]) == 1 and metrics["eval/acc_mean"] == metrics["eval/acc_runs"][0]
    assert "eval/acc_std" not in metrics  # one network has no spread, not a spread of 0
    assert f"{metrics['eval/acc_mean']:.2f} ± n/a" in stdout and "± 0.00" not in stdout


# ----------------------------------------------------------------------------------------------
# 2. One network: no std
# ----------------------------------------------------------------------------------------------


def _rendered(metrics) -> str:
    from ddcore_cli.output import metrics_table

    console = Console(record=True, width=120)
    console.print(metrics_table(metrics))
    return console.export_text()


def test_one_value_has_no_std_in_the_summaries():
    assert summarise([61.5]) == {"acc_mean": 61.5, "acc_runs": [61.5]}  # no std key: one value has no spread
    assert summarise([60.0, 62.0])["acc_std"] == 1.0 and summarise([5.0, 5.0])["acc_std"] == 0.0
    assert spread([61.5]) is None and spread([60.0, 62.0]) == 1.0
    assert "std" not in paired_difference([80.0], [70.0]) and paired_difference([3.0, 5.0], [1.0, 1.0])["std"] == 2**0.5


def test_the_table_prints_n_a_for_one_network_and_the_std_of_two():
    assert "61.50 ± n/a" in _rendered({"eval/acc_mean": 61.5, "eval/acc_runs": [61.5]})
    assert "eval/acc_runs" in _rendered({"eval/acc_mean": 61.5, "eval/acc_runs": [61.5]})
    # a metrics file written before the std was left undefined recorded 0 for one network: still n/a
    assert "61.50 ± n/a" in _rendered({"eval/acc_mean": 61.5, "eval/acc_std": 0.0, "eval/acc_runs": [61.5]})
    # two networks that agree: a measured spread of 0
    assert "61.50 ± 0.00" in _rendered({"eval/acc_mean": 61.5, "eval/acc_std": 0.0, "eval/acc_runs": [61.5, 61.5]})
    assert "0.3007 ± n/a" in _rendered({"robustness/lrs_mean": 0.30071, "robustness/lrs_std": None})


# ----------------------------------------------------------------------------------------------
# 3. dd run --help names the datasets that need --data-root
# ----------------------------------------------------------------------------------------------


def test_data_root_help_lists_the_registered_local_datasets(cli):
    from ddcore.builtin import datasets
    from ddcore.data.registry import DatasetRegistry
    from ddcore_cli.run_cmd import LOCAL_DATASETS

    registry = DatasetRegistry()
    datasets.dd_register_datasets(registry.registrar("datasets"))
    assert set(LOCAL_DATASETS) == set(registry.names()) - {"digits", "imagefolder"}
    code, out, _ = cli("run", "--help")
    assert code == 0
    text = re.sub(r"(\w)- (\w)", r"\1-\2", " ".join(out.split()))  # the help wraps at any width, also at hyphens
    line = text[text.index("--data-root PATH"):text.index("--image-size")]
    assert "imagefolder" in line and "digits needs none" in line and "nothing is ever downloaded" in line
    for name in LOCAL_DATASETS:
        assert name in line


# ----------------------------------------------------------------------------------------------
# 4. A root one level off: "did you mean --data-root X"
# ----------------------------------------------------------------------------------------------


def _message(load, root) -> str:
    with pytest.raises(ConfigError) as err:
        load(DatasetOptions(root=root))
    text = str(err.value)
    assert "\n" not in text and "--data-root" in text
    return text


def test_cifar_root_one_level_off_names_the_right_one(tmp_path: Path):
    write_cifar(tmp_path / "data")
    cifar = lambda options: load_cifar("cifar10", options)  # noqa: E731
    assert f"did you mean --data-root {tmp_path / 'data'} " in _message(cifar, tmp_path / "data" / "cifar-10-batches-py")
    assert f"did you mean --data-root {tmp_path / 'data'} " in _message(cifar, tmp_path)  # the folder above
    (tmp_path / "data" / "cifar-10-batches-py" / "test_batch").unlink()
    assert "did you mean" not in _message(cifar, tmp_path)  # no complete tree nearby: no guess


def test_mnist_root_one_level_off_names_the_right_one(tmp_path: Path):
    write_mnist(tmp_path)
    mnist = lambda options: load_mnist("mnist", options)  # noqa: E731
    for off in (tmp_path / "MNIST" / "raw", tmp_path / "MNIST"):  # torchvision reads <root>/MNIST/raw/
        assert f"did you mean --data-root {tmp_path} " in _message(mnist, off)
    assert load_mnist("mnist", DatasetOptions(root=tmp_path)).image_shape == (1, 28, 28)


def test_tiny_imagenet_root_one_level_off_names_the_right_one(tmp_path: Path):
    root = write_tiny(tmp_path / "tiny-imagenet-200")
    for off in (tmp_path, root / "train", root / "val"):  # the zip's parent folder, or a split folder
        assert f"did you mean --data-root {root} " in _message(load_tiny_imagenet, off)


def test_imagenette_root_one_level_off_names_the_right_one(tmp_path: Path):
    root = tmp_path / "imagenette2-320"
    write_imagenette(root)
    nette = lambda options: load_imagenette("imagenette", options)  # noqa: E731
    for off in (tmp_path, root / "train"):
        assert f"did you mean --data-root {root} " in _message(nette, off)


# ----------------------------------------------------------------------------------------------
# 5. CIFAR pickles: the official Python 2 format loads; bytes keys are named
# ----------------------------------------------------------------------------------------------


def python2_pickle(entry: dict) -> bytes:
    """``entry`` pickled as Python 2 wrote the official batches: its keys as byte strings (``SHORT_BINSTRING``)
    that load as ``str`` with ``encoding="latin1"`` and as ``bytes`` with ``encoding="bytes"``."""
    data = pickle.dumps(entry, protocol=2)
    for key in entry:
        utf8 = key.encode()
        unicode_op = b"X" + len(utf8).to_bytes(4, "little") + utf8  # BINUNICODE: Python 3's str
        assert data.count(unicode_op) == 1, key
        data = data.replace(unicode_op, b"U" + len(utf8).to_bytes(1, "little") + utf8)  # SHORT_BINSTRING: Python 2's str
    return data


def test_the_official_python2_batches_load_with_their_keys(tmp_path: Path):
    written = write_cifar(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    for name in ("data_batch_1", "test_batch", "batches.meta"):
        entry = pickle.loads((folder / name).read_bytes())
        (folder / name).write_bytes(python2_pickle(entry))
    raw = (folder / "test_batch").read_bytes()
    assert set(pickle.loads(raw, encoding="bytes")) == {b"data", b"labels"}  # what the CIFAR page's snippet sees
    ds = load_cifar("cifar10", DatasetOptions(root=tmp_path))
    data, labels = written["test_batch"]
    image, label = ds.test[1]
    pixels = torch.from_numpy(data[1].reshape(3, 32, 32) / 255.0).float()
    expected = (pixels - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)
    assert label == labels[1] and torch.allclose(image, expected, atol=1e-6)
    assert ds.class_names[3] == "class3" and ds.train.targets[:3] == written["data_batch_1"][1]


@pytest.mark.parametrize("name", ["data_batch_3", "batches.meta"])
def test_a_batch_with_bytes_keys_is_one_line_naming_the_file(tmp_path: Path, name: str):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / name
    entry = pickle.loads(path.read_bytes())
    path.write_bytes(pickle.dumps({k.encode(): v for k, v in entry.items()}))  # re-saved after encoding="bytes"
    with pytest.raises(ConfigError) as err:
        load_cifar("cifar10", DatasetOptions(root=tmp_path))
    text = str(err.value)
    assert "\n" not in text and f"CIFAR file {path} has bytes keys (b'" in text and "--data-root" in text
    assert "KeyError" not in text


def test_a_batch_without_its_data_names_the_missing_key(tmp_path: Path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(pickle.dumps({"pixels": np.zeros((1, 3072), np.uint8), "labels": [0]}))
    with pytest.raises(ConfigError, match=rf"CIFAR file {path} lacks 'data' \(keys 'pixels', 'labels'\)"):
        load_cifar("cifar10", DatasetOptions(root=tmp_path))


# ----------------------------------------------------------------------------------------------
# 6. Damaged files are one line naming the file; packed archives and other trees are named
# ----------------------------------------------------------------------------------------------


def test_a_truncated_idx_file_names_the_file_and_its_sizes(tmp_path: Path):
    write_mnist(tmp_path, n_train=40)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    full = path.read_bytes()
    path.write_bytes(full[:20000])
    text = _message(lambda options: load_mnist("mnist", options), tmp_path)
    assert f"{path} is truncated: its header says 40 images of 28x28 ({16 + 40 * 28 * 28} bytes), the file has 20000 bytes" in text
    assert "RuntimeError" not in text and "shape" not in text


def test_an_idx_file_with_another_magic_is_not_an_idx_file(tmp_path: Path):
    write_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = bytearray(path.read_bytes())
    data[2:4] = b"\x09\x03"  # type 0x09 (signed byte) instead of 0x08
    path.write_bytes(bytes(data))
    text = _message(lambda options: load_mnist("mnist", options), tmp_path)
    assert f"{path} is not an idx file: magic 0x00000903, expected 0x00000803 (2051)" in text
    labels = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    path.write_bytes(labels.read_bytes())  # a labels file in the images' place
    assert f"{path} is not an idx file: magic 0x00000801, expected 0x00000803 (2051)" in _message(
        lambda options: load_mnist("mnist", options), tmp_path)


def test_a_label_count_unlike_the_image_count_names_both_files(tmp_path: Path):
    write_mnist(tmp_path, n_train=6)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.arange(5) % 10)
    text = _message(lambda options: load_mnist("mnist", options), tmp_path)
    assert "train-labels-idx1-ubyte holds 5 labels for 6 images in train-images-idx3-ubyte" in text


def test_a_truncated_cifar_batch_names_the_file(tmp_path: Path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:500])
    text = _message(lambda options: load_cifar("cifar10", options), tmp_path)
    assert f"{path.parent}: data_batch_3 is truncated or not a pickle" in text


@pytest.mark.parametrize("rows", [3, 1024])  # 1024 rows of 3000 regroup into exactly 1000 images of 3072
def test_a_cifar_batch_of_another_width_names_the_file_and_its_shape(tmp_path: Path, rows: int):
    write_cifar(tmp_path, per_batch=rows if rows < 100 else 2)
    folder = tmp_path / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] if rows > 100 else ["data_batch_2"]
    for name in names:
        (folder / name).write_bytes(pickle.dumps({"data": np.zeros((rows, 3000), np.uint8), "labels": [0] * rows}))
    text = _message(lambda options: load_cifar("cifar10", options), tmp_path)
    assert f"{names[0]}'s 'data' is [{rows}, 3000], expected [N, 3072] (32x32x3)" in text


def test_a_cifar_batch_with_fewer_labels_than_images_names_the_file(tmp_path: Path):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_4"
    path.write_bytes(pickle.dumps({"data": np.zeros((3, 3072), np.uint8), "labels": [0, 1]}))
    text = _message(lambda options: load_cifar("cifar10", options), tmp_path)
    assert "data_batch_4's 'labels' holds 2 labels for the 3 images of 'data'" in text


@pytest.mark.parametrize("name, archive", [("cifar10", "cifar-10-python.tar.gz"), ("cifar100", "cifar-100-python.tar.gz")])
def test_a_packed_cifar_archive_asks_to_unpack_it(tmp_path: Path, name: str, archive: str):
    (tmp_path / archive).write_bytes(b"\x1f\x8b")
    text = _message(lambda options: load_cifar(name, options), tmp_path)
    assert f"{tmp_path / archive} is still packed; unpack it (tar xzf {tmp_path / archive} -C {tmp_path})" in text


def test_a_nearby_mnist_tree_of_gz_files_is_named_with_unpack(tmp_path: Path):
    write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    for file in list(raw.iterdir()):
        file.rename(file.with_name(file.name + ".gz"))  # the names suffice for the layout hint
    mnist = lambda options: load_mnist("mnist", options)  # noqa: E731
    for off in (raw, tmp_path / "MNIST"):
        text = _message(mnist, off)
        assert "did you mean --data-root" not in text
        assert f"{tmp_path} holds the .gz files: unpack them (gunzip {raw}/*.gz) and pass --data-root {tmp_path}" in text


@pytest.mark.parametrize("name, other, tree", [("fashion-mnist", "mnist", "MNIST"), ("mnist", "fashion-mnist", "FashionMNIST")])
def test_the_other_mnist_tree_names_the_other_dataset(tmp_path: Path, name: str, other: str, tree: str):
    write_mnist(tmp_path, folder=tree)
    text = _message(lambda options: load_mnist(name, options), tmp_path)
    assert f"{tmp_path} holds {'an' if tree == 'MNIST' else 'a'} {tree} tree: did you mean --dataset {other}?" in text
    assert load_mnist(other, DatasetOptions(root=tmp_path)).image_shape == (1, 28, 28)
