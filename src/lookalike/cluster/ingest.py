"""``lookalike ingest``: Parquet shards straight into a Milvus collection, shard by shard in
parallel, with no local index (the collection's rows: :mod:`lookalike.cluster.collection`).

The driver reads the shards' ``path, size, mtime_ns, hash, error`` columns once to find each
file's newest row (:meth:`~lookalike.cluster.shards.Shards.latest`: largest mtime, then size, then
hash, whatever order the shards are read in) and hands each shard to a writer with the paths whose
newest row is in another shard. Writers (Ray tasks, or this process) each read one shard and upsert
its files in batches, keyed by name: a file the collection already holds with the same or a newer
(mtime, size, hash) is left alone, and a file whose newest row is a failure (it no longer decodes)
loses its old row and is recorded as skipped (so an older good row of it, in shards ingested later,
does not come back). So a re-run writes nothing, a killed run re-run writes what is missing (a row
is one upsert: never half written, never doubled), and the winner does not depend on which writer
ran first, nor on the order in which shard folders are ingested. ``delete_gone`` removes the files
the shards hold under a SOURCE that SOURCE no longer lists (what ``lookalike embed`` reports as gone).

Rows are keyed by :func:`~lookalike.cluster.collection.file_id`, a digest of the name: each writer
computes its keys alone. A key another name holds is refused (the file is skipped with the reason):
among the shards' files by the driver before any writer starts (the smallest name keeps the key),
and against the collection's rows by each writer. Two ``ingest`` runs at once on one collection,
each holding one of two colliding names, are not covered.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lookalike.cluster import sources
from lookalike.cluster.collection import DEFAULT_COLLECTION, create, file_id, skipped_name, stored_name
from lookalike.cluster.milvus import connect, is_lite
from lookalike.cluster.ray_session import ray_session
from lookalike.cluster.shards import Shards, paths, shard_vectors
from lookalike.index.store import StoreError

ENGINES = ("local", "ray")
#: Rows per upsert.
BATCH = 512
#: The longest failure reason recorded (characters).
_ERROR_CHARS = 4096


@dataclass
class IngestReport:
    """What one ``ingest`` run did; :meth:`to_dict` is the ``ingest --json`` shape."""

    engine: str
    workers: int = 0
    shards: int = 0
    written: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    gone: int = 0
    total: int = 0
    seconds: float = 0.0

    def add(self, counts: dict) -> None:
        """Add one writer's counts."""
        self.written += counts["written"]
        self.unchanged += counts["unchanged"]
        self.removed += counts["removed"]
        self.skipped.extend(map(tuple, counts["skipped"]))

    def to_dict(self) -> dict:
        return {"engine": self.engine, "workers": self.workers, "shards": self.shards, "written": self.written,
                "unchanged": self.unchanged, "removed": self.removed,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "gone": self.gone,
                "total": self.total, "seconds": round(self.seconds, 3)}


