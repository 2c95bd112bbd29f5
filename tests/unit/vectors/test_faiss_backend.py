import json

import numpy as np
import pytest

from lookalike.vectors import METRICS, Searcher, get_metric
from lookalike.vectors import ann
from lookalike.vectors.ann import KINDS, recall_at_k
from lookalike.vectors.backend import top_k
from lookalike.vectors.faiss_backend import FaissBackend

METRICS = list(METRICS)

EXACT = {"exact": {}, "hnsw": {"ef_search": 256}, "ivfpq": {"nprobe": 10_000}}


def random_vectors(n, dim=32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def clustered(n_clusters=50, size=10, dim=64, seed=0):
    """Tight clusters far apart: each member's top-``size`` neighbours are its cluster."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim)).astype(np.float32) * 10
    x = np.repeat(centres, size, axis=0) + rng.standard_normal((n_clusters * size, dim)).astype(np.float32)
    return x, np.repeat(np.arange(n_clusters), size)


def sparse_ids(n, seed=1):
    return np.sort(np.random.default_rng(seed).choice(10 * n + 10, size=n, replace=False)).astype(np.int64) + 3


def search(index, queries, k, mode="nearest", **options):
    return getattr(index, mode)(queries, k, **options)


def exact_search(queries, chunks, k, metric="cosine", mode="nearest"):
    return top_k(queries, chunks, k, get_metric(metric), farthest=mode == "farthest")


def assert_well_formed(dist, ids, n_live, k, mode, allowed):
    found = min(n_live, k)
    assert dist.shape == ids.shape == (len(dist), k)
    assert dist.dtype == np.float32 and ids.dtype == np.int64
    assert (ids[:, :found] >= 0).all() and (ids[:, found:] == -1).all()
    assert np.isfinite(dist[:, :found]).all() and np.isinf(dist[:, found:]).all()
    for row_d, row_i in zip(dist[:, :found], ids[:, :found]):
        assert np.isin(row_i, allowed).all() and len(set(row_i)) == found
        steps = np.diff(row_d)
        assert (steps >= -1e-5).all() if mode == "nearest" else (steps <= 1e-5).all()


@pytest.mark.parametrize("n", [1, 5, 100])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", KINDS + ("auto",))
def test_tiny_collections_build_and_pad(n, metric, kind):
    x, ids = random_vectors(n), sparse_ids(n)
    index = FaissBackend.build(x, ids, metric=metric, kind=kind)
    assert index.ntotal == n
    for mode in ("nearest", "farthest"):
        dist, found = search(index, x[:3], 7, mode)
        assert_well_formed(dist, found, n, 7, mode, ids)
    dist, found = index.nearest(x[:1], 1)
    assert found[0, 0] == ids[0]
    if index.kind != "ivfpq":  # PQ distances are coarse at this size
        assert dist[0, 0] == pytest.approx(0, abs=0.01 if metric == "cosine" else 0.3)


def test_tiny_ivfpq_falls_back_and_pca_is_dropped():
    assert FaissBackend.build(random_vectors(5), np.arange(5), kind="ivfpq").kind == "exact"
    index = FaissBackend.build(random_vectors(20), np.arange(20), kind="hnsw", pca=24)
    assert index.params["pca"] is None
    assert FaissBackend.build(random_vectors(100), np.arange(100), kind="ivfpq", pca=16).params["m"] == 2


def test_hnsw_over_no_vectors_falls_back_to_an_empty_exact_index():
    """An index whose files were all skipped, asked for HNSW: its quantizer has nothing to train on
    (FAISS fails), so the empty index is exact (as IVF-PQ's is), and finds nothing; one vector is
    enough for HNSW."""
    for kind, params in (("hnsw", {"storage": "sq8"}), ("hnsw", {"storage": "flat"}), ("ivfpq", {})):
        empty = FaissBackend.build(random_vectors(0), np.arange(0), kind=kind, **params)
        assert empty.kind == "exact" and len(empty) == 0
        dist, found = empty.nearest(random_vectors(2), 3)
        assert found.tolist() == [[-1] * 3] * 2 and np.isinf(dist).all()
    assert FaissBackend.build(random_vectors(1), np.arange(1), kind="hnsw").kind == "hnsw"


def test_rejects_bad_input():
    x = random_vectors(10)
    with pytest.raises(ValueError, match="9 ids for 10 vectors"):
        FaissBackend.build(x, np.arange(9))
    with pytest.raises(ValueError, match="^ids must be unique$"):
        FaissBackend.build(x, np.zeros(10))
    with pytest.raises(ValueError, match="^ids must be non-negative$"):
        FaissBackend.build(x, np.arange(10) - 1)
    with pytest.raises(ValueError, match=r"unknown parameters for hnsw: \['nprobe'\]"):
        FaissBackend.build(x, np.arange(10), kind="hnsw", nprobe=4)
    with pytest.raises(ValueError, match="unknown metric 'dot'"):
        FaissBackend.build(x, np.arange(10), metric="dot")
    index = FaissBackend.build(x, np.arange(10))
    with pytest.raises(ValueError, match=r"ids already in the index: \[3\]"):
        index.add(random_vectors(2), [3, 11])
    with pytest.raises(ValueError, match=r"expected a \(N, 32\) array, got shape \(1, 8\)"):
        index.nearest(random_vectors(1, dim=8), 3)
    with pytest.raises(ValueError, match="k must be >= 1"):
        index.nearest(random_vectors(1), 0)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_well_separated_results_equal_exact(metric, kind):
    x, _ = clustered()
    ids = sparse_ids(len(x))
    exact = FaissBackend.build(x, ids, metric=metric, kind="exact")
    approx = FaissBackend.build(x, ids, metric=metric, kind=kind)
    assert approx.kind == kind
    queries = x[::7]
    exact_d, exact_i = exact.nearest(queries, 10)
    _, approx_i = approx.nearest(queries, 10, **EXACT[kind])
    assert recall_at_k(approx_i, exact_i, 10) == 1.0
    refined_d, refined_i = Searcher(ids, x, [approx]).nearest(queries, 10, metric, **EXACT[kind])
    np.testing.assert_array_equal(refined_i, exact_i)
    np.testing.assert_allclose(refined_d, exact_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("kind", ["hnsw", "ivfpq"])
def test_farthest_matches_exact(metric, kind):
    x = random_vectors(500)
    ids = np.arange(500, dtype=np.int64)
    queries = random_vectors(20, seed=5)
    exact_d, exact_i = exact_search(queries, [(x, ids)], 10, metric=metric, mode="farthest")
    # Pure noise has no redundancy for PQ to exploit: give it 4-d sub-vectors.
    index = FaissBackend.build(x, ids, metric=metric, kind=kind, **({"m": 8} if kind == "ivfpq" else {}))
    _, far_i = index.farthest(queries, 10, **EXACT[kind])
    assert recall_at_k(far_i, exact_i, 10) >= (0.9 if kind == "hnsw" else 0.5)
    refined_d, refined_i = Searcher(ids, x, [index], refine_factor=8).farthest(queries, 10, metric, **EXACT[kind])
    np.testing.assert_array_equal(refined_i, exact_i)
    np.testing.assert_allclose(refined_d, exact_d, rtol=1e-4, atol=1e-4)
    flat_d, flat_i = FaissBackend.build(x, ids, metric=metric, kind="exact").farthest(queries, 10)
    np.testing.assert_array_equal(flat_i, exact_i)
    np.testing.assert_allclose(flat_d, exact_d, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_add_remove_never_returns_removed_ids(kind, tmp_path):
    x = random_vectors(300)
    ids = sparse_ids(300)
    index = FaissBackend.build(x[:200], ids[:200], kind=kind)
    index.add(x[200:], ids[200:])
    gone = ids[::6]
    assert index.remove(np.append(gone, 10**9)) == len(gone)
    assert index.remove(gone[:3]) == 0
    assert index.ntotal == 300 - len(gone)
    np.testing.assert_array_equal(np.sort(index.ids()), np.setdiff1d(ids, gone))

    def assert_absent(idx):
        for mode in ("nearest", "farthest"):
            _, found = search(idx, x[::5], 60, mode, **EXACT[kind])
            assert not np.isin(found, gone).any()
            assert (found >= 0).all()

    assert_absent(index)
    index.save(tmp_path / "ann.faiss")
    loaded = FaissBackend.load(tmp_path / "ann.faiss")
    assert loaded.ntotal == index.ntotal
    assert_absent(loaded)

    # A removed id may be added again, with a new vector, and is found once.
    loaded.add(x[:1] + 1e-3, gone[1:2])
    _, found = loaded.nearest(x[:1], 5, **EXACT[kind])
    assert (found[0] == gone[1]).sum() == 1 and (found[0] == gone[0]).sum() == 0


def test_hnsw_needs_rebuild_after_many_removals():
    x = random_vectors(100)
    index = FaissBackend.build(x, np.arange(100), kind="hnsw")
    index.remove(np.arange(20))
    assert not index.needs_rebuild
    index.remove(np.arange(20, 30))
    assert index.needs_rebuild and index.describe()["tombstones"] == 30


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize(
    "kind,params",
    [("exact", {}), ("hnsw", {}), ("hnsw", {"pca": 16, "storage": "flat"}), ("ivfpq", {}), ("ivfpq", {"pca": 16})],
)
def test_save_load_round_trip(metric, kind, params, tmp_path):
    x = random_vectors(400)
    ids = sparse_ids(400)
    index = FaissBackend.build(x, ids, metric=metric, kind=kind, **params)
    index.remove(ids[:7])
    path = tmp_path / "ann.faiss"
    index.save(path)
    meta = json.loads((tmp_path / "ann.faiss.json").read_text())
    assert (meta["kind"], meta["metric"], meta["dim"], meta["count"]) == (kind, metric, 32, 393)
    loaded = FaissBackend.load(path)
    assert loaded.describe() == index.describe()
    queries = random_vectors(10, seed=3)
    for mode in ("nearest", "farthest"):
        d0, i0 = search(index, queries, 10, mode)
        d1, i1 = search(loaded, queries, 10, mode)
        np.testing.assert_array_equal(i0, i1)
        np.testing.assert_array_equal(d0, d1)


def test_exact_scan_over_chunks():
    x = random_vectors(250)
    ids = np.arange(250, dtype=np.int64) * 2
    queries = random_vectors(4, seed=9)
    whole = exact_search(queries, [(x, ids)], 5, metric="l2")
    parts = exact_search(queries, [(x[:100], ids[:100]), (x[100:], ids[100:])], 5, metric="l2")
    np.testing.assert_array_equal(whole[1], parts[1])
    brute = np.sqrt(((queries[:, None] - x[None]) ** 2).sum(-1))
    np.testing.assert_allclose(whole[0], np.sort(brute, axis=1)[:, :5], rtol=1e-4)
    d, i = exact_search(queries, [(x[:3], ids[:3])], 5, metric="cosine", mode="farthest")
    assert (i[:, 3:] == -1).all() and np.isinf(d[:, 3:]).all() and (np.diff(d[:, :3]) <= 0).all()




def _line():
    """Ten points on a line (l2: distances are differences): ids 0..9 at 0, 1, 2, 2.3, 4, 5, ..., 9."""
    pos = np.array([0, 1, 2, 2.3, 4, 5, 6, 7, 8, 9], np.float32)
    x = np.stack([pos, np.zeros(10, np.float32)], axis=1)
    return x, FaissBackend.build(x, np.arange(10), "l2", "exact")


def _found(result):
    offsets, ids, dists, unfinished = result
    return [sorted(ids[a:b].tolist()) for a, b in zip(offsets[:-1], offsets[1:])], unfinished.tolist()


def test_range_by_nearest_searches_widens_until_past_the_reach_and_keeps_id_0():
    x, index = _line()
    # reach = radius + slack = 1.8. From 0: 0, 1 (2 is past it after the first 3 answers).
    # From 2.3 (id 3): 3 answers (0, 0.3, 1.3) all within: widened; then 2, 1, 4 (1.7) within, 0 (2.3) not.
    assert _found(index.within(x[[0, 3]], 1.3, first=2, slack=0.5)) == ([[0, 1], [1, 2, 3, 4]], [False, False])
    # a candidate exactly at the reach (5.0 from 0: 4.5 + 0.5) is one
    assert _found(index.within(x[:1], 4.5, first=2, slack=0.5)) == ([[0, 1, 2, 3, 4, 5]], [False])


def test_a_range_query_asks_for_at_most_widest_neighbours_besides_itself():
    x, index = _line()
    # radius 9 from 0 needs every point: 3 answers (first 2 and itself), then 12 = widest + 1 allowed
    assert _found(index.within(x[:1], 9.0, first=2, widest=11, slack=0.5)) == ([list(range(10))], [False])
    assert _found(index.within(x[:1], 9.0, first=2, widest=10, slack=0.5)) == ([[]], [True])  # left unfinished


def test_a_range_query_for_its_k_nearest_stops_past_them_and_what_is_close():
    x, index = _line()
    # nearest 2 from 0: ids 1 (1.0) and 2 (2.0); the reach is the 2nd's distance plus a small slack
    # (min(slack, 0.005) for exact storage), so id 3 at 2.3 is left out, unless close reaches it
    assert _found(index.within(x[:1], 9.0, slack=0.5, nearest=2)) == ([[0, 1, 2]], [False])
    assert _found(index.within(x[:1], 9.0, slack=0.5, nearest=2, close=3.0)) == ([[0, 1, 2, 3]], [False])  # 3.5
    assert _found(index.within(x[:1], 1.5, slack=0.5, nearest=2, close=3.0)) == ([[0, 1, 2]], [False])  # radius 2.0
    assert _found(index.within(x[:1], 9.0, slack=0.5, nearest=2, close=2.0)) == ([[0, 1, 2, 3]], [False])  # close + slack: 2.5
    assert _found(index.within(x[:1], 9.0, slack=0.5, nearest=1)) == ([[0, 1]], [False])  # 1.005: its one nearest


def test_a_range_query_stops_once_its_last_answer_is_past_the_reach():
    x, index = _line()
    # from 0 with reach 1.8: 3 answers (0, 1, 2.0) and the last past it: done, never asking for 12 (> widest + 1)
    assert _found(index.within(x[:1], 1.3, first=2, widest=3, slack=0.5)) == ([[0, 1]], [False])
    # answers that are the whole index are all there is: finished even though all are within reach
    assert _found(index.within(x[:1], 9.0, first=9, widest=9, slack=0.5)) == ([list(range(10))], [False])


def test_a_range_query_widens_when_its_last_answer_is_exactly_at_the_reach_or_is_id_0():
    x, index = _line()
    # from 3.0: id 3 (0.7), then ids 2 and 4 tied at 1.0 = the reach (0.5 + 0.5): the second answer is one
    # of the tie, so the query widens and finds the other
    assert _found(index.within(np.array([[3.0, 0.0]]), 0.5, first=1, slack=0.5)) == ([[2, 3, 4]], [False])
    # from 1.4: 1 (0.4), 2 (0.6), 3 (0.9), then id 0 (1.4) within the reach 3.2, so it widens to 4 (2.6)
    assert _found(index.within(np.array([[1.4, 0.0]]), 2.7, first=3, slack=0.5)) == ([[0, 1, 2, 3, 4]], [False])


def test_what_is_close_defaults_to_nothing_and_k_nearest_asks_twice_as_many_first():
    x, index = _line()
    # from 2: its nearest is id 3 (0.3); close 0 reaches max(0 + 0.5, 0.3 + 0.005), so id 1 (1.0) is out
    assert _found(index.within(x[2:3], 9.0, slack=0.5, nearest=1)) == ([[2, 3]], [False])
    # its 3 nearest: it first asks for 2 x 3 and itself, 7 > widest + 1: left unfinished
    assert _found(index.within(x[2:3], 9.0, first=2, widest=5, slack=0.5, nearest=3)) == ([[]], [True])
    # 7 answers: 2, 3 (0.3), 1 (1.0), then 4 and 0 tied at 2.0: the reach 2.005 keeps both
    assert _found(index.within(x[2:3], 9.0, first=2, widest=6, slack=0.5, nearest=3)) == ([[0, 1, 2, 3, 4]], [False])


def _two_groups():
    """16 points on a line in two groups far apart (0..7 and 100..107), an IVF-PQ index of two lists
    whose 16 codes (4 bits) hold them exactly."""
    pos = np.concatenate([np.arange(8), 100 + np.arange(8)]).astype(np.float32)
    x = np.stack([pos, np.zeros(16, np.float32)], axis=1)
    return x, FaissBackend.build(x, np.arange(16), "l2", "ivfpq", nlist=2, m=1)


def test_ivfpq_range_queries_probe_the_lists_asked_for():
    x, index = _two_groups()
    middle = np.array([[50.0, 0.0]])  # within 60 of every point; one list probed by default
    assert _found(index.within(middle, 60.0, nprobe=2)) == ([list(range(16))], [False])
    assert len(_found(index.within(middle, 60.0))[0][0]) == 8


def test_ivfpq_widens_past_its_k_th_nearest_by_the_whole_slack():
    # IVF-PQ's coarse codes: what is within slack of the k-th nearest (1.0) is still asked for
    pos = np.array([0, 1, 1.3] + list(range(4, 17)), np.float32)
    x = np.stack([pos, np.zeros(16, np.float32)], axis=1)
    index = FaissBackend.build(x, np.arange(16), "l2", "ivfpq", nlist=1, m=1)
    assert index.kind == "ivfpq"
    assert _found(index.within(x[:1], 9.0, slack=0.5, nearest=1)) == ([[0, 1, 2]], [False])


def test_ivfpq_scans_past_an_emptied_list_and_lists_no_ids_once_all_are_removed():
    x, _ = _two_groups()
    # one of the two removals empties the first list; the farthest from 50 are the group left's far end
    for gone, farthest in ((np.arange(8), [15, 14]), (np.arange(8, 16), [0, 1])):
        index = FaissBackend.build(x, np.arange(16), "l2", "ivfpq", nlist=2, m=1)
        assert index.remove(gone) == 8
        assert sorted(index.ids().tolist()) == sorted(set(range(16)) - set(gone.tolist()))
        _, found = index.farthest(np.array([[50.0, 0.0]]), 2)  # l2: an exact scan of the decoded lists
        assert found.tolist() == [farthest]
    index.remove(np.arange(8))
    ids = index.ids()
    assert ids.dtype == np.int64 and ids.shape == (0,)


def test_describe_reports_what_was_built_and_what_is_stored():
    index = FaissBackend.build(random_vectors(100), np.arange(100), "l2", "hnsw", M=8)
    index.remove(np.arange(30))
    d = index.describe()
    assert {k: d[k] for k in d if k != "params"} == {
        "kind": "hnsw", "metric": "l2", "dim": 32, "ntotal": 70, "stored": 100, "tombstones": 30,
        "build_count": 100, "needs_rebuild": True}
    assert d["params"]["M"] == 8


def test_adding_vectors_of_another_size_or_many_known_ids_is_refused_whole():
    index = FaissBackend.build(random_vectors(20), np.arange(20))
    with pytest.raises(ValueError, match=r"expected a \(N, 32\) array, got shape \(2, 8\)"):
        index.add(random_vectors(2, dim=8), [30, 31])
    with pytest.raises(ValueError, match=r"ids already in the index: \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]$"):
        index.add(random_vectors(12), np.arange(12))
    assert len(index) == 20 and sorted(index.ids().tolist()) == list(range(20))


def test_only_the_flat_index_calls_itself_exact():
    x = random_vectors(20)
    assert [FaissBackend.build(x, np.arange(20), kind=k).exact for k in KINDS] == [k == "exact" for k in KINDS]


def test_auto_is_exact_up_to_so_many_numbers_in_all_and_hnsw_above(monkeypatch):
    monkeypatch.setattr(ann, "AUTO_EXACT_ELEMENTS", 100)
    assert FaissBackend.build(random_vectors(50, dim=2), np.arange(50)).kind == "exact"  # 100 numbers
    assert FaissBackend.build(random_vectors(51, dim=2), np.arange(51)).kind == "hnsw"


def test_pca_of_1_to_dim_outputs_kept_up_to_as_many_vectors_and_the_variance_it_keeps():
    x = random_vectors(20)
    with pytest.raises(ValueError, match=r"^pca must be in 1\.\.32, got 0$"):
        FaissBackend.build(x, np.arange(20), kind="hnsw", pca=0)
    with pytest.raises(ValueError, match=r"^pca must be in 1\.\.32, got 33$"):
        FaissBackend.build(x, np.arange(20), kind="hnsw", pca=33)
    assert FaissBackend.build(x, np.arange(20), kind="hnsw", pca=1).params["pca"] == 1
    assert FaissBackend.build(x, np.arange(20), kind="hnsw", pca=20).params["pca"] == 20  # 20 vectors: enough
    assert FaissBackend.build(random_vectors(40), np.arange(40), kind="hnsw", pca=32).params["pca"] == 32
    with pytest.raises(ValueError, match=r"^expected a \(N, D\) array, got shape \(5,\)$"):
        FaissBackend.build(np.zeros(5, np.float32), np.arange(5))
    # +-0.3, +-0.2 and +-0.1 along three axes of four: variances 0.09, 0.04 and 0.01 (times 1/3); the first two
    # keep 13 / 14 of it
    axes = np.diag([0.3, 0.2, 0.1, 0.0]).astype(np.float32)
    index = FaissBackend.build(np.concatenate([axes[:3], -axes[:3]]), np.arange(6), "l2", "hnsw", pca=2, storage="flat")
    assert index.params["pca_variance"] == round(13 / 14, 4)
    assert index.nearest(np.array([[0.3, 0, 0, 0]], np.float32), 1)[1].tolist() == [[0]]


def test_the_training_sample_is_distinct_rows_in_order_50_a_list_and_the_same_each_time(monkeypatch):
    from lookalike.vectors import faiss_backend

    trained = []
    real = faiss_backend._new_index
    monkeypatch.setattr(faiss_backend, "_new_index", lambda *a: trained.append(a[-1][:, 0].copy()) or real(*a))
    monkeypatch.setattr(faiss_backend, "_TRAIN_MAX", 60)
    x = np.zeros((200, 4), np.float32)
    x[:, 0] = np.arange(200)  # each row's number (l2 keeps vectors as they are)
    x[:, 1] = np.random.default_rng(0).random(200)
    for _ in range(2):
        FaissBackend.build(x, np.arange(200), "l2", "ivfpq", nlist=2, m=2, nbits=4)
    FaissBackend.build(x[:60], np.arange(60), "l2", "hnsw")
    FaissBackend.build(x, np.arange(200), "l2", "hnsw")
    first, again, every, few = trained
    assert len(first) == 100 and np.all(np.diff(first) > 0)  # 50 x 2 lists > 60: 100 distinct rows, in order
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(every, np.arange(60))
    assert len(few) == 60 and np.all(np.diff(few) > 0)


def test_a_bad_sidecar_is_refused_in_one_line(tmp_path):
    index = FaissBackend.build(random_vectors(10), np.arange(10))
    path = tmp_path / "ann.faiss"
    index.save(path)
    meta = json.loads((tmp_path / "ann.faiss.json").read_text())
    (tmp_path / "ann.faiss.json").write_text(json.dumps({**meta, "count": 11}))
    with pytest.raises(ValueError, match=rf"^{path} holds 10 vectors, its sidecar says 11$"):
        FaissBackend.load(path)
    (tmp_path / "ann.faiss.json").write_text(json.dumps({**meta, "format": 2}))
    with pytest.raises(ValueError, match=rf"^unsupported ANN index format in {path}\.json$"):
        FaissBackend.load(path)
    with pytest.raises(ValueError, match="^k must be >= 1$"):
        index.nearest(random_vectors(1), 0)


@pytest.mark.parametrize("kind", KINDS)
def test_ids_of_any_integer_type_are_removed_and_may_be_added_again(kind):
    x = random_vectors(40)
    index = FaissBackend.build(x, np.arange(40), "l2", kind)
    assert index.remove(np.array([3, 5], np.int32)) == 2
    assert index.remove(np.array([5, 7], np.uint16)) == 1
    index.add(x[3:4], [3])
    assert sorted(index.ids().tolist()) == sorted(set(range(40)) - {5, 7})
    assert index.nearest(x[3:4], 1, **EXACT[kind])[1].tolist() == [[3]]


def test_nearest_and_farthest_probe_the_lists_asked_for_farthest_8_times_as_many():
    x, index = _two_groups()
    middle = np.array([[50.0, 0.0]])
    assert (index.nearest(middle, 16)[1] >= 0).sum() == 8  # one list of two
    assert (index.nearest(middle, 16, nprobe=2)[1] >= 0).sum() == 16
    # cosine: the farthest from q are the nearest to -q, searched in 8 lists (here both) unless told
    angles = np.radians(np.concatenate([np.arange(8), 90 + np.arange(8)]))
    unit = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    index = FaissBackend.build(unit, np.arange(16), "cosine", "ivfpq", nlist=2, m=1)
    q = np.array([[np.cos(np.radians(45)), np.sin(np.radians(45))]], np.float32)
    assert (index.farthest(q, 16)[1] >= 0).sum() == 16
    assert (index.farthest(q, 16, nprobe=1)[1] >= 0).sum() == 8


def test_hnsw_l2_farthest_scans_the_stored_vectors_chunk_by_chunk_past_tombstones(monkeypatch):
    from lookalike.vectors import faiss_backend

    monkeypatch.setattr(faiss_backend, "CHUNK_ROWS", 4)
    x = random_vectors(30, dim=8)
    index = FaissBackend.build(x, np.arange(30) * 2, "l2", "hnsw", storage="flat")
    index.remove(np.arange(0, 60, 6))
    live = np.setdiff1d(np.arange(30), np.arange(0, 30, 3))
    q = random_vectors(2, dim=8, seed=4)
    want_d, want_i = exact_search(q, [(x[live], live * 2)], 25, "l2", "farthest")
    got_d, got_i = index.farthest(q, 25)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-5)


def test_hnsw_storage_and_ivfpq_sub_vectors_are_checked_in_one_line():
    x = random_vectors(40)
    with pytest.raises(ValueError, match=r"^hnsw storage must be 'sq8' or 'flat', got 'pq'$"):
        FaissBackend.build(x, np.arange(40), kind="hnsw", storage="pq")
    with pytest.raises(ValueError, match=r"^m=5 must divide the \(projected\) dimension 32$"):
        FaissBackend.build(x, np.arange(40), kind="ivfpq", m=5)


@pytest.mark.parametrize("storage", ["flat", "sq8"])
def test_hnsw_cosine_distances_are_one_minus_the_cosine(storage):
    # unit vectors at 0, 60 and 90 degrees (and one of length 3 at 180): from the first, 0, 0.5, 1 and 2
    angles = np.radians([0, 60, 90, 180])
    x = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32) * [[1], [1], [1], [3]]
    index = FaissBackend.build(x, np.arange(4), "cosine", "hnsw", storage=storage)
    dist, found = index.nearest(x[:1], 4)
    assert found.tolist() == [[0, 1, 2, 3]]
    np.testing.assert_allclose(dist, [[0, 0.5, 1, 2]], atol=0.01 if storage == "sq8" else 1e-6)


@pytest.fixture
def one_omp_thread():
    """Build and search on one OpenMP thread: a graph built the same way each time, and no thread
    hand-offs on busy cores."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.mark.parametrize("mode", ["nearest", "farthest"])
def test_hnsw_searches_as_wide_as_its_default_ef_search_where_a_narrow_search_misses(mode, one_omp_thread):
    """1,000 Gaussian rows in 64 dimensions have no low-dimensional structure for the graph to follow:
    a search as wide as k (ef 10) finds about 85 % of the exact 10 nearest (or farthest), one of
    FAISS's default 16 about 94 %, one of 64 (`hnsw_ef_search` up to 100k vectors; farthest 8 times
    wider) all of them. Exact: brute force over the normalised rows."""
    x, queries = random_vectors(1000, dim=64), random_vectors(100, dim=64, seed=1)
    ids = sparse_ids(1000)
    index = FaissBackend.build(x, ids, "cosine", "hnsw", storage="flat")
    unit = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    _, exact = exact_search(unit(queries), [(unit(x), ids)], 10, "cosine", mode)
    assert recall_at_k(search(index, queries, 10, mode)[1], exact, 10) >= 0.98
    assert recall_at_k(search(index, queries, 10, mode, ef_search=64)[1], exact, 10) >= 0.98
    assert recall_at_k(search(index, queries, 10, mode, ef_search=10)[1], exact, 10) < 0.95


def test_ivfpq_lists_are_ten_rounds_of_spherical_k_means_by_inner_product(one_omp_thread):
    """IVF-PQ's coarse centroids are FAISS's spherical k-means of the normalised rows (each row to the
    centroid of largest inner product, centroids scaled back to length 1, FAISS's seed 1234) run for
    10 rounds, as `faiss.Kmeans` computes it here; 9 or 11 rounds give other centroids. Every 7th row
    is zero (cosine keeps it zero): its inner product with every centroid is 0, while a distance
    would send it to the shortest centroid, so the metric of the assignment shows too. The stored ids
    come list by list, each in the order added."""
    import faiss

    x = random_vectors(1000, dim=16)
    x[::7] = 0
    index = FaissBackend.build(x, np.arange(1000), "cosine", "ivfpq")
    nlist = index.params["nlist"]
    assert nlist == 25  # 1000 // 39
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)

    def k_means(rounds):
        km = faiss.Kmeans(16, nlist, niter=rounds, spherical=True, min_points_per_centroid=1, seed=1234)
        km.train(unit)
        return km

    km = k_means(10)
    centroids = index._ann.quantizer.reconstruct_n(0, nlist)
    np.testing.assert_allclose(centroids, km.centroids, atol=1e-6)
    for rounds in (9, 11):
        assert np.abs(k_means(rounds).centroids - centroids).max() > 1e-3
    _, lists = km.index.search(unit, 1)
    assert index.ids().tolist() == np.argsort(lists[:, 0], kind="stable").tolist()
