"""Choosing and checking an approximate-nearest-neighbour structure (no FAISS import here).

Kinds (built by :class:`lookalike.vectors.faiss_backend.FaissBackend`):

* ``"exact"``: brute force (FAISS ``IndexFlat``); the ground truth.
* ``"hnsw"``: HNSW graph over 8-bit scalar-quantised (default) or raw vectors,
  optionally after a PCA projection. SQ8 at full dimension is the default: on
  100k 1280-d embedding-like vectors it kept recall@10 at 0.993, where PCA to
  256 dims (88% of the variance) fell to 0.86. 1M vectors take ~1.5 GB.
* ``"ivfpq"``: inverted lists with product-quantised residuals, optionally
  after a PCA projection. Compact (~25 MB per 100k) but recall@10 is ~0.77 at
  100k; queries re-score candidates on the stored vectors (0.995).
* ``"auto"``: ``exact`` up to :data:`AUTO_EXACT_ELEMENTS` vector elements
  (25,000 vectors at 1280-d), ``hnsw`` above (see :func:`choose_kind`).
"""

from __future__ import annotations

import math
import time

import numpy as np

from lookalike.vectors.backend import Backend, ExactBackend

KINDS = ("exact", "hnsw", "ivfpq")

#: ``auto`` uses exact search while ``n * dim`` is at most this (25k x 1280-d).
#: Measured on a shared 2-core machine, one exact 1280-d query costs 0.2-0.5 ms
#: per 1,000 vectors (~10 ms at 25k, 26 ms at 50k, 19-48 ms at 100k, varying
#: with load) against 0.15-0.35 ms for HNSW at recall@10 >= 0.99 up to 100k:
#: past ~25k exact is >25x slower and reaches a noticeable ~10 ms.
AUTO_EXACT_ELEMENTS = 25_000 * 1280

#: Farthest queries widen the default ``ef_search`` / ``nprobe`` by this factor.
#: The far side of a query is a flat region for graph search: at 100k 1280-d
#: vectors HNSW farthest recall@10 is 0.60 at ef 64 and 0.96 at ef 512 (2.2 ms);
#: at 1M 0.48 at ef 512 and 0.80 at ef 2048 (7 ms), the mean distance of the
#: results staying within 1% of the exact farthest.
FARTHEST_SEARCH_FACTOR = 8

def choose_kind(kind: str, n: int, dim: int = 1280) -> str:
    """Resolve ``kind`` for a collection of ``n`` vectors of ``dim`` dimensions.

    ``"auto"`` gives ``"exact"`` while ``n * dim <= AUTO_EXACT_ELEMENTS`` and
    ``"hnsw"`` above; any other valid kind is returned unchanged.
    """
    if kind == "auto":
        return "exact" if n * dim <= AUTO_EXACT_ELEMENTS else "hnsw"
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS + ('auto',)}")
    return kind


def default_params(kind: str, n: int, dim: int) -> dict:
    """Default parameters of ``kind`` for ``n`` training vectors of ``dim`` dimensions.

    hnsw: ``M=32, ef_construction=40, storage="sq8", pca=None`` and
    ``ef_search=None``, meaning :func:`hnsw_ef_search` of the live count at
    query time.
    ivfpq: ``nlist = 4*sqrt(n)`` clamped to ``[1, n // 39]`` (FAISS wants ~39
    training points per centroid), ``nprobe=16``, ``m`` = the largest divisor
    of the (projected) dimension not above ``dim // 8``, ``nbits = min(8,
    floor(log2 n))`` because 2**nbits codewords need as many training points.
    """
    if kind == "exact":
        return {}
    if kind == "hnsw":
        return {"M": 32, "ef_construction": 40, "ef_search": None, "storage": "sq8", "pca": None}
    if kind == "ivfpq":
        n = max(int(n), 1)
        nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39, 65_536))
        return {
            "nlist": nlist,
            "nprobe": min(16, nlist),
            "m": _largest_divisor_at_most(dim, max(1, dim // 8)),
            "nbits": min(8, int(math.log2(n))),
            "pca": None,
        }
    raise ValueError(f"unknown kind {kind!r}")


def hnsw_ef_search(n: int) -> int:
    """Default HNSW ``ef_search`` for ``n`` live vectors: 64 up to 100k, ~256 at 1M, at most 1024.

    Measured on 1280-d embedding-like data (M=32, SQ8): recall@10 0.993 at
    100k with ef 64; at 1M 0.907 / 0.933 / 0.957 with ef 64 / 128 / 256
    (p50 0.35 / 0.49 / 0.65 ms).
    """
    return int(min(1024, 64 * max(1.0, n / 100_000) ** 0.6))


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Share of the exact top-``k`` ids (``-1`` ignored) found in the approximate top-``k``, pooled over rows."""
    approx_ids = np.asarray(approx_ids)[:, :k]
    exact_ids = np.asarray(exact_ids)[:, :k]
    hits = total = 0
    for a, e in zip(approx_ids, exact_ids):
        e = e[e >= 0]
        hits += np.intersect1d(a[a >= 0], e).size
        total += e.size
    return hits / total if total else 1.0


def check(
    index: Backend, vectors: np.ndarray, ids: np.ndarray, n_queries: int = 100, k: int = 10, seed: int = 0
) -> dict:
    """Recall@k of the approximate ``index`` against exact search over ``(vectors, ids)`` and its query latency.

    Queries are ``n_queries`` rows drawn from ``vectors`` (each finds itself in
    both result lists, as a collection query does). Latencies are single-query,
    in milliseconds.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(seed)
    rows = rng.choice(vectors.shape[0], size=min(n_queries, vectors.shape[0]), replace=False)
    queries = vectors[rows]
    _, exact = ExactBackend(ids, vectors, index.metric).nearest(queries, k)
    found = np.empty_like(exact)
    times = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        found[i] = index.nearest(q[None], k)[1][0]
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "k": k,
        "n_queries": len(rows),
        f"recall@{k}": recall_at_k(found, exact, k),
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
    }


def _largest_divisor_at_most(n: int, cap: int) -> int:
    return max(m for m in range(1, min(n, cap) + 1) if n % m == 0)
