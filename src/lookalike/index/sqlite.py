"""The catalog file ``index.sqlite`` itself: its schema and migrations, opening it (the header
check, WAL, the read-only and immutable fallbacks), binding any file name, and SQLite's own errors
turned into one-line store errors (:class:`CatalogError`), so that no caller deals in ``sqlite3``
exceptions."""

from __future__ import annotations

import functools
import os
import sqlite3
from pathlib import Path

DB_NAME = "index.sqlite"
SCHEMA_VERSION = 2

# MIGRATIONS[i] upgrades a catalog from user_version i to i + 1.
MIGRATIONS = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE images (
        id       INTEGER PRIMARY KEY,
        path     TEXT NOT NULL UNIQUE,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash     TEXT,
        width    INTEGER,
        height   INTEGER,
        status   TEXT NOT NULL CHECK (status IN ('ok', 'error')),
        error    TEXT,
        vector   BLOB
    );
    CREATE INDEX images_hash ON images (hash);
    """,
    # v2: ids are never reused, and a changed file gets a new id, so anything keyed by id
    # (the ANN index, thumbnails, web links) can tell a changed vector from an unchanged one.
    """
    CREATE TABLE images_v2 (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        path     TEXT NOT NULL UNIQUE,
        size     INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        hash     TEXT,
        width    INTEGER,
        height   INTEGER,
        status   TEXT NOT NULL CHECK (status IN ('ok', 'error')),
        error    TEXT,
        vector   BLOB
    );
    INSERT INTO images_v2 SELECT id, path, size, mtime_ns, hash, width, height, status, error, vector FROM images;
    DROP TABLE images;
    ALTER TABLE images_v2 RENAME TO images;
    CREATE INDEX images_hash ON images (hash);
    """,
]


class StoreError(Exception):
    """An index that is missing, unreadable, or built with another model; one line for the user."""


class CatalogError(StoreError):
    """SQLite could not run a statement on an open catalog (damaged, vanished, locked or full); its
    ``__cause__`` is SQLite's own error."""


def _catalog_error(e: sqlite3.DatabaseError) -> CatalogError:
    return CatalogError(f"the index catalog ({DB_NAME}) cannot be read: {e}; {REMEDY}")


def _translated(method):
    """``method`` raising :class:`CatalogError` for SQLite's errors."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise _catalog_error(e) from e

    return call


class _Cursor(sqlite3.Cursor):
    """A cursor whose statements and fetches raise :class:`CatalogError` for SQLite's errors."""

    execute = _translated(sqlite3.Cursor.execute)
    executemany = _translated(sqlite3.Cursor.executemany)
    fetchone = _translated(sqlite3.Cursor.fetchone)
    fetchmany = _translated(sqlite3.Cursor.fetchmany)
    fetchall = _translated(sqlite3.Cursor.fetchall)
    __next__ = _translated(sqlite3.Cursor.__next__)


class _Connection(sqlite3.Connection):
    """A catalog connection: once :func:`connect` has opened it (``checked``), its statements run
    on a :class:`_Cursor`; while opening, SQLite's own errors reach :func:`connect`."""

    checked = False

    def execute(self, *args):
        return (self.cursor(_Cursor) if self.checked else self.cursor()).execute(*args)

    def executemany(self, *args):
        return (self.cursor(_Cursor) if self.checked else self.cursor()).executemany(*args)


# File names need not be valid UTF-8 (``x\\xff.jpg``): Python holds them as ``str`` with surrogate
# escapes, which sqlite3 refuses to encode. Paths are bound as their file-system bytes cast to TEXT
# (SQLite stores and compares them byte for byte) and every TEXT read decodes them back the same way,
# so such a name round-trips exactly and valid names are stored as before.
TEXT = "CAST(? AS TEXT)"
_decode = functools.partial(str, encoding="utf-8", errors="surrogateescape")


def bind(path: str) -> bytes:
    """A path as bound in SQL (through :data:`TEXT`): its file-system bytes."""
    return path.encode("utf-8", "surrogateescape")


SQLITE_MAGIC = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file
REMEDY = "restore it from a backup, or start again with --rebuild"  # for a damaged catalog


def connect(path: Path) -> tuple[sqlite3.Connection, bool]:
    """A connection to the catalog at ``path`` (created when absent) and whether it is read-only.

    A catalog that exists but cannot be written (a read-only disk or folder) is opened read-only,
    and immutable when SQLite cannot even create its WAL lock file there.
    """
    if path.is_file():
        try:
            with path.open("rb") as f:
                header = f.read(len(SQLITE_MAGIC))
        except OSError as e:
            raise StoreError(f"cannot open index {path}: {e.strerror or e}") from None
        if not header:
            raise StoreError(f"{path} is empty (0 bytes), not an index: {REMEDY}")
        if header != SQLITE_MAGIC:  # SQLite itself would open a file shorter than its header as a new, empty one
            raise StoreError(f"cannot open index {path}: file is not a database ({REMEDY})")
    readonly = path.exists() and not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))
    conn = None
    try:
        if readonly:
            conn = _connect_readonly(path)
        else:
            conn = sqlite3.connect(path, timeout=30, check_same_thread=False, factory=_Connection)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.text_factory = _decode
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as e:
        if conn is not None:
            conn.close()
        if not path.exists() and not os.access(path.parent, os.W_OK):
            raise StoreError(f"cannot create an index in {path.parent}: the folder is read-only") from None
        damaged = not isinstance(e, sqlite3.OperationalError)  # not a database, or a malformed one: not locked, not denied
        raise StoreError(f"cannot open index {path}: {e}{f' ({REMEDY})' if damaged else ''}") from None
    if version > SCHEMA_VERSION:
        raise StoreError(f"index {path} has schema v{version}, newer than this lookalike (v{SCHEMA_VERSION}); upgrade")
    if version < SCHEMA_VERSION and readonly:
        raise StoreError(f"index {path} is read-only and has schema v{version}: open it once where it can be "
                         f"written to upgrade it to v{SCHEMA_VERSION}")
    for v in range(version, SCHEMA_VERSION):
        try:  # one transaction (executescript would commit each statement): a failed step leaves v as it was
            conn.executescript(f"BEGIN; {MIGRATIONS[v]}; PRAGMA user_version = {v + 1}; COMMIT;")
        except sqlite3.DatabaseError as e:
            conn.rollback()
            conn.close()
            what = "create the catalog" if version == 0 else f"upgrade the catalog to schema v{v + 1}"
            raise StoreError(f"cannot {what} at {path}: {e} (is the disk full?); nothing was changed") from None
    conn.checked = True  # from now on SQLite's errors come out as CatalogErrors
    return conn, readonly


def _connect_readonly(path: Path) -> sqlite3.Connection:
    uri = path.absolute().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30, check_same_thread=False, factory=_Connection)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:  # no WAL lock file and none can be made: nobody can write here either
        conn.close()
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False, factory=_Connection)
