"""ddcore.datasig: the content fingerprint, the data signature and the check of saved state against data.

Issue 13, kinds 2 and 3: a saved artefact is checked against the data it is used with (class names and
order, channels, image size, normalisation), and caches key on a fingerprint that changes with content.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from ddcore.data.base import DatasetOptions, ImageDataset, TensorSplit
from ddcore.data.imagefolder import load_imagefolder
from ddcore.datasig import (
    check_signature,
    data_check_record,
    data_signature,
    dataset_fingerprint,
    require_same_data,
    split_fingerprint,
)
from ddcore.distilled import DistilledSet
from ddcore.errors import ConfigError


def tensor_dataset(names=("a", "b", "c"), channels=1, side=8, seed=0, mean=0.0, std=1.0) -> ImageDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(names)).repeat_interleave(2)
    return ImageDataset(
        name="tiny", class_names=list(names),
        train=TensorSplit(torch.randn(len(labels), channels, side, side, generator=generator), labels),
        test=TensorSplit(torch.randn(len(labels), channels, side, side, generator=generator), labels),
        image_shape=(channels, side, side), mean=(mean,) * channels, std=(std,) * channels,
    )  # fmt: skip


def make_tree(root: Path, classes=("bird", "cat", "dog"), per_class: int = 2) -> Path:
    """root/{train,val}/<class>/img<i>.png: solid colours of one size (so every file has the same length)."""
    for split in ("train", "val"):
        for k, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (8, 8), (40 * k, 255 - 40 * k, 10 * i)).save(folder / f"img{i}.png")
    return root


def folder_dataset(root: Path) -> ImageDataset:
    return load_imagefolder(DatasetOptions(root=root, image_size=8))


# ----------------------------------------------------------------------------------------------
# Fingerprint
# ----------------------------------------------------------------------------------------------


def test_in_memory_fingerprint_follows_the_tensors():
    base = dataset_fingerprint(tensor_dataset())
    assert len(base) == 16 and base == dataset_fingerprint(tensor_dataset())
    changed = tensor_dataset()
    changed.train.images[3, 0, 2, 2] += 1e-3  # one pixel of one image
    assert dataset_fingerprint(changed) != base
    relabelled = tensor_dataset()
    relabelled.test = TensorSplit(relabelled.test.images, relabelled.test.labels.flip(0))
    assert dataset_fingerprint(relabelled) != base


def test_fingerprint_is_memoised_per_split_objects():
    dataset = tensor_dataset()
    first = dataset_fingerprint(dataset)
    dataset.train.images.add_(1)  # in place, same objects: the memo is kept (computed once per run)
    assert dataset_fingerprint(dataset) == first
    dataset.train = TensorSplit(dataset.train.images.clone(), dataset.train.labels)  # a new split: recomputed
    assert dataset_fingerprint(dataset) != first


def test_declared_fingerprint_wins_and_own_split_method_is_used():
    dataset = tensor_dataset()
    dataset.fingerprint = "archive-sha-1"
    first = dataset_fingerprint(dataset)
    dataset.fingerprint = "archive-sha-2"
    assert dataset_fingerprint(dataset) != first

    class Own(TensorSplit):
        def fingerprint(self) -> str:
            return "v7"

    split = Own(torch.zeros(2, 1, 2, 2), torch.tensor([0, 1]))
    assert split_fingerprint(split) == "own:v7"


def test_fallback_fingerprint_samples_decoded_images():
    class Plain(torch.utils.data.Dataset):  # neither tensors, nor paths, nor a fingerprint method
        def __init__(self, images, labels):
            self.data, self.targets = images, labels.tolist()

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return self.data[i], self.targets[i]

    images, labels = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 0, 1, 1, 1])
    first = split_fingerprint(Plain(images, labels))
    assert first.startswith("sampled:") and first == split_fingerprint(Plain(images.clone(), labels))
    changed = images.clone()
    changed[4, 0, 0, 0] += 1  # every image of a small split is sampled
    assert split_fingerprint(Plain(changed, labels)) != first
    assert split_fingerprint(Plain(images, torch.tensor([0, 0, 1, 1, 0]))) != first


def test_file_fingerprint_sees_rewritten_and_swapped_images_under_the_same_names(tmp_path):
    """The issue's case: every picture of two classes swapped, file names, sizes and mtimes unchanged."""
    root = make_tree(tmp_path / "data")
    files = sorted((root / "train").rglob("*.png"))
    stamp = 1_700_000_000_000_000_000
    for path in files:  # identical mtimes: only content-level changes can tell the files apart
        os.utime(path, ns=(stamp, stamp))
    before = dataset_fingerprint(folder_dataset(root))
    assert before == dataset_fingerprint(folder_dataset(root))  # stable across loads
    time.sleep(0.05)  # past the file system's timestamp granularity
    bird, cat = root / "train" / "bird", root / "train" / "cat"
    for name in ("img0.png", "img1.png"):  # rewrite in place with the other class's bytes, restore the mtime
        a, b = (bird / name).read_bytes(), (cat / name).read_bytes()
        assert len(a) == len(b)
        (bird / name).write_bytes(b)
        (cat / name).write_bytes(a)
        os.utime(bird / name, ns=(stamp, stamp))
        os.utime(cat / name, ns=(stamp, stamp))
    rewritten = dataset_fingerprint(folder_dataset(root))
    assert rewritten != before
    time.sleep(0.05)
    tmp = root / "train" / "swap.tmp"  # swap by moving the files (rename keeps size and mtime)
    os.rename(bird / "img0.png", tmp)
    os.rename(cat / "img0.png", bird / "img0.png")
    os.rename(tmp, cat / "img0.png")
    assert dataset_fingerprint(folder_dataset(root)) not in (before, rewritten)


