"""``lookalike.cluster.collection_search`` over a stand-in Milvus (milvus_standin.py): every answer equals
the embedded :class:`~lookalike.vectors.Searcher`'s over the same vectors (the reference): nearest and
farthest through the vector index, l2 and exact ones by a scan, random samples drawn as it draws them,
and range searches, also for a query whose hits fill Milvus' result limit; what is asked of Milvus
(results wanted times the refine factor, an HNSW breadth of at least that many); the sampler of a
large collection uniform and never listing ids."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest

pytest.importorskip("pymilvus")

from milvus_standin import Milvus  # noqa: E402

from lookalike.cluster import collection_search as cs  # noqa: E402
from lookalike.cluster.collection import MilvusCollection, create  # noqa: E402
from lookalike.cluster.collection_search import CollectionSearcher, sample_ids  # noqa: E402
from lookalike.vectors import Searcher  # noqa: E402
from lookalike.vectors.metric import Mode  # noqa: E402

SERVER = "http://milvus.example:19530"
DIM = 6


def _points(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` ids (not in order) and float32 vectors, with exact duplicates (ties broken by id)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors[[5, 9][:max(0, n - 8)]] = vectors[3]
    ids = rng.permutation(np.arange(1000, 1000 + 7 * n, 7))[:n].astype(np.int64)
    return ids, vectors


def _collection(milvus: Milvus, uri: str, ids: np.ndarray, vectors: np.ndarray, name: str = "c") -> MilvusCollection:
    create(uri, name, {"name": "tiny", "layer": "pool", "dim": vectors.shape[1]})
    uri = uri if "://" in uri else os.path.abspath(uri)
    client = milvus.client(uri)
    client.upsert(name, [{"id": int(i), "path": f"/p/{i}.jpg", "vector": v.tolist(), "size": 1, "mtime_ns": 1,
                          "hash": "ab", "width": 1, "height": 1} for i, v in zip(ids, vectors)])
    client.close()
    milvus.calls.clear()
    return MilvusCollection(uri, name)


def _searches(milvus: Milvus) -> list[dict]:
    return [options for name, _, options in milvus.calls if name == "search"]


@pytest.mark.parametrize("where", ["lite", "server"])
def test_nearest_and_farthest_equal_the_embedded_searchers(milvus, tmp_path, where):
    ids, vectors = _points()
    reference = Searcher(ids, vectors)
    queries = np.concatenate([vectors[[3, 0]], np.random.default_rng(1).standard_normal((2, DIM))]).astype(np.float32)
    uri = str(tmp_path / "c.db") if where == "lite" else SERVER
    with contextlib.closing(_collection(milvus, uri, ids, vectors)) as c:
        s = c.searcher()
        for metric in ("cosine", "l2"):
            for k in (1, 3, 7, 40, 55):
                for exact in (False, True):
                    for method in ("nearest", "farthest"):
                        got = getattr(s, method)(queries, k, metric, exact=exact)
                        want = getattr(reference, method)(queries, k, metric)
                        assert np.array_equal(got[1], want[1]), (metric, k, exact, method)
                        assert np.allclose(got[0], want[0], rtol=0, atol=1e-12)
        assert all(options["consistency_level"] == "Bounded" for options in _searches(milvus))
        one = s.nearest(vectors[0], 2)  # one query as a 1-d vector
        assert np.array_equal(one[1], reference.nearest(vectors[0][None], 2)[1])
        assert s.nearest(queries, 0)[1].shape == (4, 0)
        assert s.nearest(np.zeros((0, DIM), np.float32), 3, "l2")[1].shape[0] == 0  # no queries: no rows


def test_the_vector_index_is_asked_for_the_refine_factor_times_the_results_and_hnsw_breadth_at_least_that(milvus):
    ids, vectors = _points()
    with contextlib.closing(_collection(milvus, SERVER, ids, vectors)) as c:
        s = c.searcher()
        s.nearest(vectors[:2], 5)
        s.farthest(vectors[:2], 30)
        s.nearest(vectors[:2], 5, ef_search=100)
        s.query(vectors[:2], 5, Mode.farthest, ef_search=7)
        s.nearest(vectors[:1], 5000)  # 20,000 wanted: at most Milvus' limit of 16,384
        s.farthest(vectors[:2], 5, ef_search=90)
        assert [(o["limit"], o["search_params"]) for o in _searches(milvus)] == [
            (20, {"params": {"ef": 64}}), (120, {"params": {"ef": 120}}), (20, {"params": {"ef": 100}}),
            (20, {"params": {"ef": 20}}), (16_384, {"params": {"ef": 16_384}}), (20, {"params": {"ef": 90}})]
        milvus.calls.clear()
        s.nearest(vectors[:2], 5, exact=True)  # exact: a scan, not the vector index
        s.nearest(vectors[:2], 5, "l2")
        CollectionSearcher(c, approximate=False).farthest(vectors[:2], 5)
        assert _searches(milvus) == []
        assert CollectionSearcher(c, refine_factor=2).nearest(vectors[:1], 5)[1].shape == (1, 5)
        assert _searches(milvus)[-1]["limit"] == 10


def test_a_flat_index_is_searched_exactly_by_milvus_without_breadth(milvus, tmp_path):
    ids, vectors = _points()
    with contextlib.closing(_collection(milvus, str(tmp_path / "c.db"), ids, vectors)) as c:
        s = c.searcher()
        s.nearest(vectors[:2], 5, exact=True)
        s.farthest(vectors[:2], 5)
        assert [(o["limit"], o["search_params"]) for o in _searches(milvus)] == [(20, None), (20, None)]
        assert [s.backend(m, e).exact for m in ("cosine", "l2") for e in (False, True)] == [True] * 4
    with contextlib.closing(_collection(milvus, SERVER, ids, vectors)) as c:
        s = c.searcher()
        assert [s.backend(m, e).exact for m in ("cosine", "l2") for e in (False, True)] == [False, True, True, True]
        assert c.searcher(approximate=False).backend("cosine").exact is True
        assert len(s) == 40


def test_an_empty_collection_answers_nothing(milvus, tmp_path):
    with contextlib.closing(_collection(milvus, str(tmp_path / "c.db"), np.zeros(0, np.int64),
                                        np.zeros((0, DIM), np.float32))) as c:
        s = c.searcher()
        q = np.ones((2, DIM), np.float32)
        for got in (s.nearest(q, 3), s.farthest(q, 3, "l2"), s.random(q, 3, seed=1)):
            assert got[0].shape == got[1].shape == (2, 0)
        offsets, found, dists = s.within(q, 0.5)
        assert (offsets.tolist(), found.tolist(), dists.tolist()) == ([0, 0, 0], [], [])


@pytest.mark.parametrize("where", ["lite", "server"])
def test_random_draws_as_the_embedded_searcher_draws_from_the_sorted_ids(milvus, tmp_path, where):
    ids, vectors = _points()
    order = np.argsort(ids)
    reference = Searcher(ids[order], vectors[order])
    uri = str(tmp_path / "c.db") if where == "lite" else SERVER
    queries = vectors[:3]
    with contextlib.closing(_collection(milvus, uri, ids, vectors)) as c:
        s = c.searcher()
        for k, seed, metric in ((5, 0, "cosine"), (5, 11, "l2"), (40, 3, "cosine"), (60, 3, "l2"), (0, 1, "cosine")):
            got = s.random(queries, k, metric, seed)
            want = reference.random(queries[:1], k, metric, seed)
            assert np.array_equal(got[1], np.repeat(want[1], 3, axis=0))  # one sample for every query
            assert np.allclose(got[0][0], want[0][0], rtol=0, atol=1e-12)
            worked = np.stack([_dist(metric, q, vectors, ids, got[1][0]) for q in queries]).reshape(3, len(got[1][0]))
            assert np.allclose(got[0], worked, rtol=0, atol=1e-9)
        got = s.query(queries, 4, Mode.random, "cosine", seed=5)
        assert np.array_equal(got[1][0], reference.random(queries[:1], 4, seed=5)[1][0])
        assert np.array_equal(s.query(queries, 4, Mode.nearest)[1], reference.nearest(queries, 4)[1])
        assert np.array_equal(s.query(queries, 4, Mode.farthest, "l2")[1], reference.farthest(queries, 4, "l2")[1])


def _dist(metric: str, q: np.ndarray, vectors: np.ndarray, ids: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Distances of ``q`` to the vectors of ``chosen`` ids, worked out in float64."""
    x = vectors[[int(np.flatnonzero(ids == i)[0]) for i in chosen]].astype(np.float64)
    q = q.astype(np.float64)
    if metric == "l2":
        return np.sqrt(((x - q) ** 2).sum(axis=1))
    return 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))


