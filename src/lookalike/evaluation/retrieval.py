"""Retrieval-quality metrics for image embeddings (NumPy only, no torch).

Protocols
---------
Leave-one-out retrieval (:func:`evaluate`)
    Every image queries all the other ``N - 1`` images.  The positives of a query
    are the other images of its class.  Queries whose class has a single image have
    no positive and are excluded from every metric (``n_queries`` counts the rest).

    * ``recall@k``: fraction of queries with at least one positive in the top k
      (k larger than ``N - 1`` simply means the whole ranking).
    * ``map``: mean average precision over the full ranking of the ``N - 1`` others,
      ``AP = (1/P) * sum_i i / rank_i`` where ``rank_i`` is the 1-based rank of the
      i-th positive and ``P`` the number of positives.
    * ``map@r`` (Musgrave et al. 2020, "A metric learning reality check"): with
      ``R = P``, ``AP@R = (1/R) * sum_{i : rank_i <= R} i / rank_i``.
    * ``median_rank``: median over queries of the rank of the first positive.

Comparative sets (:func:`sample_comparative_sets`; Microsoft's image-similarity recipes)
    Each query gets one random positive and 99 random negatives (fewer when fewer
    exist); the positive's rank within that set of distances is reported as its
    median and as ``recall@k`` (fraction of queries whose positive ranks ``<= k``).

Neighbour lists (:func:`evaluate_neighbors`, e.g. the output of :func:`lookalike.evaluation.rerank.rerank`)
    The same metrics computed over a given top-K list per image; positives missing
    from the list count as missed (they add nothing to AP, and a query without any
    positive in its list has first-positive rank ``inf``).  mAP is then the mean AP
    over the top-K list, normalised by the number of positives in the whole dataset.

Tie rule (pessimistic)
    Ranks are taken on float32 distances (cosine: ``1 - cos``, zero vectors at
    distance 1 from everything; l2: Euclidean).  Among candidates at exactly the same
    distance, negatives rank before positives, so the rank of a positive is the
    number of negatives at a distance ``<=`` its own plus its index among the
    positives.  Every metric here is invariant to the order of positives among
    themselves, so this rule fully determines the results, and they do not depend on
    the order of the images: a degenerate embedding (say, all vectors equal) scores
    as badly as it is, not by the luck of index order.  The comparative protocol uses
    the same rule: the positive's rank is ``1 + #(sampled negatives at distance <=
    the positive's)``.

Memory
    :func:`evaluate` processes queries in chunks of rows, each holding the chunk's
    distances to all N images (float32) plus one int64 sort key per distance, so the
    working set is about ``13 * chunk_rows * N`` bytes on top of the embeddings
    themselves; by default ``chunk_rows * N * 8 <= 256 MiB``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lookalike.vectors.metric import get_metric, squared_norms

__all__ = [
    "DEFAULT_KS",
    "RetrievalEvaluation",
    "cmc_curve",
    "evaluate",
    "evaluate_neighbors",
    "sample_comparative_sets",
]

DEFAULT_KS = (1, 5, 10)
COMPARATIVE_NEGATIVES = 99

_CHUNK_BYTES = 256 * 2**20  # bound on chunk_rows * N * 8 in evaluate()
_PAIR_CHUNK_BYTES = 32 * 2**20  # bound on gathered embedding rows in pair distances
_SENTINEL = np.iinfo(np.int64).max  # sort key that puts the query itself last


@dataclass(frozen=True, eq=False)
class RetrievalEvaluation:
    """Per-query results of one evaluation; :meth:`summary` aggregates them.

    All arrays are aligned with ``query_ids`` (the images that have a positive).
    ``first_positive_rank`` is 1-based, float, ``inf`` when no positive was retrieved
    (only possible with neighbour lists).  ``comparative_rank`` is the rank of the
    sampled positive in its comparative set, ``None`` for neighbour lists.
    """

    metric: str
    n_images: int
    n_classes: int
    ks: tuple[int, ...]
    query_ids: np.ndarray
    average_precision: np.ndarray
    average_precision_at_r: np.ndarray
    first_positive_rank: np.ndarray
    comparative_rank: np.ndarray | None = None

    @property
    def n_queries(self) -> int:
        return int(self.query_ids.size)

    def recall_at(self, k: int) -> float:
        """Fraction of queries with a positive among their top k (NaN without queries)."""
        return _fraction_at_most(self.first_positive_rank, k)

    def summary(self) -> dict:
        """Aggregate metrics: the keys described in the module docstring, ``recall@k`` per k in ``ks``."""
        out: dict = {
            "n_images": self.n_images,
            "n_classes": self.n_classes,
            "n_queries": self.n_queries,
            "metric": self.metric,
        }
        for k in self.ks:
            out[f"recall@{k}"] = self.recall_at(k)
        out["map"] = _mean(self.average_precision)
        out["map@r"] = _mean(self.average_precision_at_r)
        out["median_rank"] = _median(self.first_positive_rank)
        if self.comparative_rank is None:
            out["comparative"] = None
        else:
            comp = {"median_rank": _median(self.comparative_rank)}
            for k in self.ks:
                comp[f"recall@{k}"] = _fraction_at_most(self.comparative_rank, k)
            out["comparative"] = comp
        return out

    def map_by_class(self, labels: Sequence | np.ndarray) -> dict:
        """``{label: {"queries": n, "map": mean AP}}`` of every class with a query, ``labels`` being
        every image's class (those given to :func:`evaluate`): the per-class terms of ``map``."""
        labels = np.asarray(labels)[self.query_ids]
        classes, codes = np.unique(labels, return_inverse=True)
        n = np.bincount(codes, minlength=classes.size)
        sums = np.bincount(codes, weights=self.average_precision, minlength=classes.size)
        return {c.item(): {"queries": int(k), "map": float(a / k)} for c, k, a in zip(classes, n, sums)}


