"""``digits``: scikit-learn's 1797 real handwritten 8x8 digits, the dataset every ddcore install has.

A stratified 80/20 train/test split (fixed ``random_state``, so every machine gets the same one), pixel
values scaled to [0, 1], upsampled bilinearly to ``image_size`` (32 by default) and normalised with the
training split's mean and standard deviation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ddcore.data.base import DatasetOptions, ImageDataset, TensorSplit
from ddcore.errors import ConfigError

SPLIT_SEED = 0
TEST_FRACTION = 0.2
DEFAULT_SIZE = 32


def load_digits_dataset(options: DatasetOptions) -> ImageDataset:
    """Build ``digits``: train ``[1437, 1, S, S]``, test ``[360, 1, S, S]``, 10 classes, S = image_size."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    size = options.image_size or DEFAULT_SIZE
    if size < 8:
        raise ConfigError(f"image_size {size} is smaller than the digits' own 8 px; use 8 or more")
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
