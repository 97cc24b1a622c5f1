"""``digits``: scikit-learn's 1797 real handwritten 8x8 digits, the dataset every ddcore install has.

A stratified 80/20 train/test split (fixed ``random_state``, so every machine gets the same one), pixel
values scaled to [0, 1], upsampled bilinearly to ``image_size`` (32 by default) and normalised with the
training split's mean and standard deviation. The tensors live in memory: an ``image_size`` whose tensors
would take more than :data:`MEMORY_FRACTION` of the available memory is refused before allocating.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ddcore.data.base import DatasetOptions, ImageDataset, TensorSplit
from ddcore.errors import ConfigError

SPLIT_SEED = 0
TEST_FRACTION = 0.2
DEFAULT_SIZE = 32
NUM_IMAGES = 1797
#: Copies of the float32 pixels alive at the peak of loading: the upsampled images, the training rows picked
#: out of them, and the normalised training and test splits.
PEAK_COPIES = 3
#: The share of the available memory the dataset may take (the rest is for the networks and the run).
MEMORY_FRACTION = 0.5


def available_memory() -> int | None:
    """Bytes of memory available now: psutil's ``available`` when installed, else the free physical pages
    (``os.sysconf``); ``None`` when neither can tell."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(size: int, available: int | None = None) -> None:
    """Raise :class:`ConfigError` (naming ``--image-size``) when digits at ``size`` px would need more than
    :data:`MEMORY_FRACTION` of ``available`` bytes (default: :func:`available_memory`).

    Bytes needed: ``PEAK_COPIES * 1797 * size**2 * 4`` (float32, one channel).

    >>> check_memory(32, available=2**30)
    >>> check_memory(4096, available=2**34)
    Traceback (most recent call last):
    ...
    ddcore.errors.ConfigError: digits at image_size 4096 needs about 336.9 GiB in memory, more than half of the 16.0 GiB available; use a smaller --image-size (default 32)
    """
    available = available_memory() if available is None else available
    needed = PEAK_COPIES * NUM_IMAGES * size * size * 4
    if available is not None and needed > MEMORY_FRACTION * available:
        raise ConfigError(
            f"digits at image_size {size} needs about {needed / 2**30:.1f} GiB in memory, more than half of the "
            f"{available / 2**30:.1f} GiB available; use a smaller --image-size (default {DEFAULT_SIZE})"
        )


def load_digits_dataset(options: DatasetOptions) -> ImageDataset:
    """Build ``digits``: train ``[1437, 1, S, S]``, test ``[360, 1, S, S]``, 10 classes, S = image_size."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    size = options.image_size or DEFAULT_SIZE
    if size < 8:
        raise ConfigError(f"image_size {size} is smaller than the digits' own 8 px; use 8 or more")
    check_memory(size)
    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [1797, 1, 8, 8]
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=TEST_FRACTION, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    if size != 8:
        pixels = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False)
    train_pixels = pixels[train_idx]
    mean = train_pixels.mean().item()
    std = train_pixels.std().item()
    normalise = lambda x: (x - mean) / std  # noqa: E731
    return ImageDataset(
        name="digits",
        class_names=[str(d) for d in range(10)],
        train=TensorSplit(normalise(train_pixels), labels[train_idx]),
        test=TensorSplit(normalise(pixels[test_idx]), labels[test_idx]),
        image_shape=(1, size, size),
        mean=(mean,),
        std=(std,),
        description="scikit-learn handwritten digits (1797 real 8x8 images), stratified 80/20 split",
        extra={"default_augment": "crop"},
    )
