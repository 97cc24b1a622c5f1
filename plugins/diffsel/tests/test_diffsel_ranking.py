"""Stage II: one winner per cluster ranked by score, nested winners across IPCs, RDED stitching."""

import torch

from ddcore_diffsel.assemble import cell_sources, placement_order, stitch, unzoom, zoom
from ddcore_diffsel.ranking import bisecting_order, kmeans_order, rank_class, score_order


def _three_clusters():
    """Three well separated groups of four points; scores make a known best member per group."""
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [30.0, 0.0]])  # 2-means first splits off the far group
    offsets = torch.tensor([[0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]])
    features = (centres.unsqueeze(1) + offsets.unsqueeze(0)).reshape(12, 2)
    scores = torch.tensor([0.1, 0.2, 0.9, 0.3,   5.0, 4.0, 0.0, 1.0,   0.5, 0.7, 0.6, 0.4])  # fmt: skip
    return features, scores


def test_kmeans_takes_the_best_patch_of_each_cluster_ordered_by_score():
    features, scores = _three_clusters()
    winners, cluster = kmeans_order(features, scores, 3, seed=0)
    assert winners.tolist() == [4, 2, 9]  # best of each group, by score: 5.0, 0.9, 0.7
    assert len(set(cluster[winners].tolist())) == 3  # one per cluster
    assert torch.equal(kmeans_order(features, scores, 3, seed=0)[0], winners)  # fixed seed, same answer


def test_bisecting_finds_the_same_winners_and_is_nested_across_counts():
    features, scores = _three_clusters()
    winners, cluster = bisecting_order(features, scores, 3, seed=0)
    # the global best (group B) enters first, then the far group C splits off, then A from B
    assert winners.tolist() == [4, 9, 2]
    assert len(set(cluster[winners].tolist())) == 3
    generator = torch.Generator().manual_seed(0)
    feats, sc = torch.randn(40, 5, generator=generator), torch.rand(40, generator=generator)
    longest = bisecting_order(feats, sc, 12, seed=7)[0]
    for k in (1, 3, 5, 8):
        assert torch.equal(bisecting_order(feats, sc, k, seed=7)[0], longest[:k])
    assert len(set(longest.tolist())) == 12


def test_bisecting_with_identical_features_falls_back_to_scores():
    winners, _ = bisecting_order(torch.zeros(5, 3), torch.tensor([0.1, 0.5, 0.3, 0.9, 0.2]), 3)
    assert winners.tolist() == [3, 1, 2]


def test_score_ranking_is_plain_top_k():
    assert rank_class(torch.zeros(4, 1), torch.tensor([0.3, 0.1, 0.4, 0.2]), 2, "score", 0).tolist() == [2, 0]
    assert score_order(torch.tensor([1.0, 1.0, 2.0]), 3).tolist() == [2, 0, 1]


def test_stitching_places_cell_k_of_image_q_from_winner_k_times_ipc_plus_q():
    ipc, factor = 3, 2
    patches = torch.arange(ipc * factor * factor, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)
    images = stitch(patches, ipc, factor, "rded")
    assert images.shape == (3, 1, 4, 4)
    for q in range(ipc):
        for k in range(factor * factor):
            row, col = divmod(k, factor)
            cell = images[q, 0, row * 2 : row * 2 + 2, col * 2 : col * 2 + 2]
            assert (cell == k * ipc + q).all()
    prefix = stitch(patches, ipc, factor, "prefix")
    assert prefix[1, 0, 0, 0] == 4 and prefix[1, 0, 2, 2] == 7  # image 1 from winners 4..7
    assert cell_sources(1, 2, "rded").tolist() == [[0, 1, 2, 3]]


def test_placement_by_score_and_lossless_zoom():
    assert placement_order(torch.tensor([0.1, 0.9, 0.5]), "rded").tolist() == [1, 2, 0]
    assert placement_order(torch.tensor([0.1, 0.9, 0.5]), "prefix").tolist() == [0, 1, 2]
    x = torch.randn(3, 2, 5, 5)
    assert zoom(x, 3).shape == (3, 2, 15, 15) and torch.equal(unzoom(zoom(x, 3), 3), x)
