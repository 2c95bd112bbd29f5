"""k-reciprocal re-ranking of every image's nearest neighbours (Zhong et al. 2017), from
neighbour lists only: no N x N matrix."""

from __future__ import annotations

import numpy as np

from lookalike.evaluation.retrieval import as_embeddings
from lookalike.vectors import ExactBackend, Metric, get_metric

_RERANK_CHUNK_ELEMENTS = 2**22  # bound on temporaries per chunk in rerank()
_PAIR_CHUNK_BYTES = 32 * 2**20  # bound on gathered embedding rows in pair distances


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
    exact top-(max(k, k1) + 1) lists (:class:`~lookalike.vectors.ExactBackend`), k-reciprocal sets and their expansion as in the
    paper's reference code, sparse V vectors weighted by ``exp(-distance)``, query
    expansion over the k2 nearest (self included), and Jaccard distances only for the
    candidates.  Differences from the reference code: distances are the metric's
    (cosine distance or plain Euclidean), divided by one global scale (the largest
    distance in the retrieved lists) rather than by per-column maxima over all N,
    and only the top-k candidates are re-ordered.
    """
    Xf = as_embeddings(X)
    n = Xf.shape[0]
    metric = get_metric(metric)
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

    nbr, nbr_dist = _knn(Xf, width, metric)
    scale = float(nbr_dist.max()) or 1.0
    recip = _reciprocal_sets(nbr, k1)
    recip_half = _reciprocal_sets(nbr, half)
    v = _expanded_weights(recip, recip_half, Xf, metric, scale)
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


def _knn(X: np.ndarray, width: int, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``width``-nearest lists (N, width) with the image itself in column 0.

    The other columns are sorted by (distance, index).
    """
    n = X.shape[0]
    dist, ids = ExactBackend(np.arange(n), X, metric).nearest(X, width)
    dist = np.maximum(dist, 0.0)
    keep = np.argsort(ids == np.arange(n)[:, None], axis=1, kind="stable")[:, : width - 1]
    ids = np.take_along_axis(ids, keep, axis=1)
    dist = np.take_along_axis(dist, keep, axis=1)
    order = np.lexsort((ids, dist), axis=1)
    ids = np.concatenate([np.arange(n)[:, None], np.take_along_axis(ids, order, axis=1)], axis=1)
    dist = np.concatenate([np.zeros((n, 1), dist.dtype), np.take_along_axis(dist, order, axis=1)], axis=1)
    return ids, dist.astype(np.float64)


def _pair_distances(X: np.ndarray, metric: Metric, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Distances between images ``i[t]`` and ``j[t]`` (float64; exactly 0 where i == j)."""
    out = np.empty(i.size, np.float64)
    step = max(1, _PAIR_CHUNK_BYTES // max(1, 8 * X.shape[1]))
    for s in range(0, i.size, step):
        out[s : s + step] = metric.paired(X[i[s : s + step]], X[j[s : s + step]])
    out[i == j] = 0.0
    return out


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


def _expanded_weights(recip: np.ndarray, recip_half: np.ndarray, X: np.ndarray, metric: Metric,
                      scale: float) -> _Sparse:
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
        weight = np.exp(-_pair_distances(X, metric, s + r, ids) / scale)
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
