"""Parquet shards of embedded files: the hand-off between an embedding run and any index.

One row per file: ``path, size, mtime_ns, hash, width, height, model, layer, vector, error,
path_bytes``. The vector is a fixed-size float32 list (null for a skipped file); ``error`` is the
reason a file was skipped (null for an embedded one). A name that is not valid UTF-8 (``x\\xff.jpg``)
is kept byte for byte in ``path_bytes`` (null for every other name), ``path`` showing it with
``\\xff`` escapes; :func:`paths` gives the names back exactly. The model's full identity is in each
file's schema metadata, and every shard of a folder must hold the same model's vectors of its width.

A shard is named by a digest of the files it holds, and written under a temporary name then moved
into place, so a retried write (a worker killed and its task run again) replaces the shard with the
same rows instead of adding a second copy, and a killed run never leaves a torn shard.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Iterator

import numpy as np

from lookalike.cluster.sources import filesystem
from lookalike.index.store import StoreError

MODEL_KEY = b"lookalike.model"
PREFIX, SUFFIX = "part-", ".parquet"


def schema(dim: int, identity: dict | None = None):
    """The shard schema for ``dim``-d vectors, carrying the model ``identity`` as metadata."""
    import pyarrow as pa

    fields = [("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("hash", pa.string()),
              ("width", pa.int32()), ("height", pa.int32()), ("model", pa.string()), ("layer", pa.string()),
              ("vector", pa.list_(pa.float32(), dim)), ("error", pa.string()), ("path_bytes", pa.binary())]
    meta = {MODEL_KEY: json.dumps(identity, sort_keys=True).encode()} if identity else None
    return pa.schema(fields, metadata=meta)


def table(rows: dict, vectors: np.ndarray, identity: dict):
    """A shard table from column lists (``path, size, mtime_ns, hash, width, height, error``; error
    None or "" for embedded files) and the (n_ok, D) vectors of the embedded rows, in row order."""
    import pyarrow as pa

    dim = int(identity["dim"])
    errors = [e or None for e in rows["error"]]
    ok = np.array([e is None for e in errors], bool)
    flat = np.zeros((len(errors), dim), np.float32)
    flat[ok] = vectors
    values = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.float32()), dim, mask=pa.array(~ok))
    n = len(errors)
    exact = [os.fsencode(p) for p in rows["path"]]
    shown = [b.decode("utf-8", "backslashreplace") for b in exact]
    columns = [pa.array(shown, pa.string()), pa.array(rows["size"], pa.int64()),
               pa.array(rows["mtime_ns"], pa.int64()),
               pa.array([h if o else None for h, o in zip(rows["hash"], ok)], pa.string()),
               pa.array(rows["width"], pa.int32()), pa.array(rows["height"], pa.int32()),
               pa.array([identity["name"]] * n, pa.string()), pa.array([identity["layer"]] * n, pa.string()),
               values, pa.array(errors, pa.string()),
               pa.array([b if s != p else None for b, s, p in zip(exact, shown, rows["path"])], pa.binary())]
    return pa.Table.from_arrays(columns, schema=schema(dim, identity))


def paths(shard) -> list[str]:
    """The file names of a shard table's rows, exactly (names that are not UTF-8 from ``path_bytes``)."""
    shown = shard.column("path").to_pylist()
    if "path_bytes" not in shard.column_names:  # a shard written before names were kept byte for byte
        return shown
    return [p if b is None else os.fsdecode(b) for p, b in zip(shown, shard.column("path_bytes").to_pylist())]


def shard_vectors(shard) -> np.ndarray:
    """The (rows, D) float32 vectors of a shard table (zeros on skipped rows)."""
    column = shard.column("vector").combine_chunks()
    dim = column.type.list_size
    vectors = np.asarray(column.values.to_numpy(zero_copy_only=False), np.float32)[
        column.offset * dim:(column.offset + len(column)) * dim].reshape(len(column), dim)
    if column.null_count:  # a skipped row's values are not stored in Parquet: read back, they are NaN
        vectors = np.where(column.is_null().to_numpy(zero_copy_only=False)[:, None], np.float32(0), vectors)
    return vectors


