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

The :class:`~lookalike.vectors.Searcher` re-scores every candidate on the stored vectors, so the
distances lookalike reports are exact whatever index type Milvus uses.
"""

from __future__ import annotations

import numpy as np

from lookalike.vectors.backend import top_k, to_csr
from lookalike.vectors.metric import Metric, get_metric

#: Most results Milvus returns for one query (its ``topk`` limit).
MAX_HITS = 16_384
_PAGE = 4096


class MilvusBackend:
    """A Milvus collection ``name`` at ``uri`` for ``metric``; ``index_type`` FLAT, IVF_FLAT or (on a
    Milvus server) HNSW. An existing collection is reused, ``fresh`` drops it first."""

    exact = False

    def __init__(self, uri: str, name: str, dim: int, metric: str | Metric = "cosine", index_type: str = "FLAT",
                 fresh: bool = False, **index_params) -> None:
        from pymilvus import DataType, MilvusClient

        self.metric = get_metric(metric)
        self.name, self.dim = name, dim
        self.client = MilvusClient(uri)
        if fresh and self.client.has_collection(name):
            self.client.drop_collection(name)
        if not self.client.has_collection(name):
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            params = self.client.prepare_index_params()
            params.add_index("vector", index_type=index_type, metric_type=self._milvus_metric, params=index_params)
            self.client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        self.client.load_collection(name)

    @property
    def _milvus_metric(self) -> str:
        return "COSINE" if self.metric.name == "cosine" else "L2"

    def close(self) -> None:
        self.client.close()

    def __len__(self) -> int:
        return len(self.ids())

    def ids(self) -> np.ndarray:
        return np.array([int(r["id"]) for r in self._pages(["id"])], np.int64)

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

    def nearest(self, queries: np.ndarray, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        return self._search(np.atleast_2d(queries), k, farthest=False)

    def farthest(self, queries: np.ndarray, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if self.metric.name == "cosine":
            return self._search(-queries, k, farthest=True)
        chunks = ((np.array([r["vector"] for r in page], np.float32), np.array([r["id"] for r in page], np.int64))
                  for page in self._pages(["id", "vector"], paged=True))
        return top_k(queries, chunks, k, self.metric, farthest=True)

    def within(self, queries: np.ndarray, radius: float, **options):
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if self.metric.name == "cosine":  # similarity in [1 - radius, 1]
            params = {"radius": 1.0 - radius - 1e-5, "range_filter": 1.0 + 1e-5}
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

    def _search(self, queries: np.ndarray, k: int, farthest: bool) -> tuple[np.ndarray, np.ndarray]:
        d = np.full((len(queries), k), np.inf, np.float32)
        found = np.full((len(queries), k), -1, np.int64)
        limit = min(k, MAX_HITS)
        hits = self.client.search(self.name, data=[q.tolist() for q in queries], limit=limit) if limit else []
        for q, row in enumerate(hits):
            for j, h in enumerate(row):
                found[q, j], d[q, j] = int(h["id"]), self._distance(h["distance"], farthest)
        return d, found

    def _distance(self, score: float, negated: bool) -> float:
        """lookalike's distance from a Milvus score (``negated``: the score of −q)."""
        if self.metric.name == "cosine":
            return 1.0 + score if negated else 1.0 - score
        return float(np.sqrt(max(score, 0.0)))

    def _pages(self, fields: list[str], paged: bool = False):
        """Every row's ``fields``, through a query iterator (a page at a time when ``paged``)."""
        iterator = self.client.query_iterator(self.name, batch_size=_PAGE, filter="id >= 0", output_fields=fields)
        try:
            while page := iterator.next():
                if paged:
                    yield page
                else:
                    yield from page
        finally:
            iterator.close()
