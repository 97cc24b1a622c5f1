"""What every dataset looks like to the pipeline: two splits, class names and the normalisation."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import torch
from torch.utils.data import DataLoader, Subset


class ImageSplit(Protocol):
    """One split: a map-style torch dataset plus every label, known without loading an image.

    ``split[i]`` returns ``(image [C, H, W] float32 normalised, label int)``;
    ``split.targets`` is a list of ``len(split)`` ints.
    """

    targets: Sequence[int]

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]: ...


@dataclass(frozen=True)
class DatasetOptions:
    """What a dataset factory may use. Filled from the run configuration.

    ``root`` is ``config.data_root`` (``None`` when not given), ``image_size`` is ``config.image_size``
    (``None``: the dataset's own size), ``workers`` the loader processes, ``cache_dir`` ddcore's cache.
    """

    root: Path | None = None
    image_size: int | None = None
    workers: int = 0
    cache_dir: Path | None = None
    #: ``config.zca``: ZCA-whiten the pixels (datasets that support it set ``ImageDataset.whitening``).
    zca: bool = False


@dataclass
class ImageDataset:
    """A labelled image dataset with a training and a held-out test split.

    Attributes:
        name: the registry name (``digits``).
        class_names: one name per class, in label order.
        train / test: :class:`ImageSplit` objects.
        image_shape: ``(C, H, W)`` of every image.
        mean / std: per-channel normalisation already applied to the images (``len == C``).
        workers: loader worker processes used by :meth:`loader` (0 for in-memory data).
        fingerprint: the content's fingerprint when the factory knows it (a hash of the source archive,
            a generator's version); ``None``: :func:`ddcore.datasig.dataset_fingerprint` derives one
            from the splits. Caches key on it, so it must change whenever the content does.
    """

    name: str
    class_names: list[str]
    train: ImageSplit
    test: ImageSplit
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    workers: int = 0
    description: str = ""
    extra: dict = field(default_factory=dict)
    fingerprint: str | None = None
    #: The validation split carved from the training split (:func:`ddcore.data.split.carve_validation`),
    #: ``None`` when the run carved none; its images are not in ``train``.
    val: ImageSplit | None = None
    #: A fitted whitening already applied to the images after ``mean``/``std`` (e.g.
    #: :class:`ddcore.data.zca.ZCA`): ``None`` for most datasets. :meth:`denormalize` undoes it first
    #: (its ``inverse``); its ``record()`` describes it for the manifest.
    whitening: Any = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def scored_splits(self) -> tuple[str, ...]:
        """The splits an evaluator scores its networks on: ``("test", "val")`` when a validation split was
        carved, else ``("test",)`` (the test split first: its figure is the result)."""
        return ("test", "val") if self.val is not None else ("test",)

    def split(self, name: str) -> ImageSplit:
        """``"train"``, ``"test"``, or ``"val"`` when a validation split was carved (else ``ValueError``)."""
        if name == "val":
            if self.val is None:
                raise ValueError("this dataset has no validation split (the run carves one: config keys validation, holdout)")
            return self.val
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r} (train, val or test)")
        return self.train if name == "train" else self.test

    def indices_by_class(self, split: str = "train") -> list[list[int]]:
        """Positions of each class's images in ``split``, in file order: ``result[c]`` lists class ``c``."""
        groups: list[list[int]] = [[] for _ in self.class_names]
        for index, label in enumerate(self.split(split).targets):
            groups[int(label)].append(index)
        return groups

    def class_counts(self, split: str = "train") -> list[int]:
        return [len(group) for group in self.indices_by_class(split)]

    def loader(
        self,
        split: str = "train",
        batch_size: int = 256,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        indices: Sequence[int] | None = None,
        drop_last: bool = False,
    ) -> DataLoader:
        """Stream ``split`` (or the ``indices`` of it) in batches of ``(images [B,C,H,W], labels [B])``."""
        data = self.split(split)
        if indices is not None:
            data = Subset(data, list(indices))
        return DataLoader(
            data,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.workers,
            persistent_workers=False,
            drop_last=drop_last,
        )

    def load(self, split: str, indices: Sequence[int], batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        """Load the given images: ``(images [len(indices), C, H, W], labels [len(indices)] int64)``."""
        if len(indices) == 0:
            return torch.empty(0, *self.image_shape), torch.empty(0, dtype=torch.long)
        images, labels = [], []
        for batch_images, batch_labels in self.loader(split, batch_size, indices=indices):
            images.append(batch_images)
            labels.append(torch.as_tensor(batch_labels, dtype=torch.long))
        return torch.cat(images), torch.cat(labels)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: ``[N, C, H, W]`` normalised -> ``[N, C, H, W]`` in about ``[0, 1]``.

        With a :attr:`whitening` (ZCA), its inverse is applied first (:meth:`unwhiten`), then ``* std + mean``."""
        return denormalize(self.unwhiten(images), self.mean, self.std)

    def unwhiten(self, images: torch.Tensor) -> torch.Tensor:
        """Undo :attr:`whitening` only: ``[N, C, H, W]`` as the splits hand them out -> normalised with
        ``mean``/``std`` alone (``images`` itself when the dataset has no whitening)."""
        return images if self.whitening is None else self.whitening.inverse(images)

    def viewable(self, distilled: Any) -> Any:
        """A distilled set (:class:`~ddcore.distilled.DistilledSet`) of this dataset ready to be drawn or saved as
        images with its own ``mean``/``std`` (``grid.png``): itself, or a copy with the whitening undone."""
        if self.whitening is None:
            return distilled
        return dataclasses.replace(distilled, images=self.unwhiten(distilled.images.detach().float().cpu()))


def denormalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``images * std + mean`` per channel. Shape: ``[N, C, H, W]`` -> ``[N, C, H, W]``."""
    mean_t = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return images * std_t + mean_t


class TensorSplit(torch.utils.data.Dataset):
    """A split held in memory: ``images [N, C, H, W]`` float32 normalised and ``labels [N]`` int64."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.shape[0] != labels.shape[0]:
            raise ValueError("images and labels differ in length")
        self.images = images
        self.labels = labels.long()
        self.targets = self.labels.tolist()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]
