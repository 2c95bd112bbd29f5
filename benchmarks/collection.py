"""Collection benchmark (JSON on stdout): a Milvus server collection as the system of record.

On a Milvus 2.3 standalone server started here (the ``milvus`` package, loopback), with ``--n``
real-shaped vectors (1280-d, a non-negative 48-centre mixture like pooled CNN features) written as
Parquet shards of 1,000 rows:

* load: ``ingest`` with one writer (``--engine local``) against Ray with 1 and 2 workers, each into
  a fresh collection, ``--rounds`` rounds in alternating order (target: 2 workers >= 1.5x one
  writer). Ray is started once, before the loads, and timed apart (``ray.init`` with a longer
  start-up allowance and retried: on a busy machine its node can miss Ray's own 30 s window), and
  its workers are warmed (imports) before the first timed load, as on a running cluster. The load
  collections get the ``--load-index`` vector index (FLAT: on a server the vector index is built by
  index nodes, not by the writers; here they would share the same cores), and after each load the
  server is left to finish its index work before the next one starts;
* query: nearest k=10 through an HNSW collection (the searcher's 4x candidates, re-scored) against
  exact search on the same vectors: p50 / p95 latency and recall@10; the HNSW build time;
* the query side: bytes of the vector files (``.npy``, ``.faiss``, ``.sqlite``, ``.db``, ``.parquet``)
  this process opens while querying (target 0; an audit hook records every open), and the vector
  bytes Milvus sends per query;
* hash: the content-hash lookup every uploaded query makes first (``MilvusCollection.by_hash``), p50
  latency on a collection with the hash's scalar index (as ``ingest`` makes it) against the same
  rows without it (the index dropped);
* serve: ``/api/query?id=`` requests per second from 4 loopback clients against 1 and 2
  ``lookalike serve --uri`` processes on the HNSW collection (target: 2 >= 1.6x one).

    python benchmarks/collection.py --n 100000 --parts load
    python benchmarks/collection.py --n 100000 --parts query,serve
    python benchmarks/collection.py --n 100000 --parts hash
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from bench import emit, end_of_run

#: The collection queried and served (HNSW, loaded by one writer).
QUERIED = "queried"
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")


def start_server(base: Path):
    """A Milvus standalone server on loopback with its files under ``base``; (server, uri)."""
    from milvus import MilvusServer

    server = MilvusServer()
    server.set_base_dir(str(base))
    server.config.extra_configs.update({f"{c}.ip": "127.0.0.1" for c in COMPONENTS})
    server.start()
    return server, f"http://127.0.0.1:{server.config.configurable_items['proxy_port'][1]}"


def synthetic(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((48, dim)).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 10_000):
        m = min(10_000, n - s)
        out[s:s + m] = np.abs(centres[rng.integers(0, 48, m)] + 0.6 * rng.standard_normal((m, dim)).astype(np.float32))
    return out


def write_shards(x: np.ndarray, identity: dict, location: Path, rows: int = 1000) -> None:
    from lookalike.cluster.shards import Shards, table

    shards = Shards(str(location))
    for s in range(0, len(x), rows):
        idx = range(s, min(s + rows, len(x)))
        cols = {"path": [f"/images/{i:07d}.jpg" for i in idx], "size": [1000 + i for i in idx],
                "mtime_ns": [i for i in idx], "hash": [f"{i:032x}" for i in idx], "width": [64] * len(idx),
                "height": [64] * len(idx), "error": [None] * len(idx)}
        shards.write(table(cols, x[s:s + len(idx)], identity))


def start_ray(cpus: int, attempts: int = 3) -> float:
    """Start a local Ray for ``cpus`` CPUs (a small object store: the writers pass only shard names
    and counts); returns the seconds it took. A busy machine can make Ray's node miss its start-up
    window: the GCS port wait is lengthened and a failed start retried."""
    import logging

    import ray

    os.environ.setdefault("RAY_gcs_server_port_wait_time_s", "180")
    os.environ.setdefault("RAY_worker_register_timeout_seconds", "180")
    t = time.perf_counter()
    for attempt in range(attempts):
        try:
            ray.init(num_cpus=cpus, object_store_memory=256 * 2**20, logging_level=logging.WARNING,
                     log_to_driver=False, include_dashboard=False)
            break
        except Exception as e:  # "The current node timed out during startup", GCS not up in time
            ray.shutdown()
            print(f"ray.init failed ({' '.join(str(e).split())[:200]}); attempt {attempt + 1} of {attempts}",
                  file=sys.stderr)
            if attempt == attempts - 1:
                raise
    return time.perf_counter() - t


def warm_ray(workers: int) -> float:
    """Start ``workers`` Ray worker processes and import the writer's modules in them (what a running
    cluster's workers have done already); returns the seconds it took."""
    import ray

    @ray.remote(num_cpus=0.5)
    def warm() -> int:
        import lookalike.cluster.ingest  # noqa: F401  (pymilvus, pyarrow, lookalike)

        time.sleep(1)  # hold the worker so that the next one starts another process
        return os.getpid()

    t = time.perf_counter()
    ray.get([warm.remote() for _ in range(workers)])
    return time.perf_counter() - t


