import numpy as np
import pytest

from lookalike.vectors.ann import AUTO_EXACT_ELEMENTS, check, choose_kind, hnsw_ef_search, recall_at_k
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