def test_a_random_draw_leaves_out_a_file_removed_meanwhile(milvus, tmp_path):
    ids, vectors = _points(6)
    with contextlib.closing(_collection(milvus, str(tmp_path / "c.db"), ids, vectors)) as c:
        drawn = sample_ids(c, 6, np.random.default_rng(2))
        lookup = c.vectors_of

        def after_a_removal(asked):
            c.client.delete("c", ids=[int(drawn[1])])
            return lookup(asked)

        c.vectors_of = after_a_removal
        dists, got = c.searcher().random(vectors[:2], 6, seed=2)
        assert got.tolist() == [[int(i) for i in drawn if i != drawn[1]]] * 2
        assert dists.shape == (2, 5) and np.isfinite(dists).all()


def _large(milvus, ids: list[int], monkeypatch, small: int, per_range: int, cap: int) -> MilvusCollection:
    monkeypatch.setattr(cs, "SMALL", small)
    monkeypatch.setattr(cs, "PER_RANGE", per_range)
    monkeypatch.setattr(cs, "RANGE_CAP", cap)
    c = _collection(milvus, SERVER, np.asarray(ids, np.int64), np.ones((len(ids), 2), np.float32))
    monkeypatch.setattr(c, "pages", lambda *a: pytest.fail("the sampler listed the ids"))
    return c