def evaluate(
    X: np.ndarray,
    labels: Sequence | np.ndarray,
    metric: str = "cosine",
    ks: Sequence[int] = DEFAULT_KS,
    chunk_rows: int | None = None,
    comparative_seed: int = 0,
) -> RetrievalEvaluation:
    """Leave-one-out retrieval metrics of embeddings ``X`` (N, D) with class ``labels`` (N,).

    Each image with a same-class other ranks all N - 1 others by ``metric`` ("cosine":
    1 - cos, "l2": Euclidean), with the pessimistic tie rule: at equal float32 distance
    negatives rank before positives.  Queries are processed ``chunk_rows`` at a time
    (default: as many as keep ``chunk_rows * N * 8`` bytes under 256 MiB); the result
    does not depend on the chunking.  ``comparative_seed`` seeds the comparative sets
    (see :func:`sample_comparative_sets`).  Returns per-query arrays; ``.summary()``
    aggregates them.
    """
    Xf = as_embeddings(X)
    n = Xf.shape[0]
    codes, n_classes = _as_labels(labels, n)
    metric = _check_metric(metric)
    ks = _check_ks(ks)
    rows_per_chunk = _chunk_rows(chunk_rows, n)

    n_pos = _positives_per_image(codes)
    queries = np.flatnonzero(n_pos > 0)
    n_q = queries.size
    comp_pos, comp_neg = _sample_comparative(codes, queries, COMPARATIVE_NEGATIVES, comparative_seed)

    ap = np.empty(n_q)
    ap_r = np.empty(n_q)
    first = np.empty(n_q)
    comp_rank = np.empty(n_q)
    if n_q:
        sq_norms = squared_norms(Xf)
        b_max = min(rows_per_chunk, n_q)
        dist_buf = np.empty((b_max, n), np.float32)
        key_buf = np.empty((b_max, n), np.int64)
        for s in range(0, n_q, rows_per_chunk):
            e = min(s + rows_per_chunk, n_q)
            q = queries[s:e]
            b = e - s
            rows = np.arange(b)
            dist = dist_buf[:b]
            dist[...] = get_metric(metric).pairwise(Xf[q], Xf, sq_norms)
            # Non-negative float32 values order like their bit patterns read as int32;
            # clipping those at 0 also turns -0.0 and tiny negative rounding into +0.0.
            dbits = dist.view(np.int32)
            np.maximum(dbits, 0, out=dbits)

            negs = comp_neg[s:e]
            d_pos = dbits[rows, comp_pos[s:e]]
            d_neg = dbits[rows[:, None], negs]  # -1 padding reads the last column, masked below
            comp_rank[s:e] = 1 + ((d_neg <= d_pos[:, None]) & (negs >= 0)).sum(axis=1)

            # key = distance bits * 2 + is_positive: sorting the keys orders by distance
            # with negatives before positives at equal distance (the pessimistic rule).
            keys = key_buf[:b]
            np.left_shift(dbits, 1, out=keys, dtype=np.int64)
            keys |= codes[None, :] == codes[q, None]
            keys[rows, q] = _SENTINEL
            keys.sort(axis=1)
            np.bitwise_and(keys, 1, out=keys)
            hit_rows, hit_cols = np.nonzero(keys[:, : n - 1].astype(bool))
            ap[s:e], ap_r[s:e], first[s:e] = _rank_metrics(hit_rows, hit_cols + 1.0, n_pos[q])

    return RetrievalEvaluation(
        metric=metric,
        n_images=n,
        n_classes=n_classes,
        ks=ks,
        query_ids=queries,
        average_precision=ap,
        average_precision_at_r=ap_r,
        first_positive_rank=first,
        comparative_rank=comp_rank,
    )


