"""The validation split: a stratified, seeded holdout carved from the training split.

Anything that *chooses* on accuracy (the best set of ``tm.eval_every``, an lr search, a preset
tuned by a script) must choose on images that neither the choice's training nor the final test
saw. :func:`carve_validation` takes ``round(fraction x n_c)`` images of every class ``c`` (at least
one, and never all of a class) out of the training split, picked by a generator seeded with
``derive_seed(seed, "validation")``; they form ``dataset.split("val")`` and are **removed** from
``dataset.split("train")``, so selection, experts, matching, teachers and the baselines never see
them (an honest holdout). The test split is untouched and is measured once, at the end.

When a run carves it (:func:`validation_reason`): config key ``validation`` (the fraction, default
0.1; 0 = never) and ``holdout`` (``"auto"``: only when something in the run selects on accuracy,
i.e. the distiller's ``eval_every > 0``; ``"always"``: every run, e.g. a tuning script that reads
``eval/val_acc_mean``). The run records ``records["validation"]`` (:func:`split_record`) in its
manifest. The carved dataset's fingerprint (:func:`ddcore.datasig.dataset_fingerprint`) differs
from the uncarved one's, so caches (experts, teachers) never mix the two training splits.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Sequence

import torch

from ddcore.context import derive_seed
from ddcore.data.base import ImageDataset
from ddcore.errors import ConfigError


class IndexedSplit(torch.utils.data.Dataset):
    """The images ``indices`` of another split (``base``), in that order; an :class:`~ddcore.data.base.ImageSplit`.

    ``split[i]`` is ``base[indices[i]]`` (``(image [C, H, W] float32, label int)``); ``targets`` lists
    the labels without loading images. ``fingerprint()`` hashes the base split's fingerprint and the
    indices (:func:`ddcore.datasig.split_fingerprint`), so it changes when either does.
    """

    def __init__(self, base: Any, indices: Sequence[int]):
        self.base = base
        self.indices = [int(i) for i in indices]
        targets = base.targets
        self.targets = [int(targets[i]) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.base[self.indices[index]]

    def fingerprint(self) -> str:
        from ddcore.datasig import split_fingerprint

        digest = hashlib.sha256(split_fingerprint(self.base).encode())
        digest.update(",".join(map(str, self.indices)).encode())
        return digest.hexdigest()


def validation_counts(class_sizes: Sequence[int], fraction: float) -> list[int]:
    """Images held out per class: ``round(fraction x n)``, at least 1 and at most ``n - 1``.

    Raises :class:`ConfigError` for a class with fewer than 2 training images (nothing to hold out).

    >>> validation_counts([10, 20, 3], 0.1)
    [1, 2, 1]
    >>> validation_counts([10, 4], 0.9)
    [9, 3]
    """
    counts = []
    for c, n in enumerate(class_sizes):
        if n < 2:
            raise ConfigError(
                f"class {c} has {n} training image(s): no validation image can be held out of it "
                "(config key 'validation' = 0 turns the validation split off)"
            )
        counts.append(min(n - 1, max(1, round(fraction * n))))
    return counts


def carve_indices(by_class: Sequence[Sequence[int]], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """``(train positions, validation positions)``, each sorted, from each class's positions ``by_class[c]``.

    Deterministic: class ``c``'s held-out images are the first :func:`validation_counts` of a
    permutation drawn from ``derive_seed(seed, "validation", c)``.
    """
    counts = validation_counts([len(group) for group in by_class], fraction)
    train: list[int] = []
    val: list[int] = []
    for c, (group, count) in enumerate(zip(by_class, counts)):
        generator = torch.Generator().manual_seed(derive_seed(seed, "validation", c))
        order = torch.randperm(len(group), generator=generator).tolist()
        held = set(order[:count])
        for k, position in enumerate(group):
            (val if k in held else train).append(int(position))
    return sorted(train), sorted(val)


def carve_validation(dataset: ImageDataset, fraction: float, seed: int) -> ImageDataset:
    """A copy of ``dataset`` whose training split lost a stratified ``fraction`` of every class to ``split("val")``.

    Args:
        dataset: the dataset as its factory built it (no validation split yet).
        fraction: share of each class's training images to hold out, in ``(0, 1)``.
        seed: the run seed; the same seed and data give the same split.

    Returns a new :class:`ImageDataset` (``train`` and ``val`` are :class:`IndexedSplit` views of the
    original training split; test, classes and normalisation unchanged). Raises :class:`ConfigError`
    for a fraction outside ``(0, 1)`` or a class with fewer than 2 training images.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"config key 'validation' must be in [0, 1) (0: no validation split), got {fraction}")
    if getattr(dataset, "val", None) is not None:
        raise ConfigError(f"dataset {dataset.name} already has a validation split")
    train_pos, val_pos = carve_indices(dataset.indices_by_class("train"), fraction, seed)
    declared = dataset.fingerprint
    return dataclasses.replace(
        dataset,
        train=IndexedSplit(dataset.train, train_pos),
        val=IndexedSplit(dataset.train, val_pos),
        extra=dict(dataset.extra),
        fingerprint=f"{declared}|validation={fraction!r},seed={seed}" if declared else None,
    )


def validation_reason(config: Any) -> str | None:
    """Why the run ``config`` (a :class:`~ddcore.config.RunConfig`) carves a validation split, or ``None``.

    ``validation = 0``: never. ``holdout = "always"``: always. ``"auto"``: when the chosen distiller's
    options select on accuracy (``eval_every > 0``, e.g. ``tm.eval_every``).
    """
    if not getattr(config, "validation", 0):
        return None
    if getattr(config, "holdout", "auto") == "always":
        return "holdout = 'always'"
    every = getattr(config.distill_options, "eval_every", 0) or 0
    if every > 0:
        return f"{config.distill}.eval_every = {every} keeps the best set: chosen on the validation split"
    return None


def split_record(dataset: ImageDataset, fraction: float, seed: int, reason: str | None) -> dict[str, Any]:
    """What the manifest records about the splits (``records["validation"]``): sizes, fraction, seed, why."""
    val = getattr(dataset, "val", None)
    return {
        "carved": val is not None,
        "reason": reason,
        "fraction": fraction if val is not None else 0.0,
        "seed": seed if val is not None else None,
        "sizes": {"train": len(dataset.train), "val": len(val) if val is not None else 0, "test": len(dataset.test)},
        "val_per_class": dataset.class_counts("val") if val is not None else [],
    }
