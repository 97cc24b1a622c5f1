"""Built-in plugin ``datasets``: registers ``digits`` and ``imagefolder``."""

from __future__ import annotations

from typing import Callable

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.hookspecs import hookimpl


def _digits(options: DatasetOptions) -> ImageDataset:
    from ddcore.data.digits import load_digits_dataset

    return load_digits_dataset(options)


def _imagefolder(options: DatasetOptions) -> ImageDataset:
    from ddcore.data.imagefolder import load_imagefolder

    return load_imagefolder(options)


@hookimpl
def dd_register_datasets(register: Callable[..., None]) -> None:
    register("digits", _digits, description="scikit-learn's 1797 real handwritten digits, 10 classes, 32 px")
    register("imagefolder", _imagefolder, description="train/ and val/ folders of class subfolders (--data-root)")
