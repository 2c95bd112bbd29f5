"""What colours a map: each image's folder, or its k-means cluster, and each cluster's most central images."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from lookalike.vectors import get_metric

#: The most clusters a map is coloured with: more colours than this are hard to tell apart.
MAX_CLUSTERS = 20

_unit = get_metric("cosine")  # rows scaled to unit length


@dataclass(frozen=True)
class Groups:
    """A partition of a map's points: ``names[labels[i]]`` is the group of point ``i``."""

    names: list[str]
    labels: np.ndarray  # (n,) int32

    def sizes(self) -> np.ndarray:
        """The number of points in each group, in the order of :attr:`names`."""
        return np.bincount(self.labels, minlength=len(self.names))


def folders(paths: list[str]) -> Groups:
    """Points grouped by the folder holding each file (its full path: two folders of one name in
    different places are two groups), folders in sorted order."""
    parents = [os.path.dirname(p) for p in paths]
    names, labels = np.unique(np.array(parents, dtype=object), return_inverse=True) if parents else ([], [])
    return Groups([str(n) for n in names], np.asarray(labels, np.int32).reshape(-1))


def cluster_count(n: int) -> int:
    """How many k-means clusters colour ``n`` points: about sqrt(n / 5), at least 2 (one for a
    single point) and at most :data:`MAX_CLUSTERS`."""
    return max(min(n, 2), min(MAX_CLUSTERS, round((n / 5) ** 0.5)))


def kmeans(vectors: np.ndarray, k: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (FAISS) of ``vectors`` (n, d), trained on at most 256 rows per cluster:
    the unit centres (k, d) and each row's cluster (n,), clusters numbered by decreasing size."""
    import faiss

    k = max(1, min(k, len(vectors)))
    sample = np.sort(np.random.default_rng(seed).permutation(len(vectors))[:256 * k])
    km = faiss.Kmeans(vectors.shape[1], k, niter=25, seed=seed, spherical=True, verbose=False,
                      min_points_per_centroid=1, max_points_per_centroid=256)
    km.train(_unit.normalise(vectors[sample]))
    centres = km.centroids.astype(np.float32)
    labels = assign(vectors, centres)
    order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
    rank = np.empty(k, np.int32)
    rank[order] = np.arange(k, dtype=np.int32)
    return centres[order], rank[labels]


def assign(vectors: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The cluster of each of ``vectors``: its nearest centre by cosine (ties to the lower number)."""
    labels = np.empty(len(vectors), np.int32)
    for at in range(0, len(vectors), 8192):
        labels[at:at + 8192] = np.argmax(_unit.normalise(vectors[at:at + 8192]) @ centres.T, axis=1)
    return labels


def central(vectors: np.ndarray, labels: np.ndarray, centres: np.ndarray, per: int) -> list[np.ndarray]:
    """For each cluster, the rows of its ``per`` members nearest its centre (by cosine), nearest first."""
    out = []
    for c, centre in enumerate(centres):
        rows = np.flatnonzero(labels == c)
        similarity = _unit.normalise(vectors[rows]) @ centre
        out.append(rows[np.argsort(-similarity, kind="stable")[:per]])
    return out