class Shards:
    """A folder (local path or URI) of shards."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.fs, self.root = filesystem(location)

    def names(self) -> list[str]:
        """Shard file names, sorted (temporary files of unfinished writes are not shards)."""
        from pyarrow import fs

        info = self.fs.get_file_info(self.root)
        if info.type == fs.FileType.NotFound:
            return []
        if info.type != fs.FileType.Directory:
            raise StoreError(f"not a folder of shards: {self.location}")
        found = self.fs.get_file_info(fs.FileSelector(self.root))
        return sorted(f.base_name for f in found if f.base_name.startswith(PREFIX) and f.base_name.endswith(SUFFIX))

    def model(self) -> dict | None:
        """The identity of the model the shards were written with (None when there are none).

        Every shard's schema is read (not its rows): :class:`StoreError` naming the first shard that
        cannot be read, is not a lookalike shard, holds vectors of another width than its model's,
        or holds another model's vectors than the first shard, so no such shard is ever loaded.
        """
        first = None
        for name in self.names():
            identity = self._identity(name)
            if first is None:
                first = name, identity
            elif identity != first[1]:
                raise StoreError(f"{self._where(name)} holds {_describe(identity)} vectors, not "
                                 f"{_describe(first[1])} like {first[0]}; {self._remedy()}")
        return None if first is None else first[1]

    def _identity(self, name: str) -> dict:
        """The model identity a shard's schema carries, checked against its columns."""
        with self._opened(name) as shard:
            schema = shard.schema_arrow
        try:
            identity = json.loads((schema.metadata or {})[MODEL_KEY])
            width = schema.field("vector").type.list_size
            missing = sorted(set(_REQUIRED) - set(schema.names))
            ok = isinstance(identity, dict) and {"name", "layer", "dim"} <= identity.keys() and not missing
        except (KeyError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise StoreError(f"{self._where(name)} is not a lookalike shard (no model metadata or columns "
                             f"{', '.join(_REQUIRED)}); {self._remedy()}")
        if width != identity["dim"]:
            raise StoreError(f"{self._where(name)} holds {width}-d vectors, but its model {identity['name']} "
                             f"makes {identity['dim']}-d ones; {self._remedy()}")
        return identity

    def check_model(self, identity: dict) -> None:
        """:class:`StoreError` unless the shards are empty or were written by the model ``identity``."""
        held = self.model()
        if held is not None and held != identity:
            raise StoreError(f"shards in {self.location} hold {_describe(held)} vectors, not {_describe(identity)}; "
                             "use another --out")

    def latest(self) -> dict[str, tuple[int, int, str, str | None]]:
        """For every file the shards hold: ``(size, mtime_ns, shard, error)`` of its newest row
        (see :meth:`newest`)."""
        return self.newest()[0]

    def newest(self) -> tuple[dict[str, tuple[int, int, str, str | None]], dict[str, list[str]]]:
        """``(latest, superseded)``: for every file, ``(size, mtime_ns, shard, error)`` of its newest
        row (largest mtime, then size, then content hash, then shard name: the same row whatever
        order the shards are read in), and for every shard the files whose newest row is in another
        shard. Reads only those columns."""
        held: dict[str, tuple[int, int, str, str | None]] = {}
        keys: dict[str, tuple] = {}
        rows: dict[str, list[str]] = {}
        for name in self.names():
            shard = self.read(name, ("path", "size", "mtime_ns", "hash", "error", "path_bytes"))
            cols = shard.to_pydict()
            rows[name] = paths(shard)
            for path, size, mtime, digest, error in zip(rows[name], cols["size"], cols["mtime_ns"], cols["hash"],
                                                        cols["error"]):
                key = (mtime, size, digest or "", name)
                if path not in keys or key > keys[path]:
                    keys[path], held[path] = key, (size, mtime, name, error)
        return held, {name: [p for p in names if held[p][2] != name] for name, names in rows.items()}

    def read(self, name: str, columns: tuple[str, ...] | None = None):
        """One shard as a pyarrow table (only those of ``columns`` it has, when given), its pages'
        checksums verified where it has them."""
        with self._opened(name) as shard:
            return shard.read(columns=None if columns is None else
                              [c for c in columns if c in shard.schema_arrow.names])

    def __iter__(self) -> Iterator[tuple[str, object]]:
        """``(name, table)`` of every shard, one at a time."""
        for name in self.names():
            yield name, self.read(name)

    def write(self, shard) -> str:
        """Write a shard table atomically under a name derived from its files; returns the name."""
        import pyarrow.parquet as pq

        digest = hashlib.blake2b(digest_size=12)
        for path, size, mtime in zip(paths(shard), *(shard.column(c).to_pylist() for c in ("size", "mtime_ns"))):
            digest.update(os.fsencode(path) + f"\0{size}\0{mtime}\n".encode())
        name = f"{PREFIX}{digest.hexdigest()}{SUFFIX}"
        self.fs.create_dir(self.root, recursive=True)
        tmp = f"{self.root}/.tmp-{uuid.uuid4().hex}{SUFFIX}"
        pq.write_table(shard, tmp, filesystem=self.fs, write_page_checksum=True)
        self.fs.move(tmp, f"{self.root}/{name}")
        return name

    @contextlib.contextmanager
    def _opened(self, name: str) -> Iterator:
        """The shard ``name`` as a :class:`pyarrow.parquet.ParquetFile`; :class:`StoreError` naming it
        (one line) when it, or what is read from it in the block, cannot be read (empty, cut short,
        damaged, not Parquet)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            with self.fs.open_input_file(f"{self.root}/{name}") as f:
                yield pq.ParquetFile(f, page_checksum_verification=True)
        except (OSError, pa.ArrowException) as e:
            reason = " ".join(str(e).split())
            raise StoreError(f"{self._where(name)} cannot be read as a shard ({reason}); {self._remedy()}") from None

    def _where(self, name: str) -> str:
        return f"{self.location.rstrip('/')}/{name}"

    def _remedy(self) -> str:
        return f"move it out of {self.location} (or embed again into a fresh --out)"


#: The columns every shard has (``path_bytes`` came later: older shards lack it).
_REQUIRED = ("path", "size", "mtime_ns", "hash", "width", "height", "vector", "error")


def _describe(identity: dict) -> str:
    return f"{identity['name']} (layer {identity['layer']}, {identity['dim']}-d)"
