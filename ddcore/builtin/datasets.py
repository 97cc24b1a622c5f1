"""Built-in plugin ``datasets``: registers ``digits``, ``imagefolder`` and the standard benchmarks
(``cifar10``, ``cifar100``, ``mnist``, ``fashion-mnist``, ``tiny-imagenet``, ``imagenette``, ``imagewoof``:
:mod:`ddcore.data.standard`, local files only)."""

from __future__ import annotations

from functools import partial
from typing import Callable

from ddcore.data.base import DatasetOptions, ImageDataset
from ddcore.hookspecs import hookimpl


def _digits(options: DatasetOptions) -> ImageDataset:
    from ddcore.data.digits import load_digits_dataset

    return load_digits_dataset(options)


def _imagefolder(options: DatasetOptions) -> ImageDataset:
    from ddcore.data.imagefolder import load_imagefolder

    return load_imagefolder(options)


def _cifar(name: str, options: DatasetOptions) -> ImageDataset:
    from ddcore.data.standard.cifar import load_cifar

    return load_cifar(name, options)


def _mnist(name: str, options: DatasetOptions) -> ImageDataset:
    from ddcore.data.standard.mnist import load_mnist

    return load_mnist(name, options)


def _tiny_imagenet(options: DatasetOptions) -> ImageDataset:
    from ddcore.data.standard.tinyimagenet import load_tiny_imagenet

    return load_tiny_imagenet(options)


def _imagenette(name: str, options: DatasetOptions) -> ImageDataset:
    from ddcore.data.standard.imagenette import load_imagenette

    return load_imagenette(name, options)


@hookimpl
def dd_register_datasets(register: Callable[..., None]) -> None:
    register("digits", _digits, description="scikit-learn's 1797 real handwritten digits, 10 classes, 32 px")
    register("imagefolder", _imagefolder, description="train/ and val/ folders of class subfolders (--data-root)")
    local = " (--data-root, never downloaded)"
    register("cifar10", partial(_cifar, "cifar10"), description="CIFAR-10 python batches, 10 classes, 32 px, zca option" + local)
    register("cifar100", partial(_cifar, "cifar100"), description="CIFAR-100 python batches, 100 classes, 32 px, zca option" + local)
    register("mnist", partial(_mnist, "mnist"), description="MNIST idx files, 10 digits, 28 px grey" + local)
    register("fashion-mnist", partial(_mnist, "fashion-mnist"), description="Fashion-MNIST idx files, 10 classes, 28 px grey" + local)
    register("tiny-imagenet", _tiny_imagenet, description="Tiny-ImageNet-200 tree, 200 classes, 64 px, val/ as test" + local)
    register("imagenette", partial(_imagenette, "imagenette"), description="fast.ai ImageNette, 10 ImageNet classes, 128 px" + local)
    register("imagewoof", partial(_imagenette, "imagewoof"), description="fast.ai ImageWoof, 10 dog breeds, 128 px" + local)
