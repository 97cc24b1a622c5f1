"""``imagefolder``: your own images, one folder per class, streamed from disk.

Layout under ``--data-root`` (config key ``data_root``)::

    root/train/<class name>/<image>     the training split
    root/val/<class name>/<image>       the held-out split (ddcore's ``test``)

Class names are the sorted folder names of ``train/`` (label = position); ``val/`` must hold the same
class folders. Images are the files directly in a class folder ending in .jpg .jpeg .png .bmp .webp
(any case); other files and hidden names (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``) are
ignored. Construction only lists folders, so every layout problem is reported before training starts;
images are decoded one at a time by :class:`FolderSplit`, also inside DataLoader worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.errors import ConfigError
from ddcore.vocab import DEFAULT_AUGMENT

DEFAULT_SIZE = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ROOT_OPTION = "option --data-root / config key 'data_root'"
SIZE_OPTION = "option --image-size / config key 'image_size'"
LAYOUT = "expected <root>/train/<class>/<image> and <root>/val/<class>/<image>"
MAX_NAMED = 5  # names listed in one error message before "... (N more)"


class ImageReadError(ConfigError):
    """An image file that cannot be decoded; the message names its path.

    A DataLoader worker's error reaches the main process rebuilt from a message that embeds the
    worker's traceback; only its last line (this error's own message) is kept, so it stays one line.
    """

    def __init__(self, message: str):
        if "\n" in message:
            last = message.rstrip().rsplit("\n", 1)[-1]
            prefix = f"{type(self).__module__}.{type(self).__qualname__}: "
            message = last.removeprefix(prefix)
        super().__init__(message)


class FolderSplit(torch.utils.data.Dataset):
    """One split streamed from image files: ``split[i]`` is ``(image [3, S, S] float32 normalised, label)``.

    Holds only the file paths and ``targets`` (one int per path), so it pickles cheaply into
    DataLoader workers; each ``__getitem__`` opens, decodes and closes one file.
    """

    def __init__(
        self,
        paths: list[str],
        targets: list[int],
        image_size: int,
        mean: tuple[float, ...] = IMAGENET_MEAN,
        std: tuple[float, ...] = IMAGENET_STD,
    ):
        if len(paths) != len(targets):
            raise ValueError("paths and targets differ in length")
        self.paths = paths
        self.targets = targets
        self.image_size = image_size
        self.mean = mean
        self.std = std

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = read_image(self.paths[index], self.image_size)  # [3, S, S] in [0, 1]
        return TF.normalize(pixels, list(self.mean), list(self.std)), self.targets[index]


def decode_rgb(path: str, size: int) -> torch.Tensor:
    """Decode ``path`` as RGB at no less than ``size`` px a side: ``[3, H, W]`` uint8, not resized yet.

    Raises :class:`ImageReadError` (a :class:`ConfigError`) naming ``path`` when the file cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, never below ``size``
            rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc} (fix or remove the file under --data-root)") from None
    return TF.pil_to_tensor(rgb)


def read_image(path: str, size: int) -> torch.Tensor:
    """Decode ``path`` as RGB, resize its shorter side to ``size`` and center-crop: ``[3, size, size]`` in [0, 1].

    Raises :class:`ImageReadError` (a :class:`ConfigError`) naming ``path`` when the file cannot be decoded.
    """
    pixels = TF.resize(decode_rgb(path, size), [size], antialias=True)  # shorter side -> size
    pixels = TF.center_crop(pixels, [size, size])
    return pixels.float().div_(255)


