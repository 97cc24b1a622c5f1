"""``imagefolder``: your own images, one folder per class, streamed from disk.

Layout under ``--data-root`` (config key ``data_root``)::

    root/train/<class name>/<image>     the training split
    root/val/<class name>/<image>       the held-out split (ddcore's ``test``)

Class names are the sorted folder names of ``train/`` (label = position); ``val/`` must hold the same
class folders. Images are the files directly in a class folder ending in one of :data:`IMAGE_SUFFIXES`
(any case); other files and hidden names (``.DS_Store``, ``._x.jpg``, ``.ipynb_checkpoints``) are
ignored. Construction lists folders and reads image headers (no pixels), so every layout problem is
reported before training starts; images are decoded one at a time by :class:`FolderSplit` with
:func:`ddcore.data.decode.decode_image` (modes, bit depths, EXIF orientation, alpha, ICC profiles: see
that module), also inside DataLoader worker processes.

Decided once per dataset, from the headers of at most :data:`~ddcore.data.decode.SURVEY_LIMIT` (1000)
files at evenly spaced positions of the sorted train + val list (all files when there are fewer):

- **Channels**: 1 (grey; normalised with :data:`GREY_MEAN` / :data:`GREY_STD`) when every file read is
  grey (Pillow modes 1, L, LA, I;16, I, F), else 3 (RGB; ImageNet normalisation). A grey image in an
  RGB dataset repeats its channel; a colour image outside the files read, in a dataset decided grey,
  is read as its luma.
- **Size** ``S`` (images are ``[C, S, S]``): ``image_size`` when given (shorter side resized to ``S``,
  then center-cropped). When not given (0 / None): the files' own size, i.e. the shorter side every
  file read shares (no image is rescaled; a non-square one is center-cropped to ``S x S``). When the
  files read differ in their shorter side, construction refuses with one line naming the two most
  common sides and asking for ``--image-size``. An image outside the files read whose shorter side
  differs is resized to ``S`` as if ``--image-size S`` had been given.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision.transforms.v2.functional as TF

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.decode import DECODE_VERSION, Survey, decode_image, decode_rgb8, survey
from ddcore.data.decode import ImageReadError  # noqa: F401  (its old home: importing it from here keeps working)
from ddcore.errors import ConfigError
from ddcore.vocab import DEFAULT_AUGMENT

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".pbm", ".pgm", ".ppm", ".pnm")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
GREY_MEAN = (0.449,)  # ImageNet's mean and std averaged over its three channels, for 1-channel datasets
GREY_STD = (0.226,)
ROOT_OPTION = "option --data-root / config key 'data_root'"
SIZE_OPTION = "option --image-size / config key 'image_size'"
LAYOUT = "expected <root>/train/<class>/<image> and <root>/val/<class>/<image>"
MAX_NAMED = 5  # names listed in one error message before "... (N more)"


class FolderSplit(torch.utils.data.Dataset):
    """One split streamed from image files: ``split[i]`` is ``(image [C, S, S] float32 normalised, label)``.

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
        channels: int = 3,
    ):
        if len(paths) != len(targets):
            raise ValueError("paths and targets differ in length")
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean and std need {channels} values, one per channel")
        self.paths = paths
        self.targets = targets
        self.image_size = image_size
        self.mean = mean
        self.std = std
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = read_image(self.paths[index], self.image_size, self.channels)  # [C, S, S] in [0, 1]
        return TF.normalize(pixels, list(self.mean), list(self.std)), self.targets[index]


def decode_rgb(path: str, size: int) -> torch.Tensor:
    """Decode ``path`` as RGB at no less than ``size`` px a side: ``[3, H, W]`` uint8, not resized yet.

    Follows :mod:`ddcore.data.decode` (:func:`~ddcore.data.decode.decode_rgb8`), rounded to 8 bits.
    Raises :class:`ImageReadError` (a :class:`ConfigError`) naming ``path`` when the file cannot be decoded.
    """
    return decode_rgb8(path, size)


