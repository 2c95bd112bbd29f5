import numpy as np
import pytest

from helpers import distances_reference
from lookalike.vectors import ExactBackend, Mode, Searcher, check_query
from lookalike.vectors.backend import top_k
from lookalike.vectors.metric import METRICS, squared_norms
from lookalike.vectors.searcher import REFINE_FACTOR, best_first


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 24)).astype(np.float32), rng.normal(size=(3, 24)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("mode", ["nearest", "farthest"])
def test_search_equals_brute_force_in_float64(data, metric, mode):
    vectors, queries = data
    d, ids = Searcher(np.arange(500), vectors).query(queries, 7, Mode(mode), metric)
    full = distances_reference(queries, vectors, metric)
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
    a = searcher.query(queries[:1], 20, Mode.random, seed=1)[1][0]
    b = searcher.query(queries[:1], 20, Mode.random, seed=1)[1][0]
    c = searcher.query(queries[:1], 20, Mode.random, seed=2)[1][0]
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


# Stored vectors of norm 5, sqrt(2), 2 and sqrt(10) under ids 10-13; the query (2, 0) has norm 2.
#   cosine distance 1 - q.v / (|q| |v|):                     l2 distance |q - v|:
#   10 (3, 4)   1 - 6 / (2 * 5)        = 0.4                  sqrt(1 + 16) = sqrt(17)
#   11 (1, 1)   1 - 2 / (2 * sqrt(2))  = 1 - 1/sqrt(2) ~ 0.29 sqrt(1 + 1)  = sqrt(2)
#   12 (0, 2)   1 - 0                  = 1                    sqrt(4 + 4)  = sqrt(8)
#   13 (-1, 3)  1 + 2 / (2 * sqrt(10)) = 1 + 1/sqrt(10) ~ 1.32 sqrt(9 + 9) = sqrt(18)
# Without the division by the stored norms, (3, 4) would score 1 - 6/2 < 0 and come first.
NON_UNIT = np.array([[3.0, 4.0], [1.0, 1.0], [0.0, 2.0], [-1.0, 3.0]], np.float32)
HAND_WORKED = {"cosine": ([11, 10, 12, 13], np.array([1 - 1 / np.sqrt(2), 0.4, 1.0, 1 + 1 / np.sqrt(10)])),
               "l2": ([11, 12, 10, 13], np.sqrt([2.0, 8.0, 17.0, 18.0]))}


@pytest.mark.parametrize("backend", ["exact", "faiss-exact", "faiss-hnsw"])
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_hand_worked_distances_of_non_unit_vectors(metric, backend):
    from lookalike.vectors.faiss_backend import FaissBackend

    ids = np.arange(10, 14)
    backends = [] if backend == "exact" else [FaissBackend.build(NON_UNIT, ids, metric, backend.split("-")[1])]
    searcher = Searcher(ids, NON_UNIT, backends)
    want_ids, want_d = HAND_WORKED[metric]
    d, found = searcher.nearest(np.array([[2.0, 0.0]], np.float32), 4, metric)
    assert found[0].tolist() == want_ids
    np.testing.assert_allclose(d[0], want_d, atol=1e-12)
    d, found = searcher.farthest(np.array([[2.0, 0.0]], np.float32), 2, metric)
    assert found[0].tolist() == want_ids[::-1][:2]
    np.testing.assert_allclose(d[0], want_d[::-1][:2], atol=1e-12)
    radius = (want_d[1] + want_d[2]) / 2  # between the second and the third
    offsets, hits, dist = searcher.within(np.array([[2.0, 0.0]], np.float32), radius, metric)
    assert sorted(hits.tolist()) == sorted(want_ids[:2])


def test_squared_norms_and_pairwise_by_hand():
    np.testing.assert_allclose(squared_norms(NON_UNIT, chunk_rows=3), [25.0, 2.0, 4.0, 10.0])
    q = np.array([[2.0, 0.0]])
    np.testing.assert_allclose(METRICS["cosine"].pairwise(q, NON_UNIT.astype(np.float64))[0],
                               HAND_WORKED["cosine"][1][[1, 0, 2, 3]], atol=1e-12)
    np.testing.assert_allclose(METRICS["l2"].pairwise(q, NON_UNIT.astype(np.float64), np.array([25.0, 2, 4, 10]))[0],
                               np.sqrt([17.0, 2.0, 8.0, 18.0]), atol=1e-12)
    np.testing.assert_allclose(METRICS["cosine"].paired(np.repeat(q, 4, 0), NON_UNIT),
                               HAND_WORKED["cosine"][1][[1, 0, 2, 3]], atol=1e-12)
    np.testing.assert_allclose(METRICS["l2"].paired(np.repeat(q, 4, 0), NON_UNIT), np.sqrt([17.0, 2.0, 8.0, 18.0]))


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_equal_distances_at_the_cut_keep_the_smaller_ids(metric):
    """Byte copies of a file have equal distances: which of them make the k results is decided by
    id (as the order among them is), not by where they sit in the scan, in every chunk."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    x[10:20] = x[3]  # eleven copies
    ids = rng.permutation(1000)[:60].astype(np.int64)
    copies = np.sort(ids[[3, *range(10, 20)]])
    for chunks in ([(x, ids)], [(x[s:s + 7], ids[s:s + 7]) for s in range(0, 60, 7)]):
        for k in (1, 4, 11):
            _, near = top_k(x[3], chunks, k, METRICS[metric])
            assert near[0].tolist() == copies[:k].tolist()
    searcher = Searcher(ids, x)
    for k in (1, 4, 11):
        assert searcher.nearest(x[3], k, metric)[1][0].tolist() == copies[:k].tolist()
        if metric == "cosine":  # the copies are the farthest from the opposite direction
            assert searcher.farthest(-x[3], k, metric)[1][0].tolist() == copies[:k].tolist()


class Recording(ExactBackend):
    """A real exact scan over the vectors it was given, declared ``exact`` or not, recording each request."""

    def __init__(self, ids, vectors, metric, exact=False):
        super().__init__(ids, vectors, metric)
        self.exact, self.asked = exact, []

    def nearest(self, queries, k, **options):
        self.asked.append(("nearest", k, options))
        return super().nearest(queries, k)

    def farthest(self, queries, k, **options):
        self.asked.append(("farthest", k, options))
        return super().farthest(queries, k)

    def within(self, queries, radius, **options):
        self.asked.append(("within", radius, options))
        return super().within(queries, radius)


def test_an_approximate_backend_answers_unless_exact_and_gets_the_options_and_refine_factor(data):
    # the approximate backends hold only the first 250 vectors: what they answer is visibly theirs
    vectors, queries = data
    ids = np.arange(500) * 3
    partial = {m: Recording(ids[:250], vectors[:250], m) for m in ("cosine", "l2")}
    searcher = Searcher(ids, vectors, partial.values())
    np.testing.assert_array_equal(searcher.query(queries, 5)[1], searcher.nearest(queries, 5, "cosine")[1])
    assert partial["cosine"].asked == [("nearest", 20, {}), ("nearest", 20, {})]
    for metric in ("cosine", "l2"):
        full = distances_reference(queries, vectors, metric)
        for mode in ("nearest", "farthest"):
            partial[metric].asked.clear()
            _, found = searcher.query(queries, 5, Mode(mode), metric, ef_search=7)
            assert np.isin(found, ids[:250]).all()
            assert partial[metric].asked == [(mode, 5 * REFINE_FACTOR, {"ef_search": 7})]
            d, found = searcher.query(queries, 5, Mode(mode), metric, exact=True)
            order = np.argsort(full if mode == "nearest" else -full, axis=1, kind="stable")[:, :5]
            np.testing.assert_array_equal(found, ids[order])
            assert len(partial[metric].asked) == 1
        radius = float(np.quantile(full, 0.1))
        _, found, _ = searcher.within(queries, radius, metric, slack=2.0)
        assert set(found.tolist()) == set(ids[:250][(full[:, :250] <= radius).any(0)].tolist())
        assert partial[metric].asked[-1] == ("within", radius, {"slack": 2.0})
        _, found, _ = searcher.within(queries, radius, metric, exact=True)
        assert sorted(found.tolist()) == sorted(ids[np.nonzero(full <= radius)[1]].tolist())
    partial["l2"].asked.clear()
    searcher.farthest(queries, 2, "l2")
    searcher.within(queries, 0.5, "l2")
    assert partial["l2"].asked == [("farthest", 2 * REFINE_FACTOR, {}), ("within", 0.5, {})]
    exact = Recording(ids, vectors, "l2", exact=True)  # an exact backend is asked for k only
    Searcher(ids, vectors, [exact]).nearest(queries, 5, "l2")
    assert exact.asked == [("nearest", 5, {})]


def test_with_backends_shares_the_vectors_and_swaps_the_backends(data):
    vectors, queries = data
    ids = np.arange(500)
    searcher = Searcher(ids, vectors)
    partial = Recording(ids[:100], vectors[:100], "l2")
    twin = searcher.with_backends([partial])
    assert twin.backend("l2") is partial and searcher.backend("l2") is not partial and twin.vectors is vectors
    assert (twin.nearest(queries, 3, "l2")[1] < 100).all()
    np.testing.assert_array_equal(twin.nearest(queries, 3, "l2", exact=True)[1], searcher.nearest(queries, 3, "l2")[1])


def test_padding_for_ids_the_backend_holds_but_the_searcher_does_not_is_minus_one_at_the_end(data):
    # the backend still holds 10 removed vectors; the searcher's 40 include id 0, the query's nearest
    vectors, _ = data
    ids = np.arange(50)
    live = np.arange(40)
    query = vectors[:1] + 0.01
    searcher = Searcher(ids[live], vectors[live], [Recording(ids, vectors[:50], "l2")])
    d, found = searcher.nearest(query, 40, "l2")  # the backend is asked for all 40 it may return
    full = distances_reference(query, vectors[:50], "l2")[0]
    candidates = np.argsort(full, kind="stable")[:40]
    want = candidates[candidates < 40]
    assert want[0] == 0 and len(want) < 40
    np.testing.assert_array_equal(found[0], np.concatenate([want, np.full(40 - len(want), -1)]))
    np.testing.assert_allclose(d[0, :len(want)], full[want], rtol=1e-9)
    assert np.isinf(d[0, len(want):]).all()


def test_an_empty_searcher_answers_empty_results_even_with_a_stale_backend(data):
    vectors, queries = data
    stale = Recording(np.arange(5), vectors[:5], "cosine")
    searcher = Searcher(np.zeros(0, np.int64), np.zeros((0, vectors.shape[1]), np.float32), [stale])
    for mode in ("nearest", "farthest", "random"):
        d, found = searcher.query(queries, 3, Mode(mode), seed=0)
        assert d.shape == found.shape == (3, 0) and d.dtype == np.float64 and found.dtype == np.int64
    offsets, found, dist = searcher.within(queries, 2.0)
    assert offsets.tolist() == [0, 0, 0, 0] and len(found) == len(dist) == 0
    assert stale.asked == [("within", 2.0, {})]


def test_range_distances_are_float64_and_a_boundary_hit_of_an_unfinished_query_is_kept(data):
    class GivesUp(Recording):
        def within(self, queries, radius, **options):
            offsets, ids, dists, unfinished = super().within(queries, radius)
            return offsets, ids, dists, ~unfinished  # every query left to the searcher's exact scan

    vectors, queries = data
    ids = np.arange(500)
    _, _, exact_d = Searcher(ids, vectors).within(queries[:1], 1.0, "cosine")
    assert exact_d.dtype == np.float64
    radius = float(np.sort(exact_d)[len(exact_d) // 2])  # a distance the exact scan gives: on the boundary
    _, found, dist = Searcher(ids, vectors, [GivesUp(ids, vectors, "cosine")]).within(queries[:1], radius, "cosine")
    assert dist.dtype == np.float64 and dist.max() == radius and len(found) == (exact_d <= radius).sum()


def test_range_candidates_of_an_approximate_backend_come_back_as_found_when_not_rescored(data):
    class Off(Recording):  # approximate: distances 0.03 too far, candidates up to 0.05 beyond the radius
        def within(self, queries, radius, **options):
            offsets, ids, dists, unfinished = super().within(queries, radius + 0.05)
            return offsets, ids, dists + 0.03, unfinished

    vectors, queries = data
    ids = np.arange(500) * 3
    searcher = Searcher(ids, vectors, [Off(ids, vectors, "cosine")])
    _, _, exact_d = Searcher(ids, vectors).within(queries[:1], 1.0, "cosine")
    radius = float(np.sort(exact_d)[len(exact_d) // 2])
    offsets, found, dist = searcher.within(queries[:1], radius, "cosine", rescore=False)
    full = distances_reference(queries[:1], vectors, "cosine")[0]
    given = np.flatnonzero(full <= radius + 0.05)  # what the backend gave, kept whatever its distance
    assert sorted(found.tolist()) == sorted(ids[given].tolist()) and (dist > radius).any()
    np.testing.assert_allclose(dist, full[found // 3] + 0.03, atol=1e-5)
    _, found, dist = searcher.within(queries[:1], radius, "cosine")  # re-scored: the exact answer
    assert sorted(found.tolist()) == sorted(ids[full <= radius].tolist()) and dist.max() <= radius


def test_stored_vectors_and_known_ids_are_looked_up_by_id_even_in_an_empty_searcher(data):
    vectors, _ = data
    ids = np.arange(500) * 3
    searcher = Searcher(ids, vectors)
    np.testing.assert_array_equal(searcher.vectors_of(np.array([15, 6])), vectors[[5, 2]])
    assert searcher.known(np.array([15, 16])).tolist() == [True, False]
    empty = Searcher(np.zeros(0, np.int64), np.zeros((0, vectors.shape[1]), np.float32))
    known = empty.known(np.array([[1, 2], [3, 4]]))
    assert known.shape == (2, 2) and known.dtype == bool and not known.any()


def test_best_first_puts_the_nearest_first_unless_asked_for_the_farthest():
    dists = np.array([[0.5, 0.1, 0.9, 0.1]])
    ids = np.array([[7, 9, 3, 4]])
    nearest = best_first(dists, ids, 3)  # ties by id: 4 before 9
    np.testing.assert_array_equal(nearest[1], [[4, 9, 7]])
    np.testing.assert_array_equal(nearest[0], [[0.1, 0.1, 0.5]])
    np.testing.assert_array_equal(best_first(dists, ids, 2, farthest=True)[1], [[3, 7]])
