"""Dataset factories for the miniature pair ``compdd/mini-easy`` and ``compdd/mini-hard`` (see :mod:`.mini`)."""

from __future__ import annotations

from typing import Literal

import torch

from ddcore import ConfigError, DatasetOptions, ImageDataset
from ddcore.data.base import TensorSplit
from ddcore.data.digits import SPLIT_SEED, TEST_FRACTION
from ddcore_compdd.mini import MINI_SEED, MINI_VERSION, make_easy, make_hard

DEFAULT_SIZE = 32
MIN_SIZE = 16
SIZE_OPTION = "option --image-size / config key 'image_size'"

Level = Literal["easy", "hard"]

DESCRIPTIONS = {
    "easy": "Comp-DD miniature, easy: sklearn digits filling the 32 px frame (grey, same split as digits)",
    "hard": "Comp-DD miniature, hard: the same digits small, at random places, on clutter of other digits",
}


def digits_split() -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """``(pixels [1797, 1, 8, 8] in [0, 1], labels [1797], train positions, test positions)``.

    The split is ddcore's ``digits`` split (same fraction, stratification and seed).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        range(len(labels)), test_size=TEST_FRACTION, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    return pixels, labels, list(train_idx), list(test_idx)


def load_mini(level: Level, options: DatasetOptions) -> ImageDataset:
    """Build ``compdd/mini-<level>``: train ``[1437, 1, S, S]``, test ``[360, 1, S, S]``, 10 classes."""
    size = options.image_size or DEFAULT_SIZE
    if size < MIN_SIZE:
        raise ConfigError(f"compdd/mini-{level} needs an image size of at least {MIN_SIZE} px, got {size} ({SIZE_OPTION})")
    pixels, labels, train_idx, test_idx = digits_split()
    if level == "easy":
        train, test = make_easy(pixels[train_idx], size), make_easy(pixels[test_idx], size)
    else:  # clutter for each split comes from that split's own digits
        train = make_hard(pixels[train_idx], size, seed=MINI_SEED)
        test = make_hard(pixels[test_idx], size, seed=MINI_SEED + 1)
    mean, std = train.mean().item(), train.std().item()
    return ImageDataset(
        name=f"compdd/mini-{level}",
        class_names=[str(d) for d in range(10)],
        train=TensorSplit((train - mean) / std, labels[train_idx]),
        test=TensorSplit((test - mean) / std, labels[test_idx]),
        image_shape=(1, size, size),
        mean=(mean,),
        std=(std,),
        description=DESCRIPTIONS[level],
        extra={"default_augment": "crop", "compdd_subset": f"mini-{level}", "compdd_mini": True, "version": MINI_VERSION},
    )