def index_settled(uri: str, name: str, timeout: float = 1800) -> float:
    """Wait until the server has indexed every row of ``name``; returns the seconds waited."""
    from lookalike.cluster.milvus import connect

    client = connect(uri)
    t = time.perf_counter()
    try:
        while time.perf_counter() - t < timeout:
            info = client.describe_index(name, "vector") or {}
            if info.get("pending_index_rows", 0) == 0 and info.get("indexed_rows", 0) >= info.get("total_rows", 1):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"{name}: index not built in {timeout} s ({info})")
    finally:
        client.close()
    return time.perf_counter() - t


def drop(uri: str, name: str) -> None:
    from lookalike.cluster.milvus import connect

    client = connect(uri)
    try:
        client.drop_collection(name)
    finally:
        client.close()


def load(shards: Path, uri: str, rounds: int, index_type: str) -> dict:
    """Ingest time with one writer and with Ray at 1 and 2 workers, ``rounds`` rounds in
    alternating order, each into a fresh ``index_type`` collection (dropped after)."""
    import ray

    from lookalike.cluster.ingest import ingest

    out: dict = {"index": index_type, "ray_init_s": round(start_ray(2), 2), "ray_warmup_s": round(warm_ray(2), 2)}
    configs = [("one_writer", "local", None), ("ray_1_worker", "ray", 1), ("ray_2_workers", "ray", 2)]
    times: dict[str, list[float]] = {c[0]: [] for c in configs}
    try:
        for r in range(rounds):
            for label, engine, workers in configs if r % 2 == 0 else configs[::-1]:
                name = f"load_{label}_{r}"
                t = time.perf_counter()
                report = ingest(str(shards), uri, name, engine=engine, workers=workers, index_type=index_type)
                times[label].append(round(time.perf_counter() - t, 2))
                out.setdefault("rows", report.total)
                assert report.total == out["rows"] == report.written, report.to_dict()
                out.setdefault("index_settle_s", []).append(round(index_settled(uri, name), 2))
                drop(uri, name)
    finally:
        ray.shutdown()
    for label, seconds in times.items():
        out[f"{label}_s"] = seconds
        out[f"{label}_rows_per_s"] = [round(out["rows"] / s) for s in seconds]
    base = float(np.median(times["one_writer"]))
    for label in ("ray_1_worker", "ray_2_workers"):
        out[f"{label}_speedup_vs_one_writer"] = round(base / float(np.median(times[label])), 2)
    return out


