"""The Comp-DD 128 px cache and the datasets read from it follow the source images' content (issue 13, kind 3).

Swapping two classes' pictures, whether by rewriting the files or by moving them, keeps every file name,
and moving keeps sizes and modification times too: the cache must still miss, and the dataset read from it
must have another content fingerprint (so experts and teachers of the subset miss as well).
"""

from __future__ import annotations

import os
import time

import torch

from ddcore import DatasetOptions
from ddcore.datasig import dataset_fingerprint
from ddcore_compdd.imagenet import load_subset
from ddcore_compdd.subsets import resolve_subset


def load(root, tmp_path):
    return load_subset("car-easy", DatasetOptions(root=root, image_size=16, workers=0, cache_dir=tmp_path / "cache"))


def red_of_class(dataset, label: int) -> float:
    """Mean red (0-255) of the first training image of ``label``."""
    index = dataset.train.targets.index(label)
    image, _ = dataset.train[index]
    return dataset.denormalize(image.unsqueeze(0))[0, 0].mean().item() * 255


def test_unchanged_sources_reuse_the_entry_and_keep_the_fingerprint(fake_imagenet, tmp_path):
    root = fake_imagenet(("car-easy",), train=2, val=1)
    first, second = load(root, tmp_path), load(root, tmp_path)
    assert first.extra["cache"] == second.extra["cache"]
    assert dataset_fingerprint(first) == dataset_fingerprint(second)
    assert len(list((tmp_path / "cache" / "compdd").iterdir())) == 1


def test_moved_pictures_build_a_new_entry_with_the_right_pixels(fake_imagenet, tmp_path):
    root = fake_imagenet(("car-easy",), train=2, val=1)
    before = load(root, tmp_path)
    assert abs(red_of_class(before, 0) - 10) < 4 and abs(red_of_class(before, 1) - 30) < 4  # shades 20k + 10
    wnids = resolve_subset("car-easy").wnids
    a, b = root / "train" / wnids[0], root / "train" / wnids[1]
    time.sleep(0.05)  # past the file system's timestamp granularity
    for name in sorted(p.name for p in a.iterdir()):  # swap by moving: names, sizes and mtimes all stay
        os.rename(a / name, root / "swap.tmp")
        os.rename(b / name, a / name)
        os.rename(root / "swap.tmp", b / name)
    after = load(root, tmp_path)
    assert after.extra["cache"] != before.extra["cache"]
    assert dataset_fingerprint(after) != dataset_fingerprint(before)
    assert abs(red_of_class(after, 0) - 30) < 4 and abs(red_of_class(after, 1) - 10) < 4  # what the files hold now


def test_rewritten_pictures_with_restored_times_build_a_new_entry(fake_imagenet, jpeg_writer, tmp_path):
    root = fake_imagenet(("car-easy",), train=2, val=1)
    before = load(root, tmp_path)
    folder = root / "train" / resolve_subset("car-easy").wnids[0]
    times = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    time.sleep(0.05)
    jpeg_writer(folder, 2, 200)  # same names, other pictures
    for name, mtime in times.items():  # a copy tool that keeps modification times
        os.utime(folder / name, ns=(mtime, mtime))
    after = load(root, tmp_path)
    assert after.extra["cache"] != before.extra["cache"]
    assert abs(red_of_class(after, 0) - 200) < 4
    images, _ = after.load("train", [0])
    old, _ = before.load("train", [0])
    assert not torch.equal(images, old)