def ingest(location: str, uri: str, collection: str = DEFAULT_COLLECTION, engine: str = "local",
           workers: int | None = None, address: str | None = None, delete_gone: str | None = None,
           index_type: str | None = None, rebuild: bool = False, on_plan: Callable[[int], None] | None = None,
           on_progress: Callable[[int], None] | None = None, verbose: bool = False) -> IngestReport:
    """Upsert the files of the shards at ``location`` into ``collection`` at ``uri`` (created for
    the shards' model when absent; :class:`StoreError` when it holds another model's vectors).

    ``engine="ray"`` writes with ``workers`` Ray tasks at a time (one shard each) on the cluster at
    ``address`` (None: ``$RAY_ADDRESS``, else one started for this run); ``"local"`` writes here,
    one shard at a time. ``delete_gone``: a SOURCE (folder or URI) whose vanished files are deleted.
    Ray's own logs are printed only when ``verbose`` (:func:`~lookalike.cluster.ray_session.ray_session`).
    ``rebuild``: the collection and its skipped files are dropped first (damaged ones too) and made again.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from: {', '.join(ENGINES)}")
    if engine == "ray" and is_lite(uri):
        raise StoreError("a milvus-lite file takes one process: ingest into it with --engine local, or give a "
                         "Milvus server URI")
    started = time.perf_counter()
    shards = Shards(location)
    model = shards.model()
    if model is None:
        raise StoreError(f"no shards in {location}")
    create(uri, collection, model, index_type, rebuild)
    latest, superseded = shards.newest()
    if on_plan:
        on_plan(len(latest))
    report = IngestReport(engine, shards=len(superseded))
    for path, other in _clashes(latest).items():  # never two writers (or one batch) on one key
        superseded[latest[path][2]].append(path)
        report.skipped.append((path, f"its id {file_id(stored_name(path))} is also the id of {other}"))
    jobs = [(uri, collection, sources.absolute(location), name, paths) for name, paths in superseded.items()]
    run = _run_local if engine == "local" else _run_ray
    report.workers = run(jobs, workers, address, report, on_progress, verbose)
    client = connect(uri)
    try:
        if delete_gone is not None:
            gone = [stored_name(p) for p in sources.gone(latest, delete_gone)]
            report.gone = _delete(client, collection, gone)
            _delete(client, skipped_name(collection), gone)
        client.flush(collection)
        report.total = int(client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])
    finally:
        client.close()
    report.seconds = time.perf_counter() - started
    return report


def _clashes(names) -> dict[str, str]:
    """The names whose key (:func:`file_id`) a smaller name among ``names`` also has, each with the
    smallest such name (the one written)."""
    names = list(names)
    ids = np.fromiter((file_id(stored_name(n)) for n in names), np.int64, len(names))
    unique, counts = np.unique(ids, return_counts=True)
    groups: dict[int, list[str]] = {}
    for row in np.flatnonzero(np.isin(ids, unique[counts > 1])).tolist():
        groups.setdefault(int(ids[row]), []).append(names[row])
    return {name: min(group) for group in groups.values() for name in group if name != min(group)}


def _run_local(jobs, workers, address, report: IngestReport, on_progress, verbose) -> int:
    for job in jobs:
        counts = write_shard(*job)
        report.add(counts)
        if on_progress:
            on_progress(counts["rows"])
    return 1


def _run_ray(jobs, workers, address, report: IngestReport, on_progress, verbose) -> int:
    """One Ray task per shard, at most ``workers`` (default: the cluster's CPUs) at a time."""
    import ray

    with ray_session(address, verbose):
        cpus = float(ray.cluster_resources().get("CPU", 1))
        workers = workers or max(1, int(cpus))
        task = ray.remote(num_cpus=min(1.0, cpus / workers), max_retries=3)(write_shard)
        pending, queue = [], list(jobs)
        while queue or pending:
            while queue and len(pending) < workers:
                pending.append(task.remote(*queue.pop(0)))
            done, pending = ray.wait(pending, num_returns=1)
            counts = ray.get(done[0])
            report.add(counts)
            if on_progress:
                on_progress(counts["rows"])
    return workers


def write_shard(uri: str, collection: str, location: str, name: str, others: list[str]) -> dict:
    """Upsert one shard's files into the collection (see the module docstring), but not ``others``
    (files whose newest row is in another shard); returns the counts of what it did."""
    table = Shards(location).read(name)
    vectors = shard_vectors(table)
    rows = table.select(["size", "mtime_ns", "hash", "width", "height", "error"]).to_pylist()
    for row, path in zip(rows, paths(table)):  # names that are not UTF-8 as they are
        row["path"] = path
    skip = set(others)
    newest: dict[str, int] = {}  # a file twice in one shard: its newest row
    for i, row in enumerate(rows):
        if row["path"] not in skip and (row["path"] not in newest or _key(row) > _key(rows[newest[row["path"]]])):
            newest[row["path"]] = i
    keep = sorted(newest.values())
    counts = {"rows": len(keep), "written": 0, "unchanged": 0, "removed": 0, "skipped": []}
    client = connect(uri)
    try:
        # What the collection holds of the shard's files, read once (each read waits for the server's
        # next time tick): no other writer of this run writes them.
        ids = [file_id(stored_name(rows[i]["path"])) for i in keep]
        held = _held(client, collection, ids, ["hash"])
        failed = _held(client, skipped_name(collection), ids, [])
        for s in range(0, len(keep), BATCH):
            _write_batch(client, collection, [rows[i] for i in keep[s:s + BATCH]], vectors[keep[s:s + BATCH]],
                         held, failed, counts)
    finally:
        client.close()
    return counts


def _write_batch(client, collection: str, rows: list[dict], vectors: np.ndarray, held: dict[int, dict],
                 failed: dict[int, dict], counts: dict) -> None:
    """Write one batch of a shard's rows: a good row newer than what the collection holds of its file
    (a row in ``held``, or a recorded failure in ``failed``: :func:`_held`, by id) replaces it; a
    failure newer than the file's row replaces that row by a record in the skipped files' collection."""
    names = [stored_name(r["path"]) for r in rows]
    ids = [file_id(n) for n in names]
    skipped = skipped_name(collection)
    upserts, failures, stale, cleared = [], [], [], []  # rows, failure records, rows and records to delete
    for row, vector, name, i in zip(rows, vectors, names, ids):
        old, bad = held.get(i), failed.get(i)
        other = next((r["path"] for r in (old, bad) if r is not None and r["path"] != name), None)
        if other is not None:
            counts["skipped"].append((row["path"], f"its id {i} is held by {other}"))
            continue
        if row["error"] is not None:
            counts["skipped"].append((row["path"], row["error"]))
            if old is not None and _key(old) >= _key(row):
                continue  # the collection holds a newer version that decoded
            if bad is None or _key(row) > _key(bad):
                failures.append({"path": name, "id": i, "vector": [0.0, 0.0], "size": int(row["size"]),
                                 "mtime_ns": int(row["mtime_ns"]), "error": row["error"][:_ERROR_CHARS]})
            if old is not None:
                stale.append(name)
            continue
        if any(r is not None and _key(r) >= _key(row) for r in (old, bad)):
            counts["unchanged"] += 1
        else:
            upserts.append({"path": name, "id": i, "vector": vector.tolist(), "size": int(row["size"]),
                            "mtime_ns": int(row["mtime_ns"]), "hash": row["hash"], "width": int(row["width"] or 0),
                            "height": int(row["height"] or 0)})
            old = row
        if bad is not None and old is not None and _key(old) > _key(bad):
            cleared.append(name)  # a failure the file's row outdates
    # Record before deleting and write before clearing: a writer killed in between leaves what a re-run finishes.
    if failures:
        client.upsert(skipped, failures)
    if upserts:
        client.upsert(collection, upserts)
        counts["written"] += len(upserts)
    counts["removed"] += _delete(client, collection, stale)
    _delete(client, skipped, cleared)


def _held(client, collection: str, ids: list[int], fields: list[str]) -> dict[int, dict]:
    """``path, size, mtime_ns`` and ``fields`` of the rows of ``collection`` with these ids, by id
    (one query per :data:`BATCH` ids: a shard's in one or two)."""
    ids = sorted(set(ids))
    return {int(r["id"]): r for s in range(0, len(ids), 2 * BATCH)
            for r in client.query(collection, filter=f"id in {ids[s:s + 2 * BATCH]}",
                                  output_fields=["id", "path", "size", "mtime_ns", *fields])}


def _key(row: dict) -> tuple[int, int, str]:
    """What orders the versions of a file: (mtime, size, content hash; "" for a failure)."""
    return row["mtime_ns"], row["size"], row.get("hash") or ""


def _delete(client, collection: str, names: list[str]) -> int:
    """Delete the rows of the files ``names`` (stored names); returns how many the collection held."""
    wanted = {file_id(n): n for n in names}
    ids = sorted(wanted)
    removed = 0
    for s in range(0, len(ids), BATCH):
        chunk = ids[s:s + BATCH]
        held = [int(r["id"]) for r in client.query(collection, filter=f"id in {chunk}", output_fields=["id", "path"])
                if r["path"] == wanted[int(r["id"])]]  # never another name's row under the same key
        if held:
            client.delete(collection, ids=held)
            removed += len(held)
    return removed
