"""``lookalike index --from SHARDS``: bring an embedded index up to date with Parquet shards.

Shards are read one at a time and each is committed on its own (bounded memory, resumable, like
``lookalike index``): a file whose newest shard row has the size, mtime and hash the index holds is
left alone, new and changed ones are written, and files skipped by the embedding run are recorded
with their reasons. Shards only ever add: a file the index holds that no shard mentions stays. The
approximate index is then brought up to date by the index as usual (an IVF-PQ index trains on a
sample and adds the memory-mapped vectors chunk by chunk).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lookalike.cluster.shards import Shards, paths, shard_vectors
from lookalike.index.indexer import IndexReport
from lookalike.index.store import Entry, Store, StoreError


def into_store(store: Store, location: str, on_plan: Callable[[int], None] | None = None,
               on_progress: Callable[[int], None] | None = None) -> IndexReport:
    """Index the files of the shards at ``location`` into ``store``; :class:`StoreError` when they hold
    another model's vectors."""
    started = time.perf_counter()
    shards = Shards(location)
    model = shards.model()
    if model is None:
        raise StoreError(f"no shards in {location}")
    if store.model != model:
        raise StoreError(f"shards in {location} hold {model['name']} (layer {model['layer']}) vectors; index "
                         f"{store.root} was built with {(store.model or {}).get('name')}; use another --index")
    report = IndexReport()
    latest = shards.latest()
    known = store.records()
    if on_plan:
        on_plan(len(latest))
    for name in shards.names():
        shard = shards.read(name)
        vectors = shard_vectors(shard)
        entries, errors, done = [], [], 0
        for path, row, vector in zip(paths(shard), shard.select(["size", "mtime_ns", "hash", "width", "height",
                                                                 "error"]).to_pylist(), vectors):
            if latest[path][2] != name:  # a newer row in another shard wins
                continue
            done += 1
            record = known.get(path)
            status = "ok" if row["error"] is None else "error"
            if record is not None and (record.size, record.mtime_ns, record.hash, record.status) == (
                    row["size"], row["mtime_ns"], row["hash"], status):
                if status == "ok":
                    report.unchanged += 1
                else:
                    report.skipped.append((path, row["error"]))
            elif status == "ok":
                (report.added if record is None else report.changed).append(path)
                entries.append(Entry(path, row["size"], row["mtime_ns"], row["hash"], row["width"], row["height"],
                                     vector))
            else:
                errors.append((path, row["size"], row["mtime_ns"], row["error"]))
        if entries or errors:
            store.put(entries, errors)
        report.indexed += len(entries)
        report.skipped.extend((path, reason) for path, _, _, reason in errors)
        if on_progress:
            on_progress(done)
    report.total = store.count()
    report.seconds = time.perf_counter() - started
    return report


def index_shards(index, location: str, on_plan: Callable[[int], None] | None = None,
                 on_progress: Callable[[int], None] | None = None) -> IndexReport:
    """:func:`into_store` into the folder of ``index`` (an :class:`~lookalike.api.Index`), then bring
    its approximate index up to date."""
    report = into_store(index.collection.store, location, on_plan, on_progress)
    index.ann()
    return report