def hnsw_collection(shards: Path, uri: str, name: str) -> dict:
    """Ingest the shards with one writer into an HNSW collection for the queries; the load and the
    server's index build, timed apart."""
    from lookalike.cluster.ingest import ingest

    t = time.perf_counter()
    ingest(str(shards), uri, name, index_type="HNSW")
    loaded = time.perf_counter() - t
    return {"load_s": round(loaded, 2), "index_build_after_load_s": round(index_settled(uri, name), 2)}


_OPENED: list[str] | None = None


def _audit(event: str, args) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes)):
        _OPENED.append(os.fsdecode(args[0]))


def query(uri: str, x: np.ndarray, n_queries: int, exact_queries: int) -> dict:
    """HNSW nearest through the collection's searcher vs exact search; the vector files the query side opens."""
    global _OPENED
    from lookalike.cluster.collection import MilvusCollection
    from lookalike.vectors import Searcher

    rng = np.random.default_rng(3)
    queries = x[rng.choice(len(x), n_queries, replace=False)] + 0.05
    truth = Searcher(np.arange(len(x), dtype=np.int64), x)  # ids here are rows; mapped from the collection's
    sys.addaudithook(_audit)
    _OPENED = []
    collection = MilvusCollection(uri, QUERIED)
    try:
        by_id = {}
        for page in collection.pages(["id", "path"]):
            by_id.update((int(r["id"]), int(r["path"][8:15])) for r in page)
        searcher = collection.searcher()
        lat, recalls, fetched = [], [], []
        for q in queries:
            t = time.perf_counter()
            _, ids = searcher.nearest(q, 10)
            lat.append((time.perf_counter() - t) * 1e3)
            found = {by_id[int(i)] for i in ids[0]}
            recalls.append(len(found & set(truth.nearest(q, 10)[1][0].tolist())) / 10)
            fetched.append(10 * searcher.refine_factor * x.shape[1] * 4)
        scan = []
        for q in queries[:exact_queries]:
            t = time.perf_counter()
            searcher.nearest(q, 10, exact=True)
            scan.append((time.perf_counter() - t) * 1e3)
    finally:
        collection.close()
        opened, _OPENED = _OPENED, None
    vector_files = {Path(p) for p in opened if p.endswith((".npy", ".faiss", ".sqlite", ".db", ".parquet"))}
    return {"queries": n_queries, "hnsw_p50_ms": round(float(np.percentile(lat, 50)), 2),
            "hnsw_p95_ms": round(float(np.percentile(lat, 95)), 2), "recall@10": round(float(np.mean(recalls)), 4),
            "exact_scan_queries": exact_queries,
            "exact_scan_p50_ms": round(float(np.percentile(scan, 50)), 1) if scan else None,
            "files_opened_while_querying": len(set(opened)),
            "vector_file_bytes_on_query_side": sum(p.stat().st_size for p in vector_files if p.exists()),
            "vector_bytes_fetched_per_query": int(np.mean(fetched))}


def hash_lookup(shards: Path, uri: str, n: int, lookups: int) -> dict:
    """p50 / p95 milliseconds of ``by_hash`` for ``lookups`` held hashes, with and without the hash index."""
    from lookalike.cluster.collection import MilvusCollection
    from lookalike.cluster.ingest import ingest
    from lookalike.cluster.milvus import connect

    out: dict = {"lookups": lookups}
    hashes = [f"{i:032x}" for i in np.random.default_rng(5).integers(0, n, lookups)]  # write_shards' hashes
    for name in ("hash_indexed", "hash_unindexed"):
        ingest(str(shards), uri, name)
        index_settled(uri, name)
        if name == "hash_unindexed":
            client = connect(uri)
            try:
                client.release_collection(name)
                client.drop_index(name, "hash")
                client.load_collection(name)
            finally:
                client.close()
        collection = MilvusCollection(uri, name)
        try:
            collection.by_hash(hashes[0])  # warm
            lat = []
            for h in hashes:
                t = time.perf_counter()
                ids, _ = collection.by_hash(h)
                lat.append((time.perf_counter() - t) * 1e3)
                assert len(ids) == 1, (h, ids)
        finally:
            collection.close()
        out[f"{name}_p50_ms"] = round(float(np.percentile(lat, 50)), 2)
        out[f"{name}_p95_ms"] = round(float(np.percentile(lat, 95)), 2)
        drop(uri, name)
    out["unindexed_vs_indexed_p50"] = round(out["hash_unindexed_p50_ms"] / out["hash_indexed_p50_ms"], 2)
    return out