def test_the_range_sampler_is_uniform_and_never_lists_ids(milvus, monkeypatch):
    from lookalike.cluster.collection import file_id

    n, k, draws = 200, 20, 300
    c = _large(milvus, [file_id(f"/p/{i}") for i in range(n)], monkeypatch, small=10, per_range=8, cap=64)
    drawn = [sample_ids(c, k, np.random.default_rng(seed)) for seed in range(draws)]
    assert all(d.dtype == np.int64 and len(set(d.tolist())) == k for d in drawn)
    counts = np.unique(np.concatenate(drawn), return_counts=True)[1]
    assert len(counts) == n
    expected = draws * k / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < n - 1 + 4.5 * np.sqrt(2 * (n - 1))  # about p > 1e-5 for 199 degrees of freedom
    assert np.array_equal(sample_ids(c, 6, np.random.default_rng(7)), sample_ids(c, 6, np.random.default_rng(7)))
    assert len(sample_ids(c, 500, np.random.default_rng(1))) == n  # at most every file
    assert sample_ids(c, 0, np.random.default_rng(1)).shape == (0,)
    assert {level for _, level in milvus.reads()} == {"Bounded"}


def test_ids_at_the_edges_of_the_samplers_ranges_are_drawn_like_any_other(milvus, monkeypatch):
    # 4 files over 2 ranges of 2**62 ids each: the first and last id of each range
    edges = [0, 2**62 - 1, 2**62, 2**63 - 1]
    c = _large(milvus, edges, monkeypatch, small=3, per_range=2, cap=2)
    firsts = [int(sample_ids(c, 1, np.random.default_rng(seed))[0]) for seed in range(120)]
    assert sorted(set(firsts)) == edges
    assert all(20 <= firsts.count(i) <= 45 for i in edges)  # each 1/4 of 120 draws
    assert sorted(sample_ids(c, 4, np.random.default_rng(0)).tolist()) == edges


