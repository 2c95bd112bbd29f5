"""The seam between the searcher and whatever holds the vectors, and the exact NumPy backend.

A backend holds float32 vectors under unique non-negative int64 ids for one :class:`Metric` and
answers with *candidates*: ids and the backend's own distances (exact, or approximate for an ANN
structure). The :class:`~lookalike.vectors.searcher.Searcher` re-scores candidates on the stored
vectors, so a backend never needs to be exact, only to find the right ids. To add a backend
(as FAISS does) implement :class:`Backend` and pass ``tests/unit/vectors/test_backends.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from lookalike.vectors.metric import Metric, get_metric, squared_norms

#: Rows per chunk of a scan: memory stays bounded however large the collection.
CHUNK_ROWS = 32_768
#: Queries scanned together by the exact backend.
QUERY_BLOCK = 256

# Range queries of an approximate backend (nearest searches, widened while all answers are close):
#: Neighbours a range query first asks per query (more while they are all within reach).
RANGE_FIRST = 32
#: Most neighbours a range query asks per query; a query with more close ones is left unfinished.
RANGE_WIDEST = 1024
#: How far beyond the radius an approximate distance may be for the pair to be a candidate.
RANGE_SLACK = 0.02
#: A range query that needs only each query's ``nearest`` nearest first asks for this many times
#: as many (the approximate order may differ from the exact one near the cut).
RANGE_NEAREST_FACTOR = 2
#: How far beyond its k-th nearest answer a query needing only its k nearest still widens, by a
#: backend whose distances are off by at most half this (comparing two approximate distances takes
#: twice the error). HNSW on SQ8 codes: at most 0.001 on the synthetic 1280-d benchmark vectors, but
#: up to 0.0037 (p99 0.0017) on real EfficientNet-Lite0 ones, where 0.03 % of candidate pairs are missed.
RANGE_NEAREST_SLACK = 0.005


@runtime_checkable
class Backend(Protocol):
    """What the searcher needs of a vector store (see the module docstring).

    Results are ``(distances, ids)``, both (Q, k) arrays: float32 distances in the metric's units,
    int64 ids; slots beyond the live count hold id ``-1`` and distance ``inf``. Rows are ordered
    nearest first for :meth:`nearest` and farthest first for :meth:`farthest`. ``options`` are
    backend-specific search knobs (FAISS: ``ef_search``, ``nprobe``); a backend ignores unknown ones.
    """

    #: The metric every distance is in.
    metric: Metric
    #: True when results are exact (distances computed on the stored vectors, every vector
    #: compared): the searcher then fetches only ``k`` candidates and keeps range distances as
    #: they are; False makes it fetch more candidates and re-score range candidates too.
    exact: bool

    def __len__(self) -> int:
        """Number of live vectors."""

    def ids(self) -> np.ndarray:
        """The live ids (any order)."""

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add (N, D) ``vectors`` under ``ids``, none of them live already (ValueError otherwise)."""

    def remove(self, ids: np.ndarray) -> int:
        """Remove the live vectors with these ids (unknown ids are ignored); returns how many."""

    def nearest(self, queries: np.ndarray, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest candidates of each (Q, D) query."""

    def farthest(self, queries: np.ndarray, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` farthest candidates of each query."""

    def within(self, queries: np.ndarray, radius: float,
               **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Range query: ``(offsets, ids, distances, unfinished)``.

        Query ``i``'s candidates are ``ids[offsets[i]:offsets[i + 1]]`` (CSR), every live id at
        most ``radius`` from it (an approximate backend may add some beyond, for re-scoring),
        query rows ascending. ``unfinished`` (Q,) bool marks queries the backend could not answer
        completely (an ANN index asked for too many neighbours): the searcher ignores their
        candidates and answers them by an exact scan. With the options ``nearest`` (k > 0) and
        ``close`` a query needs only its k nearest within ``radius`` and every id within ``close``:
        an approximate backend may leave out ids farther than those (an exact one answers all).
        """


def top_k(queries: np.ndarray, chunks: Iterable[tuple[np.ndarray, np.ndarray]], k: int, metric: Metric,
          farthest: bool = False, sq_norms: Iterable[np.ndarray | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` of float32 ``queries`` over ``(vectors, ids)`` chunks, never holding them all.

    Returns ``(distances, ids)`` as :meth:`Backend.nearest` does: float32, nearest ascending (or
    farthest descending), ``inf`` / ``-1`` padding; of equal distances the smaller ids are kept.
    ``sq_norms`` yields each chunk's squared norms.
    """
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    sign = np.float32(-1.0 if farthest else 1.0)
    best_d = np.full((len(queries), k), np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    norms = iter(sq_norms) if sq_norms is not None else None
    for vectors, ids in chunks:
        ids = np.asarray(ids, dtype=np.int64)
        chunk_norms = next(norms) if norms is not None else None
        for start in range(0, len(ids), CHUNK_ROWS):
            x = np.asarray(vectors[start:start + CHUNK_ROWS], dtype=np.float32)
            part_norms = None if chunk_norms is None else chunk_norms[start:start + CHUNK_ROWS]
            d = metric.pairwise(queries, x, part_norms)
            if farthest:
                np.negative(d, out=d)
            part_ids = np.broadcast_to(ids[start:start + d.shape[1]], d.shape)
            part = _smallest(d, part_ids, min(k, d.shape[1]))
            d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
            i = np.concatenate([best_i, np.take_along_axis(part_ids, part, 1)], axis=1)
            keep = _smallest(d, np.where(i >= 0, i, np.iinfo(np.int64).max), k)
            best_d, best_i = np.take_along_axis(d, keep, 1), np.take_along_axis(i, keep, 1)
    order = np.lexsort((best_i, best_d), axis=1)
    best_d, best_i = np.take_along_axis(best_d, order, 1) * sign, np.take_along_axis(best_i, order, 1)
    best_i = np.where(np.isfinite(best_d), best_i, -1)
    return np.where(best_i >= 0, best_d, np.inf).astype(np.float32), best_i


def _smallest(d: np.ndarray, ids: np.ndarray, take: int) -> np.ndarray:
    """Column positions of the ``take`` smallest of each row of ``d`` (any order); of equal values at
    the cut, those with the smaller ``ids`` (an array shaped like ``d``)."""
    part = np.argpartition(d, take - 1, axis=1)[:, :take]
    cut = np.take_along_axis(d, part, 1).max(axis=1, keepdims=True)
    split = np.flatnonzero((d == cut).sum(1) > (np.take_along_axis(d, part, 1) == cut).sum(1))
    for q in split:  # rare: equal distances straddle the cut (byte copies of a file)
        below = np.flatnonzero(d[q] < cut[q])
        tied = np.flatnonzero(d[q] == cut[q])
        part[q] = np.concatenate([below, tied[np.argsort(ids[q][tied], kind="stable")][:take - len(below)]])
    return part


def scan_within(queries: np.ndarray, vectors: np.ndarray, radius: float, metric: Metric,
                sq_norms: np.ndarray | None = None,
                block: int = 4 * QUERY_BLOCK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query rows, positions, distances)`` of every row of ``vectors`` within ``radius`` of a
    query (a hair beyond, 1e-5, for float32 rounding), by matrix products over blocks of queries
    and chunks of rows; distances are float32 ones made float64, rows ascending."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    reach = np.float32(radius + 1e-5)
    rows, cols, dists = [np.zeros(0, np.intp)], [np.zeros(0, np.intp)], [np.zeros(0)]
    for q in range(0, len(queries), block):
        for c in range(0, len(vectors), CHUNK_ROWS):
            x = np.asarray(vectors[c:c + CHUNK_ROWS], dtype=np.float32)
            d = metric.pairwise(queries[q:q + block], x, None if sq_norms is None else sq_norms[c:c + CHUNK_ROWS])
            r, j = np.nonzero(d <= reach)
            rows.append(q + r)
            cols.append(c + j)
            dists.append(d[r, j].astype(np.float64))
    rows, cols, dists = np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)
    order = np.argsort(rows, kind="stable")
    return rows[order], cols[order], dists[order]


def to_csr(n_queries: int, rows: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """CSR offsets for pairs whose query ``rows`` are ascending, followed by ``columns`` unchanged."""
    offsets = np.zeros(n_queries + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n_queries), out=offsets[1:])
    return (offsets, *columns)


class ExactBackend:
    """Exact search by chunked matrix products over raw (possibly memory-mapped) vectors.

    ``vectors`` may be a read-only memory map: searches copy one chunk at a time. Adding or
    removing vectors copies the collection into memory (the searcher never does).
    """

    exact = True

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, metric: str | Metric,
                 sq_norms: np.ndarray | None = None) -> None:
        self.metric = get_metric(metric)
        self._ids = np.asarray(ids, dtype=np.int64)
        self._vectors = vectors
        self._sq = squared_norms(vectors) if sq_norms is None else sq_norms
        if len(self._ids) != len(vectors) or len(self._sq) != len(vectors):
            raise ValueError(f"{len(self._ids)} ids and {len(self._sq)} norms for {len(vectors)} vectors")
        if len(np.unique(self._ids)) != len(self._ids) or (len(self._ids) and self._ids.min() < 0):
            raise ValueError("ids must be unique and non-negative")

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        return self._ids

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        ids = np.asarray(ids, dtype=np.int64)
        clash = np.intersect1d(ids, self._ids)
        if clash.size or len(np.unique(ids)) != len(ids) or (len(ids) and ids.min() < 0):
            raise ValueError(f"ids already in the index, repeated or negative: {clash[:10].tolist()}")
        self._vectors = np.concatenate([np.asarray(self._vectors, np.float32).reshape(len(self._ids), -1), vectors])
        self._ids = np.concatenate([self._ids, ids])
        self._sq = np.concatenate([self._sq, squared_norms(vectors)])

    def remove(self, ids: np.ndarray) -> int:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        removed = int((~keep).sum())
        if removed:
            self._vectors, self._ids, self._sq = np.asarray(self._vectors)[keep], self._ids[keep], self._sq[keep]
        return removed

    def nearest(self, queries: np.ndarray, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        return self._top_k(queries, k, False)

    def farthest(self, queries: np.ndarray, k: int, **options) -> tuple[np.ndarray, np.ndarray]:
        return self._top_k(queries, k, True)

    def _top_k(self, queries: np.ndarray, k: int, farthest: bool) -> tuple[np.ndarray, np.ndarray]:
        """:func:`top_k`, :data:`QUERY_BLOCK` queries at a time (a block's distances to a chunk in memory)."""
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        parts = [top_k(queries[s:s + QUERY_BLOCK], [(self._vectors, self._ids)], k, self.metric, farthest, [self._sq])
                 for s in range(0, len(queries), QUERY_BLOCK)]
        if not parts:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def within(self, queries: np.ndarray, radius: float, **options):
        rows, cols, dists = scan_within(queries, self._vectors, radius, self.metric, self._sq)
        queries = np.atleast_2d(queries)
        return (*to_csr(len(queries), rows, self._ids[cols], dists), np.zeros(len(queries), bool))
