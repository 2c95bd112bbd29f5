import numpy as np
import pytest

from lookalike.search import pairwise, search


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 24)).astype(np.float32), rng.normal(size=(3, 24)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("mode", ["nearest", "farthest"])
def test_chunked_search_equals_brute_force(data, metric, mode):
    vectors, queries = data
    d, pos = search(queries, vectors, 7, metric, mode, chunk_rows=33)
    full = pairwise(queries.astype(np.float64), vectors.astype(np.float64), metric)
    expected = np.argsort(full if mode == "nearest" else -full, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(pos, expected)
    np.testing.assert_allclose(d, np.take_along_axis(full, expected, 1), rtol=1e-9)
    assert (np.diff(d, axis=1) >= 0).all() if mode == "nearest" else (np.diff(d, axis=1) <= 0).all()


def test_distances_are_cosine_distance_and_euclidean():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0]], np.float32)
    d, pos = search(np.array([1.0, 0.0]), v, 3, "cosine")
    np.testing.assert_allclose(d[0], [0.0, 1.0, 2.0], atol=1e-12)
    d, pos = search(np.array([1.0, 0.0]), v, 3, "l2")
    np.testing.assert_allclose(d[0], [0.0, np.sqrt(5), 4.0], atol=1e-12)


def test_random_is_reproducible_distinct_and_seed_dependent(data):
    vectors, queries = data
    a = search(queries[:1], vectors, 20, mode="random", seed=1)[1][0]
    b = search(queries[:1], vectors, 20, mode="random", seed=1)[1][0]
    c = search(queries[:1], vectors, 20, mode="random", seed=2)[1][0]
    assert list(a) == list(b) and len(set(a)) == 20 and list(a) != list(c)


def test_k_larger_than_collection_and_bad_options(data):
    vectors, queries = data
    d, pos = search(queries[:1], vectors[:4], 10)
    assert pos.shape == (1, 4)
    with pytest.raises(ValueError, match="metric"):
        search(queries, vectors, 3, metric="manhattan")
    with pytest.raises(ValueError, match="k must"):
        search(queries, vectors, 0)
