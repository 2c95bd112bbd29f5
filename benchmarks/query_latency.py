"""Query latency over N synthetic 1280-d vectors stored in the real index format.

Vectors are written through :class:`lookalike.index.store.Store` (SQLite + memory-mapped cache) and
queried through :meth:`lookalike.api.Index.query_vector`, the path every ``lookalike query``
takes after embedding: exact search (``exact=True``), then the approximate index that
``--ann auto`` gives at this size (HNSW above 25k images; its build time is reported apart).
Prints JSON with p50/p95 milliseconds per mode and the largest difference between a returned
distance and its float64 recomputation (0 up to rounding: distances are exact on every path).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from lookalike.api import Index
from lookalike.models.registry import resolve
from lookalike.index.store import Entry, Store
from bench import emit


def build(root: str, n: int, dim: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    spec = resolve("efficientnet-lite0")
    with Store.create(root, spec.identity(), ref=spec.name) as store:
        for start in range(0, n, 10_000):
            m = min(10_000, n - start)
            vectors = np.maximum(rng.normal(size=(m, dim)), 0).astype(np.float32)
            store.put(Entry(f"/synthetic/{start + i:07d}.jpg", 1, 1, f"{start + i}", 1, 1, v)
                      for i, v in enumerate(vectors))


def time_queries(idx: Index, n: int, dim: int, exact: bool) -> dict:
    """p50/p95 ms of ``n`` k=10 cosine queries per mode (random mode is always a sample), and the
    largest difference between a returned distance and its float64 recomputation."""
    rng = np.random.default_rng(1)
    ids, vectors = idx.vectors()
    out = {}
    for mode in ("nearest", "farthest", "random"):
        times, error = [], 0.0
        for _ in range(n):
            q = np.maximum(rng.normal(size=dim), 0).astype(np.float32)
            t = time.perf_counter()
            found = idx.query_vector(q, 10, mode, "cosine", seed=0, exact=exact)
            times.append((time.perf_counter() - t) * 1000)
            rows = np.asarray(vectors[np.searchsorted(ids, [m.id for m in found.results])], np.float64)
            q64 = q.astype(np.float64)
            exact_d = 1.0 - rows @ q64 / (np.linalg.norm(rows, axis=1) * np.linalg.norm(q64))
            error = max(error, float(np.abs(exact_d - [m.distance for m in found.results]).max()))
        out[mode] = {"p50_ms": round(float(np.percentile(times, 50)), 2),
                     "p95_ms": round(float(np.percentile(times, 95)), 2), "max_distance_error": error}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    dim = 1280
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        build(tmp, args.n, dim)
        build_s = time.perf_counter() - t
        with Index.open(tmp) as idx:
            t = time.perf_counter()
            idx.vectors()
            cache_s = time.perf_counter() - t
            t = time.perf_counter()
            kind = idx.index_type
            idx.ann()
            ann_build_s = time.perf_counter() - t
            out = {"exact": time_queries(idx, args.queries, dim, exact=True)}
            if kind != "exact":
                out[kind] = time_queries(idx, args.queries, dim, exact=False)
    emit({"benchmark": "query_latency", "n": args.n, "dim": dim, "metric": "cosine", "k": 10,
          "cpu_count": os.cpu_count(), "store_write_seconds": round(build_s, 1),
          "cache_build_seconds": round(cache_s, 2), "ann_auto_kind": kind,
          "ann_build_seconds": round(ann_build_s, 1), "latency": out}, args.out)


if __name__ == "__main__":
    main()
