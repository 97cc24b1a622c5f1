"""Comp-DD complexity does not depend on --batch-size or --per-class (issue 19, kind 5): Smooth Grad-CAM++'s
noise of each image comes from its own seed (its position in the split), not from a generator shared by
the batches in turn."""

from __future__ import annotations

import torch

from ddcore.models import ConvNet
from ddcore.testing import known_answer_dataset
from ddcore_compdd.scoring import ScoringOptions, score_dataset


def scores(batch_size: int, per_class: int = 0):
    dataset = known_answer_dataset("clean")
    torch.manual_seed(0)
    model = ConvNet(4, in_channels=1, image_size=16, width=8, depth=2).eval()
    options = ScoringOptions(layer="features.0.2", method="smooth_gradcampp", batch_size=batch_size, per_class=per_class)
    return score_dataset(model, dataset, options, torch.device("cpu"), torch.Generator().manual_seed(3))


def test_scores_do_not_depend_on_the_batch_size_or_the_images_scored():
    whole, labels, indices = scores(64)
    assert len(indices) == 64 and len(set(whole.tolist())) > 4  # real, varied scores
    for batch_size in (1, 5, 16):
        assert torch.equal(scores(batch_size)[0], whole), batch_size
    subset, _, chosen = scores(5, per_class=3)  # the first 3 images of each class: the same scores as among all
    assert torch.equal(subset, whole[chosen])
