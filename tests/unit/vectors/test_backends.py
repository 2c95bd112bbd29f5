"""Backend conformance: one suite, every backend, answers checked against brute force in float64.

A new backend joins by adding a factory to ``BACKENDS``: it must find the same
results as brute force through the :class:`Searcher`, whose re-scoring makes distances exact.
"""

import numpy as np
import pytest

from helpers import distances_reference as brute
from lookalike.vectors import Backend, ExactBackend, Searcher
from lookalike.vectors.faiss_backend import FaissBackend

DIM = 32
K = 3

# name -> (factory(ids, vectors, metric), search options making an approximate backend exhaustive)
BACKENDS = {
    "exact": (lambda ids, x, metric: ExactBackend(ids, x, metric), {}),
    "faiss-exact": (lambda ids, x, metric: FaissBackend.build(x, ids, metric, "exact"), {}),
    "faiss-hnsw": (lambda ids, x, metric: FaissBackend.build(x, ids, metric, "hnsw"), {"ef_search": 512}),
    "faiss-ivfpq": (lambda ids, x, metric: FaissBackend.build(x, ids, metric, "ivfpq", m=16),
                    {"nprobe": 10_000, "slack": 1.0}),  # PQ distances are coarse: a wide range margin
}


def collection(n, seed=0):
    """``n`` non-unit vectors (norms 0.5-3) under ids that are not row numbers, and 4 queries."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)) * rng.uniform(0.5, 3.0, (n, 1))
    ids = np.sort(rng.choice(10_000, n, replace=False)).astype(np.int64)[rng.permutation(n)]
    queries = np.concatenate([x[:1] * 1.7, rng.standard_normal((3, DIM))])
    return ids, x.astype(np.float32), queries.astype(np.float32)


def expected(queries, x, ids, metric, k, farthest=False):
    d = brute(queries, x, metric)
    order = np.argsort(-d if farthest else d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, order, 1), ids[order]


@pytest.fixture(params=list(BACKENDS))
def backend_name(request):
    return request.param


@pytest.mark.parametrize("n", [1, 5, 100])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_nearest_and_farthest_equal_brute_force(backend_name, metric, n):
    make, options = BACKENDS[backend_name]
    ids, x, queries = collection(n)
    backend = make(ids, x, metric)
    assert isinstance(backend, Backend) and len(backend) == n
    assert sorted(backend.ids().tolist()) == sorted(ids.tolist())
    searcher = Searcher(ids, x, [backend])
    assert searcher.backend(metric) is backend
    for farthest in (False, True):
        want_d, want_i = expected(queries, x, ids, metric, K, farthest)
        got_d, got_i = (searcher.farthest if farthest else searcher.nearest)(queries, K, metric, **options)
        assert got_i.shape == (len(queries), min(K, n))
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-9, atol=1e-12)
    # the backend's own answer: the right shape, padded past the live count, ordered
    d, found = backend.nearest(queries, n + 2, **options)
    assert d.shape == found.shape == (len(queries), n + 2)
    assert (found[:, n:] == -1).all() and np.isinf(d[:, n:]).all()
    assert (np.diff(d[:, :n], axis=1) >= -1e-6).all()
    d, found = backend.farthest(queries, min(n, K), **options)
    assert (np.diff(d, axis=1) <= 1e-6).all()
    if backend.exact:
        np.testing.assert_allclose(d, expected(queries, x, ids, metric, min(n, K), True)[0], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("n", [1, 5, 100])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_range_query_equals_brute_force(backend_name, metric, n):
    make, options = BACKENDS[backend_name]
    ids, x, queries = collection(n, seed=1)
    searcher = Searcher(ids, x, [make(ids, x, metric)])
    d = brute(queries, x, metric)
    radius = float(np.quantile(d, 0.3)) if n > 1 else float(d[0, 0]) + 1e-3
    offsets, found, dist = searcher.within(queries, radius, metric, **options)
    assert offsets[0] == 0 and offsets[-1] == len(found) == len(dist)
    for q in range(len(queries)):
        row = slice(offsets[q], offsets[q + 1])
        assert set(found[row].tolist()) == set(ids[d[q] <= radius].tolist())
        rows = [np.flatnonzero(ids == i)[0] for i in found[row]]
        np.testing.assert_allclose(dist[row], d[q][rows], rtol=1e-5, atol=1e-6)
    assert (dist <= radius).all()


def test_range_answers_hold_int64_ids(backend_name):
    # as nearest answers do (the searcher's CSR keeps them), with a bool per query
    make, options = BACKENDS[backend_name]
    ids, x, queries = collection(20, seed=1)
    offsets, found, dist, unfinished = make(ids, x, "l2").within(queries, 1e3, **options)
    assert offsets.dtype == found.dtype == np.int64 and np.issubdtype(dist.dtype, np.floating)
    assert unfinished.dtype == bool and unfinished.shape == (4,) and offsets[-1] == len(found) > 0


def test_range_query_finishes_what_an_ann_index_leaves_unfinished():
    # 60 near copies of one vector: with at most 8 neighbours asked, the copies' queries are left
    # unfinished by the HNSW backend and answered by the searcher's exact scan.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((200, DIM)).astype(np.float32)
    x[140:] = x[0] + 0.01 * rng.standard_normal((60, DIM)).astype(np.float32)
    ids = np.arange(200, dtype=np.int64) * 3
    backend = FaissBackend.build(x, ids, "cosine", "hnsw")
    assert backend.within(x[:1], 0.05, first=4, widest=8)[3].all()
    offsets, found, _ = Searcher(ids, x, [backend]).within(x[:1], 0.05, first=4, widest=8)
    d = brute(x[:1], x, "cosine")[0]
    assert sorted(found.tolist()) == sorted(ids[d <= 0.05].tolist()) and len(found) == 61


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_add_and_remove(backend_name, metric):
    make, options = BACKENDS[backend_name]
    ids, x, queries = collection(100, seed=2)
    backend = make(ids[:60], x[:60], metric)
    backend.add(x[60:], ids[60:])
    with pytest.raises(ValueError, match=rf"ids already in the (index|collection).*: \[{ids[0]}\]"):
        backend.add(x[:1], ids[:1])
    gone = ids[::3]
    assert backend.remove(np.concatenate([gone, [99_999]])) == len(gone)
    assert backend.remove(gone) == 0
    live = ~np.isin(ids, gone)
    assert len(backend) == live.sum() and sorted(backend.ids().tolist()) == sorted(ids[live].tolist())
    searcher = Searcher(ids[live], x[live], [backend])
    for farthest in (False, True):
        want_d, want_i = expected(queries, x[live], ids[live], metric, K, farthest)
        got_d, got_i = (searcher.farthest if farthest else searcher.nearest)(queries, K, metric, **options)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_allclose(got_d, want_d, rtol=1e-9, atol=1e-12)
    _, found = backend.nearest(queries, 100, **options)
    assert not np.isin(found, gone).any()


@pytest.mark.parametrize("n", [1, 5, 100])
def test_random_is_a_reproducible_sample_with_exact_distances(n):
    ids, x, queries = collection(n)
    searcher = Searcher(ids, x)
    d, a = searcher.random(queries[:1], 20, "l2", seed=1)
    _, b = searcher.random(queries[:1], 20, "l2", seed=1)
    assert a.shape == (1, min(20, n)) and len(set(a[0].tolist())) == min(20, n) and set(a[0]) <= set(ids)
    np.testing.assert_array_equal(a, b)
    rows = [np.flatnonzero(ids == i)[0] for i in a[0]]
    np.testing.assert_allclose(d[0], brute(queries[:1], x, "l2")[0, rows], rtol=1e-9)
    if n == 100:
        assert not np.array_equal(a, searcher.random(queries[:1], 20, seed=2)[1])


def test_distances_by_hand():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], np.float32)
    searcher = Searcher(np.array([7, 8, 9]), v)
    d, i = searcher.nearest(np.array([1.0, 0.0]), 3, "cosine")
    np.testing.assert_array_equal(i[0], [7, 8, 9])
    np.testing.assert_allclose(d[0], [0.0, 1.0, 2.0], atol=1e-12)
    d, i = searcher.farthest(np.array([1.0, 0.0]), 3, "l2")
    np.testing.assert_array_equal(i[0], [9, 8, 7])
    np.testing.assert_allclose(d[0], [4.0, np.sqrt(5), 0.0], atol=1e-12)
    offsets, found, dist = searcher.within(np.array([1.0, 0.0]), 1.0, "cosine")
    assert offsets.tolist() == [0, 2] and sorted(found.tolist()) == [7, 8]


def test_ids_a_backend_holds_beyond_the_searchers_vectors_are_never_returned():
    # a backend out of step with the vectors (e.g. a remote store not yet told of a removal)
    ids, x, queries = collection(50, seed=4)
    backend = ExactBackend(ids, x, "cosine")
    searcher = Searcher(ids[10:], x[10:], [backend])
    for search in (searcher.nearest, searcher.farthest):
        _, got = search(queries, 20)
        assert (got >= 0).any() and not np.isin(got, ids[:10]).any()
    _, found, _ = searcher.within(queries, 2.0)
    assert sorted(set(found.tolist())) == sorted(ids[10:].tolist())


def test_candidates_of_unfinished_queries_are_not_counted_twice():
    class GivesUp(ExactBackend):
        exact = False

        def within(self, queries, radius, **options):
            offsets, ids, dists, unfinished = super().within(queries, radius)
            return offsets, ids, dists, ~unfinished  # every query unfinished, its candidates returned anyway

    ids, x, queries = collection(100, seed=5)
    d = brute(queries, x, "l2")
    radius = float(np.quantile(d, 0.2))
    offsets, found, _ = Searcher(ids, x, [GivesUp(ids, x, "l2")]).within(queries, radius, "l2")
    assert np.diff(offsets).tolist() == (d <= radius).sum(axis=1).tolist()
    assert len(set(zip(np.repeat(np.arange(len(queries)), np.diff(offsets)).tolist(), found.tolist()))) == len(found)


def test_exact_backend_k_1_and_2_over_many_rows_equal_brute_force():
    # the partial sorts must keep exactly the k best of every chunk, whatever k
    ids, x, _ = collection(1000, seed=6)
    queries = np.random.default_rng(7).standard_normal((40, DIM)).astype(np.float32)
    for metric in ("cosine", "l2"):
        backend = ExactBackend(ids, x, metric)
        for k in (1, 2):
            for farthest in (False, True):
                want_d, want_i = expected(queries, x, ids, metric, k, farthest)
                d, found = (backend.farthest if farthest else backend.nearest)(queries, k)
                np.testing.assert_array_equal(found, want_i)
                np.testing.assert_allclose(d, want_d, rtol=1e-4, atol=1e-5)


def test_exact_backend_answers_in_the_protocols_types_and_shapes():
    ids, x, queries = collection(20, seed=8)
    backend = ExactBackend(ids.astype(np.int32), x, "l2")
    assert backend.ids().dtype == np.int64
    d, found = backend.nearest(queries, 3)
    assert d.dtype == np.float32 and found.dtype == np.int64 and d.shape == found.shape == (4, 3)
    d, found = backend.farthest(np.zeros((0, DIM), np.float32), 3)  # no queries
    assert d.dtype == np.float32 and found.dtype == np.int64 and d.shape == found.shape == (0, 3)
    ref = brute(queries, x, "l2")
    radius = float(np.quantile(ref, 0.3))
    offsets, found, dist, unfinished = backend.within(queries, radius)
    assert dist.dtype == np.float64 and found.dtype == np.int64 and not unfinished.any()
    assert dist.max() <= radius + 1e-5  # exact: nothing beyond the radius but float32 rounding
    assert len(found) == (ref <= radius).sum() == offsets[-1]


def test_exact_backend_refuses_mismatched_lengths_and_bad_ids_with_a_message():
    ids, x, _ = collection(5, seed=9)
    with pytest.raises(ValueError, match=r"^4 ids and 5 norms for 5 vectors$"):
        ExactBackend(ids[:4], x, "l2")
    with pytest.raises(ValueError, match=r"^5 ids and 4 norms for 5 vectors$"):
        ExactBackend(ids, x, "l2", sq_norms=np.ones(4, np.float32))
    for bad in ([3, 3, 4, 5, 6], [-1, 3, 4, 5, 6]):
        with pytest.raises(ValueError, match=r"^ids must be unique and non-negative$"):
            ExactBackend(np.array(bad), x, "l2")
    backend = ExactBackend(np.arange(1, 6), x, "l2")
    backend.add(x[:1], [0])  # id 0 is a valid id
    assert sorted(backend.ids().tolist()) == [0, 1, 2, 3, 4, 5]
    for bad in ([7, 7], [-3, 8]):
        with pytest.raises(ValueError, match=r"^ids already in the index, repeated or negative: \[\]$"):
            backend.add(x[:2], bad)
    many = ExactBackend(np.arange(12), np.repeat(x[:1], 12, 0), "l2")
    with pytest.raises(ValueError, match=r": \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]$"):  # the first ten clashes
        many.add(np.repeat(x[:1], 12, 0), np.arange(12))


def test_the_exact_range_scan_keeps_a_distance_exactly_at_its_float32_tolerance_edge():
    from lookalike.vectors import get_metric
    from lookalike.vectors.backend import scan_within

    l2 = get_metric("l2")
    queries, vectors = np.zeros((1, 2), np.float32), np.array([[0.5, 0.0], [0.25, 0.0], [0.6, 0.0]], np.float32)
    radius = 0.5 - 1e-5  # its reach, float32(radius + 1e-5), is exactly 0.5: row 0's distance
    assert np.float32(radius + 1e-5) == np.float32(0.5)
    rows, cols, dists = scan_within(queries, vectors, radius, l2)
    assert rows.tolist() == [0, 0] and cols.tolist() == [0, 1] and dists.tolist() == [0.5, 0.25]
