"""The two objects that flow through the pipeline: a selection and a distilled set."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ddcore.atomic import torch_save
from ddcore.errors import DDError

DISTILLED_FORMAT = 1


@dataclass
class Selection:
    """Real images (or patches of them) chosen by :func:`~ddcore.hookspecs.dd_select`.

    Attributes:
        images: ``[M, C, H, W]`` float32, normalised like the dataset.
        labels: ``[M]`` int64 class ids, class-major order.
        indices: ``[M]`` int64 positions in ``dataset.train`` when whole images were chosen, else ``None``.
        meta: anything the selector wants recorded (scores, crop boxes, ...); kept small.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistilledSet:
    """The product of a run: synthetic images with their labels, ready to train a network.

    Attributes:
        images: ``[N, C, H, W]`` float32, normalised with ``mean``/``std``.
        labels: ``[N]`` int64 (hard) or ``[N, num_classes]`` float32 logits (soft).
        class_names: one name per class.
        mean / std: the per-channel normalisation of ``images``.
        lr: a learned training learning rate, when the method learns one.
        meta: provenance (which plugin selected and initialised, ...).
        data: :func:`ddcore.datasig.data_signature` of the dataset the set was made from (class
            names, image shape, normalisation, content fingerprint), recorded by :meth:`save`;
            ``None`` for a set not yet saved or read from a file written before it existed.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    lr: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def soft(self) -> bool:
        return self.labels.ndim == 2

    def hard_labels(self) -> torch.Tensor:
        """``[N]`` int64: the labels, or the argmax of soft labels."""
        return self.labels.argmax(dim=1) if self.soft else self.labels

    def validate(self) -> None:
        """Raise ``ValueError`` when shapes or label ranges do not fit together."""
        n = self.images.shape[0]
        if self.images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got {tuple(self.images.shape)}")
        if self.labels.shape[0] != n:
            raise ValueError(f"{n} images but {self.labels.shape[0]} labels")
        if self.soft and self.labels.shape[1] != self.num_classes:
            raise ValueError(f"soft labels have {self.labels.shape[1]} columns for {self.num_classes} classes")
        if not self.soft and n and (self.labels.min() < 0 or self.labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        if len(self.mean) != self.images.shape[1] or len(self.std) != self.images.shape[1]:
            raise ValueError("mean/std must have one value per channel")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": DISTILLED_FORMAT,
            "images": self.images.detach().cpu(),
            "labels": self.labels.detach().cpu(),
            "class_names": list(self.class_names),
            "mean": list(self.mean),
            "std": list(self.std),
            "lr": self.lr,
            "meta": self.meta,
            "data": self.data,
        }

    def save(self, path: str | Path, dataset: Any = None) -> None:
        """Write ``distilled.pt`` atomically.

        With ``dataset`` (the :class:`~ddcore.data.ImageDataset` the set was made from), records its
        :func:`~ddcore.datasig.data_signature` in ``data`` first, so that a later ``dd eval`` or
        ``--resume`` can tell whether the data it is used with is the same (:meth:`check_data`).
        """
        if dataset is not None:
            from ddcore.datasig import data_signature

            self.data = data_signature(dataset)
        torch_save(self.to_dict(), path)

    def signature(self) -> dict[str, Any]:
        """What the set says about the data it was made from (a partial :func:`~ddcore.datasig.data_signature`):
        the recorded ``data``, with class names, ``image_shape`` ``[C, H, W]`` and normalisation taken
        from the set itself (so files without ``data`` are checked on these too)."""
        return {
            **(self.data or {}),
            "class_names": [str(c) for c in self.class_names],
            "image_shape": [int(v) for v in self.images.shape[1:]],
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
        }

    def check_data(self, dataset: Any, *, what: str, fix: str) -> "DistilledSet":
        """This set, ready to be used with ``dataset``: itself when classes, image shape and normalisation
        agree; a copy relabelled by :meth:`remap` when only the class order differs (``meta["class_remap"]``
        says how); else :class:`ConfigError` (one line naming ``what``, the difference and ``fix``).
        """
        from ddcore.datasig import check_signature

        perm = check_signature(self.signature(), dataset, what=what, fix=fix)
        return self if perm is None else self.remap(perm, dataset.class_names)

    def remap(self, perm: Sequence[int], class_names: Sequence[str]) -> "DistilledSet":
        """A copy whose label ``perm[c]`` is the old label ``c`` (``class_names`` in the new order).

        Hard labels ``[N]`` are mapped through ``perm``; soft labels ``[N, K]`` have their columns moved
        (new column ``perm[c]`` = old column ``c``). ``meta["class_remap"]`` records
        ``{"from": old names, "to": new names, "perm": perm}``. Raises ``ValueError`` unless ``perm``
        is a permutation of ``range(num_classes)`` and ``class_names[perm[c]] == self.class_names[c]``.
        """
        k = self.num_classes
        perm = [int(p) for p in perm]
        if sorted(perm) != list(range(k)) or len(class_names) != k:
            raise ValueError(f"remap: {perm} is not a permutation of {k} classes")
        if any(str(class_names[perm[c]]) != str(self.class_names[c]) for c in range(k)):
            raise ValueError("remap: the permutation does not map each class to the same name")
        index = torch.as_tensor(perm, dtype=torch.long)
        if self.soft:
            labels = torch.empty_like(self.labels)
            labels[:, index] = self.labels
        else:
            labels = index[self.labels]
        remap = {"from": [str(c) for c in self.class_names], "to": [str(c) for c in class_names], "perm": perm}
        return DistilledSet(  # ``data`` still describes the data the set was made from
            images=self.images, labels=labels, class_names=list(class_names), mean=self.mean, std=self.std,
            lr=self.lr, meta={**self.meta, "class_remap": remap}, data=self.data,
        )  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> "DistilledSet":
        """Read a file written by :meth:`save`; a missing or foreign file is a :class:`DDError`."""
        path = Path(path)
        if not path.is_file():
            raise DDError(f"{path}: no such file (expected a distilled.pt written by `dd run`)")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # corrupt, truncated or not a torch file
            raise DDError(
                f"{path}: not a readable distilled set ({type(exc).__name__}); it is corrupt or was not written by `dd run`"
            ) from None
        if not isinstance(data, dict) or data.get("format") != DISTILLED_FORMAT:
            raise DDError(f"{path}: not a ddcore distilled set (format {DISTILLED_FORMAT} expected)")
        try:
            distilled = cls(
                images=data["images"],
                labels=data["labels"],
                class_names=list(data["class_names"]),
                mean=tuple(data["mean"]),
                std=tuple(data["std"]),
                lr=data["lr"],
                meta=dict(data["meta"]),
                data=dict(data["data"]) if data.get("data") is not None else None,  # absent before signatures
            )
            distilled.validate()
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DDError(f"{path}: not a valid ddcore distilled set ({type(exc).__name__}: {exc})") from None
        return distilled
