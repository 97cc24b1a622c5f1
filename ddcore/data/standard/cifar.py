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

Keys: the official batches are Python 2 pickles; torchvision loads them with ``encoding="latin1"``, so
their keys are ``str`` (``"data"``, ``"labels"``). A batch saved again after loading it with
``encoding="bytes"`` (the CIFAR page's snippet) has ``bytes`` keys: refused with one line naming the file.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.standard.common import ROOT_OPTION, check_root, has_files, in_memory_dataset, require_files
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
    names = [n for n, _ in reader.train_list + reader.test_list] + [reader.meta["filename"]]
    archive = root / reader.filename
    if not folder.is_dir() and archive.is_file():
        raise ConfigError(
            f"dataset {name}: {archive} is still packed; unpack it (tar xzf {archive} -C {root}), which makes "
            f"{folder} ({ROOT_OPTION})"
        )
    require_files(name, root, [folder / n for n in names], expected,
                  looks_right=has_files([f"{reader.base_folder}/{n}" for n in names]))  # fmt: skip
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
        counted = len(labels) == pixels.shape[0]  # rows of another width than 3072 regroup into other images
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, OSError, RuntimeError) as exc:
        failure = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        counted = False
    else:
        failure = f"{pixels.shape[0]} images but {len(labels)} labels"
    if not counted:
        files = [n for n, _ in (reader.train_list if train else reader.test_list)] + [reader.meta["filename"]]
        raise ConfigError(
            _file_problem(reader, folder, files)
            or f"cannot read the CIFAR files in {folder}: {failure}; expected {expected} ({ROOT_OPTION})"
        ) from None
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise ConfigError(
            f"the CIFAR files in {folder} have labels outside 0..{len(class_names) - 1} "
            f"({len(class_names)} class names in {reader.meta['filename']}) ({ROOT_OPTION})"
        )
    return (pixels, labels), class_names


#: Values per CIFAR image in a batch's ``data`` row: 32 x 32 pixels x 3 channels (R plane, G plane, B plane).
ROW = 32 * 32 * 3


def _file_problem(reader: type, folder: Path, files: list[str]) -> str | None:
    """One line naming the first of ``files`` that is damaged, or ``None`` (then the caller's generic line).

    Only called after torchvision failed (or gave a label count unlike the image count), so a good tree is
    read once. Named: a truncated file or one that is not a pickle; a dict without the keys torchvision reads
    (the official batches are Python 2 pickles whose ``str`` keys load as ``str`` with ``encoding="latin1"``,
    what torchvision passes; a file re-saved after loading with ``encoding="bytes"`` has ``bytes`` keys,
    named as such); ``data`` not ``[N, 3072]`` uint8; a label count unlike ``N``.
    """
    for file in files:
        path = folder / file
        needed = [reader.meta["key"]] if file == reader.meta["filename"] else ["data", _label_key(reader)]
        try:
            with open(path, "rb") as handle:
                entry = pickle.load(handle, encoding="latin1")
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is this file's damage
            return (
                f"cannot read the CIFAR files in {folder}: {file} is truncated or not a pickle "
                f"({type(exc).__name__}: {' '.join(str(exc).split())}); unpack the official archive again ({ROOT_OPTION})"
            )
        keys = list(entry) if isinstance(entry, dict) else None
        if keys is not None and all(k in keys or (k == "labels" and "fine_labels" in keys) for k in needed):
            if file != reader.meta["filename"]:
                problem = _batch_problem(entry, "labels" if "labels" in keys else "fine_labels")
                if problem:
                    return (f"cannot read the CIFAR files in {folder}: {file}'s {problem}; "
                            f"unpack the official archive again ({ROOT_OPTION})")  # fmt: skip
            continue  # torchvision takes "fine_labels" where "labels" is absent
        if keys and all(isinstance(k, bytes) for k in keys):
            return (
                f"CIFAR file {path} has bytes keys ({', '.join(repr(k) for k in keys[:3])}), as a batch loaded with "
                f"pickle's encoding='bytes' and saved again; the official python batches have str keys "
                f"({', '.join(repr(k) for k in needed)}): unpack the official archive again ({ROOT_OPTION})"
            )
        found = "not a dict" if keys is None else f"keys {', '.join(repr(k) for k in keys[:6])}"
        absent = ", ".join(repr(k) for k in needed if keys is None or k not in keys)
        return f"CIFAR file {path} lacks {absent} ({found}) ({ROOT_OPTION})"
    return None


def _batch_problem(entry: dict, label_key: str) -> str | None:
    """What is wrong with one batch dict's ``data`` ``[N, 3072]`` and its ``N`` labels, or ``None``."""
    try:
        data = np.asarray(entry["data"])
        count = len(entry[label_key])
    except TypeError:
        return f"{label_key!r} is not a list"
    if data.ndim != 2 or data.shape[1] != ROW:
        return f"'data' is {list(data.shape)}, expected [N, {ROW}] (32x32x3)"
    if count != data.shape[0]:
        return f"{label_key!r} holds {count} labels for the {data.shape[0]} images of 'data'"
    return None


def _label_key(reader: type) -> str:
    """The label key of the batches: ``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100, as torchvision reads)."""
    return "fine_labels" if issubclass(reader, CIFAR100) else "labels"