def load_imagefolder(options: DatasetOptions) -> ImageDataset:
    """Build ``imagefolder`` from ``options.root``: train/val :class:`FolderSplit`, images ``[3, S, S]``.

    ``S`` is ``options.image_size`` (32 when not given). Only lists files; raises :class:`ConfigError`
    for a missing or malformed layout.
    """
    size = options.image_size or DEFAULT_SIZE
    if size < 1:
        raise ConfigError(f"image size must be at least 1 pixel, got {size} ({SIZE_OPTION})")
    root = _check_root(options.root)
    train_dir, val_dir = _split_dir(root, "train"), _split_dir(root, "val")

    class_names = _class_folders(train_dir)
    if not class_names:
        raise ConfigError(f"{train_dir} has no class folders; {LAYOUT} ({ROOT_OPTION})")
    val_names = _class_folders(val_dir)
    missing = sorted(set(class_names) - set(val_names))
    extra = sorted(set(val_names) - set(class_names))
    if missing or extra:
        parts = ([f"missing from val/: {short_list(missing)}"] if missing else []) + (
            [f"not in train/: {short_list(extra)}"] if extra else []
        )
        raise ConfigError(
            f"class folders of {val_dir} differ from {train_dir}: {'; '.join(parts)} ({ROOT_OPTION})"
        )

    train_files = [image_files(train_dir / name) for name in class_names]
    val_files = [image_files(val_dir / name) for name in class_names]
    empty = [f"train/{n}" for n, f in zip(class_names, train_files) if not f]
    empty += [f"val/{n}" for n, f in zip(class_names, val_files) if not f]
    if empty:
        raise ConfigError(
            f"class folder(s) with no images ({' '.join(IMAGE_SUFFIXES)}) under {root}: {short_list(empty)} ({ROOT_OPTION})"
        )

    train = _split(train_files, size)
    test = _split(val_files, size)
    return ImageDataset(
        name="imagefolder",
        class_names=class_names,
        train=train,
        test=test,
        image_shape=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        workers=options.workers,
        description=(
            f"image folder {root}: {len(class_names)} classes, {len(train)} train / {len(test)} val images, "
            f"resized to {size}x{size}, ImageNet normalisation"
        ),
        extra={"default_augment": DEFAULT_AUGMENT, "root": str(root)},
    )


def _check_root(root: Path | None) -> Path:
    if root is None or str(root) == "":
        raise ConfigError(f"dataset imagefolder needs a folder of images; {LAYOUT} ({ROOT_OPTION})")
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise ConfigError(f"data root {root} does not exist ({ROOT_OPTION})")
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not a folder ({ROOT_OPTION})")
    return root


def _split_dir(root: Path, split: str) -> Path:
    path = root / split
    if not path.is_dir():
        raise ConfigError(f"data root {root} has no {split}/ folder; {LAYOUT} ({ROOT_OPTION})")
    return path


def _entries(folder: Path) -> list[os.DirEntry]:
    """The non-hidden entries of ``folder``, sorted by name."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise ConfigError(f"cannot list {folder}: {exc.strerror or exc} ({ROOT_OPTION})") from None


def _class_folders(split_dir: Path) -> list[str]:
    return [e.name for e in _entries(split_dir) if e.is_dir()]


def image_files(class_dir: Path) -> list[str]:
    """The image files directly in ``class_dir`` (suffixes :data:`IMAGE_SUFFIXES`, any case; hidden names
    skipped), as paths sorted by name; an unreadable folder is a :class:`ConfigError`."""
    return [
        e.path for e in _entries(class_dir) if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file()
    ]


def _split(files_per_class: list[list[str]], size: int) -> FolderSplit:
    """Concatenate the classes' files in label order into one :class:`FolderSplit`."""
    paths = [path for files in files_per_class for path in files]
    targets = [label for label, files in enumerate(files_per_class) for _ in files]
    return FolderSplit(paths, targets, size)


def short_list(names: list[str]) -> str:
    """``names`` joined for a one-line message, at most :data:`MAX_NAMED` of them.

    >>> short_list(["a", "b"]), short_list([str(i) for i in range(7)])
    ('a, b', '0, 1, 2, 3, 4, ... (2 more)')
    """
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f", ... ({len(names) - MAX_NAMED} more)" if len(names) > MAX_NAMED else "")
