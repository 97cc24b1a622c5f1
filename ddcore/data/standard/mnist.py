"""``mnist`` and ``fashion-mnist`` from the idx files, read by torchvision (never downloaded).

Layout under ``--data-root`` (what ``torchvision.datasets.MNIST/FashionMNIST(root)`` reads: the four official
``.gz`` files unpacked into ``raw/``)::

    root/MNIST/raw/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
    root/FashionMNIST/raw/  (the same four names)

Splits: the official 60,000 training / 10,000 test images, held in memory as uint8 (52 MiB). Size: **28 px**,
one grey channel, as DC, DSA, DM and MTT use them (their ConvNet takes 28 px: three blocks pool 28 -> 14 -> 7
-> 3); ``--image-size 32`` pads nothing but resizes (bilinear) for a network that wants 32. The depth rule
gives ConvNetD3 at 28 px (:func:`ddcore.presets.convnet_depth`). Class names: the digits ``0``..``9``;
Fashion-MNIST's article names (torchvision's). Normalisation: DC/MTT's mean/std (MNIST 0.1307/0.3081,
Fashion-MNIST 0.2861/0.3530). Augmentation by default: ``crop`` for MNIST (a flipped digit is another
glyph, as for ``digits``), ``crop_flip`` for Fashion-MNIST.
"""

from __future__ import annotations

import struct
from pathlib import Path

import torch
from torchvision.datasets import MNIST, FashionMNIST

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.standard.common import ROOT_OPTION, check_root, has_files, in_memory_dataset, nearby_root, require_files
from ddcore.errors import ConfigError
from ddcore.vocab import DEFAULT_AUGMENT

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

VARIANTS = {
    # name: (torchvision class, class names, mean, std, default augmentation, what it is)
    "mnist": (MNIST, [str(d) for d in range(10)], (0.1307,), (0.3081,), "crop",
              "MNIST (idx files)"),
    "fashion-mnist": (FashionMNIST, list(FashionMNIST.classes), (0.2861,), (0.3530,), DEFAULT_AUGMENT,
                      "Fashion-MNIST (idx files)"),
}  # fmt: skip


def layout(reader: type) -> str:
    return f"<root>/{reader.__name__}/raw/{{{', '.join(FILES)}}} (the official .gz files unpacked)"


