"""The complexity metric on known activation maps, and through batched Grad-CAM on a known model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ddcore.data.base import ImageDataset, TensorSplit
from ddcore_compdd.build import build_subsets, resolve_categories
from ddcore_compdd.complexity import class_complexity, easy_hard_split, image_complexity, normalize_maps
from ddcore_compdd.scoring import ComplexityResult, ScoringOptions, score_dataset


def test_complexity_of_known_maps_is_exact():
    maps = torch.zeros(3, 4, 5)  # H*W = 20
    maps[0, :2, :3] = 1.0  # 6 active pixels -> 1 - 6/20
    maps[1] = 0.25  # none active -> 1
    maps[2, 0, 0], maps[2, 1, 1] = 0.5, 0.7  # 0.5 counts (>=), unless strict
    assert image_complexity(maps).tolist() == pytest.approx([0.7, 1.0, 0.9])
    assert image_complexity(maps, strict=True).tolist() == pytest.approx([0.7, 1.0, 0.95])
    assert image_complexity(maps, threshold=0.2).tolist() == pytest.approx([0.7, 0.0, 0.9])


def test_normalize_maps_min_max_per_image_and_constant_maps():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[4.0, 4.0], [4.0, 4.0]]])
    out = normalize_maps(maps)
    assert out[0].tolist() == [[0.0, 0.25], [0.5, 1.0]]
    assert out[1].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_class_complexity_and_easy_hard_ranking():
    scores = torch.tensor([0.1, 0.3, 0.8, 0.6, 0.7])
    labels = torch.tensor([0, 0, 1, 2, 2])
    assert class_complexity(scores, labels, 3).tolist() == pytest.approx([0.2, 0.8, 0.65])
    easy, hard = easy_hard_split([0.2, 0.8, 0.65, 0.5], 2)
    assert easy == [0, 3] and hard == [1, 2]
    with pytest.raises(ValueError):
        easy_hard_split([0.1], 2)


class SquareCam(nn.Module):
    """A classifier whose Grad-CAM at ``layer`` is the image itself: layer = identity 1x1 conv, then
    global average pooling and logits ``[mean, -mean]``. For a non-negative image class 0 is predicted,
    its gradient is positive everywhere and ``cam = ReLU(image)``."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Conv2d(1, 1, kernel_size=1, bias=False)
        self.head = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.layer.weight.fill_(1.0)
            self.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x):
        return self.head(self.layer(x).mean(dim=(2, 3)))


def square_dataset(sides_by_class):
    """Images [N, 1, 8, 8]: a bright square of the given side in the corner, label = class."""
    images, labels = [], []
    for label, sides in enumerate(sides_by_class):
        for side in sides:
            image = torch.full((1, 8, 8), 0.1)
            image[:, :side, :side] = 1.0
            images.append(image)
            labels.append(label)
    split = TensorSplit(torch.stack(images), torch.tensor(labels))
    return ImageDataset("squares", [str(k) for k in range(len(sides_by_class))], split, split, (1, 8, 8), (0.0,), (1.0,))


@pytest.mark.parametrize("method", ["gradcam", "smooth_gradcampp"])
def test_scoring_a_dataset_through_grad_cam_gives_the_exact_area(method):
    dataset = square_dataset([[4, 2], [8, 6, 1]])
    options = ScoringOptions(layer="layer", method=method, samples=2, noise=0.0, batch_size=2)
    scores, labels, indices = score_dataset(SquareCam(), dataset, options, torch.device("cpu"), torch.Generator().manual_seed(0))
    expected = [1 - s * s / 64 for s in (4, 2, 8, 6, 1)]
    expected[2] = 1.0  # a uniformly bright image has a constant map: normalised to zeros, nothing active
    assert scores.tolist() == pytest.approx(expected)
    assert labels.tolist() == [0, 0, 1, 1, 1] and indices.tolist() == [0, 1, 2, 3, 4]
    result = ComplexityResult("squares", dataset.class_names, scores, labels, indices)
    assert [row["complexity"] for row in result.per_class()] == pytest.approx([(0.75 + 60 / 64) / 2, (1 + 28 / 64 + 63 / 64) / 3])


def test_per_class_limit_scores_the_first_images_of_each_class():
    dataset = square_dataset([[4, 2, 3], [8, 6]])
    options = ScoringOptions(layer="layer", per_class=1)
    scores, labels, indices = score_dataset(SquareCam(), dataset, options, torch.device("cpu"), torch.Generator())
    assert indices.tolist() == [0, 3] and scores.tolist() == pytest.approx([0.75, 1.0])


def test_build_ranks_each_category_into_easy_and_hard():
    dataset = square_dataset([[1]] * 6)
    categories = resolve_categories({"low": ["0", "1", "2", 3], "high": ["4", "5"]}, dataset)
    assert categories == {"low": [0, 1, 2, 3], "high": [4, 5]}
    subsets = build_subsets({"low": [0, 1, 2, 3]}, [0.4, 0.9, 0.1, 0.7, 0.0, 0.0], dataset.class_names, 2)
    assert [(s["name"], s["labels"]) for s in subsets] == [("low-easy", [2, 0]), ("low-hard", [1, 3])]
    assert subsets[1]["mean_complexity"] == pytest.approx(0.8)