def test_a_range_over_its_cap_is_an_error_naming_the_collection(milvus, monkeypatch):
    c = _large(milvus, [0, 1, 2, 2**62], monkeypatch, small=3, per_range=2, cap=2)
    with pytest.raises(RuntimeError) as e:
        for seed in range(20):
            sample_ids(c, 1, np.random.default_rng(seed))
    assert str(e.value) == f"an id range of collection c at {SERVER} holds 3 files (over 2)"


@pytest.mark.parametrize("where", ["lite", "server"])
def test_within_a_radius_equals_the_embedded_searchers(milvus, tmp_path, where):
    ids, vectors = _points(60)
    reference = Searcher(ids, vectors)
    queries = vectors[[3, 0, 7]]
    uri = str(tmp_path / "c.db") if where == "lite" else SERVER
    with contextlib.closing(_collection(milvus, uri, ids, vectors)) as c:
        s = c.searcher()
        for metric, radius in (("cosine", 0.6), ("cosine", 1.2), ("l2", 3.0)):
            for exact in (False, True):
                got = s.within(queries, radius, metric, exact=exact)
                _assert_same_pairs(got, reference.within(queries, radius, metric, exact=True))
                assert got[2].dtype == np.float64 and (got[2] >= 0).all()
        # Milvus' own distances, as found
        _assert_same_pairs(s.within(queries, 0.6, rescore=False), reference.within(queries, 0.6, exact=True))
    # COSINE similarity in [1 - radius, 1], a hair wider for float32 rounding, at most Milvus' limit
    asked = {(o["search_params"]["params"]["radius"], o["search_params"]["params"]["range_filter"], o["limit"],
              o["consistency_level"]) for o in _searches(milvus)}
    assert asked == {(1 - 0.6 - 1e-5, 1 + 1e-5, 16_384, "Bounded"), (1 - 1.2 - 1e-5, 1 + 1e-5, 16_384, "Bounded")}


def _assert_same_pairs(got, want) -> None:
    """The same ids within the radius of each query (in any order), at the same distances."""
    assert np.array_equal(got[0], want[0])
    for a, b in zip(got[0][:-1], got[0][1:]):
        mine, theirs = np.argsort(got[1][a:b]), np.argsort(want[1][a:b])
        assert np.array_equal(got[1][a:b][mine], want[1][a:b][theirs])
        assert np.allclose(got[2][a:b][mine], want[2][a:b][theirs], rtol=0, atol=1e-6)


def test_a_query_whose_range_hits_fill_milvus_limit_is_scanned(milvus, tmp_path, monkeypatch):
    ids, vectors = _points(60)
    reference = Searcher(ids, vectors)
    radius = 0.5
    counts = np.diff(reference.within(vectors, radius, exact=True)[0])
    queries = vectors[[int(np.argmax(counts)), int(np.argmin(counts))]]
    limit = int(counts.max())
    assert counts.max() > counts.min() >= 1
    want = reference.within(queries, radius, exact=True)
    for name, cap in (("c", limit), ("d", limit - 1)):  # filled exactly; more hits than Milvus returns
        monkeypatch.setattr(cs, "MAX_HITS", cap)
        with contextlib.closing(_collection(milvus, SERVER, ids, vectors, name)) as c:
            got = c.searcher().within(queries, radius)
        _assert_same_pairs(got, want)
        assert [o["limit"] for o in _searches(milvus)] == [cap]


def test_a_range_candidate_removed_before_it_is_rescored_is_left_out(milvus, tmp_path):
    ids, vectors = _points(20)
    with contextlib.closing(_collection(milvus, str(tmp_path / "c.db"), ids, vectors)) as c:
        lookup = c.vectors_of

        def after_a_removal(asked):
            c.client.delete("c", ids=[int(ids[5])])
            return lookup(asked)

        c.vectors_of = after_a_removal
        offsets, found, _ = c.searcher().within(vectors[[3]], 0.01)
        assert sorted(found.tolist()) == sorted([int(ids[3]), int(ids[9])]) and offsets.tolist() == [0, 2]


