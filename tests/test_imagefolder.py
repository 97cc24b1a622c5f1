"""The ``imagefolder`` dataset: layout checks, streaming decode, worker loading, error messages."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddcore.data.base import DatasetOptions
from ddcore.data.decode import DECODE_VERSION
from ddcore.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, FolderSplit, ImageReadError, load_imagefolder
from ddcore.errors import ConfigError

# Folder names are deliberately not in label order on disk: sorted -> bird (0), cat (1), dog (2).
COLOURS = {"dog": (0, 0, 255), "bird": (255, 0, 0), "cat": (0, 255, 0)}
SIZES = [(32, 32), (50, 20), (17, 40)]  # (width, height), one square, one wide, one tall


def expected_pixel(rgb: tuple[int, int, int]) -> torch.Tensor:
    """The normalised value ``[3]`` of a pixel with 0-255 colour ``rgb``."""
    return (torch.tensor(rgb) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)


def make_tree(root: Path, train_per_class: int = 3, val_per_class: int = 2) -> Path:
    """root/{train,val}/{bird,cat,dog}/ with solid-colour PNG and JPEG images, plus files to ignore."""
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, colour in COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                suffix = [".png", ".JPG", ".jpeg"][i % 3]
                Image.new("RGB", SIZES[i % len(SIZES)], colour).save(folder / f"img{i}{suffix}")
            (folder / "notes.txt").write_text("not an image")
            (folder / ".hidden.png").write_bytes(b"AppleDouble junk")
    (root / "train" / "README.md").write_text("a file next to the class folders is ignored")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "data")


def test_classes_labels_and_counts(tree: Path) -> None:
    ds = load_imagefolder(DatasetOptions(root=tree, image_size=32))  # sizes differ: the size must be given
    assert ds.name == "imagefolder"
    assert ds.class_names == ["bird", "cat", "dog"]
    assert ds.num_classes == 3
    assert len(ds.train) == 9 and len(ds.test) == 6
    assert ds.train.targets == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert ds.indices_by_class("train") == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert ds.indices_by_class("test") == [[0, 1], [2, 3], [4, 5]]
    assert ds.class_counts("test") == [2, 2, 2]
    assert isinstance(ds.train, FolderSplit) and isinstance(ds.test, FolderSplit)
    assert all("/train/" in p for p in ds.train.paths) and all("/val/" in p for p in ds.test.paths)
    assert ds.image_shape == (3, 32, 32)
    assert ds.mean == IMAGENET_MEAN and ds.std == IMAGENET_STD
    assert ds.extra == {
        "default_augment": "crop_flip",
        "root": str(tree.absolute()),
        "image_size_from": "option",
        "headers_read": 15,
        "decode_version": DECODE_VERSION,
    }
    assert "3 classes" in ds.description and "RGB 32x32 (--image-size" in ds.description


def test_pixels_are_normalised_with_imagenet_stats(tree: Path) -> None:
    ds = load_imagefolder(DatasetOptions(root=tree, image_size=32))
    image, label = ds.train[0]  # bird/img0.png: lossless pure red
    assert label == 0
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    red = expected_pixel((255, 0, 0))
    assert torch.allclose(image, red.view(3, 1, 1).expand(3, 32, 32), atol=1e-5)
    assert torch.allclose(ds.denormalize(image[None]), torch.tensor([1.0, 0, 0]).view(1, 3, 1, 1), atol=1e-5)
    # JPEG is lossy: green class image 1 (.JPG, 50x20) is only close to pure green
    image, label = ds.train[4]
    assert label == 1
    assert torch.allclose(image.mean(dim=(1, 2)), expected_pixel((0, 255, 0)), atol=0.1)


def test_non_square_images_are_resized_and_center_cropped(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "data", train_per_class=1, val_per_class=1)
    # 90x30: blue | red | blue thirds. Shorter side 30 -> 12 gives 36x12; the center 12x12 is the red third.
    wide = Image.new("RGB", (90, 30), (0, 0, 255))
    wide.paste((255, 0, 0), (30, 0, 60, 30))
    wide.save(root / "train" / "cat" / "wide.png")
    tall = Image.new("RGB", (10, 31), (0, 255, 0))  # odd, tall, smaller than the target size
    tall.save(root / "train" / "cat" / "tall.png")
    ds = load_imagefolder(DatasetOptions(root=root, image_size=12))
    assert ds.image_shape == (3, 12, 12)
    paths = [Path(p).name for p in ds.train.paths]
    assert paths == ["img0.png", "img0.png", "tall.png", "wide.png", "img0.png"]

    image, label = ds.train[3]
    assert label == 1 and image.shape == (3, 12, 12)
    red = expected_pixel((255, 0, 0)).view(3, 1, 1)
    assert torch.allclose(image[:, :, 1:-1], red.expand(3, 12, 10), atol=1e-5)  # no blue left but the blended edge
    image, _ = ds.train[2]
    assert image.shape == (3, 12, 12)
    assert torch.allclose(image, expected_pixel((0, 255, 0)).view(3, 1, 1).expand(3, 12, 12), atol=1e-5)


def test_loader_with_worker_processes(tree: Path) -> None:
    ds = load_imagefolder(DatasetOptions(root=tree, image_size=8, workers=2))
    assert ds.workers == 2
    batches = list(ds.loader("train", batch_size=2))
    assert [b[0].shape[0] for b in batches] == [2, 2, 2, 2, 1]
    images = torch.cat([b[0] for b in batches])
    labels = torch.cat([b[1] for b in batches])
    assert images.shape == (9, 3, 8, 8)
    assert labels.tolist() == ds.train.targets


def test_load_selected_test_images(tree: Path) -> None:
    ds = load_imagefolder(DatasetOptions(root=tree, image_size=16))
    images, labels = ds.load("test", [0, 1, 5])
    assert images.shape == (3, 3, 16, 16)
    assert labels.dtype == torch.long and labels.tolist() == [0, 0, 2]
    means = images.mean(dim=(2, 3))
    assert torch.allclose(means[0], expected_pixel((255, 0, 0)), atol=0.1)  # bird is red
    assert torch.allclose(means[2], expected_pixel((0, 0, 255)), atol=0.1)  # dog is blue


def test_split_pickles_without_images(tree: Path) -> None:
    split = load_imagefolder(DatasetOptions(root=tree, image_size=32)).train
    data = pickle.dumps(split)
    assert len(data) < 5000
    clone = pickle.loads(data)
    assert clone.targets == split.targets
    assert torch.equal(clone[0][0], split[0][0])


@pytest.mark.parametrize("root", [None, ""])
def test_root_not_given(root) -> None:
    with pytest.raises(ConfigError, match="--data-root") as err:
        load_imagefolder(DatasetOptions(root=root))
    assert "train" in str(err.value) and "\n" not in str(err.value)


def test_root_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist .*--data-root") as err:
        load_imagefolder(DatasetOptions(root=tmp_path / "nowhere"))
    assert str(tmp_path / "nowhere") in str(err.value)


def test_root_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_imagefolder(DatasetOptions(root=tmp_path / "file"))


@pytest.mark.parametrize("split", ["train", "val"])
def test_split_folder_missing(tree: Path, split: str) -> None:
    shutil.rmtree(tree / split)
    with pytest.raises(ConfigError, match=rf"has no {split}/ folder.*--data-root"):
        load_imagefolder(DatasetOptions(root=tree))


def test_no_class_folders(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "train" / "loose.png")  # images must sit in class folders
    with pytest.raises(ConfigError, match="has no class folders"):
        load_imagefolder(DatasetOptions(root=tmp_path))


def test_empty_class_folder_is_named(tree: Path) -> None:
    for path in (tree / "train" / "cat").glob("img*"):
        path.unlink()  # notes.txt and .hidden.png remain: neither counts
    with pytest.raises(ConfigError, match=r"no images .*train/cat \(option --data-root") as err:
        load_imagefolder(DatasetOptions(root=tree))
    assert "dog" not in str(err.value) and "bird" not in str(err.value)


def test_empty_val_class_folder_is_named(tree: Path) -> None:
    for path in (tree / "val" / "dog").glob("img*"):
        path.unlink()
    with pytest.raises(ConfigError, match=r"no images .*val/dog"):
        load_imagefolder(DatasetOptions(root=tree))


def test_class_mismatch_between_train_and_val(tree: Path) -> None:
    shutil.rmtree(tree / "val" / "cat")
    (tree / "val" / "fish").mkdir()
    (tree / "val" / "eel").mkdir()
    with pytest.raises(ConfigError) as err:
        load_imagefolder(DatasetOptions(root=tree))
    message = str(err.value)
    assert "missing from val/: cat" in message and "not in train/: eel, fish" in message
    assert "--data-root" in message and "\n" not in message


def test_bad_image_size(tree: Path) -> None:
    with pytest.raises(ConfigError, match="--image-size"):
        load_imagefolder(DatasetOptions(root=tree, image_size=-4))


def test_an_unreadable_header_is_named_at_construction(tree: Path) -> None:
    bad = tree / "val" / "cat" / "zz_broken.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="cannot read image") as err:
        load_imagefolder(DatasetOptions(root=tree, image_size=32))  # headers are read: caught before any work
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def truncated_jpeg(path: Path) -> Path:
    """A 64x64 noise JPEG cut in half: its header opens, its pixels do not decode."""
    noise = torch.randint(0, 256, (64, 64, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    full = path.with_suffix(".full")  # not an image suffix: never listed
    Image.fromarray(noise.numpy()).save(full, format="JPEG", quality=95)
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    full.unlink()
    return path


def test_a_truncated_image_names_the_file_when_loaded(tree: Path) -> None:
    bad = truncated_jpeg(tree / "val" / "cat" / "zz_broken.jpg")
    ds = load_imagefolder(DatasetOptions(root=tree, image_size=32))  # the header is fine: construction succeeds
    index = ds.test.paths.index(str(bad))
    with pytest.raises(ConfigError, match="cannot read image") as err:
        ds.test[index]
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_image_in_a_worker_process_keeps_a_one_line_message(tree: Path) -> None:
    bad = truncated_jpeg(tree / "train" / "cat" / "zz_broken.jpg")
    ds = load_imagefolder(DatasetOptions(root=tree, image_size=8, workers=2))
    with pytest.raises(ConfigError, match="cannot read image") as err:
        list(ds.loader("train", batch_size=4))
    assert isinstance(err.value, ImageReadError)
    assert str(err.value).startswith(f"cannot read image {bad}: ") and "\n" not in str(err.value)
