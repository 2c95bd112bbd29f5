"""Retrieval-quality metrics for image embeddings (numpy and FAISS only, no torch).

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

Neighbour lists (:func:`evaluate_neighbors`, e.g. the output of :func:`rerank`)
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

__all__ = [
    "DEFAULT_KS",
    "METRICS",
    "RetrievalEvaluation",
    "cmc_curve",
    "evaluate",
    "evaluate_neighbors",
    "rerank",
    "sample_comparative_sets",
]

METRICS = ("cosine", "l2")
DEFAULT_KS = (1, 5, 10)
COMPARATIVE_NEGATIVES = 99

_CHUNK_BYTES = 256 * 2**20  # bound on chunk_rows * N * 8 in evaluate()
_PAIR_CHUNK_BYTES = 32 * 2**20  # bound on gathered embedding rows in pair distances
_RERANK_CHUNK_ELEMENTS = 2**22  # bound on temporaries per chunk in rerank()
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
    Xf = _as_embeddings(X)
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
        dist_fn = _Distances(Xf, metric)
        b_max = min(rows_per_chunk, n_q)
        dist_buf = np.empty((b_max, n), np.float32)
        key_buf = np.empty((b_max, n), np.int64)
        for s in range(0, n_q, rows_per_chunk):
            e = min(s + rows_per_chunk, n_q)
            q = queries[s:e]
            b = e - s
            rows = np.arange(b)
            dist = dist_fn.rows(q, dist_buf[:b])
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


def rerank(
    X: np.ndarray,
    k: int = 100,
    k1: int = 20,
    k2: int = 6,
    lambda_: float = 0.3,
    metric: str = "cosine",
) -> tuple[np.ndarray, np.ndarray]:
    """k-reciprocal re-ranking (Zhong et al. 2017) of every image's top-k neighbours.

    Returns ``(indices (N, k), distances (N, k))`` (k clipped to N - 1, the image
    itself excluded), sorted by ``(1 - lambda_) * jaccard + lambda_ * original``; ties
    keep the original order.  Only neighbour lists are used, never an N x N matrix:
    exact top-(max(k, k1) + 1) lists from FAISS (IndexFlatIP on normalised vectors
    for cosine, IndexFlatL2 for l2), k-reciprocal sets and their expansion as in the
    paper's reference code, sparse V vectors weighted by ``exp(-distance)``, query
    expansion over the k2 nearest (self included), and Jaccard distances only for the
    candidates.  Differences from the reference code: distances are the metric's
    (cosine distance or plain Euclidean), divided by one global scale (the largest
    distance in the retrieved lists) rather than by per-column maxima over all N,
    and only the top-k candidates are re-ordered.
    """
    Xf = _as_embeddings(X)
    n = Xf.shape[0]
    metric = _check_metric(metric)
    if k < 1 or k1 < 1 or k2 < 1:
        raise ValueError("k, k1 and k2 must be >= 1")
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError("lambda_ must lie in [0, 1]")
    if n < 2:
        return np.empty((n, 0), np.int64), np.empty((n, 0), np.float32)
    k = min(int(k), n - 1)
    k1 = min(int(k1), n - 1)
    half = int(np.around(k1 / 2))
    width = max(k, k1) + 1
    k2 = min(int(k2), width)

    dist_fn = _Distances(Xf, metric)
    nbr, nbr_dist = _knn(Xf, width, dist_fn)
    scale = float(nbr_dist.max()) or 1.0
    recip = _reciprocal_sets(nbr, k1)
    recip_half = _reciprocal_sets(nbr, half)
    v = _expanded_weights(recip, recip_half, dist_fn, scale)
    if k2 > 1:
        v = _query_expansion(v, nbr[:, :k2])
    cand = nbr[:, 1 : k + 1]
    jaccard = _jaccard_distances(v, cand)
    final = (1.0 - lambda_) * jaccard + lambda_ * (nbr_dist[:, 1 : k + 1] / scale)
    order = np.argsort(final, axis=1, kind="stable")
    return (
        np.take_along_axis(cand, order, axis=1),
        np.take_along_axis(final, order, axis=1).astype(np.float32),
    )


# --------------------------------------------------------------------------- helpers


class _Distances:
    """Distances within one embedding matrix: whole rows (float32) or given pairs (float64)."""

    def __init__(self, X: np.ndarray, metric: str):
        self.X = X
        self.metric = metric
        n = X.shape[0]
        sq = np.empty(n, np.float64)
        step = max(1, _PAIR_CHUNK_BYTES // max(1, 8 * X.shape[1]))
        for s in range(0, n, step):
            block = X[s : s + step].astype(np.float64)
            sq[s : s + step] = np.einsum("ij,ij->i", block, block)
        self.sq = sq.astype(np.float32)
        with np.errstate(divide="ignore"):
            inv = np.where(sq > 0, 1.0 / np.sqrt(sq), 0.0)
        self.inv_norm = inv.astype(np.float32)

    def rows(self, q: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Distances from images ``q`` to all images, written into ``out`` (len(q), N)."""
        np.matmul(self.X[q], self.X.T, out=out)
        if self.metric == "cosine":
            out *= self.inv_norm[q, None]
            out *= self.inv_norm[None, :]
            np.subtract(np.float32(1.0), out, out=out)
        else:
            out *= np.float32(-2.0)
            out += self.sq[q, None]
            out += self.sq[None, :]
            np.maximum(out, 0.0, out=out)
            np.sqrt(out, out=out)
        return out

    def pairs(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Distances between images ``i[t]`` and ``j[t]`` (float64; exactly 0 where i == j)."""
        out = np.empty(i.size, np.float64)
        step = max(1, _PAIR_CHUNK_BYTES // max(1, 8 * self.X.shape[1]))
        for s in range(0, i.size, step):
            a, b = i[s : s + step], j[s : s + step]
            xa, xb = self.X[a], self.X[b]
            if self.metric == "cosine":
                cos = np.einsum("ij,ij->i", xa, xb, dtype=np.float64)
                out[s : s + step] = 1.0 - cos * self.inv_norm[a] * self.inv_norm[b]
            else:
                diff = xa - xb
                out[s : s + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff, dtype=np.float64))
        out[i == j] = 0.0
        return out


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


def _knn(X: np.ndarray, width: int, dist_fn: _Distances) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``width``-nearest lists (N, width) with the image itself in column 0.

    The other columns are sorted by (distance, index); ties at the list boundary are
    resolved by FAISS.
    """
    import faiss  # deferred: only re-ranking needs it

    n, d = X.shape
    if dist_fn.metric == "cosine":
        xn = np.ascontiguousarray(X * dist_fn.inv_norm[:, None], dtype=np.float32)
        index = faiss.IndexFlatIP(d)
        index.add(xn)
        sims, ids = index.search(xn, width)
        dist = 1.0 - sims
    else:
        index = faiss.IndexFlatL2(d)
        index.add(X)
        sq, ids = index.search(X, width)
        dist = np.sqrt(np.maximum(sq, 0.0))
    ids = ids.astype(np.int64)
    dist = np.maximum(dist, 0.0)
    keep = np.argsort(ids == np.arange(n)[:, None], axis=1, kind="stable")[:, : width - 1]
    ids = np.take_along_axis(ids, keep, axis=1)
    dist = np.take_along_axis(dist, keep, axis=1)
    order = np.lexsort((ids, dist), axis=1)
    ids = np.concatenate([np.arange(n)[:, None], np.take_along_axis(ids, order, axis=1)], axis=1)
    dist = np.concatenate([np.zeros((n, 1), dist.dtype), np.take_along_axis(dist, order, axis=1)], axis=1)
    return ids, dist.astype(np.float64)


def _reciprocal_sets(nbr: np.ndarray, k: int) -> np.ndarray:
    """k-reciprocal neighbours R(i, k) as (N, k + 1) ids, -1 where not reciprocal.

    j in the top k + 1 of i (self included) is kept when i is in the top k + 1 of j.
    """
    n = nbr.shape[0]
    fwd = nbr[:, : k + 1]
    out = np.empty_like(fwd)
    step = max(1, _RERANK_CHUNK_ELEMENTS // (k + 1) ** 2)
    for s in range(0, n, step):
        f = fwd[s : s + step]
        back = fwd[f]  # (b, k + 1, k + 1)
        mutual = (back == np.arange(s, s + f.shape[0])[:, None, None]).any(axis=2)
        out[s : s + step] = np.where(mutual, f, -1)
    return out


class _Sparse:
    """Row-compressed sparse rows: ``indptr`` (N + 1,), ``indices`` sorted per row, ``data``."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray):
        self.indptr, self.indices, self.data = indptr, indices, data

    @classmethod
    def from_chunks(cls, n: int, chunks: list) -> "_Sparse":
        rows = np.concatenate([c[0] for c in chunks])
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
        return cls(indptr, np.concatenate([c[1] for c in chunks]), np.concatenate([c[2] for c in chunks]))

    def row_of_entry(self) -> np.ndarray:
        return np.repeat(np.arange(self.indptr.size - 1), np.diff(self.indptr))


def _expanded_weights(recip: np.ndarray, recip_half: np.ndarray, dist_fn: _Distances, scale: float) -> _Sparse:
    """Sparse V: each image's expanded k-reciprocal set weighted by exp(-distance / scale), rows sum to 1.

    A candidate c of R(i, k1) adds its R(c, k1/2) when more than 2/3 of that set lies in R(i, k1).
    """
    n, w1 = recip.shape
    w2 = recip_half.shape[1]
    step = max(1, _RERANK_CHUNK_ELEMENTS // (w1 * w1 * w2))
    chunks = []
    for s in range(0, n, step):
        c = recip[s : s + step]
        b = c.shape[0]
        c_ok = c >= 0
        h = recip_half[np.where(c_ok, c, 0)]  # (b, w1, w2)
        h_ok = (h >= 0) & c_ok[:, :, None]
        inside = (h[..., None] == c[:, None, None, :]).any(axis=3) & h_ok
        take = c_ok & (3 * inside.sum(axis=2) > 2 * h_ok.sum(axis=2))
        members = np.concatenate([c, np.where(take[:, :, None] & h_ok, h, -1).reshape(b, -1)], axis=1)
        members.sort(axis=1)
        repeated = np.zeros_like(members, dtype=bool)
        repeated[:, 1:] = members[:, 1:] == members[:, :-1]
        members[repeated] = -1
        r, col = np.nonzero(members >= 0)  # row-major: ids ascending within each row
        ids = members[r, col]
        weight = np.exp(-dist_fn.pairs(s + r, ids) / scale)
        weight /= np.bincount(r, weights=weight, minlength=b)[r]
        chunks.append((s + r, ids, weight))
    return _Sparse.from_chunks(n, chunks)


def _query_expansion(v: _Sparse, nbr: np.ndarray) -> _Sparse:
    """Local query expansion: row i becomes the mean of the V rows of ``nbr[i]`` (self included)."""
    n, k2 = nbr.shape
    lengths_all = np.diff(v.indptr)
    step = max(1, _RERANK_CHUNK_ELEMENTS // max(1, k2 * int(lengths_all.max())))
    chunks = []
    for s in range(0, n, step):
        src = nbr[s : s + step].ravel()
        b = src.size // k2
        lengths = lengths_all[src]
        starts = v.indptr[src]
        pos = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        owner = np.repeat(np.repeat(np.arange(b), k2), lengths)
        keys, inverse = np.unique(owner * n + v.indices[pos], return_inverse=True)
        sums = np.bincount(inverse.ravel(), weights=v.data[pos]) / k2
        chunks.append((s + keys // n, keys % n, sums))
    return _Sparse.from_chunks(n, chunks)


def _jaccard_distances(v: _Sparse, cand: np.ndarray) -> np.ndarray:
    """``1 - sum(min(V_i, V_j)) / (2 - sum(min(V_i, V_j)))`` for every i and j in ``cand[i]``."""
    n, k = cand.shape
    entry_row = v.row_of_entry()
    global_keys = entry_row * n + v.indices  # sorted: rows ascending, ids ascending within a row
    out = np.empty((n, k))
    budget = max(1, _RERANK_CHUNK_ELEMENTS // max(1, k))
    s = 0
    while s < n:
        e = int(np.searchsorted(v.indptr, v.indptr[s] + budget, side="right")) - 1
        e = min(max(e, s + 1), n)
        lo, hi = v.indptr[s], v.indptr[e]
        look = cand[entry_row[lo:hi]] * n + v.indices[lo:hi, None]  # (entries, k)
        at = np.minimum(np.searchsorted(global_keys, look), global_keys.size - 1)
        shared = np.where(global_keys[at] == look, np.minimum(v.data[lo:hi, None], v.data[at]), 0.0)
        overlap = np.add.reduceat(shared, v.indptr[s:e] - lo, axis=0)  # every row holds its self entry
        out[s:e] = 1.0 - overlap / (2.0 - overlap)
        s = e
    return out


def _as_embeddings(X) -> np.ndarray:
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
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    return metric


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
