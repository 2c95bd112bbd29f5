"""Milvus as a vector backend (:class:`~lookalike.vectors.Backend`): a collection of ``(id, vector)``
in any Milvus — a server or cluster (``http://host:19530``) or milvus-lite (a local ``.db`` file,
one process at a time, FLAT and IVF_FLAT only).

* nearest: Milvus search (COSINE similarity s → distance 1 − s; L2 returns squared distances → √).
* farthest: cosine — the nearest to −q (cosine similarity to −q is −s, so the top hits of −q are
  the least similar to q); l2 has no such identity, so the backend scans every vector exactly
  (``query_iterator``, one page in memory at a time).
* within: Milvus range search (``radius`` / ``range_filter``); a query whose hits fill the result
  limit is reported unfinished and the searcher scans it exactly.
* random is the searcher's own uniform sample of ids; it never needs the backend.

:func:`connect` opens a URI with a one-line :class:`~lookalike.index.store.StoreError` for a milvus-lite
file another process holds; :func:`default_index_type` is the index a URI's Milvus offers.

The :class:`~lookalike.vectors.Searcher` re-scores every candidate on the stored vectors, so the
distances lookalike reports are exact whatever index type Milvus uses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np

from lookalike.index.store import StoreError
from lookalike.vectors.backend import top_k, to_csr
from lookalike.vectors.metric import Metric, get_metric

#: Most results Milvus returns for one query (its ``topk`` limit).
MAX_HITS = 16_384
_PAGE = 4096
#: HNSW build parameters on a Milvus server (its documented defaults range).
HNSW_PARAMS = {"M": 16, "efConstruction": 200}
#: HNSW search breadth when the caller gives none (at least the number of results asked for).
HNSW_EF = 64


def is_lite(uri: str) -> bool:
    """True when ``uri`` is a milvus-lite database file rather than a server address."""
    return "://" not in uri


def default_index_type(uri: str) -> str:
    """The vector index to build at ``uri``: FLAT on milvus-lite (exact; lite is for tests and small
    collections), HNSW on a Milvus server."""
    return "FLAT" if is_lite(uri) else "HNSW"


def connect(uri: str):
    """A ``MilvusClient`` for ``uri``; :class:`StoreError` (one line) when it cannot be opened, e.g. a
    milvus-lite file held by another process (milvus-lite allows one process per file)."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    # (after importing pymilvus, whose logging set-up would undo it) milvus-lite's in-process server
    # has no timestamp service: a query iterator asks it for one (grpc logs the refusal as an error),
    # warns, and uses the client's clock, right for a database only this process has open. Neither
    # log says anything to a user.
    logging.getLogger("pymilvus.client.iterator.query_iterator").setLevel(logging.ERROR)
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    quiet = logging.getLogger("milvus_lite")  # it logs a traceback before pymilvus raises
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        return MilvusClient(os.path.expanduser(uri) if is_lite(uri) else uri)
    except MilvusException as e:
        if is_lite(uri):
            raise StoreError(f"cannot open milvus-lite database {os.path.abspath(uri)}: another process has it "
                             "open (milvus-lite allows one process per file: stop the other `lookalike serve` or "
                             "`index`, or use a Milvus server URI)") from None
        raise StoreError(f"cannot connect to Milvus at {uri}: {e.message}") from None
    finally:
        quiet.setLevel(level)


def cosine_range(radius: float) -> dict:
    """Milvus range-search parameters for cosine distances up to ``radius`` (a hair beyond, for
    float32 rounding): COSINE similarity in [1 − radius, 1]."""
    return {"radius": 1.0 - radius - 1e-5, "range_filter": 1.0 + 1e-5}


