"""What colours the map: folders, k-means clusters, and each cluster's central images."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.map import groups


def test_folders_by_full_parent():
    paths = ["/p/cats/1.jpg", "/q/cats/2.jpg", "/p/dogs/3.jpg", "/p/cats/4.jpg", "/top.jpg"]
    g = groups.folders(paths)
    assert g.names == ["/", "/p/cats", "/p/dogs", "/q/cats"]  # two folders named cats are two groups
    assert g.labels.tolist() == [1, 3, 2, 1, 0]
    assert g.sizes().tolist() == [1, 2, 1, 1]
    assert groups.folders([]).names == [] and groups.folders([]).labels.shape == (0,)


@pytest.mark.parametrize("n, k", [(1, 1), (2, 2), (18, 2), (125, 5), (500, 10), (2000, 20), (10**6, 20)])
def test_cluster_count(n, k):
    assert groups.cluster_count(n) == k  # round(sqrt(n / 5)), within 2..20 (1 for a single point)


def test_kmeans_finds_clumps_numbered_by_size():
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((3, 32))
    sizes = [20, 50, 30]
    x = np.concatenate([c + 0.05 * rng.standard_normal((n, 32)) for c, n in zip(centres, sizes)]).astype(np.float32)
    truth = np.repeat([2, 0, 1], sizes)  # the clump of 50 is cluster 0, of 30 cluster 1, of 20 cluster 2
    unit, labels = groups.kmeans(x * 3, 3)
    assert labels.tolist() == truth.tolist()
    assert np.linalg.norm(unit, axis=1) == pytest.approx(np.ones(3), abs=1e-5)
    for c, clump in zip([2, 0, 1], range(3)):  # each centre points at its clump's direction
        d = centres[clump] / np.linalg.norm(centres[clump])
        assert float(unit[c] @ d) > 0.99


def test_assign_and_central_by_cosine():
    centres = np.array([[1, 0], [0, 1]], np.float32)
    x = np.array([[3, 1], [1, 3], [10, 0.1], [0.2, 1], [1, 0.9]], np.float32)
    labels = groups.assign(x, centres)
    assert labels.tolist() == [0, 1, 0, 1, 0]
    # cosines to (1, 0): rows 0, 2, 4 -> 0.949, 1.000, 0.743; to (0, 1): rows 1, 3 -> 0.949, 0.981
    got = groups.central(x, labels, centres, per=2)
    assert [r.tolist() for r in got] == [[2, 0], [3, 1]]
