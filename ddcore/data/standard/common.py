"""What the standard datasets share: layout checks with one-line errors, in-memory pixel splits, ZCA.

In-memory datasets (CIFAR, MNIST) keep their pixels as ``uint8`` (:class:`PixelSplit`, a quarter of the
float32 size) and normalise one image at a time; with ZCA whitening the whitened images are float32
(:class:`WhitenedSplit`), as MTT holds them.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torchvision.transforms.v2.functional as TF

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.errors import ConfigError

ROOT_OPTION = "option --data-root / config key 'data_root'"
SIZE_OPTION = "option --image-size / config key 'image_size'"
#: The share of the available memory an in-memory dataset may take (the rest is for the networks and the run).
MEMORY_FRACTION = 0.5


def check_root(name: str, root: Path | None, layout: str) -> Path:
    """``root`` as an absolute folder, or :class:`ConfigError` (one line: ``name``, ``layout``, the option)."""
    if root is None or str(root) == "":
        raise ConfigError(f"dataset {name} reads local files, nothing is downloaded: expected {layout} ({ROOT_OPTION})")
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise ConfigError(f"data root {root} {what}; dataset {name} expects {layout} ({ROOT_OPTION})")
    return root


#: How many entries of a folder :func:`nearby_root` looks at for a root one level down (a huge folder stays cheap).
NEARBY_ENTRIES = 1000


def nearby_root(root: Path, looks_right: Callable[[Path], bool]) -> Path | None:
    """The folder one or two levels above ``root``, or one below it, for which ``looks_right(folder)`` holds
    (the root a user meant when passing the dataset's own subfolder, or the folder above it); ``None`` if
    none does. Children are looked at in name order, at most :data:`NEARBY_ENTRIES` entries.
    """
    above = [root.parent, root.parent.parent]
    try:
        below = sorted(p for p in itertools.islice(root.iterdir(), NEARBY_ENTRIES) if p.is_dir() and not p.name.startswith("."))
    except OSError:
        below = []
    for folder in [*above, *below]:
        try:
            if folder != root and looks_right(folder):
                return folder
        except OSError:
            continue
    return None


def did_you_mean(root: Path, looks_right: Callable[[Path], bool] | None) -> str:
    """``"; did you mean --data-root X"`` where :func:`nearby_root` finds ``X``, else ``""``."""
    found = nearby_root(root, looks_right) if looks_right is not None else None
    return f"; did you mean --data-root {found}" if found is not None else ""


def require_files(name: str, root: Path, paths: Sequence[Path], layout: str,
                  looks_right: Callable[[Path], bool] | None = None,
                  hint: Callable[[], str] | None = None) -> None:  # fmt: skip
    """Raise :class:`ConfigError` naming the first of ``paths`` that is not a file (and how many are missing).

    ``looks_right(folder)``: whether ``folder`` would be a complete root; the message then names the nearby
    folder that is (:func:`did_you_mean`), e.g. the parent of ``cifar-10-batches-py`` when given that folder.
    ``hint()``: called only when a file is missing and no nearby root is complete; its text (``"; ..."`` or
    ``""``) ends the message (a nearby tree still compressed, another dataset's tree).
    """
    missing = [path for path in paths if not path.is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        nearby = did_you_mean(root, looks_right)
        if not nearby and hint is not None:
            nearby = hint()
        raise ConfigError(
            f"dataset {name}: {missing[0]} is missing{more}; expected {layout} under {root}{nearby} ({ROOT_OPTION})"
        )


def has_files(relative: Sequence[str]) -> Callable[[Path], bool]:
    """``looks_right`` for :func:`require_files`: every path of ``relative`` is a file under the folder."""
    return lambda folder: all((folder / rel).is_file() for rel in relative)


def check_size(size: int | None, default: int) -> int:
    """The image side to use: ``size`` when given (>= 1), else ``default``."""
    if size is None or size == 0:
        return default
    if size < 1:
        raise ConfigError(f"image size must be at least 1 pixel, got {size} ({SIZE_OPTION})")
    return int(size)


def check_memory(name: str, needed: int, hint: str) -> None:
    """Refuse (:class:`ConfigError`) when ``needed`` bytes exceed :data:`MEMORY_FRACTION` of the available memory."""
    from ddcore.data.digits import available_memory

    available = available_memory()
    if available is not None and needed > MEMORY_FRACTION * available:
        raise ConfigError(
            f"dataset {name} needs about {needed / 2**30:.1f} GiB in memory, more than half of the "
            f"{available / 2**30:.1f} GiB available; {hint}"
        )


def resize_pixels(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """``[N, C, H, W]`` uint8 -> ``[N, C, size, size]`` uint8 (bilinear, antialiased; unchanged at its own size).

    Square images only (CIFAR, MNIST): shorter side to ``size`` then a center crop, as ``imagefolder`` does.
    """
    if pixels.shape[-1] == size and pixels.shape[-2] == size:
        return pixels
    out = [TF.center_crop(TF.resize(pixels[i : i + 4096], [size], antialias=True), [size, size])
           for i in range(0, pixels.shape[0], 4096)]  # fmt: skip
    return torch.cat(out) if out else pixels.new_empty(0, pixels.shape[1], size, size)


class PixelSplit(torch.utils.data.Dataset):
    """A split held in memory as ``uint8`` pixels: ``split[i]`` is ``(image [C, H, W] float32 normalised, label)``.

    Args:
        pixels: ``[N, C, H, W]`` uint8 (0..255).
        labels: ``[N]`` int64.
        mean, std: per-channel normalisation of the ``[0, 1]`` values (``len == C``).

    ``fingerprint()`` (read by :mod:`ddcore.datasig`) hashes the pixel and label bytes and the normalisation.
    """

    def __init__(self, pixels: torch.Tensor, labels: torch.Tensor, mean: Sequence[float], std: Sequence[float]):
        if pixels.dtype != torch.uint8 or pixels.ndim != 4:
            raise ValueError(f"pixels must be [N, C, H, W] uint8, got {tuple(pixels.shape)} {pixels.dtype}")
        if pixels.shape[0] != labels.shape[0]:
            raise ValueError("pixels and labels differ in length")
        self.pixels = pixels
        self.labels = labels.long()
        self.targets = self.labels.tolist()
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self._mean = torch.tensor(self.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.std).view(-1, 1, 1)

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return (self.pixels[index].float() / 255.0 - self._mean) / self._std, self.targets[index]

    def fingerprint(self) -> str:
        from ddcore.datasig import tensors_fingerprint

        return hashlib.sha256(f"{tensors_fingerprint(self.pixels, self.labels)};{self.mean};{self.std}".encode()).hexdigest()


class WhitenedSplit(torch.utils.data.Dataset):
    """A split held in memory as whitened float32 images ``[N, C, H, W]``: ``split[i]`` is ``(image, label)``.

    ``fingerprint()`` hashes the source pixels' fingerprint and the whitening's record (cheaper than the
    float bytes, and the same content).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, source: str):
        self.images = images
        self.labels = labels.long()
        self.targets = self.labels.tolist()
        self.source = source

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()


def in_memory_dataset(
    name: str,
    *,
    options: DatasetOptions,
    class_names: list[str],
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    default_size: int,
    description: str,
    extra: dict[str, Any],
    zca: bool = False,
) -> ImageDataset:
    """An :class:`ImageDataset` from uint8 ``(pixels [N, C, H, W], labels [N])`` of both splits.

    ``options.image_size`` resizes (:func:`resize_pixels`) before anything else. With ``zca`` (only where the
    dataset supports it; others are refused by the registry) the pixels in ``[0, 1]`` are whitened with
    :class:`ddcore.data.zca.ZCA` fitted on the training split; ``mean``/``std`` then become 0/1 (MTT's
    convention: ZCA replaces the normalisation) and ``ImageDataset.whitening`` holds the fit. Raises
    :class:`ConfigError` when the tensors would take more than half the available memory.
    """
    size = check_size(options.image_size, default_size)
    (train_px, train_y), (test_px, test_y) = train, test
    if len(train_y) < 2 or len(test_y) < 1:
        raise ConfigError(
            f"dataset {name} has {len(train_y)} training and {len(test_y)} test images; it needs at least 2 and 1 "
            f"({ROOT_OPTION})"
        )
    channels = int(train_px.shape[1])
    count = train_px.shape[0] + test_px.shape[0]
    features = channels * size * size
    # uint8 at the peak of reading: the reader's arrays, their pickled bytes and the [N, C, H, W] copy, then the
    # resized pixels (measured for CIFAR-10: 0.95 GiB peak RSS for 0.17 GiB of pixels, with the interpreter)
    needed = count * (3 * int(train_px.shape[1:].numel()) + features)
    if zca:  # float32 images and the centred copy in the fit, the whitened output, two D x D matrices and the covariance
        needed += 3 * count * features * 4 + 3 * features * features * 4
    hint = f"use a smaller --image-size (default {default_size})" + (" or zca = false" if zca else "")
    check_memory(name, needed, hint)
    train_px, test_px = resize_pixels(train_px, size), resize_pixels(test_px, size)
    extra = {**extra, "image_size_from": "option" if options.image_size else "dataset"}
    description += (
        f": {len(class_names)} classes, {len(train_y)} train / {len(test_y)} test images, "
        f"{'grey' if channels == 1 else 'RGB'} {size}x{size}"
        + ("" if size == train[0].shape[-1] else f" (resized from {train[0].shape[-1]} px)")
    )
    whitening = None
    if zca:
        whitening, train_split, test_split = _whitened((train_px, train_y), (test_px, test_y))
        record = whitening.record()
        mean, std = (0.0,) * channels, (1.0,) * channels
        extra["version"] = f"zca eps={record['eps']}"
        extra["whitening"] = record
        description += f", ZCA-whitened (eps {record['eps']}, fitted on the {record['fitted_images']} training images)"
    else:
        description += f", normalised with mean {_floats(mean)} std {_floats(std)}"
        train_split = PixelSplit(train_px, train_y, mean, std)
        test_split = PixelSplit(test_px, test_y, mean, std)
    return ImageDataset(
        name=name,
        class_names=class_names,
        train=train_split,
        test=test_split,
        image_shape=(channels, size, size),
        mean=tuple(mean),
        std=tuple(std),
        workers=0,
        description=description,
        extra=extra,
        whitening=whitening,
    )


def _whitened(train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor]) -> tuple[Any, WhitenedSplit, WhitenedSplit]:
    """``(ZCA fitted on the training pixels in [0, 1], whitened train split, whitened test split)``."""
    from ddcore.data.zca import ZCA

    pixels = train[0].float().div_(255.0)
    whitening = ZCA().fit(pixels)
    record = whitening.record()
    splits = []
    for (px, labels), values in ((train, pixels), (test, None)):
        values = px.float().div_(255.0) if values is None else values
        ones = (1.0,) * px.shape[1]
        source = f"{PixelSplit(px, labels, tuple(0.0 for _ in ones), ones).fingerprint()};{record}"
        splits.append(WhitenedSplit(whitening.whiten(values), labels, source))
    return whitening, splits[0], splits[1]


def unique_names(names: Sequence[str], keys: Sequence[str]) -> list[str]:
    """``names``, with ``" (key)"`` appended to any name that occurs more than once (class names must be unique).

    >>> unique_names(["crane", "dog", "crane"], ["n1", "n2", "n3"])
    ['crane (n1)', 'dog', 'crane (n3)']
    """
    seen: dict[str, int] = {}
    for item in names:
        seen[item] = seen.get(item, 0) + 1
    return [f"{n} ({k})" if seen[n] > 1 else n for n, k in zip(names, keys)]


def _floats(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
