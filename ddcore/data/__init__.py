"""Datasets: the :class:`ImageDataset` interface, the registry and the built-in datasets."""

from ddcore.data.base import DatasetOptions, ImageDataset, ImageSplit, TensorSplit, denormalize
from ddcore.data.registry import DatasetRegistry

__all__ = ["DatasetOptions", "DatasetRegistry", "ImageDataset", "ImageSplit", "TensorSplit", "denormalize"]
