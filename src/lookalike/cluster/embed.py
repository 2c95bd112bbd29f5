"""``lookalike embed``: embed a folder or URI into Parquet shards, on this machine or on a Ray cluster.

Both engines run the same path as ``lookalike index`` (:func:`lookalike.index.indexer.prepare`: read, hash,
decode, preprocess; then :class:`~lookalike.models.embedder.Embedder`), so their vectors equal the
index's. The Ray engine reads and decodes in Ray tasks and embeds in a pool of actors
(``map_batches``, one ONNX Runtime session each); shard-writing tasks write the vectors, so they
never travel through the driver. A re-run embeds only files the shards do not
hold with the same size and mtime, and reports (``gone``) the files under SOURCE that the shards
hold but SOURCE no longer has: shards only add, so those stay in them (and in an index loaded from
them) until ``lookalike index FOLDER`` or a fresh ``--out``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from lookalike.cluster import sources
from lookalike.cluster.ray_session import ray_session
from lookalike.cluster.shards import Shards, table
from lookalike.images import DEFAULT_MAX_PIXELS
from lookalike.index.indexer import BATCH, Decoded, bounded_map, prepare
from lookalike.models.embedder import Embedder, with_dimension
from lookalike.models.registry import ModelSpec, resolve

ENGINES = ("local", "ray")
#: Files per shard (at most): 1,024 rows of 1280-d vectors make a ~5 MB Parquet file.
SHARD_ROWS = 1024
#: Files per Ray read/decode task, and so per task an embedding actor receives: fewer when each actor
#: would get less than two tasks, never fewer than ``batch``. Ray pays its per-task costs (scheduling,
#: object transfer, the operators' bookkeeping) once per block, so a block holds several model
#: batches: 64 rather than 16 files cut the CPU time of a 2,040-photo run on 2 CPUs by ~12 %.
BLOCK = 64


@dataclass
class EmbedReport:
    """What one ``embed`` run did; :meth:`to_dict` is the ``embed --json`` shape. ``gone``: files
    under SOURCE that the shards hold from an earlier run but SOURCE no longer lists."""

    engine: str
    workers: int = 0
    embedded: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    shards: int = 0
    gone: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        return {"engine": self.engine, "workers": self.workers, "embedded": self.embedded,
                "unchanged": self.unchanged, "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "shards": self.shards, "gone": self.gone, "seconds": round(self.seconds, 3), "images_per_second": round(rate, 2)}


def embed(source: str, out: str, spec: ModelSpec, engine: str = "local", address: str | None = None,
          workers: int | None = None, gpus_per_worker: float = 0.0, batch: int = BATCH, shard_rows: int = SHARD_ROWS,
          max_pixels: int = DEFAULT_MAX_PIXELS, device: str = "cpu",
          on_plan: Callable[[int], None] | None = None,
          on_progress: Callable[[int], None] | None = None, verbose: bool = False) -> EmbedReport:
    """Embed the image files under ``source`` (a folder or URI) that the shards at ``out`` lack.

    ``engine="ray"`` runs on the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``;
    None: ``$RAY_ADDRESS``, else a cluster started for this run) with ``workers`` embedding actors
    of ``gpus_per_worker`` GPUs each, printing Ray's own logs only when ``verbose``
    (:func:`~lookalike.cluster.ray_session.ray_session`).
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    started = time.perf_counter()
    shards = Shards(out)
    identity = spec.identity()
    shards.check_model(identity)
    report = EmbedReport(engine)
    latest = shards.latest()
    todo, listed = [], set()
    for name, size, mtime in sources.list_files(source):
        listed.add(name)
        held = latest.get(name)
        if held is not None and held[:2] == (size, mtime):
            if held[3] is None:
                report.unchanged += 1
            else:
                report.skipped.append((name, held[3]))
            continue
        todo.append((name, size, mtime))
    report.gone = sources.vanished(latest, source, listed)
    if on_plan:
        on_plan(len(todo))
    if todo:
        run = _run_local if engine == "local" else _run_ray
        run(todo, shards, spec, report, address, workers, gpus_per_worker, batch, shard_rows, max_pixels, device,
            on_progress, verbose)
    report.seconds = time.perf_counter() - started
    return report