def test_file_fingerprint_reads_no_pixels_and_covers_the_val_split(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "data")
    dataset = folder_dataset(root)
    from ddcore.data import imagefolder

    def no_decoding(*_a, **_k):
        raise AssertionError("the fingerprint decoded an image")

    monkeypatch.setattr(imagefolder, "read_image", no_decoding)
    before = dataset_fingerprint(dataset)
    time.sleep(0.05)
    (root / "val" / "dog" / "img0.png").write_bytes((root / "val" / "cat" / "img0.png").read_bytes())
    assert dataset_fingerprint(folder_dataset(root)) != before


# ----------------------------------------------------------------------------------------------
# Signature and its check
# ----------------------------------------------------------------------------------------------


def test_signature_contents_are_json_values():
    signature = data_signature(tensor_dataset())
    assert signature == {
        "dataset": "tiny", "class_names": ["a", "b", "c"], "image_shape": [1, 8, 8], "mean": [0.0], "std": [1.0],
        "fingerprint": dataset_fingerprint(tensor_dataset()),
    }  # fmt: skip


def test_same_data_passes_and_reordered_classes_give_the_permutation():
    saved = data_signature(tensor_dataset(names=("a", "b", "c")))
    assert check_signature(saved, tensor_dataset(), what="X", fix="Y") is None
    perm = check_signature(saved, tensor_dataset(names=("c", "a", "b")), what="X", fix="Y")
    assert perm == [1, 2, 0]  # perm[saved label] = current label: a -> 1, b -> 2, c -> 0


@pytest.mark.parametrize(
    "current, words",
    [
        (dict(names=("a", "b", "z")), "saved classes missing from the data: c; data classes not in the saved set: z"),
        (dict(names=("a", "b")), "saved classes missing from the data: c"),
        (dict(channels=3), "saved with 1 channel(s), the data has 3"),
        (dict(side=16), "saved at 8x8 px, the data is 16x16 px"),
        (dict(mean=0.5), "normalisation mean (0) saved, the data uses (0.5)"),
        (dict(std=2.0), "normalisation std (1) saved, the data uses (2)"),
    ],
)
def test_every_difference_is_one_line_naming_what_and_fix(current, words):
    saved = data_signature(tensor_dataset())
    with pytest.raises(ConfigError) as info:
        check_signature(saved, tensor_dataset(**current), what="distilled.pt of run R", fix="option --data-root")
    message = str(info.value)
    assert "\n" not in message and message.startswith("distilled.pt of run R does not fit dataset 'tiny': ")
    assert words in message and message.endswith("(option --data-root)")


def test_a_partial_signature_compares_what_it_has():
    assert check_signature({"class_names": ["a", "b", "c"]}, tensor_dataset(channels=3), what="X", fix="Y") is None
    with pytest.raises(ConfigError, match="1 channel"):
        check_signature({"image_shape": [1, 8, 8]}, tensor_dataset(channels=3), what="X", fix="Y")


def test_repeated_names_are_never_remapped():
    saved = {"class_names": ["a", "a", "b"]}
    with pytest.raises(ConfigError, match="repeated names"):
        check_signature(saved, tensor_dataset(names=("a", "b", "a")), what="X", fix="Y")


def test_require_same_data_refuses_reorder_and_changed_content():
    saved = data_signature(tensor_dataset())
    require_same_data(saved, tensor_dataset(), what="X", fix="Y")
    with pytest.raises(ConfigError, match="same classes in another order"):
        require_same_data(saved, tensor_dataset(names=("b", "a", "c")), what="X", fix="Y")
    with pytest.raises(ConfigError, match="content changed since") as info:
        require_same_data(saved, tensor_dataset(seed=1), what="X", fix="Y")
    assert saved["fingerprint"] in str(info.value) and "\n" not in str(info.value)


def test_data_check_record():
    saved = data_signature(tensor_dataset())
    record = data_check_record(saved, tensor_dataset(names=("c", "a", "b"), seed=1), [1, 2, 0])
    assert record["same_content"] is False and record["saved_dataset"] == "tiny"
    assert record["class_remap"] == {"from": ["a", "b", "c"], "to": ["c", "a", "b"], "perm": [1, 2, 0]}
    assert data_check_record({"class_names": ["a"]}, tensor_dataset(), None)["same_content"] is None


