import numpy as np
import pytest

from lookalike.vectors import Searcher, check_query
from lookalike.vectors.backend import top_k
from lookalike.vectors.metric import METRICS


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 24)).astype(np.float32), rng.normal(size=(3, 24)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("mode", ["nearest", "farthest"])
def test_search_equals_brute_force_in_float64(data, metric, mode):
    vectors, queries = data
    d, ids = Searcher(np.arange(500), vectors).search(queries, 7, mode, metric)
    full = METRICS[metric].pairwise(queries.astype(np.float64), vectors.astype(np.float64))
    expected = np.argsort(full if mode == "nearest" else -full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(d, np.take_along_axis(full, expected, 1), rtol=1e-9)
    assert d.dtype == np.float64
    assert (np.diff(d, axis=1) >= 0).all() if mode == "nearest" else (np.diff(d, axis=1) <= 0).all()


def test_chunked_scan_equals_one_scan(data):
    vectors, queries = data
    ids = np.arange(500, dtype=np.int64) * 2
    whole = top_k(queries, [(vectors, ids)], 5, METRICS["l2"])
    parts = top_k(queries, [(vectors[:100], ids[:100]), (vectors[100:], ids[100:])], 5, METRICS["l2"])
    np.testing.assert_array_equal(whole[1], parts[1])
    brute = np.sqrt(((queries[:, None] - vectors[None]) ** 2).sum(-1))
    np.testing.assert_allclose(whole[0], np.sort(brute, axis=1)[:, :5], rtol=1e-4)
    d, i = top_k(queries, [(vectors[:3], ids[:3])], 5, METRICS["cosine"], farthest=True)
    assert (i[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all() and (np.diff(d[:, :3]) <= 0).all()


def test_random_is_reproducible_distinct_and_seed_dependent(data):
    vectors, queries = data
    searcher = Searcher(np.arange(500), vectors)
    a = searcher.search(queries[:1], 20, "random", seed=1)[1][0]
    b = searcher.search(queries[:1], 20, "random", seed=1)[1][0]
    c = searcher.search(queries[:1], 20, "random", seed=2)[1][0]
    assert list(a) == list(b) and len(set(a)) == 20 and list(a) != list(c)


def test_k_larger_than_collection_and_bad_options(data):
    vectors, queries = data
    d, ids = Searcher(np.arange(4), vectors[:4]).nearest(queries[:1], 10)
    assert ids.shape == (1, 4)
    with pytest.raises(ValueError, match="metric"):
        check_query("manhattan", "nearest", 3)
    with pytest.raises(ValueError, match="mode"):
        check_query("cosine", "middle", 3)
    with pytest.raises(ValueError, match="k must"):
        check_query("cosine", "nearest", 0)
    with pytest.raises(ValueError, match="metric"):
        Searcher(np.arange(4), vectors[:4]).nearest(queries[:1], 3, "manhattan")