def model_spec(model: str | None = None, layer: str | None = None, weights: str | os.PathLike | None = None) -> ModelSpec:
    """The model to embed with, resolved as ``lookalike index`` resolves it (a bare ``.onnx`` file
    is loaded once to learn its dimension)."""
    return with_dimension(resolve(model, layer, weights))[0]


def shard_table(items: list[Decoded], vectors: np.ndarray, identity: dict):
    """The shard of decoded ``items``, ``vectors`` being those of the items without an error, in order."""
    cols = {"path": [d.path for d in items], "size": [d.size for d in items],
            "mtime_ns": [d.mtime_ns for d in items], "hash": [d.hash for d in items],
            "width": [d.width for d in items], "height": [d.height for d in items],
            "error": [d.error for d in items]}
    return table(cols, vectors, identity)


def _tally(report: EmbedReport, items: list[Decoded], on_progress) -> None:
    failed = [(d.path, d.error) for d in items if d.error is not None]
    report.skipped.extend(failed)
    report.embedded += len(items) - len(failed)
    report.shards += 1
    if on_progress:
        on_progress(len(items))


def _run_local(todo, shards, spec, report, address, workers, gpus_per_worker, batch, shard_rows, max_pixels,
               device, on_progress, verbose) -> None:
    """Decode in a thread pool and embed in this process, as ``lookalike index`` does."""
    embedder = Embedder(spec, device=device)
    report.workers = workers or 2
    identity = spec.identity()
    items: list[Decoded] = []
    vectors: list[np.ndarray] = []
    waiting: list[Decoded] = []

    def embed_waiting() -> None:
        if waiting:
            vectors.append(embedder.embed(np.stack([d.pixels for d in waiting])))
            waiting.clear()

    def write() -> None:
        embed_waiting()
        shards.write(shard_table(items, _stack(vectors, spec.dim), identity))
        _tally(report, items, on_progress)
        items.clear(), vectors.clear()

    with ThreadPoolExecutor(max_workers=report.workers) as pool:
        jobs = ((path, size, mtime, embedder.preprocess, max_pixels, sources.read) for path, size, mtime in todo)
        for item in bounded_map(pool, prepare, jobs, window=2 * batch):
            items.append(item)
            if item.error is None:
                waiting.append(item)
                if len(waiting) >= batch:
                    embed_waiting()
            if len(items) >= shard_rows:
                write()
        if items:
            write()


def _stack(vectors: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)


def resources(cpus: float, workers: int) -> tuple[float, float]:
    """``(CPUs per embedding actor, CPUs per read/decode task)`` on a cluster of ``cpus`` CPUs.

    The actors together leave at least one CPU (half of a one-CPU cluster) to the read/decode
    tasks: actors holding every CPU would wait forever for input no task can be scheduled to make.
    """
    spare = 1.0 if cpus >= 2 else cpus / 2
    actor = min(1.0, (cpus - spare) / workers)
    return actor, min(1.0, (cpus - actor * workers) / 2)


def _decode(batch: dict, preprocess, max_pixels: int) -> dict:
    """Ray task: read, hash, decode and preprocess a batch of files (``path, size, mtime_ns``; names
    travel through Ray as their bytes, so a name that is not UTF-8 arrives as it is)."""
    items = [prepare(os.fsdecode(p), int(s), int(m), preprocess, max_pixels, sources.read)
             for p, s, m in zip(batch["path"], batch["size"], batch["mtime_ns"])]
    blank = np.zeros((3, preprocess.size, preprocess.size), np.float32)
    return {"path": [os.fsencode(d.path) for d in items], "size": [d.size for d in items],
            "mtime_ns": [d.mtime_ns for d in items], "hash": [d.hash or "" for d in items],
            "width": [d.width for d in items], "height": [d.height for d in items],
            "error": [d.error or "" for d in items],
            "pixels": np.stack([blank if d.pixels is None else d.pixels for d in items])}


