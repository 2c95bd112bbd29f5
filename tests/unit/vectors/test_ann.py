import numpy as np
import pytest

from lookalike.vectors.ann import (
    AUTO_EXACT_ELEMENTS,
    check,
    choose_kind,
    default_params,
    hnsw_ef_search,
    recall_at_k,
)
from lookalike.vectors.faiss_backend import FaissBackend


def test_choose_kind():
    assert choose_kind("auto", 1) == "exact"
    assert choose_kind("auto", AUTO_EXACT_ELEMENTS // 1280, 1280) == "exact"
    assert choose_kind("auto", AUTO_EXACT_ELEMENTS // 1280 + 1, 1280) == "hnsw"
    assert choose_kind("auto", AUTO_EXACT_ELEMENTS // 256 + 1, 256) == "hnsw"
    assert choose_kind("ivfpq", 1) == "ivfpq"
    with pytest.raises(ValueError, match="unknown kind 'annoy'"):
        choose_kind("annoy", 10)


def test_hnsw_ef_search_grows_with_size():
    assert hnsw_ef_search(0) == hnsw_ef_search(100_000) == 64
    assert 250 <= hnsw_ef_search(1_000_000) <= 260
    assert hnsw_ef_search(10**9) == 1024


def test_recall_at_k_ignores_padding():
    assert recall_at_k(np.array([[1, 2, -1]]), np.array([[2, 3, 1]]), 3) == pytest.approx(2 / 3)
    assert recall_at_k(np.array([[1, 2]]), np.array([[2, -1]]), 2) == 1.0


def test_check_reports_recall_and_latency():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 64)).astype(np.float32) * 10
    x = np.repeat(centres, 10, axis=0) + rng.standard_normal((200, 64)).astype(np.float32)
    ids = np.arange(len(x))
    report = check(FaissBackend.build(x, ids, kind="hnsw"), x, ids, n_queries=20, k=10)
    assert report["recall@10"] == 1.0 and report["n_queries"] == 20
    assert 0 < report["p50_ms"] <= report["p95_ms"]


def test_an_unknown_kind_names_the_kinds_there_are():
    with pytest.raises(ValueError) as e:
        choose_kind("annoy", 10)
    assert str(e.value) == "unknown kind 'annoy'; expected one of ('exact', 'hnsw', 'ivfpq', 'auto')"
    with pytest.raises(ValueError, match="^unknown kind 'auto'$"):
        default_params("auto", 10, 8)


def test_default_parameters_worked_by_hand():
    assert default_params("exact", 10_000, 1280) == {}
    assert default_params("hnsw", 10_000, 1280) == {"M": 32, "ef_construction": 40, "ef_search": None,
                                                    "storage": "sq8", "pca": None}
    # nlist: 4 sqrt(10,000) = 400, capped at 10,000 // 39 = 256; m: the largest divisor of 1280 up to 160
    assert default_params("ivfpq", 10_000, 1280) == {"nlist": 256, "nprobe": 16, "m": 160, "nbits": 8, "pca": None}
    # nlist: 4 sqrt(1e6) = 4,000 (under 25,641); nbits: log2(1e6) = 19.9, at most 8
    assert default_params("ivfpq", 1_000_000, 256)["nlist"] == 4000
    # nlist: min(40, 100 // 39 = 2); nprobe no more than nlist; m: 8 divides 64; nbits: floor(log2 100) = 6
    assert default_params("ivfpq", 100, 64) == {"nlist": 2, "nprobe": 2, "m": 8, "nbits": 6, "pca": None}
    # m: the largest divisor of 100 up to 12 is 10; of a prime dimension, 1
    assert default_params("ivfpq", 50, 100)["m"] == 10 and default_params("ivfpq", 50, 97)["m"] == 1
    assert default_params("ivfpq", 0, 8) == {"nlist": 1, "nprobe": 1, "m": 1, "nbits": 0, "pca": None}
    assert default_params("ivfpq", 2**40, 8)["nlist"] == 65_536  # FAISS's most lists


def test_hnsw_ef_search_worked_by_hand():
    assert hnsw_ef_search(200_000) == 97  # 64 x 2 ** 0.6 = 97.0
    assert hnsw_ef_search(1_000_000) == 254  # 64 x 10 ** 0.6 = 254.8
    assert hnsw_ef_search(10_000_000) == 1014  # 64 x 100 ** 0.6 = 1014.4, still under the cap


def test_recall_at_k_looks_at_the_first_k_and_pools_rows():
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[1, 2, 4]]), 2) == 1.0
    assert recall_at_k(np.array([[1, -1], [1, 2]]), np.array([[1, -1], [3, 4]]), 2) == pytest.approx(1 / 3)
    assert recall_at_k(np.array([[-1, -1]]), np.array([[-1, -1]]), 2) == 1.0  # nothing to find


