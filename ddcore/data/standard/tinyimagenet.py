"""``tiny-imagenet``: Tiny-ImageNet-200 in its own layout, streamed from disk (never downloaded).

Layout under ``--data-root`` (the official ``tiny-imagenet-200.zip`` unpacked; ``root`` is the folder
holding ``wnids.txt``)::

    root/wnids.txt                         the 200 class wnids, one a line
    root/words.txt                         wnid <TAB> names (comma-separated synonyms)
    root/train/<wnid>/images/*.JPEG        500 training images per class
    root/val/images/*.JPEG                 10,000 validation images, flat
    root/val/val_annotations.txt           file <TAB> wnid <TAB> box (x0 y0 x1 y1)

Splits: ``train`` for training; the labelled ``val`` split is the test split (the unlabelled ``test/`` is
not used), as DC, MTT and DATM evaluate. Classes: the wnids sorted (ImageFolder order, what MTT reads);
names: the first synonym of each in ``words.txt`` (``" (wnid)"`` appended where two classes share it).
Images: 64 px RGB (the few grey files repeat their channel), decoded one at a time
(:class:`~ddcore.data.imagefolder.FolderSplit`); ``--image-size`` resizes. Normalisation: ImageNet's
mean/std (MTT's choice for Tiny). The depth rule gives ConvNetD4 at 64 px.
"""

from __future__ import annotations

import os
from pathlib import Path

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.decode import DECODE_VERSION
from ddcore.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, IMAGE_SUFFIXES, FolderSplit, image_files, short_list
from ddcore.data.standard.common import ROOT_OPTION, check_root, check_size, has_files, require_files, unique_names
from ddcore.errors import ConfigError
from ddcore.vocab import DEFAULT_AUGMENT

NAME = "tiny-imagenet"
LAYOUT = (
    "<root>/wnids.txt, words.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt "
    "(tiny-imagenet-200.zip unpacked)"
)


def load_tiny_imagenet(options: DatasetOptions) -> ImageDataset:
    """Build ``tiny-imagenet`` (module docstring): images ``[3, S, S]``, S = ``image_size`` or 64.

    Lists files and reads the two text files, no pixels. Raises :class:`ConfigError` (one line naming the
    file and ``--data-root``) for a missing root, file or class folder, an annotation naming an unknown
    wnid or a missing image, or a class with no images.
    """
    size = check_size(options.image_size, 64)
    root = check_root(NAME, options.root, LAYOUT)
    wnids_file, words_file = root / "wnids.txt", root / "words.txt"
    annotations = root / "val" / "val_annotations.txt"
    require_files(NAME, root, [wnids_file, words_file, annotations], LAYOUT,
                  looks_right=has_files(["wnids.txt", "words.txt", "val/val_annotations.txt"]))  # fmt: skip
    wnids = sorted(set(_lines(wnids_file)))
    if not wnids:
        raise ConfigError(f"{wnids_file} lists no wnid; expected {LAYOUT} ({ROOT_OPTION})")
    words = _words(words_file)
    unnamed = [w for w in wnids if w not in words]
    if unnamed:
        raise ConfigError(f"{words_file} has no name for {short_list(unnamed)} (listed in {wnids_file}) ({ROOT_OPTION})")
    class_names = unique_names([words[w].split(",")[0].strip() for w in wnids], wnids)

    label = {w: i for i, w in enumerate(wnids)}
    train_paths: list[str] = []
    train_targets: list[int] = []
    empty = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        if not folder.is_dir():
            raise ConfigError(f"dataset {NAME}: {folder} is missing; expected {LAYOUT} ({ROOT_OPTION})")
        files = image_files(folder)
        empty += [] if files else [f"train/{wnid}/images"]
        train_paths += files
        train_targets += [label[wnid]] * len(files)
    if empty:
        raise ConfigError(f"dataset {NAME}: no images ({' '.join(IMAGE_SUFFIXES)}) in {short_list(empty)} under {root} ({ROOT_OPTION})")
    test_paths, test_targets = _val(root, annotations, label)
    train = FolderSplit(train_paths, train_targets, size, IMAGENET_MEAN, IMAGENET_STD, 3)
    test = FolderSplit(test_paths, test_targets, size, IMAGENET_MEAN, IMAGENET_STD, 3)
    return ImageDataset(
        name=NAME,
        class_names=class_names,
        train=train,
        test=test,
        image_shape=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        workers=options.workers,
        description=(
            f"Tiny-ImageNet {root}: {len(wnids)} classes, {len(train)} train / {len(test)} val (test) images, "
            f"RGB {size}x{size}, ImageNet normalisation"
        ),
        extra={
            "default_augment": DEFAULT_AUGMENT,
            "root": str(root),
            "image_size_from": "option" if options.image_size else "dataset",
            "decode_version": DECODE_VERSION,
        },
    )


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc} ({ROOT_OPTION})") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _words(path: Path) -> dict[str, str]:
    """``words.txt``: wnid -> its names (``"goldfish, Carassius auratus"``)."""
    words = {}
    for line in _lines(path):
        wnid, _, names = line.partition("\t")
        if names.strip():
            words[wnid.strip()] = names.strip()
    return words


def _val(root: Path, annotations: Path, label: dict[str, int]) -> tuple[list[str], list[int]]:
    """The flat ``val/images`` split: ``(paths, targets)`` in file-name order, labels from the annotations."""
    images = root / "val" / "images"
    if not images.is_dir():
        raise ConfigError(f"dataset {NAME}: {images} is missing; expected {LAYOUT} ({ROOT_OPTION})")
    present = {os.path.basename(p): p for p in image_files(images)}
    wnid_of: dict[str, str] = {}
    for number, line in enumerate(_lines(annotations), start=1):
        fields = line.split("\t")
        if len(fields) < 2:
            raise ConfigError(f"{annotations} line {number}: expected file<TAB>wnid<TAB>box, got {line[:60]!r} ({ROOT_OPTION})")
        file, wnid = fields[0].strip(), fields[1].strip()
        if wnid not in label:
            raise ConfigError(f"{annotations} line {number}: wnid {wnid} is not in wnids.txt ({ROOT_OPTION})")
        if file not in present:
            raise ConfigError(f"{annotations} line {number}: {images / file} is missing ({ROOT_OPTION})")
        wnid_of[file] = wnid
    unlabelled = sorted(set(present) - set(wnid_of))
    if unlabelled:
        raise ConfigError(f"{images}: {short_list(unlabelled)} not in {annotations.name} (no label) ({ROOT_OPTION})")
    if not wnid_of:
        raise ConfigError(f"{annotations} lists no image ({ROOT_OPTION})")
    files = sorted(wnid_of)
    return [present[f] for f in files], [label[wnid_of[f]] for f in files]