class MilvusBackend:
    """A Milvus collection ``name`` at ``uri`` for ``metric``; ``index_type`` FLAT, IVF_FLAT or HNSW
    (default: :func:`default_index_type`). An existing collection is reused, ``fresh`` drops it
    first. ``fields`` are scalar fields ``(name, DataType name, params)`` a new collection also gets;
    ``client`` an open client for ``uri``."""

    exact = False

    def __init__(self, uri: str, name: str, dim: int, metric: str | Metric = "cosine", index_type: str | None = None,
                 fresh: bool = False, fields: Sequence[tuple[str, str, dict]] = (), client=None,
                 **index_params) -> None:
        from pymilvus import DataType

        self.metric = get_metric(metric)
        self.name, self.dim = name, dim
        self.client = client if client is not None else connect(uri)
        if index_type is None:
            index_type = default_index_type(uri)
            index_params = {**(HNSW_PARAMS if index_type == "HNSW" else {}), **index_params}
        if fresh and self.client.has_collection(name):
            self.client.drop_collection(name)
        if not self.client.has_collection(name):
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            for field, kind, params in fields:
                schema.add_field(field, DataType[kind], **params)
            params = self.client.prepare_index_params()
            params.add_index("vector", index_type=index_type, metric_type=self._milvus_metric, params=index_params)
            self.client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        self.client.load_collection(name)
        index = self.client.describe_index(name, "vector") or {}
        self.index_type = str(index.get("index_type", index_type))

    @property
    def _milvus_metric(self) -> str:
        return "COSINE" if self.metric.name == "cosine" else "L2"

    def close(self) -> None:
        self.client.close()

    def __len__(self) -> int:
        return len(self.ids())

    def ids(self) -> np.ndarray:
        return np.array([int(r["id"]) for page in self.pages(["id"]) for r in page], np.int64)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        vectors = np.asarray(vectors, np.float32).reshape(len(ids), self.dim)
        clash = np.intersect1d(ids, self.ids())
        if clash.size or len(np.unique(ids)) != len(ids) or (len(ids) and ids.min() < 0):
            raise ValueError(f"ids already in the collection, repeated or negative: {clash[:10].tolist()}")
        for s in range(0, len(ids), _PAGE):
            self.client.insert(self.name, [{"id": int(i), "vector": v} for i, v in
                                           zip(ids[s:s + _PAGE], vectors[s:s + _PAGE])])

    def remove(self, ids: np.ndarray) -> int:
        live = np.intersect1d(np.asarray(ids, np.int64), self.ids())
        if live.size:
            self.client.delete(self.name, ids=live.tolist())
        return int(live.size)

    def nearest(self, queries: np.ndarray, k: int, ef_search: int | None = None,
                **options) -> tuple[np.ndarray, np.ndarray]:
        return self._search(np.atleast_2d(queries), k, False, ef_search)

    def farthest(self, queries: np.ndarray, k: int, ef_search: int | None = None,
                 **options) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if self.metric.name == "cosine":
            return self._search(-queries, k, True, ef_search)
        chunks = ((np.array([r["vector"] for r in page], np.float32), np.array([r["id"] for r in page], np.int64))
                  for page in self.pages(["id", "vector"]))
        return top_k(queries, chunks, k, self.metric, farthest=True)

    def within(self, queries: np.ndarray, radius: float, **options):
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if self.metric.name == "cosine":
            params = cosine_range(radius)
        else:  # squared L2 in [0, radius²]
            params = {"radius": (radius + 1e-5) ** 2, "range_filter": -1.0}
        hits = self.client.search(self.name, data=[q.tolist() for q in queries], limit=MAX_HITS,
                                  search_params={"params": params})
        rows, ids, dists = [], [], []
        unfinished = np.zeros(len(queries), bool)
        for q, found in enumerate(hits):
            unfinished[q] = len(found) >= MAX_HITS
            for h in found:
                rows.append(q), ids.append(int(h["id"])), dists.append(self._distance(h["distance"], False))
        return (*to_csr(len(queries), np.array(rows, np.int64), np.array(ids, np.int64), np.array(dists)),
                unfinished)

    def _search(self, queries: np.ndarray, k: int, farthest: bool,
                ef_search: int | None) -> tuple[np.ndarray, np.ndarray]:
        d = np.full((len(queries), k), np.inf, np.float32)
        found = np.full((len(queries), k), -1, np.int64)
        limit = min(k, MAX_HITS)
        params = {"params": {"ef": max(limit, ef_search or HNSW_EF)}} if self.index_type == "HNSW" else None
        hits = self.client.search(self.name, data=[q.tolist() for q in queries], limit=limit,
                                  search_params=params) if limit else []
        for q, row in enumerate(hits):
            for j, h in enumerate(row):
                found[q, j], d[q, j] = int(h["id"]), self._distance(h["distance"], farthest)
        return d, found

    def _distance(self, score: float, negated: bool) -> float:
        """lookalike's distance from a Milvus score (``negated``: the score of −q)."""
        if self.metric.name == "cosine":
            return 1.0 + score if negated else 1.0 - score
        return float(np.sqrt(max(score, 0.0)))

    def pages(self, fields: list[str]):
        """Every row's ``fields`` (dicts), a page of rows at a time (see :func:`pages`)."""
        return pages(self.client, self.name, fields)


def pages(client, name: str, fields: list[str]):
    """Every row's ``fields`` (dicts) of collection ``name`` (non-negative int64 keys ``id``), a page of
    rows at a time, through a query iterator (one page in memory)."""
    iterator = client.query_iterator(name, batch_size=_PAGE, filter="id >= 0", output_fields=fields)
    try:
        while page := iterator.next():
            yield page
    finally:
        iterator.close()