def test_exact_answers_on_an_hnsw_index_scan_instead_of_searching_it(milvus):
    ids, vectors = _points()
    with contextlib.closing(_collection(milvus, SERVER, ids, vectors)) as c:
        s = c.searcher()
        assert (s.backend("cosine").exact, s.backend("l2").exact) == (False, True)
        s.query(vectors[:2], 4, Mode.nearest, exact=True)
        s.query(vectors[:2], 4, Mode.farthest, "cosine", exact=True)
        s.farthest(vectors[:2], 4, exact=True)
        s.within(vectors[:2], 0.5, exact=True)
        assert _searches(milvus) == []
        s.query(vectors[:2], 4, Mode.nearest)
        s.within(vectors[:2], 0.5)
        assert len(_searches(milvus)) == 2


@pytest.mark.parametrize("where", ["lite", "server"])
def test_a_pair_exactly_at_the_radius_is_within_it_and_ids_stay_integers(milvus, tmp_path, where):
    e = np.eye(DIM, dtype=np.float32)
    vectors = np.stack([e[1], -e[0], 3 * e[1] - e[0]])  # from e[0]: cosine 1, 2, 1.32; l2 1.41, 2, 3.61
    uri = str(tmp_path / "c.db") if where == "lite" else SERVER
    with contextlib.closing(_collection(milvus, uri, np.array([7, 8, 9]), vectors)) as c:
        s = c.searcher()
        for metric, radius, want in (("cosine", 1.0, [7]), ("l2", 2.0, [7, 8])):
            for exact in (False, True):
                offsets, found, dists = s.within(e[:1], radius, metric, exact=exact)
                assert (offsets.tolist(), found.tolist(), dists[-1]) == ([0, len(want)], want, radius)
                assert found.dtype == np.int64
        for exact in (False, True):  # nothing within: still integer ids
            offsets, found, dists = s.within(e[2:3], 0.1, exact=exact)
            assert (offsets.tolist(), found.dtype, dists.dtype) == ([0, 0], np.int64, np.float64)


def test_without_rescoring_the_index_candidates_just_past_the_radius_are_kept_with_milvus_distances(milvus):
    e = np.eye(DIM, dtype=np.float64)
    radius, past = 0.5, 5e-6  # within Milvus' range, a hair wider than the radius, but not within it
    cos = 1 - radius - past
    vectors = np.stack([cos * e[0] + np.sqrt(1 - cos**2) * e[1], 0.9 * e[0] + np.sqrt(1 - 0.81) * e[2]])
    with contextlib.closing(_collection(milvus, SERVER, np.array([3, 4]), vectors.astype(np.float32))) as c:
        s = c.searcher()
        offsets, found, dists = s.within(e[:1].astype(np.float32), radius, rescore=False)
        assert (offsets.tolist(), sorted(found.tolist())) == ([0, 2], [3, 4])
        assert np.allclose(sorted(dists), [0.1, radius + past], rtol=0, atol=1e-6)
        offsets, found, dists = s.within(e[:1].astype(np.float32), radius)
        assert (offsets.tolist(), found.tolist()) == ([0, 1], [4])


def test_a_file_of_id_0_is_found_like_any_other(milvus):
    ids, vectors = _points(12)
    ids[4] = 0  # a digest may be 0
    reference = Searcher(ids, vectors)
    with contextlib.closing(_collection(milvus, SERVER, ids, vectors)) as c:
        s = c.searcher()
        for metric, exact in (("l2", False), ("cosine", True), ("cosine", False)):
            for method in ("nearest", "farthest"):
                got = getattr(s, method)(vectors[[4, 1]], 12, metric, exact=exact)
                want = getattr(reference, method)(vectors[[4, 1]], 12, metric)
                assert np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0], rtol=0, atol=1e-12)


def test_a_collection_of_exactly_small_files_draws_from_its_listed_ids(milvus, monkeypatch):
    ids, vectors = _points(6)
    monkeypatch.setattr(cs, "SMALL", 6)
    order = np.argsort(ids)
    reference = Searcher(ids[order], vectors[order])
    with contextlib.closing(_collection(milvus, SERVER, ids, vectors)) as c:
        for seed in range(5):
            assert np.array_equal(c.searcher().random(vectors[:1], 3, seed=seed)[1],
                                  reference.random(vectors[:1], 3, seed=seed)[1])
