"""The embedded index: one directory with a SQLite catalog (the source of truth) and a vector cache.

SQLite (WAL mode) holds every file's path, size, mtime, content hash, status and feature vector, so
a batch of new vectors commits atomically: a process killed at any moment leaves an index that opens
and resumes. The vectors are also kept in a derived cache for fast loading (see
:mod:`lookalike.index.vector_cache`), stamped with the catalog's generation and rebuilt whenever it is stale.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lookalike.index.sqlite import DB_NAME, TEXT, CatalogError, StoreError, bind, connect
from lookalike.index.vector_cache import VectorCache


@dataclass(frozen=True)
class FileRecord:
    """What the catalog knows about one file."""

    id: int
    path: str
    size: int
    mtime_ns: int
    hash: str | None
    status: str
    error: str | None


@dataclass(frozen=True)
class Entry:
    """A decoded and embedded file, ready to be written."""

    path: str
    size: int
    mtime_ns: int
    hash: str
    width: int
    height: int
    vector: np.ndarray


class Store:
    """The catalog of an index folder (SQLite) and the vector cache derived from it. Open with
    :meth:`open` (existing) or :meth:`create`."""

    def __init__(self, root: Path, conn: sqlite3.Connection, readonly: bool = False) -> None:
        self.root = root
        self.conn = conn
        self.readonly = readonly  # opened read-only: the folder or the catalog cannot be written
        self._cache = VectorCache(root)
        self._counted: tuple[int, int] | None = None  # (generation, embedded images) of the last count

    # -- lifecycle ---------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike) -> "Store":
        """Open an existing index at ``root`` (an absolute path, see :func:`lookalike.paths.index_path`);
        :class:`StoreError` when there is none."""
        root = Path(root)
        if not (root / DB_NAME).is_file():
            raise StoreError(f"no index at {root} (create one with: lookalike index DIR --index {root})")
        return cls(root, *connect(root / DB_NAME))

    @classmethod
    def create(cls, root: str | os.PathLike, model: dict, ref: str) -> "Store":
        """Open the index at ``root``, creating it for ``model`` (an identity dict) if absent.

        ``ref`` is how the model is found again (a registry name or a path).

        :class:`StoreError` when it exists and was built with another model. A catalog this call
        began and could not finish (a full disk) is removed, so the next run starts it afresh.
        """
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create an index at {root}: {e.strerror or e}") from None
        new, store = not (root / DB_NAME).exists(), None
        try:
            store = cls(root, *connect(root / DB_NAME))
            existing = store.model
            if existing is None:
                with store._writing("record its model"):
                    store.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                           [("model", json.dumps(model)), ("model_ref", ref)])
        except StoreError:
            if store is not None:
                store.close()
            if new:
                for name in (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm"):
                    (root / name).unlink(missing_ok=True)
            raise
        if existing is not None and existing != model:
            store.close()
            raise StoreError(f"index {root} was built with model {describe_model(existing)}, not {describe_model(model)}; "
                             "use another --index or --rebuild")
        return store

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One write transaction; :class:`StoreError` (one line) when the index cannot be written."""
        if self.readonly:
            raise StoreError(f"index {self.root} is read-only: cannot {what}")
        try:
            with self.conn:
                yield
        except (sqlite3.OperationalError, CatalogError) as e:  # the commit's own error, or a statement's
            cause = e.__cause__ if isinstance(e, CatalogError) else e
            if not isinstance(cause, sqlite3.OperationalError):
                raise  # a damaged catalog: its one line as it is
            if "readonly" in str(cause):
                raise StoreError(f"index {self.root} is read-only: cannot {what}") from None
            raise StoreError(f"cannot {what} in index {self.root}: {cause} (is the disk full?); "
                             "what was committed before is kept") from None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- metadata ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A value of the index's key-value metadata, or None."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store a metadata value (committed at once)."""
        with self._writing(f"set {key}"):
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def model(self) -> dict | None:
        """The identity of the model this index was built with."""
        value = self.meta("model")
        return None if value is None else json.loads(value)

    @property
    def model_ref(self) -> str:
        """The registry name or path the model is loaded from."""
        return self.meta("model_ref") or (self.model or {}).get("name", "")

    @property
    def generation(self) -> int:
        """A counter bumped by every committed change to the set of vectors."""
        return int(self.meta("generation") or 0)

    def _bump(self) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(self.generation + 1),))

    # -- catalog -----------------------------------------------------------------------------
    def records(self, under: str | None = None) -> dict[str, FileRecord]:
        """Every file the catalog knows, by path; only those below directory ``under`` if given."""
        sql = "SELECT id, path, size, mtime_ns, hash, status, error FROM images"
        rows = self.conn.execute(sql).fetchall()
        if under is not None:
            prefix = under.rstrip(os.sep) + os.sep
            rows = [r for r in rows if r[1] == under or r[1].startswith(prefix)]
        return {r[1]: FileRecord(*r) for r in rows}

    def count(self) -> int:
        """Number of embedded images. Counting reads the whole table (vectors included), so a count is
        kept for its generation (read in the same transaction); inside a write it is always counted."""
        if self.conn.in_transaction:
            return self._count()
        with self._snapshot():
            generation = self.generation
            if self._counted is None or self._counted[0] != generation:
                self._counted = (generation, self._count())
            return self._counted[1]

    def _count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM images WHERE status = 'ok'").fetchone()[0]

    def put(self, entries: Iterable[Entry], errors: Iterable[tuple[str, int, int, str]] = ()) -> None:
        """Insert or replace embedded files and failed files (path, size, mtime_ns, reason) in one commit.

        A replaced file gets a new id.
        """
        rows = [(bind(e.path), e.size, e.mtime_ns, e.hash, e.width, e.height, "ok", None,
                 np.ascontiguousarray(e.vector, dtype=np.float32).tobytes()) for e in entries]
        rows += [(bind(path), size, mtime, None, None, None, "error", reason, None) for path, size, mtime, reason in errors]
        with self._writing("add files"):
            self.conn.executemany(f"DELETE FROM images WHERE path = {TEXT}", [(r[0],) for r in rows])
            self.conn.executemany("INSERT INTO images (path, size, mtime_ns, hash, width, height, status, error, "
                                  f"vector) VALUES ({TEXT}, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._bump()

    def touch(self, path: str, size: int, mtime_ns: int) -> None:
        """Record a new mtime for a file whose content hash did not change."""
        with self._writing("record a changed mtime"):
            self.conn.execute(f"UPDATE images SET size = ?, mtime_ns = ? WHERE path = {TEXT}",
                              (size, mtime_ns, bind(path)))

    def remove(self, paths: Iterable[str]) -> int:
        """Forget files; returns how many embedded images were removed."""
        paths = [bind(p) for p in paths]
        with self._writing("remove files"):
            removed = 0
            for i in range(0, len(paths), 500):
                chunk = paths[i:i + 500]
                marks = ",".join([TEXT] * len(chunk))
                removed += self.conn.execute(
                    f"SELECT COUNT(*) FROM images WHERE status = 'ok' AND path IN ({marks})", chunk).fetchone()[0]
                self.conn.execute(f"DELETE FROM images WHERE path IN ({marks})", chunk)
            self._bump()
        return removed

    def paths(self, ids: Iterable[int], missing_ok: bool = False) -> list[str | None]:
        """Paths of image ids, in the given order; with ``missing_ok``, None for an id no longer in the
        catalog (removed since its vector was read), else :class:`KeyError`."""
        ids = [int(i) for i in ids]
        found: dict[int, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(f"SELECT id, path FROM images WHERE id IN ({marks})", chunk).fetchall())
        return [found.get(i) for i in ids] if missing_ok else [found[i] for i in ids]

    def columns(self, ids: Iterable[int]) -> dict[str, list]:
        """Path, size, mtime_ns, hash, width and height of image ids, one list per column, in the given order."""
        ids = [int(i) for i in ids]
        keys = ("path", "size", "mtime_ns", "hash", "width", "height")
        found: dict[int, tuple] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            marks = ",".join("?" * len(chunk))
            found.update((r[0], r[1:]) for r in self.conn.execute(
                f"SELECT id, {', '.join(keys)} FROM images WHERE id IN ({marks})", chunk))
        return {key: [found[i][n] for i in ids] for n, key in enumerate(keys)}

    def by_hash(self, content_hash: str) -> tuple[list[int], np.ndarray | None]:
        """Ids of embedded files with this content hash, and their (shared) vector."""
        rows = self.conn.execute("SELECT id, vector FROM images WHERE hash = ? AND status = 'ok' ORDER BY id",
                                 (content_hash,)).fetchall()
        if not rows:
            return [], None
        return [r[0] for r in rows], np.frombuffer(rows[0][1], dtype=np.float32)

    def info(self, image_id: int) -> dict | None:
        """Catalog row of an embedded image as a dict (path, size, hash, width, height), or None."""
        row = self.conn.execute("SELECT path, size, mtime_ns, hash, width, height FROM images "
                                "WHERE id = ? AND status = 'ok'", (int(image_id),)).fetchone()
        keys = ("path", "size", "mtime_ns", "hash", "width", "height")
        return None if row is None else dict(zip(keys, row))

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids, vectors) chunks of every embedded image, in id order."""
        cursor = self.conn.execute("SELECT id, vector FROM images WHERE status = 'ok' ORDER BY id")
        while rows := cursor.fetchmany(batch):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)

    # -- vector cache ------------------------------------------------------------------------
    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) of one committed generation, memory-mapped from the cache.

        Generation, count and vectors are read in one transaction, so a reader never mixes two
        generations while another process commits. The cache of a generation (``ids-N.npy``,
        ``vectors-N.npy`` and the stamp ``vectors-N.json`` with their shape and CRC-32) is checked
        on its first load in a process and rebuilt from the catalog when it is missing, stale or
        damaged; where the folder cannot be written, the vectors are read into memory instead.
        """
        with self._snapshot():
            generation, n, dim = self.generation, self.count(), max(self.dim, 1)
            cached = self._cache.get(generation, n, dim, self._fill)
        if n == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        return cached

    def cache_changed(self) -> bool:
        """True when the cache files last returned by :meth:`vectors` were changed, replaced or removed
        since (size, modification time or inode): call :meth:`vectors` again, which checks them anew.
        A long-running reader (the server) asks before each search, so damage done to a mapped file
        between two searches is never searched."""
        return self._cache.changed()

    def _fill(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copy every embedded image's id and vector into the preallocated ``ids`` and ``vectors``."""
        at = 0
        for chunk_ids, chunk in self.iter_vectors():
            ids[at:at + len(chunk_ids)] = chunk_ids
            vectors[at:at + len(chunk_ids)] = chunk
            at += len(chunk_ids)
        if at != len(ids):
            raise StoreError(f"the catalog changed while its vectors were read ({at} rows, not {len(ids)})")
        return ids, vectors

    @property
    def dim(self) -> int:
        """Feature dimension of the index's model."""
        return int((self.model or {}).get("dim") or 0)

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """A read transaction: every read inside sees the same committed state."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN")
        try:
            yield
        finally:
            if self.conn.in_transaction:
                self.conn.rollback()


class BlobTable:
    """A key -> bytes table in its own small SQLite file beside the catalog (dedup's dihedral hashes
    by content hash in ``hashes.sqlite``): a derived cache, so an unreadable or read-only file loses
    nothing but the time to recompute."""

    def __init__(self, path: Path, table: str, key: str) -> None:
        self.path, self._table, self._key = path, table, key

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self._table} ({self._key} TEXT PRIMARY KEY, bits BLOB NOT NULL)")
        return conn

    def load(self, wanted: set[str]) -> dict[str, bytes]:
        """The stored values of the ``wanted`` keys that are present ({} when the file is unreadable)."""
        if not wanted or not self.path.exists():
            return {}
        try:
            with self._connect() as conn:
                return {k: v for k, v in conn.execute(f"SELECT {self._key}, bits FROM {self._table}") if k in wanted}
        except sqlite3.Error:
            return {}

    def save(self, values: dict[str, bytes]) -> bool:
        """Store ``values`` (replacing equal keys); False when the file cannot be written."""
        try:
            with self._connect() as conn:
                conn.executemany(f"INSERT OR REPLACE INTO {self._table} VALUES (?, ?)", values.items())
        except (sqlite3.Error, OSError):
            return False
        return True


def describe_model(model: dict) -> str:
    """A model identity in a message: name, layer, dimension (and weights)."""
    weights = f", weights {model['weights_sha256'][:8]}" if model.get("weights_sha256") else ""
    return f"{model.get('name')} (layer {model.get('layer')}, {model.get('dim')}-d{weights})"
