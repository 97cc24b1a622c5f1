"""Dataset factories for the sixteen Comp-DD subsets over a user's ImageNet folder.

Layout under ``--data-root`` (config key ``data_root``)::

    root/train/<wnid>/<image>     ImageNet-1K's training images, one folder per wnid (n01440764, ...)
    root/val/<wnid>/<image>       the 50 validation images per class, sorted into wnid folders

Only the subset's ten (music-hard: nine) wnid folders are read. Any missing one is reported, by wnid
and class name, before anything is decoded. The images are decoded once into a pre-resized cache
(:mod:`.cache`, 128 px by default, squashed as in the release) and read from it afterwards.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ddcore import ConfigError, DatasetOptions, ImageDataset
from ddcore.data.imagefolder import IMAGE_SUFFIXES, IMAGENET_MEAN, IMAGENET_STD, ROOT_OPTION, image_files, short_list
from ddcore_compdd.cache import CachedSplit, cache_key, ensure_cache
from ddcore_compdd.subsets import SubsetInfo, resolve_subset

DEFAULT_SIZE = 128
SIZE_OPTION = "option --image-size / config key 'image_size'"
LAYOUT = "expected <root>/train/<wnid>/<image> and <root>/val/<wnid>/<image> (ImageNet-1K with val/ sorted into wnid folders)"


class SubsetDefectWarning(UserWarning):
    """A published subset list had to be changed to be loadable (music-hard's repeated banjo)."""


def check_root(root: Path | None, dataset: str) -> Path:
    """The data root as an absolute folder holding ``train/`` and ``val/``; else a one-line ConfigError."""
    if root is None or str(root) == "":
        raise ConfigError(f"dataset {dataset} needs your ImageNet folder; {LAYOUT} ({ROOT_OPTION})")
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise ConfigError(f"data root {root} is not an existing folder ({ROOT_OPTION})")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise ConfigError(f"data root {root} has no {split}/ folder; {LAYOUT} ({ROOT_OPTION})")
    return root


def subset_files(root: Path, info: SubsetInfo) -> dict[str, list[list[str]]]:
    """``{"train": files per label, "val": files per label}``; missing or empty wnid folders are one error."""
    missing: list[str] = []
    empty: list[str] = []
    found: dict[str, list[list[str]]] = {}
    for split in ("train", "val"):
        per_class = []
        for wnid, name in zip(info.wnids, info.class_names):
            folder = root / split / wnid
            if not folder.is_dir():
                missing.append(f"{split}/{wnid} ({name})")
                per_class.append([])
                continue
            files = image_files(folder)
            if not files:
                empty.append(f"{split}/{wnid} ({name})")
            per_class.append(files)
        found[split] = per_class
    if missing:
        raise ConfigError(
            f"compdd/{info.name}: {len(missing)} wnid folder(s) missing under {root}: {short_list(missing)}; "
            f"{LAYOUT} ({ROOT_OPTION})"
        )
    if empty:
        raise ConfigError(
            f"compdd/{info.name}: wnid folder(s) with no images ({' '.join(IMAGE_SUFFIXES)}) under {root}: "
            f"{short_list(empty)} ({ROOT_OPTION})"
        )
    return found


def load_subset(name: str, options: DatasetOptions) -> ImageDataset:
    """Build ``compdd/<name>`` (``bird-hard``, ...): train and val from the cache, ``[3, S, S]`` images."""
    size = options.image_size or DEFAULT_SIZE
    if size < 1:
        raise ConfigError(f"image size must be at least 1 pixel, got {size} ({SIZE_OPTION})")
    info = resolve_subset(name)
    for defect in info.defects:
        warnings.warn(f"compdd/{name}: {defect}", SubsetDefectWarning, stacklevel=2)
    root = check_root(options.root, f"compdd/{name}")
    files = subset_files(root, info)
    flat = {split: [f for per_class in groups for f in per_class] for split, groups in files.items()}
    targets = {split: [label for label, fs in enumerate(groups) for _ in fs] for split, groups in files.items()}
    folder = _cache_root(options) / "compdd" / f"{name}-{size}px-{cache_key(root, flat, size)}"
    paths = ensure_cache(folder, root, flat, size, options.workers)
    notes = "; ".join(info.defects)
    return ImageDataset(
        name=f"compdd/{name}",
        class_names=list(info.class_names),
        train=CachedSplit(paths["train"], targets["train"]),
        test=CachedSplit(paths["val"], targets["val"]),
        image_shape=(3, size, size),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        workers=options.workers,
        description=(
            f"Comp-DD {name}: {len(info.indices)} ImageNet classes, {len(flat['train'])} train / "
            f"{len(flat['val'])} val images from {root}, squashed to {size}x{size}, ImageNet normalisation"
            + (f"; NOTE: {notes}" if notes else "")
        ),
        extra={
            "default_augment": "crop_flip",
            "imagenet_index": list(info.indices),
            "wnids": list(info.wnids),
            "compdd_subset": name,
            "compdd_defects": list(info.defects),
            "root": str(root),
            "cache": str(folder),
        },
    )


def _cache_root(options: DatasetOptions) -> Path:
    if options.cache_dir is not None:
        return Path(options.cache_dir)
    from ddcore.runner import default_cache_dir

    return default_cache_dir()
