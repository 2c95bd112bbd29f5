"""``--store milvus``: an index's catalog and vectors mirrored into a Milvus collection.

The local index folder stays the indexer's ledger (the SQLite catalog: the folder diff, skipped
files and their reasons, crash safety); every committed change is mirrored to one Milvus
collection whose rows are the catalog's embedded files: ``id`` (the catalog's id), ``vector`` and
the scalar fields ``path, size, mtime_ns, hash, width, height``. The model's identity and the
index's token are collection properties, so a collection is never mixed with another model's or
another index's vectors.

Mirroring diffs ids: catalog ids are never reused and a changed file gets a new id, so the rows
Milvus lacks (or holds with another size or mtime) are upserted and the ids the catalog no longer
holds are deleted. Both are idempotent, so a process killed between the SQLite commit and the Milvus
write leaves a mirror the next run repairs. A stamp of the catalog state last mirrored (kept in the
index's metadata, checked against the collection's row count) makes an up-to-date mirror cost
one count query.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass

import numpy as np

from lookalike.cluster.milvus import MilvusBackend, connect, is_lite
from lookalike.index.store import Store, StoreError

#: The collection used when none is named.
DEFAULT_COLLECTION = "lookalike"
#: Metadata keys of the index: its Milvus target and the state last mirrored there.
TARGET_KEY, STAMP_KEY = "milvus", "milvus_stamp"
#: The metric of the collection's vector index (the one nearest / farthest / range queries use).
METRIC = "cosine"
#: The catalog's scalar fields as Milvus fields (name, DataType, params).
FIELDS = (("path", "VARCHAR", {"max_length": 65_535}), ("size", "INT64", {}), ("mtime_ns", "INT64", {}),
          ("hash", "VARCHAR", {"max_length": 64}), ("width", "INT64", {}), ("height", "INT64", {}))
_ROWS = 512


@dataclass(frozen=True)
class Target:
    """Where an index is mirrored: a Milvus ``uri`` (server address or absolute milvus-lite path),
    a ``collection``, and the index's ``token`` that the collection carries."""

    uri: str
    collection: str
    token: str

    def __str__(self) -> str:
        return f"collection {self.collection} at {self.uri}"


def resolve_target(store: Store, uri: str | None, collection: str | None) -> Target:
    """The target for ``--uri`` / ``--collection``, falling back to the one the index records;
    :class:`StoreError` when there is neither."""
    recorded = json.loads(store.meta(TARGET_KEY) or "null")
    if uri is None:
        if recorded is None:
            raise StoreError(f"index {store.root} is not mirrored to Milvus yet: give --uri URI")
        uri = recorded["uri"]
    uri = uri if not is_lite(uri) else os.path.abspath(os.path.expanduser(uri))
    same = recorded is not None and recorded["uri"] == uri
    collection = collection or (recorded["collection"] if same else DEFAULT_COLLECTION)
    return Target(uri, collection, recorded["token"] if recorded else uuid.uuid4().hex)


