"""Benchmark the FAISS backend (lookalike.vectors.faiss_backend) on synthetic embedding-like vectors.

Vectors imitate CNN embeddings: a Gaussian mixture (``--centres`` centres) in
``--latent`` dimensions mapped linearly to ``--dim``, ReLU, small isotropic
noise, L2-normalised. They are generated in deterministic chunks and added in
chunks, so the raw collection is never held in memory (except by ``flat``).
Queries are fresh draws from the same distribution, not collection members.

Per kind it reports build seconds, RSS growth over the build and on loading
the saved index (the index's resident size), on-disk bytes, single-query
p50/p95 ms and batched queries/s for k=10, recall@10 against an exact chunked
scan, farthest p50 ms, recall@10 and mean distance relative to exact farthest;
with ``--refine`` also the recall and latency of exact re-ranking, and with
``--sweep`` recall and latency at other ef_search / nprobe values. JSON goes
to stdout (and ``--out``); per-kind lines to stderr as they finish.

A kind may carry parameter overrides: ``hnsw:pca=256:storage=flat``.

    python benchmarks/ann.py --n 100000 --kinds exact,hnsw,ivfpq --out ann.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# Idle OpenMP workers must sleep, not spin: on shared cores spinning made FAISS
# training 5x slower with 2 threads than with 1. Read when libgomp loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from lookalike.vectors import Searcher, get_metric  # noqa: E402
from lookalike.vectors.ann import FARTHEST_SEARCH_FACTOR, default_params, recall_at_k  # noqa: E402
from lookalike.vectors.backend import top_k  # noqa: E402
from lookalike.vectors.faiss_backend import FaissBackend  # noqa: E402
from bench import emit  # noqa: E402

TRAIN_ROWS = 100_000  # rows FaissBackend.build trains on at most (more for big IVF nlist)


class Embeddings:
    """Deterministic generator of embedding-like vectors, row ``i`` independent of chunking."""

    block = 10_000

    def __init__(self, dim: int, latent: int, centres: int, noise: float, seed: int):
        rng = np.random.default_rng(seed)
        self.dim, self.noise, self.seed = dim, noise, seed
        self.centres = rng.standard_normal((centres, latent)).astype(np.float32)
        self.spread = rng.uniform(0.3, 0.8, centres).astype(np.float32)
        self.mix = (rng.standard_normal((latent, dim)) / np.sqrt(latent)).astype(np.float32)

    def draw(self, n: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, stream))
        c = rng.integers(0, self.centres.shape[0], n)
        z = self.centres[c] + self.spread[c, None] * rng.standard_normal((n, self.centres.shape[1]), dtype=np.float32)
        x = np.maximum(z @ self.mix, 0.0)
        x += self.noise * rng.standard_normal(x.shape, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x

    def chunks(self, n: int, size: int, first: int | None = None):
        """Yield ``(vectors, ids)`` for ids ``0..n-1``: ``first`` rows, then ``size`` at a time.

        Block ``b`` of :attr:`block` rows is stream ``b + 1`` (stream 0 holds the queries).
        """
        start = 0
        while start < n:
            stop = min(n, start + (first if start == 0 and first else size))
            blocks = range(start // self.block, (stop - 1) // self.block + 1)
            x = np.concatenate([self.draw(min(self.block, n - b * self.block), b + 1) for b in blocks])
            offset = blocks[0] * self.block
            yield x[start - offset : stop - offset], np.arange(start, stop, dtype=np.int64)
            start = stop


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def parse_kind(spec: str) -> tuple[str, dict]:
    kind, *pairs = spec.split(":")
    params = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        params[key] = int(value) if value.lstrip("-").isdigit() else (None if value == "none" else value)
    return kind, params


def latencies_ms(fn, queries: np.ndarray) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Single-query latencies of ``fn`` and its stacked (distances, ids)."""
    times, dists, ids = [], [], []
    for q in queries:
        t0 = time.perf_counter()
        d, i = fn(q[None])
        times.append((time.perf_counter() - t0) * 1e3)
        dists.append(d[0])
        ids.append(i[0])
    return times, np.stack(dists), np.stack(ids)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def bench_kind(spec: str, data: Embeddings, args, queries, truth, far_truth, raw) -> dict:
    kind, params = parse_kind(spec)
    # Defaults as for a one-shot build of all N; the first chunk trains (as build does).
    defaults = default_params(kind, args.n, params.get("pca") or args.dim) if kind in ("hnsw", "ivfpq") else {}
    params = {**{key: defaults[key] for key in ("nlist",) if key in defaults}, **params}
    first = max(TRAIN_ROWS, 50 * params.get("nlist", 0))
    gc.collect()
    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = None
    for vectors, ids in data.chunks(args.n, args.chunk, first):
        if index is None:
            index = FaissBackend.build(vectors, ids, metric=args.metric, kind=kind, **params)
        else:
            index.add(vectors, ids)
        del vectors, ids
    build_s = time.perf_counter() - t0
    gc.collect()
    rss_delta = rss_bytes() - rss0
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "index.faiss"
        index.save(path)
        disk = path.stat().st_size + Path(str(path) + ".json").stat().st_size
        index = None  # the built index freed before the saved one is loaded
        gc.collect()
        rss1 = rss_bytes()
        index = FaissBackend.load(path)
        load_delta = rss_bytes() - rss1

    k = args.k
    index.nearest(queries[:5], k)  # warm-up
    times, _, found = latencies_ms(lambda q: index.nearest(q, k), queries)
    t0 = time.perf_counter()
    index.nearest(queries, k)
    qps = len(queries) / (time.perf_counter() - t0)
    fq = queries[: args.far_queries]
    far_times, far_dist, far_found = latencies_ms(lambda q: index.farthest(q, k), fq)
    result = {
        "spec": spec,
        "describe": index.describe(),
        "build_s": round(build_s, 2),
        "rss_delta_mb": round(rss_delta / 2**20, 1),
        "rss_loaded_mb": round(load_delta / 2**20, 1),
        "disk_mb": round(disk / 2**20, 1),
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "batch_qps": round(qps, 1),
        "recall@10": round(recall_at_k(found, truth, k), 4),
        "farthest_p50_ms": pct(far_times, 50),
        "farthest_recall@10": round(recall_at_k(far_found, far_truth[1], k), 4),
        "farthest_dist_ratio": round(float(far_dist.mean() / far_truth[0].mean()), 4),
    }
    if raw is not None and index.kind != "exact":
        searcher = Searcher(raw[0], raw[1], [index], refine_factor=args.refine_factor)
        times, _, found = latencies_ms(lambda q: searcher.nearest(q, k, args.metric), queries)
        far_found = searcher.farthest(fq, k, args.metric)[1]
        result.update(
            {
                "refine_p50_ms": pct(times, 50),
                "refine_recall@10": round(recall_at_k(found, truth, k), 4),
                "refine_farthest_recall@10": round(recall_at_k(far_found, far_truth[1], k), 4),
            }
        )
    knob = {"hnsw": "ef_search", "ivfpq": "nprobe"}.get(index.kind)
    if knob and args.sweep:
        result["sweep"] = []
        for value in args.sweep:
            times, _, found = latencies_ms(lambda q: index.nearest(q, k, **{knob: value}), queries)
            far_value = value * FARTHEST_SEARCH_FACTOR
            far_times, _, far_found = latencies_ms(
                lambda q: index.farthest(q, k, **{knob: far_value}), fq
            )
            point = {
                knob: value,
                "p50_ms": pct(times, 50),
                "p95_ms": pct(times, 95),
                "recall@10": round(recall_at_k(found, truth, k), 4),
                f"farthest_{knob}": far_value,
                "farthest_p50_ms": pct(far_times, 50),
                "farthest_recall@10": round(recall_at_k(far_found, far_truth[1], k), 4),
            }
            result["sweep"].append(point)
            print(json.dumps(point), file=sys.stderr, flush=True)
    print(json.dumps(result), file=sys.stderr, flush=True)
    del index
    gc.collect()
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--far-queries", type=int, default=50, help="queries timed in farthest mode")
    ap.add_argument("--kinds", default="exact,hnsw,ivfpq", help="comma-separated, e.g. hnsw:pca=256")
    ap.add_argument("--metric", default="cosine", choices=["cosine", "l2"])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--latent", type=int, default=48)
    ap.add_argument("--centres", type=int, default=1000)
    ap.add_argument("--noise", type=float, default=0.02, help="per-dimension noise std before normalising")
    ap.add_argument("--chunk", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refine", action="store_true", help="also measure exact re-ranking (holds the raw vectors)")
    ap.add_argument("--refine-factor", type=int, default=4)
    ap.add_argument(
        "--sweep",
        type=lambda text: [int(v) for v in text.split(",")],
        default=[],
        help="ef_search (hnsw) / nprobe (ivfpq) values to also measure (farthest: x FARTHEST_SEARCH_FACTOR)",
    )
    ap.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: FAISS's)")
    ap.add_argument("--tmp", default=None, help="directory for the on-disk size check")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args(argv)

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    load_before = os.getloadavg()
    data = Embeddings(args.dim, args.latent, args.centres, args.noise, args.seed)
    queries = data.draw(args.queries, 0)
    t0 = time.perf_counter()
    metric = get_metric(args.metric)
    truth = top_k(queries, data.chunks(args.n, args.chunk), args.k, metric)[1]
    far_truth = top_k(queries[: args.far_queries], data.chunks(args.n, args.chunk), args.k, metric, farthest=True)
    truth_s = time.perf_counter() - t0
    raw = [np.concatenate(part) for part in zip(*((i, v) for v, i in data.chunks(args.n, args.chunk)))] \
        if args.refine else None  # (ids, vectors)
    report = {
        "n": args.n,
        "dim": args.dim,
        "metric": args.metric,
        "queries": args.queries,
        "far_queries": args.far_queries,
        "k": args.k,
        "data": {"latent": args.latent, "centres": args.centres, "noise": args.noise, "seed": args.seed},
        "machine": {
            "cpus": os.cpu_count(),
            "faiss_threads": faiss.omp_get_max_threads(),
            "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
            "python": platform.python_version(),
            "faiss": faiss.__version__,
        },
        "ground_truth_s": round(truth_s, 2),
        "kinds": [bench_kind(spec, data, args, queries, truth, far_truth, raw) for spec in args.kinds.split(",")],
    }
    report["loadavg_1m_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    emit(report, args.out)


if __name__ == "__main__":
    main()
