"""Exact search over all vectors: nearest (ascending), farthest (descending) and random samples.

Vectors are scanned in chunks, so memory stays bounded by the chunk size however large the index
(a memory-mapped array is read chunk by chunk). The selected results' distances are recomputed in
float64, so an image found by itself is at distance 0.
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class Mode(str, Enum):
    """Which results a query returns: nearest first, farthest first, or a uniform sample."""

    nearest = "nearest"
    farthest = "farthest"
    random = "random"


class Metric(str, Enum):
    """``cosine``: 1 - cosine similarity; ``l2``: Euclidean distance on the raw features."""

    cosine = "cosine"
    l2 = "l2"


METRICS = tuple(m.value for m in Metric)
MODES = tuple(m.value for m in Mode)
CHUNK_ROWS = 32768


def check_options(metric: str, mode: str, k: int) -> None:
    """ValueError with a one-line message for an unknown metric or mode, or k < 1."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from: {', '.join(METRICS)}")
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")


def squared_norms(vectors: np.ndarray, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Squared L2 norm of every row, computed chunk by chunk (works on memory-mapped arrays)."""
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), chunk_rows):
        chunk = np.asarray(vectors[start:start + chunk_rows], dtype=np.float32)
        out[start:start + len(chunk)] = np.einsum("ij,ij->i", chunk, chunk)
    return out


def pairwise(queries: np.ndarray, vectors: np.ndarray, metric: str, sq_norms: np.ndarray | None = None) -> np.ndarray:
    """(Q, N) distances: ``1 - cosine similarity`` or Euclidean, in the dtype of the inputs.

    ``sq_norms`` are the rows' squared norms when already known (see :func:`squared_norms`).
    """
    if sq_norms is None:
        sq_norms = np.einsum("ij,ij->i", vectors, vectors)
    if metric == "cosine":
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        return np.clip(1.0 - (qn @ vectors.T) / np.maximum(np.sqrt(sq_norms), 1e-12), 0.0, 2.0)
    sq = np.einsum("ij,ij->i", queries, queries)[:, None] - 2.0 * (queries @ vectors.T) + sq_norms[None, :]
    return np.sqrt(np.maximum(sq, 0.0))


def search(queries: np.ndarray, vectors: np.ndarray, k: int, metric: str = "cosine", mode: str = "nearest",
           seed: int | None = None, chunk_rows: int = CHUNK_ROWS,
           sq_norms: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (distances, positions), each (Q, min(k, N)), positions indexing rows of ``vectors``.

    Pass ``sq_norms`` (from :func:`squared_norms`) to avoid recomputing them for every query.

    ``nearest`` sorts ascending, ``farthest`` descending; ``random`` draws a uniform sample without
    replacement per query from ``np.random.default_rng(seed)``, in drawing order.
    """
    check_options(metric, mode, k)
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n = len(vectors)
    k = min(k, n)
    if k == 0:
        return np.zeros((len(queries), 0)), np.zeros((len(queries), 0), np.int64)
    if mode == "random":
        rng = np.random.default_rng(seed)
        positions = np.stack([rng.choice(n, size=k, replace=False) for _ in queries])
    else:
        sign = 1.0 if mode == "nearest" else -1.0
        best_d = np.full((len(queries), 0), np.inf, np.float32)
        best_i = np.zeros((len(queries), 0), np.int64)
        for start in range(0, n, chunk_rows):
            chunk = np.asarray(vectors[start:start + chunk_rows], dtype=np.float32)
            norms = None if sq_norms is None else sq_norms[start:start + chunk_rows]
            d = sign * pairwise(queries, chunk, metric, norms)
            take = min(k, d.shape[1])
            part = np.argpartition(d, take - 1, axis=1)[:, :take]
            best_d = np.concatenate([best_d, np.take_along_axis(d, part, 1)], axis=1)
            best_i = np.concatenate([best_i, part + start], axis=1)
            if best_d.shape[1] > k:
                keep = np.argpartition(best_d, k - 1, axis=1)[:, :k]
                best_d = np.take_along_axis(best_d, keep, 1)
                best_i = np.take_along_axis(best_i, keep, 1)
        positions = best_i
    exact = np.stack([pairwise(q[None].astype(np.float64), np.asarray(vectors[p], np.float64), metric)[0]
                      for q, p in zip(queries, positions)])
    if mode != "random":
        order = np.lexsort((positions, exact if mode == "nearest" else -exact), axis=1)
        exact = np.take_along_axis(exact, order, 1)
        positions = np.take_along_axis(positions, order, 1)
    return exact, positions
