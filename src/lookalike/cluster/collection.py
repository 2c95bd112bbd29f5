"""A Milvus collection as the system of record of a scale-out collection: its catalog and vectors,
searched with no local index folder (:class:`MilvusCollection`, what ``--uri URI --collection NAME``
opens; it implements :class:`lookalike.index.collection.Collection`).

One row per embedded file: ``id`` (the primary key, :func:`file_id`: a digest of the file's name,
the integer that results, links and the HTTP API name it by), ``path`` (the name: a local absolute
path or a URI, as ``lookalike embed`` names it), ``vector`` and the catalog fields ``size,
mtime_ns, hash, width, height``. The model's identity is a collection property, so a collection
holds one model's vectors. Files whose newest version did not decode are rows of a second
collection, ``NAME_skipped`` (:func:`skipped_name`: ``id, path, size, mtime_ns, error``), so that a
failure stays recorded (an older good row of the file in other shards does not come back) and is
listed as skipped as an index folder lists it, while every search of ``NAME`` sees good rows only.

The key is derived from the name alone, so any writer on any machine computes it with no catalog:
writing a file's row again (a retried or re-run loader, a newer version of the file) replaces it
(upsert), and a file never has two rows. Two *names* share a key with probability about n²/2⁶⁴
(5·10⁻⁴ at 10⁸ files); the loader checks each key it writes against the row the collection holds
and refuses (skips, with the reason) a file whose key another name holds, so one file's row never
replaces another's. (The name itself cannot be the key: Milvus' expressions, which paging and
deleting by key are written in, break on names with quotes or backslashes.)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator

import numpy as np

from lookalike.cluster import sources
from lookalike.cluster.milvus import (HNSW_PARAMS, connect, damaged, default_index_type, hash_index_type, is_lite, pages,
                                      quiet)
from lookalike.images import ImageError
from lookalike.dedup.phash import HashStore
from lookalike.index.store import StoreError, describe_model

#: The collection used when none is named.
DEFAULT_COLLECTION = "lookalike"
#: The collection property holding the model's identity (JSON).
MODEL_KEY = "lookalike.model"
#: The catalog fields each row carries beside ``path``, ``id`` and ``vector``.
CATALOG = ("path", "size", "mtime_ns", "hash", "width", "height")
#: The metric of the collection's vector index: nearest and farthest (−q) cosine queries use it.
METRIC = "cosine"
#: The property marking a collection of skipped files, naming the collection it belongs to.
SKIPPED_KEY = "lookalike.skipped_of"
#: The Milvus consistency level of the query side's reads (searches and look-ups): a read sees every
#: row written more than the server's grace time before it (``common.gracefulTime``, 5 s by default)
#: and waits for nothing. ``"Strong"`` would make each read wait for the server's next time tick
#: (~200 ms on a default server: five reads made one ``serve`` request take a second).
READ_CONSISTENCY = "Bounded"
#: Ids per look-up query.
_IDS = 1024
_HEX = re.compile(r"[0-9a-f]{1,128}")


def file_id(name: str) -> int:
    """The integer id of the file named ``name``: the first 63 bits of its BLAKE2b digest."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def stored_name(name: str) -> str:
    """A file name as valid UTF-8 (Milvus VARCHAR): bytes of a name that are not UTF-8 as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def skipped_name(name: str) -> str:
    """The collection recording the files of collection ``name`` that did not decode."""
    return f"{name}_skipped"


def create(uri: str, name: str, model: dict, index_type: str | None = None, rebuild: bool = False) -> None:
    """Create the collection ``name`` at ``uri`` for ``model`` (an identity dict) unless it exists,
    and its collection of skipped files (:func:`skipped_name`); with ``rebuild`` both are dropped
    first (damaged ones too). :class:`StoreError` when it exists and holds another model's vectors,
    either is not lookalike's, or they cannot be read. ``index_type``: the vector index (default
    :func:`~lookalike.cluster.milvus.default_index_type`); the content hash gets a scalar index (one
    made without it gets it here). Both are left loaded (searchable)."""
    from pymilvus.exceptions import MilvusException

    client = connect(uri, rebuild=rebuild)
    try:
        with quiet():
            if rebuild:
                client.drop_collection(name)
                client.drop_collection(skipped_name(name))
            _create(client, uri, name, model, index_type)
    except MilvusException as e:
        raise StoreError(damaged(f"{uri} (collection {name})", e)) from None
    finally:
        client.close()


def _create(client, uri: str, name: str, model: dict, index_type: str | None) -> None:
    """:func:`create` on an open client."""
    if client.has_collection(name):
        held = _model_of(client, uri, name)
        if held != model:
            raise StoreError(f"collection {name} at {uri} holds {describe_model(held)} vectors, not "
                             f"{describe_model(model)}; name another with --collection")
        if not client.list_indexes(name, field_name="hash"):  # made before the hash had an index
            params = client.prepare_index_params()
            params.add_index("hash", index_type=hash_index_type(uri))
            client.create_index(name, params)
        client.load_collection(name)
    else:
        schema = _schema(client, int(model["dim"]), ("hash", "width", "height"))
        params = client.prepare_index_params()
        index_type = index_type or default_index_type(uri)
        params.add_index("vector", index_type=index_type, metric_type="COSINE",
                         params=HNSW_PARAMS if index_type == "HNSW" else {})
        params.add_index("hash", index_type=hash_index_type(uri))
        client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        client.alter_collection_properties(name, properties={MODEL_KEY: json.dumps(model, sort_keys=True)})
    skipped = skipped_name(name)
    if not client.has_collection(skipped):
        schema = _schema(client, 2, ("error",))  # Milvus wants a vector field: a constant one
        params = client.prepare_index_params()
        params.add_index("vector", index_type="FLAT", metric_type="L2")
        client.create_collection(skipped, schema=schema, index_params=params, consistency_level="Strong")
        client.alter_collection_properties(skipped, properties={SKIPPED_KEY: name})
    elif (client.describe_collection(skipped).get("properties") or {}).get(SKIPPED_KEY) != name:
        raise StoreError(f"collection {skipped} at {uri} is not the skipped files of {name}; name another "
                         "with --collection")
    client.load_collection(skipped)


def _schema(client, dim: int, fields: tuple[str, ...]):
    """A schema of ``id`` (the key), ``path``, a ``dim``-d ``vector``, ``size``, ``mtime_ns`` and
    ``fields`` (of ``hash``, ``width``, ``height``, ``error``)."""
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("path", DataType.VARCHAR, max_length=65_535)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    for field in ("size", "mtime_ns"):
        schema.add_field(field, DataType.INT64)
    kinds = {"hash": (DataType.VARCHAR, {"max_length": 64}), "width": (DataType.INT64, {}),
             "height": (DataType.INT64, {}), "error": (DataType.VARCHAR, {"max_length": 65_535})}
    for field in fields:
        schema.add_field(field, kinds[field][0], **kinds[field][1])
    return schema


def _model_of(client, uri: str, name: str) -> dict:
    """The model identity a collection records; :class:`StoreError` for one lookalike did not make."""
    props = client.describe_collection(name).get("properties") or {}
    if MODEL_KEY not in props:
        raise StoreError(f"collection {name} at {uri} was not made by lookalike (no model recorded); "
                         "name another with --collection")
    return json.loads(props[MODEL_KEY])


class MilvusCollection:
    """The collection ``name`` at ``uri``, opened for searching (see the module docstring);
    :class:`StoreError` (one line) when it is missing or not lookalike's. Every read has the Milvus
    consistency level ``consistency`` (:data:`READ_CONSISTENCY`; ``"Strong"`` to see every write
    acknowledged before each read, at a time tick's wait per read)."""

    readonly = True
    local = False

    def __init__(self, uri: str, name: str = DEFAULT_COLLECTION, consistency: str = READ_CONSISTENCY) -> None:
        from pymilvus.exceptions import MilvusException

        self.uri, self.name = uri, name
        #: Keyword arguments of every read (search, query, query iterator).
        self.reading = {"consistency_level": consistency}
        self.client = connect(uri)
        try:
            with quiet():
                self._load()
        except MilvusException as e:
            self.client.close()
            raise StoreError(damaged(f"{uri} (collection {name})", e)) from None
        except BaseException:
            self.client.close()
            raise
        self.model_ref = self.model["name"]
        self.hashes = HashStore(None)  # dihedral hashes of this process's dedup runs, in memory

    def _load(self) -> None:
        """Read the collection's model and vector index type, and load it and its skipped files (searchable)."""
        uri, name = self.uri, self.name
        if not self.client.has_collection(name):
            raise StoreError(f"no collection {name} at {uri} (fill one with: lookalike ingest SHARDS --uri "
                             f"{uri} --collection {name})")
        self.model = _model_of(self.client, uri, name)
        self.client.load_collection(name)
        index = self.client.describe_index(name, "vector") or {}
        self.vector_index = str(index.get("index_type", "")).lower()
        self.skipped = skipped_name(name) if self.client.has_collection(skipped_name(name)) else None
        if self.skipped is not None:  # (none in a collection made before skipped files were kept)
            self.client.load_collection(self.skipped)

    def __str__(self) -> str:
        return f"collection {self.name} at {self.uri}"

    @property
    def location(self) -> str:
        return str(self)

    @property
    def index_type(self) -> str:
        """``milvus-`` and the vector index type (``milvus-hnsw``, ``milvus-flat``)."""
        return f"milvus-{self.vector_index}"

    @property
    def dim(self) -> int:
        return int(self.model["dim"])

    @property
    def lite(self) -> bool:
        return is_lite(self.uri)

    def close(self) -> None:
        self.client.close()

    def count(self) -> int:
        """Rows in the collection now."""
        rows = self.client.query(self.name, filter="", output_fields=["count(*)"], **self.reading)
        return int(rows[0]["count(*)"])

    def rows(self, ids: Iterable[int], fields: list[str]) -> dict[int, dict]:
        """``fields`` of the rows with these ids, by id (ids not in the collection are left out)."""
        ids = sorted({int(i) for i in ids})
        found: dict[int, dict] = {}
        for s in range(0, len(ids), _IDS):
            chunk = ids[s:s + _IDS]
            for row in self.client.query(self.name, filter=f"id in {chunk}", output_fields=["id", *fields],
                                         **self.reading):
                found[int(row["id"])] = row
        return found

    def paths(self, ids: Iterable[int], missing_ok: bool = False) -> list[str | None]:
        """Paths of image ids, in the given order (None for an id not held, with ``missing_ok``; else KeyError)."""
        ids = [int(i) for i in ids]
        found = self.rows(ids, ["path"])
        return [found[i]["path"] if i in found else None for i in ids] if missing_ok else \
            [found[i]["path"] for i in ids]

    def info(self, image_id: int) -> dict | None:
        """Catalog row of an image (path, size, mtime_ns, hash, width, height), or None."""
        row = self.rows([image_id], list(CATALOG)).get(int(image_id))
        return None if row is None else {key: row[key] for key in CATALOG}

    def columns(self, ids: Iterable[int]) -> dict[str, list]:
        """Path, size, mtime_ns, hash, width and height of image ids, one list per column, in order."""
        ids = [int(i) for i in ids]
        found = self.rows(ids, list(CATALOG))
        return {key: [found[i][key] for i in ids] for key in CATALOG}

    def by_hash(self, content_hash: str) -> tuple[list[int], np.ndarray | None]:
        """Ids of files with this content hash, and their (shared) vector."""
        if not _HEX.fullmatch(content_hash):
            return [], None
        rows = self.client.query(self.name, filter=f'hash == "{content_hash}"', output_fields=["id", "vector"],
                                 **self.reading)
        if not rows:
            return [], None
        rows.sort(key=lambda r: int(r["id"]))
        return [int(r["id"]) for r in rows], np.asarray(rows[0]["vector"], np.float32)

    def members(self, under: str | None = None) -> tuple[list[int], list[tuple[str, str]]]:
        """Ids of the files (below folder or URI prefix ``under``, if given), and the files skipped
        with their reasons (those whose newest version did not decode), sorted."""
        prefix = None if under is None else under.rstrip("/") + "/"

        def below(path: str) -> bool:
            return prefix is None or path == under or path.startswith(prefix)

        ids = [int(r["id"]) for page in self.pages(["id", "path"]) for r in page if below(r["path"])]
        skipped = [] if self.skipped is None else \
            sorted((r["path"], r["error"]) for page in pages(self.client, self.skipped, ["path", "error"], **self.reading)
                   for r in page if below(r["path"]))
        return ids, skipped

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector), ids ascending, read into memory (for dedup over the whole collection)."""
        ids, vectors = [], []
        for page in self.pages(["id", "vector"]):
            ids.append(np.fromiter((r["id"] for r in page), np.int64, len(page)))
            vectors.append(np.asarray([r["vector"] for r in page], np.float32).reshape(len(page), self.dim))
        if not ids:
            return np.zeros(0, np.int64), np.zeros((0, self.dim), np.float32)
        ids, vectors = np.concatenate(ids), np.concatenate(vectors)
        order = np.argsort(ids)
        return ids[order], vectors[order]

    def vectors_of(self, ids: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(vectors, known)`` of ``ids`` in order: float32 rows (zeros where ``known`` is False: not held)."""
        ids = np.asarray(list(ids), np.int64)
        found = self.rows(ids.tolist(), ["vector"])
        out = np.zeros((len(ids), self.dim), np.float32)
        known = np.array([int(i) in found for i in ids], bool)
        for row, i in zip(np.flatnonzero(known), ids[known]):
            out[row] = found[int(i)]["vector"]
        return out, known

    def pages(self, fields: list[str]) -> Iterator[list[dict]]:
        """Every row's ``fields``, a page at a time (a query iterator: one page in memory)."""
        return pages(self.client, self.name, fields, **self.reading)

    def read(self, name: str) -> bytes:
        """The bytes of a file by its stored name (a local path or any pyarrow/fsspec URI);
        :class:`ImageError` with the reason when it cannot be read."""
        try:
            return sources.read(name)
        except ImageError:
            raise
        except Exception as e:  # an unknown scheme, a missing filesystem package
            raise ImageError(f"cannot read file: {e}") from None

    def searcher(self, approximate: bool = True):
        """A :class:`~lookalike.cluster.collection_search.CollectionSearcher` over this collection
        (through its vector index unless ``approximate`` is false)."""
        from lookalike.cluster.collection_search import CollectionSearcher

        return CollectionSearcher(self, approximate)


def open_index(uri: str, name: str | None = None, threads: int | None = None, device: str = "cpu",
               weights=None, model: str | None = None, consistency: str = READ_CONSISTENCY):
    """An :class:`~lookalike.api.Index` over the collection ``name`` at ``uri``, embedding queries with
    the collection's model and reading with ``consistency`` (:class:`MilvusCollection`);
    :class:`StoreError` (one line) when the model found here differs."""
    from lookalike.api import Index

    return Index.over(MilvusCollection(uri, name or DEFAULT_COLLECTION, consistency), threads=threads, device=device,
                      weights=weights, model=model, check=True)
