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


# found by mutation testing: more rows than one chunk, ties, empty clusters, the seed, the training sample, quiet

def test_assign_over_more_rows_than_one_chunk_matches_the_nearest_centre_of_each():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((20_000, 3)).astype(np.float32)
    centres = np.eye(3, dtype=np.float32)
    want = np.argmax(x / np.linalg.norm(x, axis=1, keepdims=True), axis=1)  # the largest coordinate wins
    assert groups.assign(x, centres).tolist() == want.tolist()


def test_central_images_at_equal_distance_are_listed_in_row_order():
    x = np.tile(np.array([[1.0, 0.0]], np.float32), (40, 1))
    got = groups.central(x, np.zeros(40, np.int32), np.array([[1, 0]], np.float32), per=40)
    assert got[0].tolist() == list(range(40))


def test_a_cluster_left_empty_is_kept_last_with_its_centre():
    a, b = np.eye(2, 4, dtype=np.float32)
    centres, labels = groups.kmeans(np.stack([a] * 10 + [b] * 12), 3)  # two directions, three clusters
    assert centres.shape == (3, 4) and centres.dtype == np.float32
    assert labels.dtype == np.int32 and np.bincount(labels, minlength=3).tolist() == [12, 10, 0]


def test_one_point_makes_one_cluster_and_one_cluster_can_be_asked_for():
    centres, labels = groups.kmeans(np.array([[3.0, 4.0]], np.float32), 5)
    assert centres.shape == (1, 2) and labels.tolist() == [0]
    assert centres[0] == pytest.approx([0.6, 0.8], abs=1e-5)
    centres, labels = groups.kmeans(np.random.default_rng(0).standard_normal((30, 4)).astype(np.float32), 1)
    assert centres.shape == (1, 4) and set(labels.tolist()) == {0}


def test_the_same_seed_gives_the_same_clusters_and_another_seed_others():
    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)  # more than 256 rows a cluster
    runs = [groups.kmeans(x, 5, seed=s)[1] for s in (1, 1, 7)]
    assert runs[0].tolist() == runs[1].tolist() and runs[0].tolist() != runs[2].tolist()
    small = x[:300]  # every row trains: only the seed of the k-means itself tells the runs apart
    assert groups.kmeans(small, 5, seed=1)[1].tolist() != groups.kmeans(small, 5, seed=7)[1].tolist()


def test_kmeans_trains_on_at_most_256_rows_a_cluster_and_prints_nothing(monkeypatch, capfd):
    import faiss

    trained = []

    class Recording(faiss.Kmeans):
        def train(self, x, *args, **kwargs):
            trained.append(len(x))
            return super().train(x, *args, **kwargs)

    monkeypatch.setattr(faiss, "Kmeans", Recording)
    x = np.random.default_rng(0).standard_normal((3000, 8)).astype(np.float32)
    groups.kmeans(x, 5)
    groups.kmeans(x[:12], 5)  # 12 points for 5 clusters: fewer than FAISS asks for by default
    groups.kmeans(x[:6], 5)  # 6 points for 5 clusters: fewer than 2 a cluster, and still no warning
    assert trained == [256 * 5, 12, 6]
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # a map's --json on stdout stays JSON; no warnings


def test_central_images_are_ordered_by_cosine_then_row_among_many_ties():
    # 40 rows in three directions, mixed: cosines to the centre (1, 0) are exactly 1, 1/sqrt(2) and 0
    directions = np.array([[1, 0], [1, 1], [0, 1]], np.float32)
    which = np.random.default_rng(3).integers(0, 3, 40)
    got = groups.central(directions[which], np.zeros(40, np.int32), np.array([[1, 0]], np.float32), per=40)
    assert got[0].tolist() == sorted(range(40), key=lambda i: (which[i], i))


def test_clusters_of_equal_size_keep_the_order_of_their_centres(monkeypatch):
    import faiss

    # 17 clusters whose centres FAISS is made to return as given: cluster i along axis i, 2 members
    # for an odd i and 1 for an even one; numbered by size, ties by the centre's own number
    d = 17
    sizes = [1 + i % 2 for i in range(d)]

    class Given:
        def __init__(self, dim, k, **kwargs):
            self.centroids = np.eye(d, dtype=np.float32)

        def train(self, x):
            pass

    monkeypatch.setattr(faiss, "Kmeans", Given)
    x = np.repeat(np.eye(d, dtype=np.float32), sizes, axis=0)
    centres, labels = groups.kmeans(x, d)
    order = [i for i in range(d) if sizes[i] == 2] + [i for i in range(d) if sizes[i] == 1]
    assert np.argmax(centres, axis=1).tolist() == order
    assert labels.tolist() == [order.index(i) for i in np.repeat(np.arange(d), sizes)]