def read_image(path: str, size: int, channels: int = 3) -> torch.Tensor:
    """Decode ``path``, resize its shorter side to ``size``, center-crop: ``[channels, size, size]`` in [0, 1].

    Decoding follows :func:`ddcore.data.decode.decode_image`; an image whose shorter side is already
    ``size`` is not resampled. Raises :class:`ImageReadError` (a :class:`ConfigError`) naming ``path``
    when the file cannot be decoded.
    """
    pixels = decode_image(path, channels, size)
    if min(pixels.shape[-2:]) != size:
        pixels = TF.resize(pixels, [size], antialias=True).clamp_(0, 1)  # shorter side -> size
    return TF.center_crop(pixels, [size, size])


def load_imagefolder(options: DatasetOptions) -> ImageDataset:
    """Build ``imagefolder`` from ``options.root``: train/val :class:`FolderSplit`, images ``[C, S, S]``.

    ``C`` and ``S`` follow the module docstring (``S``: ``options.image_size`` when given, else the
    files' own size). Lists files and reads at most 1000 image headers, no pixels. Raises
    :class:`ConfigError` for a missing or malformed layout, or for sizes that differ when no
    ``image_size`` is given; :class:`ImageReadError` naming a file whose header cannot be read.
    """
    if options.image_size is not None and options.image_size < 0:
        raise ConfigError(f"image size must be at least 1 pixel, got {options.image_size} ({SIZE_OPTION})")
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

    headers = survey([path for files in train_files + val_files for path in files])
    size, size_note = _resolve_size(options.image_size, headers, root)
    channels = headers.channels
    train = _split(train_files, size, channels)
    test = _split(val_files, size, channels)
    return ImageDataset(
        name="imagefolder",
        class_names=class_names,
        train=train,
        test=test,
        image_shape=(channels, size, size),
        mean=train.mean,
        std=train.std,
        workers=options.workers,
        description=(
            f"image folder {root}: {len(class_names)} classes, {len(train)} train / {len(test)} val images, "
            f"{'grey' if channels == 1 else 'RGB'} {size}x{size} ({size_note}), ImageNet normalisation"
            + (" averaged over channels" if channels == 1 else "")
        ),
        extra={
            "default_augment": DEFAULT_AUGMENT,
            "root": str(root),
            "image_size_from": "option" if options.image_size else "files",
            "headers_read": headers.read,
            "decode_version": DECODE_VERSION,
        },
    )


def _resolve_size(requested: int | None, headers: Survey, root: Path) -> tuple[int, str]:
    """``(S, how S was chosen)``: ``requested`` when given, else the shorter side every file read shares."""
    if requested:
        return requested, "--image-size: shorter side resized, center-cropped"
    read = "all" if headers.read == headers.total else f"{headers.read} evenly spaced"
    sides = headers.shorter_sides.most_common()
    if len(sides) == 1:
        return sides[0][0], f"the files' own size: shorter side of {read} of {headers.total} images"
    common = ", ".join(f"{side} px in {count}" for side, count in sides[:2])
    raise ConfigError(
        f"the images under {root} differ in size (shorter side {common} of the {headers.read} files read, "
        f"{len(sides)} different sides); choose the side to resize them to ({SIZE_OPTION})"
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


def _split(files_per_class: list[list[str]], size: int, channels: int = 3) -> FolderSplit:
    """Concatenate the classes' files in label order into one :class:`FolderSplit` of ``channels``."""
    paths = [path for files in files_per_class for path in files]
    targets = [label for label, files in enumerate(files_per_class) for _ in files]
    mean, std = (GREY_MEAN, GREY_STD) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    return FolderSplit(paths, targets, size, mean, std, channels)


def short_list(names: list[str]) -> str:
    """``names`` joined for a one-line message, at most :data:`MAX_NAMED` of them.

    >>> short_list(["a", "b"]), short_list([str(i) for i in range(7)])
    ('a, b', '0, 1, 2, 3, 4, ... (2 more)')
    """
    shown = ", ".join(names[:MAX_NAMED])
    return shown + (f", ... ({len(names) - MAX_NAMED} more)" if len(names) > MAX_NAMED else "")
