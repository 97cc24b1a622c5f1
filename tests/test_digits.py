"""The embedded real dataset: scikit-learn digits, split, upsampled and normalised deterministically."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from ddcore.data.base import DatasetOptions
from ddcore.data.digits import load_digits_dataset


def test_split_sizes_and_stratification():
    dataset = load_digits_dataset(DatasetOptions())
    assert len(dataset.train) == 1437 and len(dataset.test) == 360
    assert dataset.class_names == [str(d) for d in range(10)]
    source = torch.bincount(torch.as_tensor(load_digits().target), minlength=10)
    counts = torch.tensor(dataset.class_counts("train"))
    assert counts.sum() == 1437
    assert ((counts - 0.8 * source).abs() <= 1).all()  # stratified: every class split 80/20


def test_images_are_32px_normalised_on_train():
    dataset = load_digits_dataset(DatasetOptions())
    assert dataset.image_shape == (1, 32, 32)
    images = dataset.train.images
    assert images.shape == (1437, 1, 32, 32)
    assert abs(images.mean().item()) < 1e-4 and abs(images.std().item() - 1) < 1e-3
    restored = dataset.denormalize(images)
    assert restored.min() >= -1e-5 and restored.max() <= 1 + 1e-5


def test_split_is_deterministic_and_disjoint():
    a, b = load_digits_dataset(DatasetOptions()), load_digits_dataset(DatasetOptions())
    assert torch.equal(a.train.images, b.train.images) and a.train.targets == b.train.targets
    raw = torch.as_tensor(load_digits().images, dtype=torch.float32)
    small = load_digits_dataset(DatasetOptions(image_size=8))
    train_set = {tuple(x.flatten().tolist()) for x in small.denormalize(small.train.images).mul(16).round()}
    test_set = {tuple(x.flatten().tolist()) for x in small.denormalize(small.test.images).mul(16).round()}
    all_images = {tuple(x.flatten().tolist()) for x in raw}
    assert train_set | test_set <= all_images
    assert len(train_set & test_set) <= 2  # a couple of byte-identical digits exist in the source data


def test_labels_travel_with_images():
    dataset = load_digits_dataset(DatasetOptions(image_size=8))
    bunch = load_digits()
    lookup = {tuple(img.flatten().tolist()): int(t) for img, t in zip(bunch.images, bunch.target)}
    images = dataset.denormalize(dataset.train.images[:50]).mul(16).round()
    for image, label in zip(images, dataset.train.targets[:50]):
        assert lookup[tuple(image.flatten().tolist())] == label