def load_mnist(name: str, options: DatasetOptions) -> ImageDataset:
    """Build ``mnist`` or ``fashion-mnist`` (module docstring): images ``[1, S, S]``, S = ``image_size`` or 28.

    Raises :class:`ConfigError` (one line, naming the layout and ``--data-root``) for a missing root or file,
    a file left gzipped, or a file that is not an idx file of the expected shape.
    """
    reader, class_names, mean, std, augment, about = VARIANTS[name]
    expected = layout(reader)
    root = check_root(name, options.root, expected)
    raw = root / reader.__name__ / "raw"
    gz = [raw / f"{n}.gz" for n in FILES if not (raw / n).is_file() and (raw / f"{n}.gz").is_file()]
    if gz:
        raise ConfigError(f"dataset {name}: {gz[0]} is still compressed; unpack it (gunzip) next to it ({ROOT_OPTION})")
    require_files(name, root, [raw / n for n in FILES], expected,
                  looks_right=has_files([f"{reader.__name__}/raw/{n}" for n in FILES]),
                  hint=lambda: _missing_hint(name, root, reader))  # fmt: skip
    for prefix in ("train", "t10k"):
        check_idx_pair(raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte")
    train = _read(reader, root, raw, train=True, expected=expected, classes=len(class_names))
    test = _read(reader, root, raw, train=False, expected=expected, classes=len(class_names))
    return in_memory_dataset(
        name,
        options=options,
        class_names=class_names,
        train=train,
        test=test,
        mean=mean,
        std=std,
        default_size=28,
        description=f"{about} {raw}",
        extra={"default_augment": augment, "root": str(root)},
    )


#: The idx magic numbers (big-endian int32: 0, 0, type 0x08 = unsigned byte, number of dimensions).
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


def idx_header(path: Path, magic: int) -> tuple[int, ...]:
    """The dimensions an idx file's header gives (``(N, rows, cols)`` for images, ``(N,)`` for labels).

    Read with ``struct`` (big-endian) before torchvision, so a damaged file is one line naming it. Raises
    :class:`ConfigError` when the magic number is not ``magic`` (2051 images, 2049 labels), the file is shorter
    than its header, or its size is not header + the product of the dimensions (one byte per value).
    """
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(header)
    if len(head) < 4 or struct.unpack(">i", head[:4])[0] != magic:
        found = f"magic 0x{struct.unpack('>I', head[:4])[0]:08x}" if len(head) >= 4 else f"{size} bytes"
        raise ConfigError(f"{path} is not an idx file: {found}, expected 0x{magic:08x} ({magic}) ({ROOT_OPTION})")
    if len(head) < header:
        raise ConfigError(f"{path} is truncated: {size} bytes, shorter than its {header}-byte idx header ({ROOT_OPTION})")
    dims = struct.unpack(f">{ndim}i", head[4:])
    values = 1
    for d in dims:
        values *= d
    if size != header + values:
        what = "images" if ndim == 3 else "labels"
        shape = f" of {dims[1]}x{dims[2]}" if ndim == 3 else ""
        problem = "truncated" if size < header + values else "longer than its header says"
        raise ConfigError(
            f"{path} is {problem}: its header says {dims[0]} {what}{shape} ({header + values} bytes), "
            f"the file has {size} bytes; unpack the official .gz file again ({ROOT_OPTION})"
        )
    return dims


def check_idx_pair(images: Path, labels: Path) -> None:
    """Refuse (:class:`ConfigError`, naming the files) a damaged idx file or a label count unlike the image count."""
    n_images = idx_header(images, IMAGES_MAGIC)[0]
    n_labels = idx_header(labels, LABELS_MAGIC)[0]
    if n_images != n_labels:
        raise ConfigError(
            f"{labels.name} holds {n_labels} labels for {n_images} images in {images.name} (in {images.parent}); "
            f"unpack the official .gz files again ({ROOT_OPTION})"
        )


def _missing_hint(name: str, root: Path, reader: type) -> str:
    """Text ending a missing-file message: the other variant's tree at ``root`` (did you mean the other
    ``--dataset``), or a nearby root whose files are still ``.gz`` (unpack them there); ``""`` if neither."""
    for other, (other_reader, *_rest) in VARIANTS.items():
        folder = root / other_reader.__name__ / "raw"
        if other != name and all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in FILES):
            article = "an" if other_reader.__name__ == "MNIST" else "a"
            return f"; {root} holds {article} {other_reader.__name__} tree: did you mean --dataset {other}?"
    packed = has_files([f"{reader.__name__}/raw/{n}.gz" for n in FILES])
    found = root if packed(root) else nearby_root(root, packed)
    if found is not None:
        return (f"; {found} holds the .gz files: unpack them (gunzip {found / reader.__name__ / 'raw'}/*.gz) "
                f"and pass --data-root {found}")  # fmt: skip
    return ""


def _read(reader: type, root: Path, raw: Path, *, train: bool, expected: str, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pixels [N, 1, 28, 28] uint8, labels [N] int64)`` of one split, via torchvision."""
    try:
        data = reader(str(root), train=train, download=False)
        pixels, labels = data.data, data.targets
    except (AssertionError, ValueError, TypeError, RuntimeError, OSError, IndexError) as exc:
        raise ConfigError(
            f"cannot read the idx files in {raw}: {type(exc).__name__}: {' '.join(str(exc).split()) or 'not an idx file'}; "
            f"expected {expected} ({ROOT_OPTION})"
        ) from None
    if pixels.dtype != torch.uint8 or pixels.ndim != 3 or labels.ndim != 1 or len(labels) != len(pixels):
        raise ConfigError(
            f"the idx files in {raw} hold images {tuple(pixels.shape)} {pixels.dtype} and labels {tuple(labels.shape)}; "
            f"expected [N, H, W] uint8 images and N labels ({ROOT_OPTION})"
        )
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ConfigError(f"the idx labels in {raw} lie outside 0..{classes - 1} ({ROOT_OPTION})")
    return pixels.unsqueeze(1).contiguous(), labels
