"""Tests added by mutation testing (bench/mutation.py, docs/mutation.md) for ddcore_diffsel.ranking."""

from __future__ import annotations

import numpy as np
import sklearn.cluster  # noqa: F401  (its import, ~1-5 s, is paid at collection rather than inside the first test)
import pytest
import torch

from ddcore_diffsel.ranking import _two_means, bisecting_order, kmeans_order, rank_class, score_order


def test_k_zero_is_refused_with_its_message():
    with pytest.raises(ValueError, match=r"^cannot pick 0 winners from 3 candidates$"):
        score_order(torch.tensor([0.1, 0.2, 0.3]), 0)


def test_two_points_can_be_split_and_identical_points_cannot():
    labels = _two_means(np.array([[0.0], [1.0]]), 0)
    assert labels is not None and sorted(labels.tolist()) == [0, 1]
    assert _two_means(np.zeros((3, 2)), 0) is None
    assert _two_means(np.zeros((1, 2)), 0) is None


def test_bisecting_on_one_dimensional_features():
    f = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    winners, cluster = bisecting_order(f, torch.tensor([1.0, 2.0, 0.5, 0.7]), 2)
    assert winners.tolist() == [1, 3]
    assert cluster.tolist() == [0, 0, 1, 1] and cluster.dtype == torch.int64


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_bisecting_splits_the_widest_cluster_even_with_two_members(scale):
    # A = {0, 3} (SSE 4.5 * scale^2) and B = {10, 11} (SSE 0.5 * scale^2). The third winner comes from
    # splitting A (position 1), not from B's runner-up (position 3, the better remaining score).
    f = torch.tensor([[0.0], [3.0], [10.0], [11.0]]) * scale
    winners, cluster = bisecting_order(f, torch.tensor([1.0, 0.1, 0.9, 0.8]), 3)
    assert winners.tolist() == [0, 2, 1]
    assert cluster.tolist() == [0, 2, 1, 1]


def test_bisecting_splits_a_cluster_created_by_an_earlier_split():
    # first split: {0, 0.2} | {10, 14}; the new cluster {10, 14} is the widest and splits next
    f = torch.tensor([[0.0], [0.2], [10.0], [14.0]])
    winners, cluster = bisecting_order(f, torch.tensor([1.0, 0.5, 0.3, 0.2]), 3)
    assert winners.tolist() == [0, 2, 3]
    assert cluster.tolist() == [0, 0, 1, 2]


def test_bisecting_stops_splitting_near_identical_points_and_falls_back_to_scores():
    # {0, 1e-10} are allclose: not splittable (marked once, never retried), the last winner by score
    f = torch.tensor([[0.0], [1e-10], [5.0]])
    winners, cluster = bisecting_order(f, torch.tensor([0.5, 0.4, 1.0]), 3)
    assert winners.tolist() == [2, 0, 1]
    assert cluster.tolist() == [1, 2, 0]


def test_kmeans_fills_empty_clusters_with_the_best_remaining_scores():
    f = torch.tensor([[0.0], [0.0], [5.0], [5.0]])  # two distinct points, three clusters asked
    winners, cluster = kmeans_order(f, torch.tensor([0.1, 0.2, 0.3, 0.4]), 3)
    assert winners.tolist() == [3, 2, 1]
    assert winners.dtype == torch.int64 and cluster.dtype == torch.int64
    assert cluster[0] == cluster[1] and cluster[2] == cluster[3] and cluster[0] != cluster[2]


def test_rank_class_dispatches_each_ranking():
    f = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    s = torch.tensor([1.0, 2.0, 0.5, 0.7])
    assert rank_class(f, s, 2, "score", 0).tolist() == [1, 0]
    assert rank_class(f, s, 2, "kmeans", 0).tolist() == [1, 3]
    assert rank_class(f, s, 2, "bisecting", 0).tolist() == [1, 3]
    assert rank_class(f, s, 3, "bisecting", 0).tolist() == bisecting_order(f, s, 3, 0)[0].tolist()
    assert rank_class(f, s, 3, "kmeans", 0).tolist() == kmeans_order(f, s, 3, 0)[0].tolist()
    with pytest.raises(ValueError, match=r"^unknown ranking 'Score'$"):
        rank_class(f, s, 2, "Score", 0)


def test_seed_defaults_are_zero():
    # four square corners: 2-means has two equally good splits and the seed picks one
    f = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    s = torch.tensor([4.0, 3.0, 2.0, 1.0])
    # known answers under the pinned scikit-learn (constraints-ci.txt)
    assert bisecting_order(f, s, 2)[0].tolist() == [0, 1]
    assert bisecting_order(f, s, 2, seed=1)[0].tolist() == [0, 2]
    assert kmeans_order(f, s, 2)[0].tolist() == [0, 2]
    assert kmeans_order(f, s, 2, seed=1)[0].tolist() == [0, 1]
    assert bisecting_order(f, s, 2)[0].tolist() == bisecting_order(f, s, 2, seed=0)[0].tolist()
    assert bisecting_order(f, s, 2, seed=0)[0].tolist() != bisecting_order(f, s, 2, seed=1)[0].tolist()
    assert kmeans_order(f, s, 2)[0].tolist() == kmeans_order(f, s, 2, seed=0)[0].tolist()
    assert kmeans_order(f, s, 2, seed=0)[0].tolist() != kmeans_order(f, s, 2, seed=1)[0].tolist()


def test_rank_class_passes_its_seed_on():
    f = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    s = torch.tensor([4.0, 3.0, 2.0, 1.0])
    for ranking, fn in (("kmeans", kmeans_order), ("bisecting", bisecting_order)):
        assert rank_class(f, s, 2, ranking, 1).tolist() == fn(f, s, 2, seed=1)[0].tolist()
        assert rank_class(f, s, 2, ranking, 1).tolist() != fn(f, s, 2, seed=0)[0].tolist()
