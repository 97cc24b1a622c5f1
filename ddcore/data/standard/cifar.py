"""``cifar10`` and ``cifar100`` from the python pickle batches, read by torchvision (never downloaded).

Layout under ``--data-root`` (what ``torchvision.datasets.CIFAR10/100(root)`` reads; the official
``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpacked there)::

    root/cifar-10-batches-py/data_batch_1 .. data_batch_5, test_batch, batches.meta
    root/cifar-100-python/train, test, meta

Splits: the official 50,000 training / 10,000 test images, 32 px RGB, held in memory as uint8 (146 MiB for
the training split). Class names: the files' own (``label_names``; CIFAR-100's ``fine_label_names``, its 100
fine classes). Normalisation: the per-channel mean/std DC, DSA, DM, MTT and DATM use
(:data:`CIFAR10_MEAN` ...; MTT's code reuses CIFAR-10's values for CIFAR-100, we use CIFAR-100's own, as DC does).

``zca = true`` whitens instead of normalising, as MTT/DATM do (:mod:`ddcore.data.zca`).

Integrity: torchvision checks each file's MD5 against the official archive's; here the check is one of
layout (each file present), done before torchvision reads anything, so a missing file is one line naming
it. Content changes are caught by the dataset's fingerprint (the pixel bytes), which every cache keys on.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.standard.common import ROOT_OPTION, check_root, in_memory_dataset, require_files
from ddcore.errors import ConfigError
from ddcore.vocab import DEFAULT_AUGMENT

#: DC/DSA/DM/MTT/DATM's CIFAR-10 normalisation (``get_dataset``), per channel R, G, B.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)
#: DC's CIFAR-100 normalisation (the training split's statistics).
CIFAR100_MEAN = (0.5071, 0.4866, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


class LocalCIFAR10(CIFAR10):
    """torchvision's CIFAR-10 reader with its MD5 checks replaced by presence checks (``md5 = None``).

    Used with ``download=False`` only; :func:`load_cifar` checks the layout first.
    """

    train_list = [[name, None] for name, _ in CIFAR10.train_list]
    test_list = [[name, None] for name, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}


class LocalCIFAR100(CIFAR100):
    """torchvision's CIFAR-100 reader with its MD5 checks replaced by presence checks (``md5 = None``)."""

    train_list = [[name, None] for name, _ in CIFAR100.train_list]
    test_list = [[name, None] for name, _ in CIFAR100.test_list]
    meta = {**CIFAR100.meta, "md5": None}


VARIANTS = {
    "cifar10": (LocalCIFAR10, CIFAR10_MEAN, CIFAR10_STD, "CIFAR-10 (python batches)"),
    "cifar100": (LocalCIFAR100, CIFAR100_MEAN, CIFAR100_STD, "CIFAR-100 (python batches, fine labels)"),
}


def layout(reader: type) -> str:
    """The expected files, in words: ``<root>/cifar-10-batches-py/{data_batch_1, ...}``."""
    names = [name for name, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]
    return f"<root>/{reader.base_folder}/{{{', '.join(names)}}} (the python version, unpacked)"


def load_cifar(name: str, options: DatasetOptions) -> ImageDataset:
    """Build ``cifar10`` or ``cifar100`` (module docstring): images ``[3, S, S]``, S = ``image_size`` or 32.

    Raises :class:`ConfigError` (one line, naming the layout and ``--data-root``) for a missing root or file,
    or a file that is not a CIFAR pickle batch.
    """
    reader, mean, std, about = VARIANTS[name]
    expected = layout(reader)
    root = check_root(name, options.root, expected)
    folder = root / reader.base_folder
    files = [folder / n for n, _ in reader.train_list + reader.test_list] + [folder / reader.meta["filename"]]
    require_files(name, root, files, expected)
    train, class_names = _read(reader, root, folder, train=True, expected=expected)
    test, _ = _read(reader, root, folder, train=False, expected=expected)
    return in_memory_dataset(
        name,
        options=options,
        class_names=class_names,
        train=train,
        test=test,
        mean=mean,
        std=std,
        default_size=32,
        description=f"{about} {folder}",
        extra={"default_augment": DEFAULT_AUGMENT, "root": str(root)},
        zca=options.zca,
    )


def _read(reader: type, root: Path, folder: Path, *, train: bool, expected: str) -> tuple[tuple[torch.Tensor, torch.Tensor], list[str]]:
    """``((pixels [N, 3, 32, 32] uint8, labels [N] int64), class names)`` of one split, via torchvision."""
    try:
        data = reader(str(root), train=train, download=False)
        pixels = torch.from_numpy(np.ascontiguousarray(np.asarray(data.data, dtype=np.uint8).transpose(0, 3, 1, 2)))
        labels = torch.as_tensor(data.targets, dtype=torch.long)
        class_names = [str(c) for c in data.classes]
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
        raise ConfigError(
            f"cannot read the CIFAR files in {folder}: {type(exc).__name__}: {' '.join(str(exc).split())}; "
            f"expected {expected} ({ROOT_OPTION})"
        ) from None
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise ConfigError(
            f"the CIFAR files in {folder} have labels outside 0..{len(class_names) - 1} "
            f"({len(class_names)} class names in {reader.meta['filename']}) ({ROOT_OPTION})"
        )
    return (pixels, labels), class_names
