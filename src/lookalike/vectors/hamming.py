"""Hamming-distance search over packed binary codes (FAISS binary flat indexes): the perceptual-hash
candidates of dedup (:mod:`lookalike.phash`) and ORB descriptor matching (:mod:`lookalike.verify`).
FAISS is imported only here and in :mod:`lookalike.vectors.faiss_backend`."""

from __future__ import annotations

import numpy as np


def single_threaded() -> None:
    """Turn FAISS's OpenMP off in the calling thread (a pool thread that searches small code sets):
    one small search gains nothing from a thread team, and on a busy machine the team's spin-waits
    made each ORB comparison ~50x slower (780 against 10-17 ms a pair, load average 10)."""
    import faiss

    faiss.omp_set_num_threads(1)


def _flat(base: np.ndarray):
    import faiss

    index = faiss.IndexBinaryFlat(8 * base.shape[1])
    index.add(np.ascontiguousarray(base))
    return index


def within(base: np.ndarray, probes: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probe row, base row, differing bits) of every pair at most ``bits`` apart; codes are
    (N, bytes) uint8 rows."""
    lims, dist, labels = _flat(base).range_search(np.ascontiguousarray(probes), bits + 1)
    probe = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
    return probe, labels.astype(np.int64), dist.astype(np.int64)


def two_nearest(base: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances, rows), each (M, 2): the two base codes nearest to each query (row -1 where the
    base has fewer)."""
    return _flat(base).search(np.ascontiguousarray(queries), 2)
