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
