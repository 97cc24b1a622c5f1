"""Dataset factories for the proxy pair ``compdd/proxy-easy`` and ``compdd/proxy-hard`` (see :mod:`.proxy`).

Same digits and train/test split as the miniature (ddcore's ``digits`` split: 1437/360 distinct source
digits). Each split is drawn from its own seed (``PROXY_SEED`` for train, ``PROXY_SEED + 1`` for test), so
no training image's clutter or placement repeats in the test split. Grey, ``[1, S, S]``, ``S = 32`` by
default, normalised with the training split's mean and std.

``extra["boxes"]``: ``{"train": [N, 4], "test": [M, 4]}`` int64 ``(x0, y0, x1, y1)`` pixel boxes of each
image's digit (exclusive ends), indexed by position in the split as built here. A run that carves a validation
split keeps positions in its :class:`~ddcore.data.split.IndexedSplit` views (``dataset.train.indices``).
"""

from __future__ import annotations

from typing import Literal

import torch

from ddcore import ConfigError, DatasetOptions, ImageDataset
from ddcore.data.base import TensorSplit
from ddcore_compdd.minidata import digits_split
from ddcore_compdd.proxy import LEVELS, PROXY_SEED, PROXY_VERSION, render, sample_photos

DEFAULT_SIZE = 32
MIN_SIZE = 32
SIZE_OPTION = "option --image-size / config key 'image_size'"

Level = Literal["easy", "hard"]

DESCRIPTIONS = {
    "easy": "Comp-DD proxy, easy: a digit filling the frame over a dim crop of a real photo, 32 px grey (offline)",
    "hard": "Comp-DD proxy, hard: a half-size, off-centre digit on a bright close-up of a real photo, 32 px grey (offline)",
}


def build_proxy(level: Level, size: int = DEFAULT_SIZE, seed: int = PROXY_SEED) -> dict[str, torch.Tensor]:
    """The raw splits of ``compdd/proxy-<level>``, before normalisation.

    Returns ``train``/``test`` images ``[N, 1, size, size]`` float32 in ``[0, 1]``, ``train_labels``/
    ``test_labels`` ``[N]`` int64, ``train_boxes``/``test_boxes`` ``[N, 4]`` int64. Deterministic given ``seed``.
    """
    pixels, labels, train_idx, test_idx = digits_split()
    photos = sample_photos()
    spec = LEVELS[level]
    train, train_boxes = render(pixels[train_idx], spec, size, seed, photos)
    test, test_boxes = render(pixels[test_idx], spec, size, seed + 1, photos)
    return {
        "train": train, "test": test, "train_labels": labels[train_idx], "test_labels": labels[test_idx],
        "train_boxes": train_boxes, "test_boxes": test_boxes,
    }  # fmt: skip


def load_proxy(level: Level, options: DatasetOptions) -> ImageDataset:
    """Build ``compdd/proxy-<level>``: train ``[1437, 1, S, S]``, test ``[360, 1, S, S]``, 10 classes.

    Raises:
        ConfigError: ``--image-size`` below :data:`MIN_SIZE`.
    """
    size = options.image_size or DEFAULT_SIZE
    if size < MIN_SIZE:
        raise ConfigError(f"compdd/proxy-{level} needs an image size of at least {MIN_SIZE} px, got {size} ({SIZE_OPTION})")
    raw = build_proxy(level, size)
    mean, std = raw["train"].mean().item(), raw["train"].std().item()
    return ImageDataset(
        name=f"compdd/proxy-{level}",
        class_names=[str(d) for d in range(10)],
        train=TensorSplit((raw["train"] - mean) / std, raw["train_labels"]),
        test=TensorSplit((raw["test"] - mean) / std, raw["test_labels"]),
        image_shape=(1, size, size),
        mean=(mean,),
        std=(std,),
        description=DESCRIPTIONS[level],
        extra={
            "default_augment": "crop", "compdd_subset": f"proxy-{level}", "compdd_mini": True,
            "version": f"proxy-{PROXY_VERSION}", "boxes": {"train": raw["train_boxes"], "test": raw["test_boxes"]},
        },  # fmt: skip
    )
