"""The first stage: candidate pairs as CSR neighbour arrays, from the index's searcher (range
queries within a cosine radius) and, for a two-stage rule, from rotated/flipped perceptual hashes."""

from __future__ import annotations

import time

import numpy as np

from lookalike.dedup import phash
from lookalike.api import Index
from lookalike.dedup.rules import Rule
from lookalike.vectors import Backend, Searcher, get_metric
from lookalike.vectors.backend import RANGE_FIRST, RANGE_SLACK, RANGE_WIDEST

#: Query rows per range search.
CHUNK = 1024
#: Neighbours first fetched per file from an approximate index (more when all of them are close).
ANN_NEIGHBOURS = RANGE_FIRST
#: Most neighbours asked of an approximate index per file; a file with more close ones is scanned exactly.
ANN_WIDEST = RANGE_WIDEST
#: How far beyond the threshold an approximate distance may be for the pair to be re-scored.
ANN_SLACK = RANGE_SLACK
#: Pairs re-scored together (their gathered rows stay in the CPU caches).
_RESCORE = 1024
#: Most close pairs the exact search holds (16 bytes each); a threshold reaching more is refused.
MAX_PAIRS = 20_000_000
_COSINE = get_metric("cosine")


def neighbours(unit: np.ndarray, threshold: float, chunk: int = CHUNK,
               max_pairs: int = MAX_PAIRS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of rows of ``unit`` within ``threshold`` cosine distance, as CSR arrays (offsets,
    columns, distances): row ``i`` lists every other row ``j`` with ``1 - cos(u_i, u_j) <= threshold``.

    An exact range query, ``chunk`` query rows at a time. ValueError when more than ``max_pairs``
    (ordered) pairs are within the threshold.
    """
    rows = np.arange(len(unit))
    return _pairs_among(Searcher(rows, unit), unit, rows, threshold, chunk, max_pairs)


def ann_neighbours(ann: Backend, unit: np.ndarray, ids: np.ndarray, threshold: float, k: int = ANN_NEIGHBOURS,
                   chunk: int = CHUNK, max_pairs: int = MAX_PAIRS,
                   widest: int = ANN_WIDEST) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`neighbours`, but each row's candidates are its nearest in ``ann`` (whose ids for
    the rows are ``ids``); only candidates that are rows count.

    Each row first asks for its ``k`` nearest; a row whose farthest answer is still within reach of
    the threshold asks again for four times as many, until one is not (or all are fetched), so a
    photo with many copies loses none of them. Rows that would ask for more than ``widest`` are
    compared with every row instead (cheaper than a very wide approximate search). Candidates
    within :data:`ANN_SLACK` of the threshold by the index's approximate distance are re-scored on
    ``unit``. ValueError when more than ``max_pairs`` pairs are within the threshold.
    """
    return _pairs_among(Searcher(ids, unit, [ann]), unit, ids, threshold, chunk, max_pairs, first=k, widest=widest)


def _pairs_among(searcher: Searcher, vectors: np.ndarray, ids: np.ndarray, threshold: float, chunk: int,
                 max_pairs: int, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR pairs (offsets, columns, distances) among the rows ``vectors`` (stored in ``searcher``
    under ``ids``) within ``threshold``, by the searcher's range queries, ``chunk`` rows at a time.

    With ``nearest`` among the ``options`` (each row needs only its nearest), an approximate
    backend's candidates are re-scored here, each pair once however many of its two rows found it
    (the rows' nearest cross: about half the pairs are found from both sides), and every pair is
    listed under both rows."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    once = bool(options.get("nearest")) and not searcher.backend("cosine").exact
    csr = _Csr()
    for start in range(0, len(ids), chunk):
        queries = np.asarray(vectors[start:start + chunk], dtype=np.float32)
        offsets, found, d = searcher.within(queries, threshold, rescore=not once, **options)
        rows = np.repeat(np.arange(len(queries)), np.diff(offsets))
        pos = np.minimum(np.searchsorted(sorted_ids, found), len(ids) - 1)
        cols = order[pos]
        ok = (sorted_ids[pos] == found) & (cols != start + rows)
        csr.append(rows[ok], len(queries), cols[ok], d[ok])
        if not once:
            _check_pairs(len(csr), max_pairs, threshold)
    if not once:
        return csr.arrays()
    offsets, cols, _ = csr.arrays()
    rows = np.repeat(np.arange(len(ids)), np.diff(offsets))
    lo, hi = np.minimum(rows, cols), np.maximum(rows, cols)
    _, first = np.unique(lo * len(ids) + hi, return_index=True)
    lo, hi = lo[first], hi[first]
    d = _cosines(vectors, lo, hi, np.float32)
    ok = d <= threshold
    _check_pairs(int(ok.sum()) * 2, max_pairs, threshold)
    return _both_ways(len(ids), lo[ok], hi[ok], d[ok])


def _check_pairs(n_pairs: int, max_pairs: int, threshold: float) -> None:
    if n_pairs > max_pairs:
        raise ValueError(f"more than {max_pairs:,} pairs of images are within cosine distance {threshold}: "
                         "that is not a duplicate threshold; give a smaller --threshold")


class _Csr:
    """Neighbour lists appended chunk of rows by chunk, as CSR arrays (offsets, columns, distances)."""

    def __init__(self) -> None:
        self.offsets, self.columns, self.distances = [np.zeros(1, np.int64)], [], []

    def __len__(self) -> int:
        return int(self.offsets[-1][-1])

    def append(self, rows: np.ndarray, n_rows: int, columns: np.ndarray, distances: np.ndarray) -> None:
        """Pairs of the next ``n_rows`` rows; ``rows`` (ascending) are positions within the chunk."""
        self.offsets.append(self.offsets[-1][-1] + np.cumsum(np.bincount(rows, minlength=n_rows)))
        self.columns.append(columns.astype(np.int64))
        self.distances.append(np.maximum(distances, 0.0))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.offsets), np.concatenate([np.zeros(0, np.int64), *self.columns]),
                np.concatenate([np.zeros(0), *self.distances]))


def embedding_pairs(searcher: Searcher, vectors: np.ndarray | Rows, ids: np.ndarray, radius: float,
                    chunk: int = CHUNK, nearest: int = 0, close: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of ``vectors`` rows (images ``ids``) within ``radius`` cosine distance, as CSR
    arrays, by ``searcher``'s range queries (its ANN backend when it has one). With ``nearest``
    (k > 0) every row's k nearest within ``radius`` and every pair within ``close`` are enough: an
    approximate backend then stops short of the rest (an exact one gives them all)."""
    options = {"nearest": nearest, "close": close} if nearest else {}
    return _pairs_among(searcher, vectors, ids, radius, chunk, MAX_PAIRS, **options)


def embedding_candidates(searcher: Searcher, vectors: np.ndarray | Rows, ids: np.ndarray, rule: Rule,
                         stages: dict, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedding's candidate pairs of ``rule`` as CSR arrays: within its radius and, with
    ``rule.nearest``, only those among one side's nearest or within ``rule.close``. Counts and
    seconds go into ``stages`` (``embedding_pairs``: half the ordered pairs within the radius the
    search found; with ``rule.nearest`` through an approximate index, not all of them)."""
    tick = time.perf_counter()
    csr = embedding_pairs(searcher, vectors, ids, rule.radius, chunk, rule.nearest, rule.close)
    stages["embedding_pairs"] = len(csr[1]) // 2
    if rule.nearest:
        csr = nearest_only(csr, rule.nearest, rule.close)
        stages["embedding_pairs_nearest"] = len(csr[1]) // 2
    stages["embedding_seconds"] = round(time.perf_counter() - tick, 3)
    return csr


def _cosines(vectors: np.ndarray | Rows, a: np.ndarray, b: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Float64 cosine distances of the row pairs (``a[k]``, ``b[k]``) of ``vectors``, computed in
    ``dtype``, :data:`_RESCORE` pairs at a time."""
    return np.concatenate([np.zeros(0), *(_COSINE.paired(vectors[a[s:s + _RESCORE]], vectors[b[s:s + _RESCORE]], dtype)
                                          for s in range(0, len(a), _RESCORE))])


def _union(csr: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray, cols: np.ndarray,
           vectors: Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR neighbour arrays with the pairs (rows[k], cols[k]) added both ways (cosine distances of ``vectors``)."""
    offsets, columns, distances = csr
    base_rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    extra_d = _cosines(vectors, rows, cols)
    return _both_ways(len(offsets) - 1, np.concatenate([base_rows, rows]), np.concatenate([columns, cols]),
                      np.concatenate([distances, extra_d]))


def nearest_only(csr: tuple[np.ndarray, np.ndarray, np.ndarray], k: int, close: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR neighbour arrays keeping a pair only when one of its two rows has the other among its
    ``k`` nearest (ties by column) or the two are within ``close`` (a burst of near-identical shots
    stays one group)."""
    offsets, columns, distances = csr
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = _by_row_then_distance(rows, columns, distances)
    keep = order[(np.arange(len(order)) - offsets[rows[order]] < k) | (distances[order] <= close)]
    return _both_ways(len(offsets) - 1, rows[keep], columns[keep], distances[keep])


def ranks(offsets: np.ndarray, columns: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Each pair's rank among its row's pairs of CSR arrays, nearest first (0: the row's nearest; ties by column)."""
    rows = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    order = _by_row_then_distance(rows, columns, distances)
    out = np.empty(len(columns), np.int64)
    out[order] = np.arange(len(order)) - offsets[rows[order]]
    return out


def _by_row_then_distance(rows: np.ndarray, columns: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """The order of pairs by row, then distance, then column: one sort of ``row * 4 + distance``
    (distances are in [0, 2]); the few runs of equal keys (equal distances, or ones too close for
    float64 to tell apart after adding the row) are then sorted by distance and column."""
    distances = np.asarray(distances, np.float64)
    key = rows.astype(np.float64) * 4.0 + distances
    order = np.argsort(key, kind="stable")
    tied = np.flatnonzero(np.diff(key[order]) == 0)
    for start, stop in _runs(tied):
        run = order[start:stop + 2]
        order[start:stop + 2] = run[np.lexsort((columns[run], distances[run]))]
    return order


def _runs(positions: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of each run of consecutive integers in ascending ``positions``."""
    if not len(positions):
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1)
    return list(zip(positions[np.r_[0, breaks + 1]].tolist(), positions[np.r_[breaks, len(positions) - 1]].tolist()))


def _both_ways(n: int, rows: np.ndarray, cols: np.ndarray, distances: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays over ``n`` rows of the pairs (rows[k], cols[k]) in both directions, each once."""
    r = np.concatenate([rows, cols]).astype(np.int64)
    c = np.concatenate([cols, rows]).astype(np.int64)
    d = np.maximum(np.concatenate([distances, distances]), 0.0)
    _, first = np.unique(r * n + c, return_index=True)  # sorted by row, then column; each pair once
    r, c, d = r[first], c[first], d[first]
    return np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))]).astype(np.int64), c, d


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine distance of two vectors (float64)."""
    return float(_COSINE.paired(np.asarray(a)[None], np.asarray(b)[None])[0])


def candidate_pairs(index: Index, vectors: Rows, ids: np.ndarray, contents: list[str], paths: list[str], rule: Rule,
                    stages: dict, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First stage, as CSR arrays over the rows of ``vectors`` (images ``ids`` of content hashes
    ``contents`` at ``paths``): the embedding's candidates (:func:`embedding_candidates`, through
    the index's searcher) and, for a two-stage rule, pairs whose hashes match under a rotation or
    flip (:mod:`lookalike.dedup.phash`); (offsets, columns, distances, hashed: whether each pair's
    hashes match). Counts and seconds go into ``stages``."""
    offsets, columns, distances = embedding_candidates(index.searcher(), vectors, ids, rule, stages, chunk)
    csr = offsets, columns, distances, np.zeros(len(columns), bool)
    if rule.verified:
        tick = time.perf_counter()
        table, readable = index.hashes.get(contents, paths)
        csr = hash_candidates(csr[:3], table, readable, vectors, rule, stages)
        stages["hash_seconds"] = round(time.perf_counter() - tick, 3)
    stages["candidate_pairs"] = len(csr[1]) // 2
    return csr


def hash_candidates(csr: tuple[np.ndarray, np.ndarray, np.ndarray], table: np.ndarray, readable: np.ndarray,
                    vectors: np.ndarray | Rows, rule: Rule, stages: dict
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``csr`` with the pairs of readable rows whose dihedral hashes (``table``, (N, 8, 8)) match
    within ``rule.hash_radius`` bits added (their cosine distances from ``vectors``), and a fourth
    array: whether each pair is one of those; the count goes into ``stages``."""
    i, j, _, _ = phash.pairs(table, rule.hash_radius)
    ok = readable[i] & readable[j]
    stages["hash_pairs"] = int(ok.sum())
    offsets, columns, distances = _union(csr, i[ok], j[ok], vectors)
    n = len(offsets) - 1
    rows = np.repeat(np.arange(n), np.diff(offsets))
    matched = np.concatenate([i[ok] * n + j[ok], j[ok] * n + i[ok]]).astype(np.int64)
    return offsets, columns, distances, np.isin(rows * n + columns, matched)


class Rows:
    """Rows ``rows`` of ``vectors`` sliced like an array, gathered only when a slice is read."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        self.vectors, self.rows = vectors, rows

    def __getitem__(self, part: slice | np.ndarray) -> np.ndarray:
        return np.asarray(self.vectors[self.rows[part]])