# ----------------------------------------------------------------------------------------------
# DistilledSet: recorded signature, older files, remapping
# ----------------------------------------------------------------------------------------------


def distilled_of(dataset: ImageDataset, soft: bool = False) -> DistilledSet:
    images = torch.arange(3 * 64, dtype=torch.float32).view(3, 1, 8, 8)
    labels = torch.tensor([[5.0, 1.0, 0.0], [0.0, 4.0, 2.0], [1.0, 0.0, 3.0]]) if soft else torch.tensor([0, 1, 2])
    return DistilledSet(images, labels, list(dataset.class_names), dataset.mean, dataset.std)


def test_save_records_the_signature_and_load_reads_it(tmp_path):
    dataset = tensor_dataset()
    distilled_of(dataset).save(tmp_path / "d.pt", dataset)
    loaded = DistilledSet.load(tmp_path / "d.pt")
    assert loaded.data == data_signature(dataset)
    assert loaded.check_data(dataset, what="X", fix="Y") is loaded


def test_older_files_without_a_signature_are_still_read_and_checked(tmp_path):
    dataset = tensor_dataset()
    contents = distilled_of(dataset).to_dict()
    del contents["data"]  # as written before signatures existed
    torch.save(contents, tmp_path / "old.pt")
    old = DistilledSet.load(tmp_path / "old.pt")
    assert old.data is None and old.check_data(dataset, what="X", fix="Y") is old
    with pytest.raises(ConfigError, match="saved at 8x8 px, the data is 16x16 px"):
        old.check_data(tensor_dataset(side=16), what="X", fix="Y")


@pytest.mark.parametrize("soft", [False, True])
def test_reordered_classes_are_remapped_by_name(soft):
    distilled = distilled_of(tensor_dataset(), soft=soft)
    current = tensor_dataset(names=("c", "a", "b"))
    remapped = distilled.check_data(current, what="X", fix="Y")
    assert remapped.class_names == ["c", "a", "b"]
    assert remapped.meta["class_remap"]["perm"] == [1, 2, 0]
    # each image keeps its class by name
    names_before = [distilled.class_names[i] for i in distilled.hard_labels().tolist()]
    names_after = [remapped.class_names[i] for i in remapped.hard_labels().tolist()]
    assert names_before == names_after == ["a", "b", "c"]
    if soft:  # the columns moved with their classes
        for old_col, new_col in enumerate([1, 2, 0]):
            assert torch.equal(remapped.labels[:, new_col], distilled.labels[:, old_col])
    remapped.validate()
    assert torch.equal(remapped.images, distilled.images)


def test_remap_refuses_a_permutation_that_does_not_keep_names():
    distilled = distilled_of(tensor_dataset())
    with pytest.raises(ValueError, match="same name"):
        distilled.remap([0, 1, 2], ["c", "a", "b"])
    with pytest.raises(ValueError, match="not a permutation"):
        distilled.remap([0, 0, 2], ["a", "b", "c"])


def test_fingerprint_covers_how_pixels_are_produced():
    base = dataset_fingerprint(tensor_dataset())
    for change in ({"mean": (0.5,)}, {"std": (2.0,)}, {"extra": {"decode_version": 99}}, {"extra": {"version": 2}}):
        dataset = tensor_dataset()
        for key, value in change.items():
            setattr(dataset, key, value)
        assert dataset_fingerprint(dataset) != base, change


def test_a_declared_fingerprint_stands_for_the_pixels_not_the_labels():
    dataset = tensor_dataset()
    dataset.fingerprint = "archive-sha-1"
    first = dataset_fingerprint(dataset)
    dataset.train = TensorSplit(dataset.train.images + 1, dataset.train.labels)  # pixels: the declaration's job
    assert dataset_fingerprint(dataset) == first
    dataset.train = TensorSplit(dataset.train.images, dataset.train.labels.flip(0))  # labels: still seen
    assert dataset_fingerprint(dataset) != first


def test_a_carved_validation_split_changes_the_fingerprint():
    from ddcore.data.split import IndexedSplit

    dataset = tensor_dataset()
    whole = dataset_fingerprint(dataset)
    train = dataset.train
    dataset.train, dataset.val = IndexedSplit(train, [0, 2, 4]), IndexedSplit(train, [1, 3, 5])
    assert dataset_fingerprint(dataset) != whole


@pytest.mark.parametrize("declared", [5, "", b"bytes"])
def test_a_factory_declaring_a_bad_fingerprint_is_named(declared):
    from ddcore.data.registry import DatasetRegistry
    from ddcore.errors import PluginError

    registry = DatasetRegistry()

    def factory(_options):
        dataset = tensor_dataset()
        dataset.fingerprint = declared
        return dataset

    registry.registrar("my-plugin")("mine", factory)
    with pytest.raises(PluginError, match="factory set fingerprint") as info:
        registry.build("mine", DatasetOptions())
    assert info.value.plugin == "my-plugin"
    good = registry.registrar("other")
    good("fine", lambda _o: tensor_dataset())
    assert registry.build("fine", DatasetOptions()).fingerprint is None