def serve(uri: str, seconds: float, clients: int = 4) -> dict:
    """Searches per second from ``clients`` loopback threads against 1 and 2 ``serve`` processes."""
    import httpx

    from lookalike.cluster.collection import MilvusCollection

    collection = MilvusCollection(uri, QUERIED)
    ids = [int(r["id"]) for page in collection.pages(["id"]) for r in page][:2000]
    collection.close()
    out = {"clients": clients, "seconds": seconds}
    for n in (1, 2):
        procs, ports = [], []
        for _ in range(n):
            port = _free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--uri", uri, "--collection",
                                           QUERIED, "--port", str(port)], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            ports.append(port)
        try:
            for port in ports:
                _wait(port)
            done = [0] * clients
            stop = time.monotonic() + seconds

            def client(c: int) -> None:
                rng = np.random.default_rng(c)
                with httpx.Client(timeout=60) as http:
                    while time.monotonic() < stop:
                        port = ports[(c + done[c]) % len(ports)]
                        r = http.get(f"http://127.0.0.1:{port}/api/query",
                                     params={"id": ids[int(rng.integers(len(ids)))], "k": 10})
                        r.raise_for_status()
                        done[c] += 1

            threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out[f"processes_{n}_per_s"] = round(sum(done) / seconds, 1)
        finally:
            for p in procs:
                p.terminate()
                p.wait(30)
    out["two_vs_one"] = round(out["processes_2_per_s"] / out["processes_1_per_s"], 2)
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, seconds: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"serve on {port} did not answer")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=1, help="Rounds of the three loads, in alternating order.")
    ap.add_argument("--load-index", default="FLAT", help="Vector index of the load collections.")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--exact-queries", type=int, default=2, help="Exact scans (each reads every vector).")
    ap.add_argument("--serve-seconds", type=float, default=20.0)
    ap.add_argument("--hash-lookups", type=int, default=200)
    ap.add_argument("--parts", default="load,query,serve",
                    help="What to measure, comma-separated: load, query, hash, serve (query and serve share one HNSW "
                         "collection; split a long run into one run for load and one for query,serve).")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    known = {"load", "query", "hash", "serve"}
    if parts - known:
        ap.error(f"unknown parts: {', '.join(sorted(parts - known))}")
    from lookalike.cluster.embed import model_spec

    work = Path(tempfile.mkdtemp(prefix="lookalike-collection-"))
    identity = model_spec().identity()
    result = {"cpus": os.cpu_count(), "n": args.n, "dim": identity["dim"],
              "loadavg_start": [round(v, 2) for v in os.getloadavg()]}
    t = time.perf_counter()
    server, uri = start_server(work / "milvus")
    result["server_start_s"] = round(time.perf_counter() - t, 2)
    try:
        x = synthetic(args.n, identity["dim"])
        write_shards(x, identity, work / "shards")
        if "load" in parts:
            result["load"] = load(work / "shards", uri, args.rounds, args.load_index)
        if parts & {"query", "serve"}:
            result["hnsw"] = hnsw_collection(work / "shards", uri, QUERIED)
        if "query" in parts:
            result["query"] = query(uri, x, args.queries, args.exact_queries)
        if "hash" in parts:
            result["hash"] = hash_lookup(work / "shards", uri, args.n, args.hash_lookups)
        if "serve" in parts:
            result["serve"] = serve(uri, args.serve_seconds)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    result.update(end_of_run())
    emit(result, args.out)


if __name__ == "__main__":
    main()