def evaluate_neighbors(
    indices: np.ndarray,
    labels: Sequence | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "neighbors",
) -> RetrievalEvaluation:
    """Retrieval metrics over given ranked neighbour lists ``indices`` (N, K), row i for image i.

    Entries equal to -1 (FAISS padding) or to the query itself are skipped, and ranks
    count the remaining entries.  Positives outside a list count as missed, so AP is
    over the top-K list (normalised by all positives of the class) and a query with
    no positive in its list has first-positive rank ``inf``.  ``metric`` is only
    recorded (e.g. ``"cosine+rerank"``).  No comparative sets: ``comparative`` is None.
    """
    codes, n_classes = _as_labels(labels, None)
    n = codes.size
    idx = np.asarray(indices)
    if idx.ndim != 2 or idx.shape[0] != n or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"indices must be an integer array of shape ({n}, K), got {idx.dtype} {idx.shape}")
    if idx.size and (idx.max() >= n or idx.min() < -1):
        raise ValueError("indices must lie in [-1, N)")
    ks = _check_ks(ks)

    n_pos = _positives_per_image(codes)
    queries = np.flatnonzero(n_pos > 0)
    lists = idx[queries].astype(np.int64)
    valid = (lists >= 0) & (lists != queries[:, None])
    marked = np.where(valid, lists, -1)
    marked.sort(axis=1)
    if np.any((marked[:, 1:] == marked[:, :-1]) & (marked[:, 1:] >= 0)):
        raise ValueError("a neighbour list contains the same image twice")

    ranks = np.cumsum(valid, axis=1)
    hits = valid & (codes[np.where(valid, lists, 0)] == codes[queries, None])
    hit_rows, hit_cols = np.nonzero(hits)
    ap, ap_r, first = _rank_metrics(hit_rows, ranks[hit_rows, hit_cols].astype(np.float64), n_pos[queries])
    return RetrievalEvaluation(
        metric=str(metric),
        n_images=n,
        n_classes=n_classes,
        ks=ks,
        query_ids=queries,
        average_precision=ap,
        average_precision_at_r=ap_r,
        first_positive_rank=first,
        comparative_rank=None,
    )


def cmc_curve(first_positive_ranks: np.ndarray, max_k: int) -> np.ndarray:
    """Recall@k for k = 1..max_k (the CMC curve) from 1-based first-positive ranks; NaN if empty."""
    ranks = np.asarray(first_positive_ranks, dtype=np.float64).ravel()
    if max_k < 1:
        raise ValueError("max_k must be >= 1")
    if ranks.size == 0:
        return np.full(max_k, np.nan)
    finite = ranks[np.isfinite(ranks)]
    counts = np.bincount(np.minimum(finite, max_k + 1).astype(np.int64), minlength=max_k + 2)
    return np.cumsum(counts[1 : max_k + 1]) / ranks.size