class Mirror:
    """The Milvus collection of ``target`` for ``store`` (created when absent, dropped first when
    ``fresh``), with its :attr:`backend` for searches. ``client``: an open client for the URI."""

    def __init__(self, store: Store, target: Target, fresh: bool = False, index_type: str | None = None,
                 client=None) -> None:
        self.store, self.target = store, target
        client = client if client is not None else connect(target.uri)
        try:
            self.backend = MilvusBackend(target.uri, target.collection, store.dim, METRIC, index_type, fresh, FIELDS,
                                         client)
            self._claim()
        except Exception:
            client.close()
            raise
        if not store.readonly and store.meta(TARGET_KEY) != self._recorded():
            store.set_meta(TARGET_KEY, self._recorded())

    @property
    def client(self):
        return self.backend.client

    @property
    def index_type(self) -> str:
        """``milvus-`` and the collection's vector index type, lower case (``milvus-flat``, ``milvus-hnsw``)."""
        return f"milvus-{self.backend.index_type.lower()}"

    def close(self) -> None:
        self.backend.close()

    def sync(self) -> tuple[int, int]:
        """Bring the collection in step with the catalog; returns (rows upserted, rows deleted)."""
        name = self.target.collection
        local = {r.id: (r.size, r.mtime_ns) for r in self.store.records().values() if r.status == "ok"}
        stamp = f"{self._recorded()}|{_fingerprint(local)}"
        if self.store.meta(STAMP_KEY) == stamp and self._count() == len(local):
            return 0, 0
        remote = {int(r["id"]): (int(r["size"]), int(r["mtime_ns"])) for page in self.backend.pages(["id", "size", "mtime_ns"]) for r in page}
        gone = [i for i in remote if i not in local]
        todo = sorted(i for i, seen in local.items() if remote.get(i) != seen)
        for s in range(0, len(gone), _ROWS):
            self.client.delete(name, ids=gone[s:s + _ROWS])
        ids, vectors = self.store.vectors()
        complete = True
        for s in range(0, len(todo), _ROWS):
            chunk = np.asarray(todo[s:s + _ROWS], np.int64)
            rows = np.minimum(np.searchsorted(ids, chunk), max(len(ids) - 1, 0))
            present = ids[rows] == chunk if len(ids) else np.zeros(len(chunk), bool)
            complete &= bool(present.all())  # another process removed some since: the next sync finishes
            chunk, rows = chunk[present], rows[present]
            if len(chunk):
                self.client.upsert(name, _rows(chunk, np.asarray(vectors[rows]), self.store.catalog(chunk)))
        if todo or gone:  # sealed segments: milvus-lite scans growing ones slowly (search, count)
            self.client.flush(name)
        if complete and not self.store.readonly:
            self.store.set_meta(STAMP_KEY, stamp)
        return len(todo), len(gone)

    def _recorded(self) -> str:
        t = self.target
        return json.dumps({"uri": t.uri, "collection": t.collection, "token": t.token})

    def _claim(self) -> None:
        """Mark the collection as this index's, or :class:`StoreError` when it holds another index
        or another model."""
        name = self.target.collection
        mine = {"lookalike.index": self.target.token, "lookalike.model": json.dumps(self.store.model, sort_keys=True)}
        props = self.client.describe_collection(name).get("properties") or {}
        if not props.get("lookalike.index"):
            if self._count():
                raise StoreError(f"{self.target} already holds vectors not written by lookalike; "
                                 "name another with --collection")
            self.client.alter_collection_properties(name, properties=mine)
        elif props.get("lookalike.index") != mine["lookalike.index"]:
            raise StoreError(f"{self.target} mirrors another lookalike index; name another with --collection")
        elif props.get("lookalike.model") != mine["lookalike.model"]:
            raise StoreError(f"{self.target} holds another model's vectors; name another with --collection")

    def _count(self) -> int:
        return int(self.client.query(self.target.collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def _fingerprint(local: dict[int, tuple[int, int]]) -> str:
    """A digest of the catalog's (id, size, mtime) rows."""
    rows = np.array(sorted((i, *v) for i, v in local.items()), np.int64).reshape(-1, 3)
    return hashlib.blake2b(rows.tobytes(), digest_size=16).hexdigest()


def _rows(ids: np.ndarray, vectors: np.ndarray, catalog: dict[str, list]) -> list[dict]:
    """Milvus rows of the catalog's images ``ids``."""
    return [{"id": int(i), "vector": v.tolist(), "path": _text(path), "size": int(size), "mtime_ns": int(mtime),
             "hash": h or "", "width": int(w or 0), "height": int(ht or 0)}
            for i, v, path, size, mtime, h, w, ht in zip(ids, vectors, *(catalog[k] for k in (
                "path", "size", "mtime_ns", "hash", "width", "height")))]


def _text(path: str) -> str:
    """A path as valid UTF-8 (Milvus VARCHAR): undecodable bytes of a file name as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
