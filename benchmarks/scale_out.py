"""Scale-out benchmark (JSON on stdout): Ray embedding at 2 and 1 workers against ``lookalike index`` on
the same images (alternating rounds, ratios per round; Ray's start-up timed apart), milvus-lite FLAT
and IVF_FLAT against the embedded FAISS HNSW on the same vectors (query p50/p95, recall@10 against
exact search, build/insert time, resident memory growth). A Milvus server collection: benchmarks/collection.py.

    python benchmarks/scale_out.py --skip-vectors         # Ray vs index
    python benchmarks/scale_out.py --skip-embedding       # 100k vectors
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import FLOWERS51, emit, end_of_run


def _subset(root: Path, limit: int, dest: Path) -> Path:
    """Copies of the first ``limit`` images (sorted) so every engine reads the same files."""
    from lookalike.images import list_images

    dest.mkdir(parents=True)
    for i, path in enumerate(sorted(list_images(root))[:limit]):
        shutil.copyfile(path, dest / f"{i:05d}{Path(path).suffix}")
    return dest


def embedding(images: Path, work: Path, rounds: int = 2, warmup: int = 32) -> dict:
    """``lookalike index`` against Ray with 2 and 1 workers on the same images, ``rounds`` times in
    alternating order (index, ray 2, ray 1, then reversed), each into a fresh index or shards folder.

    Ray's start-up is timed apart: ``ray.init`` of a local cluster, then a first ``embed`` of
    ``warmup`` images, which starts Ray Data's service actors (once per cluster). Ratios without it
    are those of a cluster that is already running (``--address auto``); ``*_with_start_up`` adds
    it to the first round's Ray time, as a one-off ``--engine ray`` run without a cluster pays it.
    """
    import ray

    from lookalike.api import Index
    from lookalike.cluster.embed import embed, model_spec

    spec = model_spec()
    out: dict = {"images": len(list(images.iterdir())), "rounds": []}
    t = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    out["ray_init_s"] = round(time.perf_counter() - t, 2)
    try:
        few = _subset(images, warmup, work / "warmup")
        t = time.perf_counter()
        embed(str(few), str(work / "warmup-shards"), spec, "ray", workers=2)
        out["ray_first_run_s"] = round(time.perf_counter() - t, 2)

        def run(name: str, n: int) -> dict:
            load, t = os.getloadavg()[0], time.perf_counter()
            if name == "index":
                with Index.open(work / f"index{n}", create=True) as idx:
                    done = idx.index(images).indexed
            else:
                done = embed(str(images), str(work / f"{name}-{n}"), spec, "ray", workers=int(name[-1])).embedded
            seconds = time.perf_counter() - t
            return {"images": done, "seconds": round(seconds, 2), "img_per_s": round(done / seconds, 1),
                    "load_1min": round(load, 2)}

        for n in range(rounds):
            order = ("index", "ray_2", "ray_1") if n % 2 == 0 else ("ray_1", "ray_2", "index")
            out["rounds"].append({name: run(name, n) for name in order})
    finally:
        ray.shutdown()
    for r in out["rounds"]:
        for workers in (1, 2):
            r[f"ratio_ray_{workers}"] = round(r[f"ray_{workers}"]["img_per_s"] / r["index"]["img_per_s"], 3)
    start_up = out["ray_init_s"] + out["ray_first_run_s"]
    first = out["rounds"][0]
    for workers in (1, 2):
        ratios = [r[f"ratio_ray_{workers}"] for r in out["rounds"]]
        out[f"ratio_ray_{workers}_vs_index"] = round(float(np.median(ratios)), 3)
        ray_s = first[f"ray_{workers}"]["seconds"] + start_up
        out[f"ratio_ray_{workers}_with_start_up"] = round(first["index"]["seconds"] / ray_s, 3)
    return out


def _rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _latency(fn, queries) -> tuple[list, dict]:
    found, times = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(fn(q[None]))
        times.append((time.perf_counter() - t) * 1e3)
    return found, {"p50_ms": round(float(np.percentile(times, 50)), 2),
                   "p95_ms": round(float(np.percentile(times, 95)), 2)}


def vectors(n: int, dim: int, n_queries: int, flat_queries: int, work: Path) -> dict:
    """FAISS HNSW-SQ8 in this process against milvus-lite FLAT (``flat_queries`` of the queries: a
    scan of every vector each) and IVF_FLAT, on the same ``n`` synthetic vectors."""
    from lookalike.vectors import ExactBackend
    from lookalike.vectors.faiss_backend import FaissBackend

    rng = np.random.default_rng(0)
    x = _synthetic(n, dim)  # non-negative like pooled CNN features
    ids = np.arange(n, dtype=np.int64)
    queries = x[rng.choice(n, n_queries, replace=False)] + 0.05
    _, exact = ExactBackend(ids, x, "cosine").nearest(queries, 10)
    out = {"n": n, "dim": dim, "queries": n_queries}

    def recall(found, truth=exact):
        return round(float(np.mean([len(set(f[1][0]) & set(e)) / 10 for f, e in zip(found, truth)])), 4)

    rss = _rss_mb()
    t = time.perf_counter()
    hnsw = FaissBackend.build(x, ids, "cosine", "hnsw")
    entry = {"build_s": round(time.perf_counter() - t, 2), "rss_growth_mb": round(_rss_mb() - rss, 1)}
    found, lat = _latency(lambda q: hnsw.nearest(q, 10), queries)
    out["faiss_hnsw_sq8"] = {**entry, **lat, "recall@10": recall(found)}
    out["vectors_mb"] = round(x.nbytes / 2**20, 1)
    for index_type, params, search, asked in (("FLAT", {}, {}, flat_queries),
                                              ("IVF_FLAT", {"nlist": 256}, {"nprobe": 16}, n_queries)):
        rss = _rss_mb()
        t = time.perf_counter()
        client = _lite_collection(str(work / f"{index_type}.db"), index_type, params, x, ids)
        entry = {"insert_s": round(time.perf_counter() - t, 2), "queries": asked,
                 "rss_growth_mb": round(_rss_mb() - rss, 1)}  # milvus-lite runs in this process
        found, lat = _latency(lambda q: client.search("bench", data=[q[0].tolist()], limit=10,
                                                      search_params={"params": search}), queries[:asked])
        found = [(None, [[h["id"] for h in f[0]]]) for f in found]
        out[f"milvus_lite_{index_type.lower()}"] = {**entry, **lat, "recall@10": recall(found, exact[:asked])}
        client.close()
    return out


def _lite_collection(path: str, index_type: str, params: dict, x: np.ndarray, ids: np.ndarray):
    """A milvus-lite collection ``bench`` of ``(id, vector)`` with a cosine ``index_type`` index,
    filled with ``x`` in pages of 4,096 and flushed; its client."""
    from pymilvus import DataType

    from lookalike.cluster.milvus import connect

    client = connect(path)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=x.shape[1])
    index = client.prepare_index_params()
    index.add_index("vector", index_type=index_type, metric_type="COSINE", params=params)
    client.create_collection("bench", schema=schema, index_params=index, consistency_level="Strong")
    for s in range(0, len(ids), 4096):
        client.insert("bench", [{"id": int(i), "vector": v} for i, v in zip(ids[s:s + 4096], x[s:s + 4096])])
    client.flush("bench")
    return client


def _synthetic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((48, dim)).astype(np.float32)  # a mixture, embedding-like
    return np.abs(centres[rng.integers(0, 48, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, default=FLOWERS51)
    ap.add_argument("--limit", type=int, default=2040, help="Images embedded by each engine.")
    ap.add_argument("--rounds", type=int, default=2, help="Alternating rounds of index / Ray 2 / Ray 1 workers.")
    ap.add_argument("--n", type=int, default=100_000, help="Vectors for milvus-lite vs FAISS.")
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--flat-queries", type=int, default=10,
                    help="Queries for milvus-lite FLAT (seconds each at 100k; the others get --queries).")
    ap.add_argument("--skip-embedding", action="store_true")
    ap.add_argument("--skip-vectors", action="store_true")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lookalike-scale-"))
    os.environ.setdefault("LOOKALIKE_CACHE", str(Path.home() / ".cache" / "lookalike"))
    result = {"cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    try:
        if not args.skip_embedding:
            result["embedding"] = embedding(_subset(args.images, args.limit, work / "images"), work, args.rounds)
        if not args.skip_vectors:
            result["vectors"] = vectors(args.n, args.dim, args.queries, args.flat_queries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result.update(end_of_run())
    emit(result, args.out)


if __name__ == "__main__":
    main()