class _Embed:
    """Ray actor: one ONNX Runtime session; adds the ``vector`` column to a batch of decoded files
    (zeros for skipped ones) and drops the pixels."""

    def __init__(self, spec: ModelSpec, model: bytes, threads: int, device: str) -> None:
        path = Path(tempfile.mkdtemp(prefix="lookalike-model-")) / "model.onnx"
        path.write_bytes(model)  # the driver's exported model, so no worker needs torch or the weights
        self.embedder = Embedder(replace(spec, onnx_path=path), threads, device)

    def __call__(self, cols: dict) -> dict:
        ok = cols["error"] == ""
        vectors = np.zeros((len(ok), self.embedder.spec.dim), np.float32)
        if ok.any():
            vectors[ok] = self.embedder.embed(cols["pixels"][ok])
        del cols["pixels"]
        return {**cols, "vector": vectors}


def _write(cols: dict, location: str, identity: dict) -> dict:
    """Ray task: write a batch of embedded files as one shard; returns each file's path and error."""
    ok = cols["error"] == ""
    rows = {key: cols[key].tolist() for key in ("size", "mtime_ns", "hash", "width", "height", "error")}
    rows["path"] = [os.fsdecode(p) for p in cols["path"]]
    name = Shards(location).write(table(rows, cols["vector"][ok], identity))
    return {"path": cols["path"], "error": cols["error"], "shard": [name] * len(ok)}


def _run_ray(todo, shards, spec, report, address, workers, gpus_per_worker, batch, shard_rows, max_pixels,
             device, on_progress, verbose) -> None:
    """Read/decode in Ray tasks, embed and write shards in a fixed pool of actors."""
    import ray

    from lookalike.models.export import onnx_file

    model = onnx_file(spec).read_bytes()
    with ray_session(address, verbose):
        resources_now = ray.cluster_resources()
        cpus = float(resources_now.get("CPU", 1))
        if gpus_per_worker:
            workers = workers or max(1, int(resources_now.get("GPU", 0) // gpus_per_worker))
        workers = workers or max(1, int(cpus))
        actor_cpus, decode_cpus = resources(cpus, workers)
        report.workers = workers
        # Read/decode tasks declare their memory; differing resource requests also keep Ray Data from
        # fusing decoding into the actors, where it would wait for the model and vice versa. Blocks of
        # at most `block` files (ceil: no one-file remainder), and at least two per actor.
        block = max(batch, min(BLOCK, -(-len(todo) // (2 * workers))))
        files = ray.data.from_items([{"path": os.fsencode(p), "size": s, "mtime_ns": m} for p, s, m in todo],
                                    override_num_blocks=max(1, min(-(-len(todo) // block), 10_000)))
        decoded = files.map_batches(_decode, fn_kwargs={"preprocess": spec.preprocessing, "max_pixels": max_pixels},
                                    batch_size=block, num_cpus=decode_cpus, memory=_decode_memory(spec, block),
                                    batch_format="numpy")
        embedded = decoded.map_batches(
            _Embed, batch_size=batch, batch_format="numpy", num_cpus=actor_cpus, num_gpus=gpus_per_worker or None,
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"spec": spec, "model": model, "threads": max(1, int(actor_cpus)),
                                   "device": "cuda" if gpus_per_worker else device})
        # Shards are written by tasks of their own: a batch of pixels is 600 kB per image, too much to
        # gather shard-sized batches in the object store, while vectors are 5 kB (1280-d)
        written = embedded.map_batches(_write, batch_size=shard_rows, batch_format="numpy", num_cpus=decode_cpus,
                                       fn_kwargs={"location": sources.absolute(shards.location), "identity": spec.identity()})
        names = set()
        for out in written.iter_batches(batch_size=None, batch_format="numpy"):
            names.update(out["shard"].tolist())
            failed = [(os.fsdecode(p), str(e)) for p, e in zip(out["path"], out["error"]) if e]
            report.skipped.extend(failed)
            report.embedded += len(out["path"]) - len(failed)
            if on_progress:
                on_progress(len(out["path"]))
        report.shards = len(names)


def _decode_memory(spec: ModelSpec, block: int) -> int:
    """Bytes a read/decode task's worker holds: the process with its imports (~220 MiB measured), the
    block's inputs twice (each image's and their stack) and a 24-megapixel photo being decoded."""
    size = spec.preprocessing.size
    return 220 * 2**20 + 2 * block * 3 * size * size * 4 + 24_000_000 * 3
