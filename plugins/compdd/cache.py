"""A pre-resized copy of image files: decoded once (in parallel), reused by every later run.

Each split becomes one ``uint8`` array ``[N, 3, S, S]`` in NumPy's ``.npy`` format, read back through a
memory map, so a split is never held in memory as a whole and DataLoader workers share the page cache.
Images are squashed to ``S x S`` (the whole image, aspect ratio not kept), as the Comp-DD release's
loader does.

Layout, under ``<cache_dir>/compdd/``::

    <name>-<S>px-<key>/train.npy, val.npy    the pixels, written atomically
    <name>-<S>px-<key>/meta.json             written last: the entry is complete when it exists

``key`` hashes the format version, the size, the resize mode, ddcore's decoding rules
(:data:`ddcore.data.decode.DECODE_VERSION`) and every source file's path (relative to
the data root), size in bytes, modification time, change time and inode (``os.stat`` only: no image is
read), so changing, adding, removing, moving or swapping images builds a new entry instead of reusing a
stale one; a copy of the tree elsewhere (new inodes) builds one too. The key is also the content
fingerprint of the dataset read from the entry (:meth:`CachedSplit.fingerprint`), so experts, teachers
and other caches of ``compdd/<subset>`` miss when the source images change.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ddcore.atomic import atomic_path, write_json
from ddcore.data.decode import DECODE_VERSION
from ddcore.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD, decode_rgb

CACHE_FORMAT = 1
RESIZE = "squash"
DECODE_BATCH = 32


def decode_squashed(path: str, size: int) -> torch.Tensor:
    """Decode ``path`` as RGB and resize the whole image to ``size x size``: ``[3, size, size]`` uint8.

    Raises :class:`~ddcore.data.imagefolder.ImageReadError` naming ``path`` when it cannot be decoded.
    """
    return TF.resize(decode_rgb(path, size), [size, size], antialias=True)


class _DecodeFiles(torch.utils.data.Dataset):
    """``files[i]`` decoded and squashed: ``[3, S, S]`` uint8 (runs inside DataLoader workers)."""

    def __init__(self, files: Sequence[str], size: int, decode: Callable[[str, int], torch.Tensor]):
        self.files, self.size, self.decode = list(files), size, decode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.decode(self.files[index], self.size)


def cache_key(root: Path, splits: dict[str, Sequence[str]], size: int) -> str:
    """A 16-hex-digit key over the format, size, resize mode, decoding rules and every file's path, size,
    mtime, ctime and inode (``os.stat`` only)."""
    digest = hashlib.sha256(
        json.dumps({"format": CACHE_FORMAT, "size": size, "resize": RESIZE, "decode": DECODE_VERSION}).encode()
    )
    for split in sorted(splits):
        for path in splits[split]:
            stat = os.stat(path)
            digest.update(
                f"{split}\0{os.path.relpath(path, root)}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}"
                f"\0{stat.st_ino}\n".encode()
            )
    return digest.hexdigest()[:16]


def write_split(files: Sequence[str], size: int, dest: Path, workers: int) -> None:
    """Decode ``files`` with ``workers`` processes into ``dest`` (``.npy``, ``[N, 3, S, S]`` uint8), atomically."""
    loader = torch.utils.data.DataLoader(
        _DecodeFiles(files, size, decode_squashed),
        batch_size=DECODE_BATCH,
        num_workers=workers,
        collate_fn=torch.stack,
    )
    with atomic_path(dest) as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size))
        start = 0
        for batch in loader:
            array[start : start + len(batch)] = batch.numpy()
            start += len(batch)
        array.flush()
        del array


def ensure_cache(
    folder: Path,
    root: Path,
    splits: dict[str, Sequence[str]],
    size: int,
    workers: int,
) -> dict[str, Path]:
    """``{split: path of its .npy}`` under ``folder``, built first if ``folder/meta.json`` is missing."""
    meta = folder / "meta.json"
    paths = {split: folder / f"{split}.npy" for split in splits}
    if meta.is_file() and all(path.is_file() for path in paths.values()):
        return paths
    folder.mkdir(parents=True, exist_ok=True)
    for split, files in splits.items():
        write_split(files, size, paths[split], workers)
    write_json(meta, {
        "format": CACHE_FORMAT, "size": size, "resize": RESIZE, "root": str(root),
        "counts": {split: len(files) for split, files in splits.items()},
    })  # fmt: skip
    return paths


class CachedSplit(torch.utils.data.Dataset):
    """One split read from a cache array: ``split[i]`` is ``(image [3, S, S] float32 normalised, label)``.

    Holds only the array's path and the labels, so it pickles cheaply into DataLoader workers; each
    process opens its own read-only memory map on first use.
    """

    def __init__(self, path: Path, targets: list[int], mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.path = Path(path)
        self.targets = list(targets)
        self.mean, self.std = list(mean), list(std)
        self._pixels: np.ndarray | None = None

    def _array(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.load(self.path, mmap_mode="r")
            if self._pixels.shape[0] != len(self.targets):
                raise ValueError(f"{self.path} holds {self._pixels.shape[0]} images, expected {len(self.targets)}")
        return self._pixels

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}

    def fingerprint(self) -> str:
        """This split's content fingerprint (:mod:`ddcore.datasig`): sha256 hex of the entry's folder name,
        which ends in the :func:`cache_key` of the source files, the array's name and the labels.
        Reads no pixel."""
        text = f"{self.path.parent.name}/{self.path.name};" + ",".join(str(int(t)) for t in self.targets)
        return hashlib.sha256(text.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pixels = torch.from_numpy(np.array(self._array()[index])).float().div_(255)
        return TF.normalize(pixels, self.mean, self.std), self.targets[index]
