"""Stage II: one class's kept patches -> the ordered winners (diversity by clustering, then score).

Pure functions over tensors plus scikit-learn's ``KMeans`` (fixed seeds). Three rankings:

- :func:`bisecting_order` (default): nested bisecting k-means. Start with one cluster whose winner
  is the best-scoring patch; repeatedly split the cluster with the largest within-cluster sum of
  squares in two (2-means) and add the best-scoring patch of the half that lacks a winner. After
  ``K - 1`` splits there are ``K`` clusters with their best patches as winners, and the winners for
  ``K`` are exactly the first ``K`` of the winners for any larger count: a larger IPC extends a
  smaller one (the consistency property).
- :func:`kmeans_order`: one flat k-means with ``K`` clusters, the best patch of each, by score.
- :func:`score_order`: the ``K`` best scores (RDED's ranking).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def score_order(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest scores, best first (ties: lower position first).

    Shape: ``scores [n]`` -> ``[k]`` int64 positions.

    >>> score_order(torch.tensor([0.1, 0.9, 0.5, 0.9]), 3)
    tensor([1, 3, 2])
    """
    _check_k(k, scores.shape[0])
    order = sorted(range(scores.shape[0]), key=lambda i: (-float(scores[i]), i))
    return torch.tensor(order[:k], dtype=torch.long)


def _check_k(k: int, n: int) -> None:
    if not 0 < k <= n:
        raise ValueError(f"cannot pick {k} winners from {n} candidates")


def _two_means(points: np.ndarray, seed: int) -> np.ndarray | None:
    """2-means labels of ``points`` (fixed seed), or ``None`` when they cannot be split."""
    from sklearn.cluster import KMeans

    if points.shape[0] < 2 or np.allclose(points, points[0]):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate points: sklearn warns, the split is still usable
        labels = KMeans(n_clusters=2, n_init=1, random_state=seed).fit_predict(points)
    if labels.min() == labels.max():
        return None
    return labels


def _best(members: list[int], scores: torch.Tensor) -> int:
    return min(members, key=lambda i: (-float(scores[i]), i))


def bisecting_order(features: torch.Tensor, scores: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` winners of nested bisecting k-means, in the order they enter, and their clusters.

    Split ``s`` (from 0) uses ``random_state = seed + s``, so the first splits do not depend on
    ``k``. When no cluster can be split any more (identical features), the remaining winners are the
    best-scoring patches not yet chosen, each in a cluster of its own.

    Shape: ``features [n, D]``, ``scores [n]`` -> ``(winners [k] int64 positions, cluster [n] int64``
    ids: cluster ``j`` is the one winner ``j`` represents).

    Two tight groups, the better group first, then the best of the other group:

    >>> f = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    >>> bisecting_order(f, torch.tensor([1.0, 2.0, 0.5, 0.7]), 2)[0]
    tensor([1, 3])
    """
    n = features.shape[0]
    _check_k(k, n)
    points = features.detach().double().cpu().numpy()
    clusters: list[list[int]] = [list(range(n))]
    winners = [_best(clusters[0], scores)]
    splittable = [True]
    split = 0
    while len(winners) < k:
        sse = [float(((points[m] - points[m].mean(0)) ** 2).sum()) if ok and len(m) > 1 else -1.0
               for m, ok in zip(clusters, splittable)]  # fmt: skip
        target = int(np.argmax(sse))
        if sse[target] <= 0:
            chosen = set(winners)
            rest = [i for i in score_order(scores, n).tolist() if i not in chosen]
            for i in rest[: k - len(winners)]:
                for members in clusters:
                    if i in members:
                        members.remove(i)
                clusters.append([i])
                winners.append(i)
            break
        members = clusters[target]
        labels = _two_means(points[members], seed + split)
        split += 1
        if labels is None:
            splittable[target] = False
            continue
        halves = [[m for m, lab in zip(members, labels) if lab == side] for side in (0, 1)]
        keep, new = (halves[0], halves[1]) if winners[target] in halves[0] else (halves[1], halves[0])
        clusters[target] = keep
        clusters.append(new)
        splittable.append(True)
        winners.append(_best(new, scores))
    cluster = torch.empty(n, dtype=torch.long)
    for j, members in enumerate(clusters):
        cluster[members] = j
    return torch.tensor(winners, dtype=torch.long), cluster


def kmeans_order(features: torch.Tensor, scores: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """One flat k-means with ``k`` clusters (fixed seed); the best patch of each cluster, best score first.

    Empty clusters (fewer distinct points than ``k``) are filled with the best remaining patches.

    Shape: ``features [n, D]``, ``scores [n]`` -> ``(winners [k] int64, cluster [n] int64)``.
    """
    from sklearn.cluster import KMeans

    n = features.shape[0]
    _check_k(k, n)
    points = features.detach().double().cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(points)
    winners = [_best([i for i in range(n) if labels[i] == c], scores) for c in sorted(set(labels.tolist()))]
    if len(winners) < k:
        chosen = set(winners)
        winners += [i for i in score_order(scores, n).tolist() if i not in chosen][: k - len(winners)]
    winners = sorted(winners, key=lambda i: (-float(scores[i]), i))
    return torch.tensor(winners, dtype=torch.long), torch.as_tensor(labels, dtype=torch.long)


def rank_class(features: torch.Tensor, scores: torch.Tensor, k: int, ranking: str, seed: int) -> torch.Tensor:
    """The ``k`` winners of one class in *entry order* (for ``score``/``kmeans``: best score first).

    Shape: ``features [n, D]``, ``scores [n]`` -> ``[k]`` int64 positions.
    """
    if ranking == "score":
        return score_order(scores, k)
    if ranking == "kmeans":
        return kmeans_order(features, scores, k, seed)[0]
    if ranking == "bisecting":
        return bisecting_order(features, scores, k, seed)[0]
    raise ValueError(f"unknown ranking {ranking!r}")
