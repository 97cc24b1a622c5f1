"""Fixtures for the compdd tests: a fake ImageNet tree with the real wnid folder names."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_jpegs(folder: Path, count: int, shade: int, size: tuple[int, int] = (20, 14)) -> None:
    """``count`` small solid-colour JPEGs (``shade`` sets the colour) in ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, (shade, (shade * 3 + i * 20) % 256, 255 - shade)).save(folder / f"img_{i:03d}.JPEG", quality=90)


@pytest.fixture
def fake_imagenet(tmp_path):
    """``make(subsets=("bird-hard",), train=3, val=2, skip=())`` -> a root with train/ and val/ wnid folders.

    Class ``k`` of a subset gets shade ``20 * k + 10``; ``skip`` lists ``"split/wnid"`` folders to leave out.
    """
    from ddcore_compdd.subsets import resolve_subset

    def make(subsets=("bird-hard",), train: int = 3, val: int = 2, skip=()) -> Path:
        root = tmp_path / "imagenet"
        for name in subsets:
            info = resolve_subset(name)
            for label, wnid in enumerate(info.wnids):
                for split, count in (("train", train), ("val", val)):
                    if f"{split}/{wnid}" not in skip:
                        write_jpegs(root / split / wnid, count, 20 * label + 10)
        (root / "train").mkdir(parents=True, exist_ok=True)
        (root / "val").mkdir(parents=True, exist_ok=True)
        return root

    return make


@pytest.fixture
def jpeg_writer():
    """:func:`write_jpegs`, for tests that add images to a tree."""
    return write_jpegs
