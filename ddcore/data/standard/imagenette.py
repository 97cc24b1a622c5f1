"""``imagenette`` and ``imagewoof``: fast.ai's 10-class ImageNet subsets, streamed from disk (never downloaded).

Layout under ``--data-root`` (any of fast.ai's archives unpacked, full size, 320 px or 160 px)::

    root/train/<wnid>/*.JPEG     the training split
    root/val/<wnid>/*.JPEG       the held-out split (ddcore's test split)

Classes: the standard subsets' ImageNet classes (:data:`SUBSETS`, by ImageNet-1K index as MTT's code lists
them), in wnid order (the folders sorted, as ImageFolder reads them; the same as MTT for ImageNette, while
MTT's ImageWoof list is in another order); names from the ImageNet class index shipped with ddcore
(``ddcore_data.imagenet_class_index``). ``train/`` and ``val/`` must hold exactly those ten folders.
Images: decoded one at a time (:class:`~ddcore.data.imagefolder.FolderSplit`: shorter side resized to
``S``, center crop, RGB), ``S`` = ``--image-size`` or **128** (the DD literature's resolution for these
subsets, where the depth rule gives ConvNetD5). Normalisation: ImageNet's mean/std.
"""

from __future__ import annotations

from pathlib import Path

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.data.decode import DECODE_VERSION
from ddcore.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, IMAGE_SUFFIXES, FolderSplit, image_files, short_list
from ddcore.data.standard.common import ROOT_OPTION, check_root, check_size, did_you_mean
from ddcore.errors import ConfigError
from ddcore.vocab import DEFAULT_AUGMENT

#: ImageNet-1K class indices of each subset (MTT's ``Config.imagenette`` / ``Config.imagewoof``, sorted).
SUBSETS: dict[str, tuple[int, ...]] = {
    "imagenette": (0, 217, 482, 491, 497, 566, 569, 571, 574, 701),
    "imagewoof": (155, 159, 162, 167, 182, 193, 207, 229, 258, 273),
}
DEFAULT_SIZE = 128


def subset_classes(name: str) -> list[tuple[str, str]]:
    """``[(wnid, name), ...]`` of subset ``name`` in wnid order, from the shipped ImageNet class index."""
    from ddcore_data import imagenet_class_index

    index = imagenet_class_index()
    return sorted(index[i] for i in SUBSETS[name])


def layout(name: str) -> str:
    return f"<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG for the {len(SUBSETS[name])} {name} wnids"


def load_imagenette(name: str, options: DatasetOptions) -> ImageDataset:
    """Build ``imagenette`` or ``imagewoof`` (module docstring): images ``[3, S, S]``, S = ``image_size`` or 128.

    Lists files, reads no pixels. Raises :class:`ConfigError` (one line naming the folder and ``--data-root``)
    for a missing root or split folder, class folders that are not the subset's wnids, or an empty class.
    """
    size = check_size(options.image_size, DEFAULT_SIZE)
    expected = layout(name)
    root = check_root(name, options.root, expected)
    classes = subset_classes(name)
    wnids = [wnid for wnid, _ in classes]
    splits = {}
    for split in ("train", "val"):
        folder = root / split
        if not folder.is_dir():
            hint = did_you_mean(root, lambda p: (p / "train").is_dir() and (p / "val").is_dir())
            raise ConfigError(f"data root {root} has no {split}/ folder; dataset {name} expects {expected}{hint} ({ROOT_OPTION})")
        splits[split] = _split(name, folder, wnids, size)
    train, test = splits["train"], splits["val"]
    return ImageDataset(
        name=name,
        class_names=[label for _, label in classes],
        train=train,
        test=test,
        image_shape=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        workers=options.workers,
        description=(
            f"{name} {root}: {len(wnids)} ImageNet classes, {len(train)} train / {len(test)} val (test) images, "
            f"RGB {size}x{size} (shorter side resized, center-cropped), ImageNet normalisation"
        ),
        extra={
            "default_augment": DEFAULT_AUGMENT,
            "root": str(root),
            "wnids": wnids,
            "image_size_from": "option" if options.image_size else "dataset",
            "decode_version": DECODE_VERSION,
        },
    )


def _split(name: str, folder: Path, wnids: list[str], size: int) -> FolderSplit:
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    missing = [w for w in wnids if w not in found]
    extra = [f for f in found if f not in wnids]
    if missing or extra:
        parts = ([f"missing {short_list(missing)}"] if missing else []) + ([f"not in {name}: {short_list(extra)}"] if extra else [])
        raise ConfigError(
            f"class folders of {folder} are not the {name} wnids ({'; '.join(parts)}); expected {layout(name)} ({ROOT_OPTION})"
        )
    paths: list[str] = []
    targets: list[int] = []
    for label, wnid in enumerate(wnids):
        files = image_files(folder / wnid)
        if not files:
            raise ConfigError(f"dataset {name}: no images ({' '.join(IMAGE_SUFFIXES)}) in {folder / wnid} ({ROOT_OPTION})")
        paths += files
        targets += [label] * len(files)
    return FolderSplit(paths, targets, size, IMAGENET_MEAN, IMAGENET_STD, 3)
