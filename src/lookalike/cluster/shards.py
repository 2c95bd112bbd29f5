"""Parquet shards of embedded files: the hand-off between an embedding run and any index.

One row per file: ``path, size, mtime_ns, hash, width, height, model, layer, vector, error``. The
vector is a fixed-size float32 list (null for a skipped file); ``error`` is the reason a file was
skipped (null for an embedded one). The model's full identity is in each file's schema metadata.

A shard is named by a digest of the files it holds, and written under a temporary name then moved
into place, so a retried write (a worker killed and its task run again) replaces the shard with the
same rows instead of adding a second copy, and a killed run never leaves a torn shard.
"""

from __future__ import annotations

import hashlib
import json
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
              ("vector", pa.list_(pa.float32(), dim)), ("error", pa.string())]
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
    columns = [pa.array(rows["path"], pa.string()), pa.array(rows["size"], pa.int64()),
               pa.array(rows["mtime_ns"], pa.int64()),
               pa.array([h if o else None for h, o in zip(rows["hash"], ok)], pa.string()),
               pa.array(rows["width"], pa.int32()), pa.array(rows["height"], pa.int32()),
               pa.array([identity["name"]] * n, pa.string()), pa.array([identity["layer"]] * n, pa.string()),
               values, pa.array(errors, pa.string())]
    return pa.Table.from_arrays(columns, schema=schema(dim, identity))


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
        """The identity of the model the shards were written with (None when there are none)."""
        import pyarrow.parquet as pq

        names = self.names()
        if not names:
            return None
        meta = pq.read_schema(self._open(names[0])).metadata or {}
        if MODEL_KEY not in meta:
            raise StoreError(f"{self.location}/{names[0]} is not a lookalike shard (no model metadata)")
        return json.loads(meta[MODEL_KEY])

    def check_model(self, identity: dict) -> None:
        """:class:`StoreError` unless the shards are empty or were written by the model ``identity``."""
        held = self.model()
        if held is not None and held != identity:
            raise StoreError(f"shards in {self.location} hold {held['name']} (layer {held['layer']}, {held['dim']}-d) "
                             f"vectors, not {identity['name']} (layer {identity['layer']}, {identity['dim']}-d); "
                             "use another --out")

    def latest(self) -> dict[str, tuple[int, int, str, str | None]]:
        """For every file the shards hold: ``(size, mtime_ns, shard, error)`` of its newest row
        (largest mtime, then last shard), reading only those columns."""
        import pyarrow.parquet as pq

        held: dict[str, tuple[int, int, str, str | None]] = {}
        for name in self.names():
            cols = pq.read_table(self._open(name), columns=["path", "size", "mtime_ns", "error"]).to_pydict()
            for path, size, mtime, error in zip(cols["path"], cols["size"], cols["mtime_ns"], cols["error"]):
                if path not in held or mtime >= held[path][1]:
                    held[path] = (size, mtime, name, error)
        return held

    def read(self, name: str):
        """One shard as a pyarrow table."""
        import pyarrow.parquet as pq

        return pq.read_table(self._open(name))

    def __iter__(self) -> Iterator[tuple[str, object]]:
        """``(name, table)`` of every shard, one at a time."""
        for name in self.names():
            yield name, self.read(name)

    def write(self, shard) -> str:
        """Write a shard table atomically under a name derived from its files; returns the name."""
        import pyarrow.parquet as pq

        digest = hashlib.blake2b(digest_size=12)
        for path, size, mtime in zip(*(shard.column(c).to_pylist() for c in ("path", "size", "mtime_ns"))):
            digest.update(f"{path}\0{size}\0{mtime}\n".encode())
        name = f"{PREFIX}{digest.hexdigest()}{SUFFIX}"
        self.fs.create_dir(self.root, recursive=True)
        tmp = f"{self.root}/.tmp-{uuid.uuid4().hex}{SUFFIX}"
        pq.write_table(shard, tmp, filesystem=self.fs)
        self.fs.move(tmp, f"{self.root}/{name}")
        return name

    def _open(self, name: str):
        return self.fs.open_input_file(f"{self.root}/{name}")
