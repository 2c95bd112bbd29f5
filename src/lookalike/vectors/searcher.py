"""One searcher per index generation: nearest, farthest, random and range queries over its vectors.

The :class:`Searcher` holds the stored vectors (possibly memory-mapped), an exact backend per
metric and any approximate backends (see :mod:`lookalike.vectors.backend`). It asks a backend for
candidates, then re-scores them once, in float64 on the gathered stored vectors (range candidates
in float32, as precise as the exact backend's range distances), so every distance it returns is
exact (an image found by itself is at distance 0, up to rounding) whichever backend found it.
Approximate backends are asked for :data:`REFINE_FACTOR` times more candidates than wanted.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from lookalike.vectors.backend import Backend, ExactBackend, to_csr
from lookalike.vectors.metric import METRICS, Metric, Mode, get_metric, squared_norms

#: Candidates fetched from an approximate backend per result wanted (re-scored, best kept).
REFINE_FACTOR = 4
#: Pairs re-scored together: their gathered rows (5 MB each side at 1280-d) stay in the CPU caches
#: (4,096 pairs: 4x slower per pair on the 2-core test machine).
_RESCORE_PAIRS = 1024


class Searcher:
    """Queries over ``vectors`` (N, D) stored under unique ``ids``, through ``backends`` where they
    hold the query's metric, else exactly. Distances are float64, result ids int64; approximate
    backends are asked for ``refine_factor`` candidates per result."""

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, backends: Iterable[Backend] = (),
                 sq_norms: np.ndarray | None = None, refine_factor: int = REFINE_FACTOR) -> None:
        self.refine_factor = refine_factor
        self.ids = np.asarray(ids, dtype=np.int64)
        self.vectors = vectors
        sq_norms = squared_norms(vectors) if sq_norms is None else sq_norms
        self._sq_norms = sq_norms
        self._exact = {name: ExactBackend(self.ids, vectors, metric, sq_norms) for name, metric in METRICS.items()}
        self._approx = {b.metric.name: b for b in backends}
        self._by_id = np.argsort(self.ids, kind="stable")
        self._sorted_ids = self.ids[self._by_id]

    def __len__(self) -> int:
        return len(self.ids)

    def with_backends(self, backends: Iterable[Backend]) -> Searcher:
        """A searcher over the same vectors (sharing their norms) through ``backends``."""
        twin = object.__new__(Searcher)
        twin.__dict__.update(self.__dict__, _approx={b.metric.name: b for b in backends})
        return twin

    def backend(self, metric: str | Metric, exact: bool = False) -> Backend:
        """The backend answering ``metric``: an approximate one unless ``exact`` or there is none."""
        name = get_metric(metric).name
        return self._exact[name] if exact else self._approx.get(name, self._exact[name])

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of ``ids`` (all present), in that order."""
        return np.asarray(self.vectors[self._rows(ids)])

    def known(self, ids: np.ndarray) -> np.ndarray:
        """Which ``ids`` are stored here (a backend out of step with the vectors may return others)."""
        return self._locate(ids)[1]

    def _locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, known): the stored row of each of ``ids`` (meaningless where not known) and which are stored."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.ids):
            return np.zeros(ids.shape, np.intp), np.zeros(ids.shape, bool)
        rows = self._rows(ids)
        return rows, self.ids[rows] == ids

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self._sorted_ids, np.asarray(ids, dtype=np.int64))
        return self._by_id[np.minimum(pos, len(self.ids) - 1)]

    def query(self, queries: np.ndarray, k: int, mode: Mode = Mode.nearest, metric: str | Metric = "cosine",
              seed: int | None = None, exact: bool = False, **options) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`nearest`, :meth:`farthest` or :meth:`random` by ``mode`` (``seed`` is random's)."""
        if mode is Mode.random:
            return self.random(queries, k, metric, seed)
        return getattr(self, mode.value)(queries, k, metric, exact, **options)

    def nearest(self, queries: np.ndarray, k: int, metric: str | Metric = "cosine", exact: bool = False,
                **options) -> tuple[np.ndarray, np.ndarray]:
        """``(distances, ids)``, each (Q, min(k, N)), nearest first (ties by id); ``options`` go to
        the backend (FAISS: ``ef_search``, ``nprobe``)."""
        return self._ranked(queries, k, metric, exact, False, options)

    def farthest(self, queries: np.ndarray, k: int, metric: str | Metric = "cosine", exact: bool = False,
                 **options) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`nearest`, farthest first."""
        return self._ranked(queries, k, metric, exact, True, options)

    def random(self, queries: np.ndarray, k: int, metric: str | Metric = "cosine",
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A uniform sample of ``min(k, N)`` ids per query without replacement, drawn from
        ``np.random.default_rng(seed)``, in drawing order, with their distances."""
        queries = _as_queries(queries)
        k = min(k, len(self))
        rng = np.random.default_rng(seed)
        positions = np.stack([rng.choice(len(self), size=k, replace=False) for _ in queries]) if k else \
            np.zeros((len(queries), 0), np.int64)
        return self._rescore(queries, positions, get_metric(metric)), self.ids[positions]

    def within(self, queries: np.ndarray, radius: float, metric: str | Metric = "cosine", exact: bool = False,
               rescore: bool = True, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every stored id within ``radius`` of each query, as CSR ``(offsets, ids, distances)``.

        Candidates of an approximate backend are re-scored, in float32 like the exact backend's
        range distances (range searches re-score many pairs: dedup's 32 nearest of every file);
        queries it leaves unfinished are scanned exactly. An exact backend's float32 distances are
        kept (no re-scoring needed). ``options`` go to the backend (FAISS: ``nearest`` and ``close``,
        when a query needs only its nearest within the radius; see :meth:`Backend.within`). With
        ``rescore`` False an approximate backend's candidates are returned with its own distances,
        none left out for them (the caller re-scores them: dedup re-scores each pair once, not from
        both sides).
        """
        queries = _as_queries(queries)
        metric = get_metric(metric)
        backend = self.backend(metric, exact)
        offsets, ids, dists, unfinished = backend.within(queries, radius, **options)
        rows = np.repeat(np.arange(len(queries)), np.diff(offsets))
        dists = np.asarray(dists, np.float64)
        stored, known = self._locate(ids)
        rows, ids, dists, stored = rows[known], ids[known], dists[known], stored[known]
        if not backend.exact and rescore:
            dists = self._rescore_pairs(queries, rows, stored, metric)
        keep = ((dists <= radius) | (not backend.exact and not rescore)) & ~unfinished[rows]
        rows, ids, dists = rows[keep], ids[keep], dists[keep]
        if unfinished.any():
            pending = np.flatnonzero(unfinished)
            more, more_ids, more_d, _ = self._exact[metric.name].within(queries[pending], radius)
            more_rows = pending[np.repeat(np.arange(len(pending)), np.diff(more))]
            keep = more_d <= radius
            rows = np.concatenate([rows, more_rows[keep]])
            ids, dists = np.concatenate([ids, more_ids[keep]]), np.concatenate([dists, more_d[keep]])
        order = np.argsort(rows, kind="stable")
        return to_csr(len(queries), rows[order], ids[order], np.maximum(dists[order], 0.0))

    def _ranked(self, queries, k, metric, exact, farthest, options):
        queries = _as_queries(queries)
        metric = get_metric(metric)
        backend = self.backend(metric, exact)
        k = min(k, len(self))
        if k == 0:
            return np.zeros((len(queries), 0)), np.zeros((len(queries), 0), np.int64)
        fetch = k if backend.exact else min(k * self.refine_factor, len(self))
        _, ids = (backend.farthest if farthest else backend.nearest)(queries, fetch, **options)
        ids = np.where(self.known(ids), ids, -1)
        dists = self._rescore(queries, np.where(ids >= 0, self._rows(ids), -1), metric)
        return best_first(dists, ids, k, farthest)

    def _rescore_pairs(self, queries: np.ndarray, rows: np.ndarray, stored: np.ndarray, metric: Metric) -> np.ndarray:
        """Float64 distances (computed in float32) of ``queries[rows]`` to the stored rows ``stored``,
        with the stored squared norms (each gathered vector is read once)."""
        sq_q = squared_norms(queries)
        return np.concatenate([np.zeros(0), *(
            metric.paired(queries[rows[s:s + _RESCORE_PAIRS]], np.asarray(self.vectors[stored[s:s + _RESCORE_PAIRS]]),
                          np.float32, sq_q[rows[s:s + _RESCORE_PAIRS]], self._sq_norms[stored[s:s + _RESCORE_PAIRS]])
            for s in range(0, len(rows), _RESCORE_PAIRS))])

    def _rescore(self, queries: np.ndarray, rows: np.ndarray, metric: Metric) -> np.ndarray:
        """Float64 distances of each query to its (Q, c) stored rows, NaN (sorted last) for ``-1`` slots."""
        dists = np.full(rows.shape, np.nan)
        for q, row, out in zip(queries, rows, dists):
            valid = row >= 0
            gathered = np.asarray(self.vectors[row[valid]], dtype=np.float64)
            out[valid] = metric.pairwise(q[None].astype(np.float64), gathered)[0]
        return dists


def best_first(dists: np.ndarray, ids: np.ndarray, k: int, farthest: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each row of re-scored candidates (``-1`` ids with NaN distances last):
    ``(distances, ids)`` nearest (or farthest) first, ties by id, ``inf`` on ``-1`` slots."""
    order = np.lexsort((ids, -dists if farthest else dists), axis=1)
    dists, ids = np.take_along_axis(dists, order, 1)[:, :k], np.take_along_axis(ids, order, 1)[:, :k]
    return np.where(ids >= 0, dists, np.inf), ids


def _as_queries(queries: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(queries, dtype=np.float32))