def test_check_draws_at_most_every_vector_and_names_its_k():
    x = np.random.default_rng(1).standard_normal((30, 8)).astype(np.float32)
    ids = np.arange(100, 130)
    report = check(FaissBackend.build(x, ids, kind="exact"), x, ids, n_queries=500, k=5)
    assert report["n_queries"] == 30 and report["k"] == 5 and report["recall@5"] == 1.0


class _Recording:
    """An index that answers exactly and records each query (a row of the vectors) it is given."""

    def __init__(self, x, ids):
        self.inner, self.x, self.queried = FaissBackend.build(x, ids, kind="exact"), x, []
        self.metric = self.inner.metric

    def nearest(self, q, k):
        self.queried.append(int(np.flatnonzero((self.x == q[0]).all(axis=1))[0]))
        return self.inner.nearest(q, k)


def test_check_by_default_draws_100_distinct_rows_with_seed_0_for_recall_at_10():
    x = np.random.default_rng(2).standard_normal((300, 8)).astype(np.float32)
    ids = np.arange(300)
    default, explicit, other = _Recording(x, ids), _Recording(x, ids), _Recording(x, ids)
    report = check(default, x, ids)
    check(explicit, x, ids, n_queries=100, k=10, seed=0)
    check(other, x, ids, seed=1)
    assert report["k"] == 10 and report["n_queries"] == 100 and report["recall@10"] == 1.0
    assert default.queried == explicit.queried != other.queried and len(set(default.queried)) == 100
    every = _Recording(x[:40], ids[:40])
    check(every, x[:40], ids[:40], n_queries=40)  # as many queries as rows: each row once
    assert sorted(every.queried) == list(range(40))


def test_check_reports_latency_in_milliseconds_at_the_50th_and_95th_percentiles(monkeypatch):
    import types

    import lookalike.vectors.ann as ann

    def clock():  # query i takes (i + 1) ms: 1, 2, ..., 100 ms
        for i in range(100):
            yield 1000.0 * i
            yield 1000.0 * i + (i + 1) / 1000
    ticks = clock()
    monkeypatch.setattr(ann, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    x = np.random.default_rng(3).standard_normal((100, 8)).astype(np.float32)
    report = check(_Recording(x, np.arange(100)), x, np.arange(100))
    # percentiles of 1..100 by linear interpolation: the 50th between 50 and 51, the 95th at 94.05 of 99 steps
    assert report["p50_ms"] == pytest.approx(50.5, abs=1e-6) and report["p95_ms"] == pytest.approx(95.05, abs=1e-6)


def test_auto_is_exact_up_to_exactly_25000_vectors_of_1280_dimensions_by_default():
    assert choose_kind("auto", 25_000) == "exact" and choose_kind("auto", 25_001) == "hnsw"


def test_recall_counts_an_exact_neighbour_whose_id_is_0():
    assert recall_at_k(np.array([[0, 5]]), np.array([[0, 7]]), 2) == 0.5  # 0 found of {0, 7}
    assert recall_at_k(np.array([[5, 0]]), np.array([[0, -1]]), 2) == 1.0  # -1 is padding, 0 is not


def test_hnsw_ef_search_doubles_exactly_where_the_size_law_says():
    """ef = 64 (n / 10^5) ** 0.6 reaches 128 where n / 10^5 = 2 ** (1 / 0.6) = 2 ** (5/3), that is at
    n = 317,480.21: the first whole n past it has 128 (64 x 3.17481 ** 0.6 = 128.0002), the one before
    127 (127.99995)."""
    assert hnsw_ef_search(317_480) == 127
    assert hnsw_ef_search(317_481) == 128