def sample_comparative_sets(
    labels: Sequence | np.ndarray,
    n_negatives: int = COMPARATIVE_NEGATIVES,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Comparative sets: ``(query_ids (Q,), positives (Q,), negatives (Q, n_negatives))``.

    For every image with at least one other image of its class: one positive drawn
    uniformly from those others and ``min(n_negatives, #other-class images)`` distinct
    negatives drawn uniformly from the other classes; rows are padded with -1.  The
    draw depends only on ``labels``, ``n_negatives`` and ``seed``.
    """
    codes, _ = _as_labels(labels, None)
    if n_negatives < 0:
        raise ValueError("n_negatives must be >= 0")
    queries = np.flatnonzero(_positives_per_image(codes) > 0)
    positives, negatives = _sample_comparative(codes, queries, int(n_negatives), seed)
    return queries, positives, negatives


# --------------------------------------------------------------------------- helpers


def _rank_metrics(rows: np.ndarray, ranks: np.ndarray, n_pos: np.ndarray):
    """Per-query AP, AP@R and first-positive rank from the positives' 1-based ranks.

    ``rows``/``ranks`` list the retrieved positives row-major (ascending rank within a
    row); ``n_pos`` is each query's number of positives in the whole dataset (= R).
    """
    n_rows = n_pos.size
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    hit_no = np.arange(rows.size) - starts[rows] + 1  # i: this is the i-th positive retrieved
    precision = hit_no / ranks
    ap = np.bincount(rows, weights=precision, minlength=n_rows) / n_pos
    within_r = ranks <= n_pos[rows]
    ap_r = np.bincount(rows, weights=precision * within_r, minlength=n_rows) / n_pos
    first = np.full(n_rows, np.inf)
    is_first = hit_no == 1
    first[rows[is_first]] = ranks[is_first]
    return ap, ap_r, first


def _sample_comparative(codes: np.ndarray, queries: np.ndarray, n_negatives: int, seed: int):
    """One positive and up to ``n_negatives`` distinct negatives per query (-1 padded)."""
    rng = np.random.default_rng(seed)
    n = codes.size
    counts = np.bincount(codes)
    by_class = np.argsort(codes, kind="stable")  # images grouped by class, ascending ids
    class_start = np.cumsum(counts) - counts
    slot = np.arange(n) - class_start[codes[by_class]]  # position of by_class[t] in its class
    rank_in_class = np.empty(n, np.int64)
    rank_in_class[by_class] = slot
    cq = codes[queries]

    # Positive: uniform over the class minus the query itself.
    r = rng.integers(0, counts[cq] - 1) if queries.size else np.empty(0, np.int64)
    r = r + (r >= rank_in_class[queries])
    positives = by_class[class_start[cq] + r]

    # Negatives: distinct positions p among the class's non-members, then mapped to the
    # p-th non-member id = p + #{members m : (#non-members before m) <= p}.
    positions = _distinct_draws(rng, n - counts[cq], n_negatives)
    offset = n + 1  # keeps the per-class key ranges disjoint and globally sorted
    members_key = codes[by_class] * offset + (by_class - slot)
    before = np.searchsorted(members_key, cq[:, None] * offset + positions, side="right")
    negatives = np.where(positions >= 0, positions + before - class_start[cq][:, None], -1)
    return positives, negatives


def _distinct_draws(rng: np.random.Generator, population: np.ndarray, size: int) -> np.ndarray:
    """Per row, ``min(size, population)`` distinct uniform draws from ``[0, population)``, -1 padded.

    Rows with ``population <= size`` take everything; the others use Floyd's
    algorithm, vectorised across rows.
    """
    out = np.full((population.size, size), -1, np.int64)
    cols = np.arange(size)
    small = population <= size
    out[small] = np.where(cols < population[small, None], cols, -1)
    big = np.flatnonzero(~small)
    if big.size and size:
        pop = population[big]
        chosen = np.empty((big.size, size), np.int64)
        for step in range(size):
            j = pop - size + step
            t = rng.integers(0, j + 1)
            seen = (chosen[:, :step] == t[:, None]).any(axis=1)
            chosen[:, step] = np.where(seen, j, t)
        out[big] = chosen
    return out


def as_embeddings(X) -> np.ndarray:
    """``X`` as a float32 C-contiguous (N, D) array; ValueError when not 2-D or not finite."""
    Xf = np.ascontiguousarray(X, dtype=np.float32)
    if Xf.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (N, D), got shape {Xf.shape}")
    step = max(1, _PAIR_CHUNK_BYTES // max(1, 4 * Xf.shape[1]))
    for s in range(0, Xf.shape[0], step):
        if not np.isfinite(Xf[s : s + step]).all():
            raise ValueError("embeddings contain NaN or infinite values")
    return Xf


def _as_labels(labels, n: int | None) -> tuple[np.ndarray, int]:
    """Labels as class codes 0..C-1 (int64) and the number of classes C."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise ValueError(f"labels must be 1-D of length {n if n is not None else 'N'}, got shape {arr.shape}")
    classes, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64).ravel(), int(classes.size)


def _positives_per_image(codes: np.ndarray) -> np.ndarray:
    return np.bincount(codes)[codes] - 1 if codes.size else np.zeros(0, np.int64)


def _check_metric(metric: str) -> str:
    return get_metric(metric).name


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(k) for k in ks)
    if not out or min(out) < 1:
        raise ValueError("ks must be a non-empty sequence of integers >= 1")
    return out


def _chunk_rows(chunk_rows: int | None, n: int) -> int:
    if chunk_rows is None:
        return max(1, _CHUNK_BYTES // (8 * max(1, n)))
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    return int(chunk_rows)


def _fraction_at_most(ranks: np.ndarray, k: int) -> float:
    return float(np.mean(ranks <= k)) if ranks.size else float("nan")


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if values.size else float("nan")


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")
