"""Approximate nearest-neighbour backends over FAISS.

An :class:`AnnIndex` holds float32 feature vectors under caller-given int64 ids
and answers nearest and farthest queries with distances in the units of exact
search, so exact and approximate results can be mixed:

* ``"cosine"``: distance ``1 - cosine similarity``. Vectors are L2-normalised
  and searched by inner product.
* ``"l2"``: Euclidean distance (the square root of FAISS's squared L2).

Kinds:

* ``"flat"``: exact brute force (``IndexFlat``); the ground truth.
* ``"hnsw"``: HNSW graph over 8-bit scalar-quantised (default) or raw vectors,
  optionally after a PCA projection. SQ8 at full dimension is the default: on
  100k 1280-d embedding-like vectors it kept recall@10 at 0.993, where PCA to
  256 dims (88% of the variance) fell to 0.86. 1M vectors take ~1.5 GB.
* ``"ivfpq"``: inverted lists with product-quantised residuals, optionally
  after a PCA projection. Compact (~25 MB per 100k) but recall@10 is ~0.77 at
  100k; use it with ``refine`` (0.995).
* ``"auto"``: ``flat`` up to :data:`AUTO_EXACT_ELEMENTS` vector elements
  (25,000 vectors at 1280-d), ``hnsw`` above (see :func:`choose_kind`).

Farthest queries (``mode="farthest"``, ordered farthest first):

* cosine, every kind: the farthest vector from ``q`` is the nearest to ``-q``
  under inner product on unit vectors, so the ANN structure itself answers it.
* l2: no such identity exists, so an exact chunked scan runs over the vectors
  as the index stores them (raw for flat; SQ-decoded, PQ-decoded and/or
  PCA-projected for hnsw/ivfpq). It costs one pass over the collection per
  batch: at 100k 1280-d, 76 ms (flat) and 280 ms (HNSW SQ8 decoding).

With ``pca`` and the cosine metric the projection is applied without centring,
so inner products are kept up to a per-query constant and ``-q`` stays valid.

Removal is native for flat and ivfpq (``remove_ids``). HNSW graphs cannot drop
nodes, so removed positions become tombstones filtered out during the graph
search; :attr:`AnnIndex.needs_rebuild` turns true once they are a large share.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

METRICS = ("cosine", "l2")
KINDS = ("flat", "hnsw", "ivfpq")
MODES = ("nearest", "farthest")

#: ``auto`` uses exact search while ``n * dim`` is at most this (25k x 1280-d).
#: Measured on a shared 2-core machine, one exact 1280-d query costs 0.2-0.5 ms
#: per 1,000 vectors (~10 ms at 25k, 26 ms at 50k, 19-48 ms at 100k, varying
#: with load) against 0.15-0.35 ms for HNSW at recall@10 >= 0.99 up to 100k:
#: past ~25k exact is >25x slower and reaches a noticeable ~10 ms.
AUTO_EXACT_ELEMENTS = 25_000 * 1280

#: Farthest queries widen the default ``ef_search`` / ``nprobe`` by this factor.
#: The far side of a query is a flat region for graph search: at 100k 1280-d
#: vectors HNSW farthest recall@10 is 0.60 at ef 64 and 0.96 at ef 512 (2.2 ms);
#: at 1M 0.48 at ef 512 and 0.80 at ef 2048 (7 ms), the mean distance of the
#: results staying within 1% of the exact farthest.
FARTHEST_SEARCH_FACTOR = 8

#: Tombstoned share of an HNSW index above which a rebuild is advised.
REBUILD_DELETED_FRACTION = 0.25
#: An IVF-PQ index grown past this multiple of its size at build should be retrained.
REBUILD_GROWTH = 4.0

#: Smaller query batches search on one OpenMP thread: FAISS gains little from
#: threads on a single query, and on busy cores (2-core laptop, other work
#: running) the thread hand-off made a 10k flat query 4-20x slower (10-44 ms
#: against 2.2 ms, passive or spinning OpenMP waits).
PARALLEL_MIN_QUERIES = 20

_PARAM_KEYS = {
    "flat": set(),
    "hnsw": {"M", "ef_construction", "ef_search", "storage", "pca"},
    "ivfpq": {"nlist", "nprobe", "m", "nbits", "pca"},
}
_SCAN_ROWS = 16_384
_TRAIN_MAX = 100_000


def choose_kind(kind: str, n: int, dim: int = 1280) -> str:
    """Resolve ``kind`` for a collection of ``n`` vectors of ``dim`` dimensions.

    ``"auto"`` gives ``"flat"`` while ``n * dim <= AUTO_EXACT_ELEMENTS`` and
    ``"hnsw"`` above; any other valid kind is returned unchanged.
    """
    if kind == "auto":
        return "flat" if n * dim <= AUTO_EXACT_ELEMENTS else "hnsw"
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS + ('auto',)}")
    return kind


def default_params(kind: str, n: int, dim: int) -> dict:
    """Default parameters of ``kind`` for ``n`` training vectors of ``dim`` dimensions.

    hnsw: ``M=32, ef_construction=40, storage="sq8", pca=None`` and
    ``ef_search=None``, meaning :func:`hnsw_ef_search` of the live count at
    query time.
    ivfpq: ``nlist = 4*sqrt(n)`` clamped to ``[1, n // 39]`` (FAISS wants ~39
    training points per centroid), ``nprobe=16``, ``m`` = the largest divisor
    of the (projected) dimension not above ``dim // 8``, ``nbits = min(8,
    floor(log2 n))`` because 2**nbits codewords need as many training points.
    """
    if kind == "flat":
        return {}
    if kind == "hnsw":
        return {"M": 32, "ef_construction": 40, "ef_search": None, "storage": "sq8", "pca": None}
    if kind == "ivfpq":
        n = max(int(n), 1)
        nlist = max(1, min(int(round(4 * math.sqrt(n))), n // 39, 65_536))
        return {
            "nlist": nlist,
            "nprobe": min(16, nlist),
            "m": _largest_divisor_at_most(dim, max(1, dim // 8)),
            "nbits": min(8, int(math.log2(n))),
            "pca": None,
        }
    raise ValueError(f"unknown kind {kind!r}")


def hnsw_ef_search(n: int) -> int:
    """Default HNSW ``ef_search`` for ``n`` live vectors: 64 up to 100k, ~256 at 1M, at most 1024.

    Measured on 1280-d embedding-like data (M=32, SQ8): recall@10 0.993 at
    100k with ef 64; at 1M 0.907 / 0.933 / 0.957 with ef 64 / 128 / 256
    (p50 0.35 / 0.49 / 0.65 ms).
    """
    return int(min(1024, 64 * max(1.0, n / 100_000) ** 0.6))


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray, k: int) -> float:
    """Share of the exact top-``k`` ids (``-1`` ignored) found in the approximate top-``k``, pooled over rows."""
    approx_ids = np.asarray(approx_ids)[:, :k]
    exact_ids = np.asarray(exact_ids)[:, :k]
    hits = total = 0
    for a, e in zip(approx_ids, exact_ids):
        e = e[e >= 0]
        hits += np.intersect1d(a[a >= 0], e).size
        total += e.size
    return hits / total if total else 1.0


def exact_search(
    queries: np.ndarray,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    k: int,
    metric: str = "cosine",
    mode: str = "nearest",
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-``k`` over ``(vectors, ids)`` chunks, without holding them all.

    Returns ``(distances, ids)`` of shape ``(Q, k)`` as :meth:`AnnIndex.search`
    does: nearest ascending or farthest descending, ``inf``/``-1`` padding.
    """
    _check_choice("metric", metric, METRICS)
    _check_choice("mode", mode, MODES)
    q = _prepare(queries, metric)
    scan = _TopK(q.shape[0], k)
    for vectors, ids in chunks:
        vectors = _as_matrix(vectors, q.shape[1])
        ids = np.asarray(ids, dtype=np.int64)
        for start in range(0, vectors.shape[0], _SCAN_ROWS):
            x = _prepare(vectors[start : start + _SCAN_ROWS], metric)
            scan.push(_scores(q, x, metric, mode), ids[start : start + _SCAN_ROWS])
    return scan.result(metric, mode)


def check(
    index: AnnIndex, vectors: np.ndarray, ids: np.ndarray, n_queries: int = 100, k: int = 10, seed: int = 0
) -> dict:
    """Recall@k of ``index`` against exact search over ``(vectors, ids)`` and its query latency.

    Queries are ``n_queries`` rows drawn from ``vectors`` (each finds itself in
    both result lists, as a collection query does). Latencies are single-query,
    in milliseconds.
    """
    vectors = _as_matrix(vectors, index.dim)
    rng = np.random.default_rng(seed)
    rows = rng.choice(vectors.shape[0], size=min(n_queries, vectors.shape[0]), replace=False)
    queries = vectors[rows]
    _, exact = exact_search(queries, [(vectors, ids)], k, metric=index.metric)
    found = np.empty_like(exact)
    times = []
    for i, q in enumerate(queries):
        t0 = time.perf_counter()
        found[i] = index.search(q[None], k)[1][0]
        times.append((time.perf_counter() - t0) * 1e3)
    return {
        "kind": index.kind,
        "ntotal": index.ntotal,
        "k": k,
        "n_queries": len(rows),
        f"recall@{k}": recall_at_k(found, exact, k),
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
    }


class AnnIndex:
    """Vectors under int64 ids, searchable exactly or approximately (see the module docstring)."""

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        metric: str,
        dim: int,
        params: dict,
        build_count: int,
        tombstones: Iterable[int] = (),
    ):
        """Wrap a built FAISS index; use :meth:`build` or :meth:`load` instead."""
        self.kind, self.metric, self.dim, self.params, self.build_count = kind, metric, dim, params, build_count
        self._index = index
        self._id_map = None
        self._pre = None
        if kind == "ivfpq":
            core = index
        else:
            core = faiss.downcast_index(index.index)
            self._id_map = faiss.vector_to_array(index.id_map)
        if isinstance(core, faiss.IndexPreTransform):
            self._pre = faiss.downcast_VectorTransform(core.chain.at(0))
            core = faiss.downcast_index(core.index)
        self._ann = core
        self._tombstones = np.array(sorted(tombstones), dtype=np.int64)
        self._selector = None
        self._sorted_ids = None

    @classmethod
    def build(
        cls, vectors: np.ndarray, ids: np.ndarray, metric: str = "cosine", kind: str = "auto", **params
    ) -> AnnIndex:
        """Build an index of ``kind`` over ``vectors`` (N, D) float32 with unique non-negative ``ids``.

        Parameters default from ``N`` (:func:`default_params`) and may be
        overridden by keyword. ``ivfpq`` falls back to ``flat`` below 16
        vectors (too few to train 4-bit codebooks) and ``pca`` is dropped
        when there are fewer vectors than its output dimensions;
        ``describe()`` reports what was actually built.
        """
        _check_choice("metric", metric, METRICS)
        x = _prepare(vectors, metric)
        n, dim = x.shape
        ids = _check_ids(ids, n)
        kind = choose_kind(kind, n, dim)
        if kind == "ivfpq" and n < 16:
            kind, params = "flat", {}
        unknown = set(params) - _PARAM_KEYS[kind]
        if unknown:
            raise ValueError(f"unknown parameters for {kind}: {sorted(unknown)}")
        if params.get("pca") is not None:
            if not 0 < params["pca"] <= dim:
                raise ValueError(f"pca must be in 1..{dim}, got {params['pca']}")
            if params["pca"] > n:  # a projection needs at least as many points as outputs
                params = {**params, "pca": None}
        p = {**default_params(kind, n, params.get("pca") or dim), **params}
        rows = max(_TRAIN_MAX, 50 * p.get("nlist", 0))
        train = x[np.sort(np.random.default_rng(0).choice(n, rows, replace=False))] if n > rows else x
        index = _new_index(kind, metric, dim, p, train)
        index.add_with_ids(x, ids)
        return cls(index, kind, metric, dim, p, build_count=n)

    @property
    def ntotal(self) -> int:
        """Number of live (not removed) vectors."""
        return int(self._index.ntotal) - self._tombstones.size

    @property
    def needs_rebuild(self) -> bool:
        """True when tombstones exceed :data:`REBUILD_DELETED_FRACTION` of stored vectors,
        or an IVF-PQ index holds over :data:`REBUILD_GROWTH` times the vectors it was built with."""
        stored = int(self._index.ntotal)
        if stored and self._tombstones.size / stored > REBUILD_DELETED_FRACTION:
            return True
        return self.kind == "ivfpq" and stored > REBUILD_GROWTH * self.build_count

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Add ``vectors`` (N, D) under ``ids``, which must not be live in the index already."""
        x = _prepare(vectors, self.metric, self.dim)
        ids = _check_ids(ids, x.shape[0])
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.ids())
        new = np.sort(ids)
        at = np.searchsorted(self._sorted_ids, new)
        present = at < self._sorted_ids.size
        present[present] = self._sorted_ids[at[present]] == new[present]
        if present.any():
            raise ValueError(f"ids already in the index: {new[present][:10].tolist()}")
        self._index.add_with_ids(x, ids)
        self._sorted_ids = np.insert(self._sorted_ids, at, new)
        self._refresh_id_map()

    def remove(self, ids: np.ndarray) -> int:
        """Remove the live vectors with these ids; returns how many were removed."""
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        self._sorted_ids = None
        if self.kind != "hnsw":
            removed = int(self._index.remove_ids(faiss.IDSelectorBatch(ids)))
            self._refresh_id_map()
            return removed
        hit = np.flatnonzero(np.isin(self._id_map, ids))
        hit = np.setdiff1d(hit, self._tombstones)
        self._tombstones = np.union1d(self._tombstones, hit)
        self._selector = None
        return int(hit.size)

    def ids(self) -> np.ndarray:
        """The live ids, in storage order."""
        if self._id_map is not None:
            return np.delete(self._id_map, self._tombstones)
        invlists = self._ann.invlists
        parts = [
            faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
            for lst in range(self._ann.nlist)
            if invlists.list_size(lst)
        ]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)

    def search(
        self,
        queries: np.ndarray,
        k: int,
        mode: str = "nearest",
        ef_search: int | None = None,
        nprobe: int | None = None,
        refine: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
        refine_factor: int = 4,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query (Q, D): ``(distances, ids)``, both (Q, k).

        ``nearest`` is ordered by ascending distance, ``farthest`` by descending
        distance. Slots beyond the live count hold id ``-1`` and distance
        ``inf``. ``ef_search`` (hnsw) and ``nprobe`` (ivfpq) override the
        defaults for this call (defaults times :data:`FARTHEST_SEARCH_FACTOR`
        for farthest). ``refine`` supplies raw vectors, as an array
        indexed by id or a callable mapping an id array to rows; then
        ``refine_factor * k`` candidates are re-scored exactly and the best
        ``k`` kept, making distances exact for approximate kinds. Batches
        under :data:`PARALLEL_MIN_QUERIES` queries run on one OpenMP thread.
        """
        _check_choice("mode", mode, MODES)
        if k < 1:
            raise ValueError("k must be >= 1")
        q = _prepare(queries, self.metric, self.dim)
        refining = refine is not None and self.kind != "flat"
        fetch = k * refine_factor if refining else k
        with _omp_threads(1 if q.shape[0] < PARALLEL_MIN_QUERIES else None):
            if mode == "farthest" and self.metric == "l2":
                dist, ids = self._scan_farthest(q, fetch)
            else:
                dist, ids = self._search_ann(q, fetch, mode, ef_search, nprobe)
        if refining:
            dist, ids = self._rescore(q, ids, refine, k, mode)
        return dist, ids

    def describe(self) -> dict:
        """Kind, metric, dimension, sizes, parameters and rebuild advice, JSON-serialisable."""
        return {
            "kind": self.kind,
            "metric": self.metric,
            "dim": self.dim,
            "ntotal": self.ntotal,
            "stored": int(self._index.ntotal),
            "tombstones": int(self._tombstones.size),
            "build_count": self.build_count,
            "needs_rebuild": self.needs_rebuild,
            "params": dict(self.params),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the FAISS index to ``path`` and its JSON sidecar to ``path + ".json"``, atomically each."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self._index, str(tmp))
        os.replace(tmp, path)
        meta = {
            "format": 1,
            "kind": self.kind,
            "metric": self.metric,
            "dim": self.dim,
            "params": self.params,
            "count": self.ntotal,
            "build_count": self.build_count,
            "tombstones": self._tombstones.tolist(),
        }
        side = _sidecar(path)
        tmp = side.with_name(side.name + ".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, side)

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnnIndex:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        meta = json.loads(_sidecar(path).read_text())
        if meta.get("format") != 1:
            raise ValueError(f"unsupported ANN index format in {_sidecar(path)}")
        index = cls(
            faiss.read_index(str(path)),
            meta["kind"],
            meta["metric"],
            meta["dim"],
            meta["params"],
            meta["build_count"],
            meta["tombstones"],
        )
        if index.ntotal != meta["count"]:
            raise ValueError(f"{path} holds {index.ntotal} vectors, its sidecar says {meta['count']}")
        return index

    def _search_ann(self, q, k, mode, ef_search, nprobe):
        """Search the FAISS structure; cosine farthest searches ``-q``."""
        internal = self._pre.apply(q) if self._pre is not None else q
        if mode == "farthest":
            internal = -internal
        params = None
        widen = FARTHEST_SEARCH_FACTOR if mode == "farthest" else 1
        if self.kind == "hnsw":
            ef = ef_search or widen * (self.params["ef_search"] or hnsw_ef_search(self.ntotal))
            params = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=self._tombstone_selector())
        elif self.kind == "ivfpq":
            nprobe = nprobe or widen * self.params["nprobe"]
            params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.params["nlist"]))
        raw, labels = self._ann.search(internal, k, params=params)
        if self._id_map is not None:
            labels = np.where(labels >= 0, self._id_map[np.maximum(labels, 0)], -1)
        missing = labels < 0
        if self.metric == "cosine":
            dist = 1.0 + raw if mode == "farthest" else 1.0 - raw
        else:
            dist = np.sqrt(np.maximum(raw, 0.0))
        dist = np.where(missing, np.inf, dist).astype(np.float32)
        return dist, labels

    def _scan_farthest(self, q, k):
        """Exact l2 farthest over the stored (possibly decoded / projected) vectors."""
        internal = self._pre.apply(q) if self._pre is not None else q
        return exact_search(internal, self._stored_chunks(), k, metric="l2", mode="farthest")

    def _stored_chunks(self):
        """Yield ``(vectors, ids)`` of live stored vectors in the index's internal space."""
        if self.kind == "ivfpq":
            yield from self._ivf_chunks()
            return
        n = self._id_map.size
        if self.kind == "flat":
            stored = faiss.rev_swig_ptr(self._ann.get_xb(), n * self._ann.d).reshape(n, self._ann.d)
            yield stored, self._id_map  # flat has no tombstones; exact_search reads it in slices
            return
        storage = faiss.downcast_index(self._ann.storage)
        alive = np.ones(n, dtype=bool)
        alive[self._tombstones] = False
        for start in range(0, n, _SCAN_ROWS):
            stop = min(start + _SCAN_ROWS, n)
            keep = alive[start:stop]
            yield storage.reconstruct_n(start, stop - start)[keep], self._id_map[start:stop][keep]

    def _ivf_chunks(self):
        """Decode the IVF-PQ inverted lists into ``(vectors, ids)`` chunks."""
        ivf, invlists = self._ann, self._ann.invlists
        for lst in range(ivf.nlist):
            size = invlists.list_size(lst)
            if not size:
                continue
            codes = faiss.rev_swig_ptr(invlists.get_codes(lst), size * invlists.code_size).copy()
            ids = faiss.rev_swig_ptr(invlists.get_ids(lst), size).copy()
            x = ivf.pq.decode(codes.reshape(size, -1))
            if ivf.by_residual:
                x += ivf.quantizer.reconstruct(lst)
            yield x, ids

    def _rescore(self, q, ids, refine, k, mode):
        """Re-rank candidate ``ids`` by exact distance on raw vectors from ``refine``."""
        valid = ids >= 0
        raw = refine(ids[valid]) if callable(refine) else np.asarray(refine)[ids[valid]]
        rows = np.zeros((*ids.shape, self.dim), dtype=np.float32)
        rows[valid] = _prepare(raw, self.metric, self.dim)
        if self.metric == "cosine":
            dist = 1.0 - np.einsum("qkd,qd->qk", rows, q)
        else:
            dist = np.sqrt(np.maximum(((rows - q[:, None, :]) ** 2).sum(-1), 0.0))
        sign = -1.0 if mode == "farthest" else 1.0
        dist = np.where(valid, dist, np.inf if mode == "nearest" else -np.inf)
        order = np.argsort(sign * dist, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(ids, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
        return np.where(ids >= 0, dist, np.inf).astype(np.float32), ids

    def _tombstone_selector(self):
        """An ``IDSelector`` excluding tombstoned positions, or None without tombstones."""
        if not self._tombstones.size:
            return None
        if self._selector is None:
            batch = faiss.IDSelectorBatch(self._tombstones)
            self._selector = (batch, faiss.IDSelectorNot(batch))  # keep both alive
        return self._selector[1]

    def _refresh_id_map(self):
        if self._id_map is not None:
            self._id_map = faiss.vector_to_array(self._index.id_map)


class _TopK:
    """Running top-``k`` by score (higher is better) over streamed chunks."""

    def __init__(self, nq: int, k: int):
        self.k = k
        self.scores = np.full((nq, k), -np.inf, dtype=np.float32)
        self.ids = np.full((nq, k), -1, dtype=np.int64)

    def push(self, scores: np.ndarray, ids: np.ndarray) -> None:
        scores = np.concatenate([self.scores, scores.astype(np.float32)], axis=1)
        ids = np.concatenate([self.ids, np.broadcast_to(ids, scores.shape[:1] + ids.shape)], axis=1)
        top = np.argpartition(-scores, self.k - 1, axis=1)[:, : self.k]
        self.scores = np.take_along_axis(scores, top, axis=1)
        self.ids = np.take_along_axis(ids, top, axis=1)

    def result(self, metric: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-self.scores, axis=1, kind="stable")
        scores = np.take_along_axis(self.scores, order, axis=1)
        ids = np.take_along_axis(self.ids, order, axis=1)
        value = scores if mode == "nearest" else -scores  # similarity (cosine) or -d^2 (l2)
        dist = 1.0 - value if metric == "cosine" else np.sqrt(np.maximum(-value, 0.0))
        ids = np.where(np.isfinite(scores), ids, -1)
        return np.where(ids >= 0, dist, np.inf).astype(np.float32), ids


def _scores(q: np.ndarray, x: np.ndarray, metric: str, mode: str) -> np.ndarray:
    """Scores to maximise: similarity or ``-d^2`` for nearest, their negation for farthest."""
    if metric == "cosine":
        s = q @ x.T
    else:
        s = 2.0 * (q @ x.T) - np.einsum("ij,ij->i", q, q)[:, None] - np.einsum("ij,ij->i", x, x)[None, :]
    return s if mode == "nearest" else -s


def _new_index(kind: str, metric: str, dim: int, p: dict, train: np.ndarray) -> faiss.Index:
    """FAISS index for ``kind`` trained on ``train``; records ``pca_variance`` in ``p``."""
    ftype = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    pca = None
    d = p.get("pca") or dim
    if p.get("pca"):
        pca = faiss.PCAMatrix(dim, d)
        pca.train(train)
        eig = faiss.vector_to_array(pca.eigenvalues)
        p["pca_variance"] = round(float(eig[:d].sum() / max(eig.sum(), 1e-30)), 4)
        if metric == "cosine":
            # Project without centring: inner products are then kept up to a per-query constant.
            faiss.copy_array_to_vector(np.zeros(d, dtype=np.float32), pca.b)
        train = pca.apply(train)
    if kind == "flat":
        core = faiss.IndexFlat(d, ftype)
    elif kind == "hnsw":
        if p["storage"] == "sq8":
            core = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_8bit, p["M"], ftype)
        elif p["storage"] == "flat":
            core = faiss.IndexHNSWFlat(d, p["M"], ftype)
        else:
            raise ValueError(f"hnsw storage must be 'sq8' or 'flat', got {p['storage']!r}")
        core.hnsw.efConstruction = p["ef_construction"]
    else:
        if d % p["m"]:
            raise ValueError(f"m={p['m']} must divide the (projected) dimension {d}")
        core = faiss.IndexIVFPQ(faiss.IndexFlat(d, ftype), d, p["nlist"], p["m"], p["nbits"], ftype)
        core.cp.niter = 10
        core.cp.min_points_per_centroid = 1  # nlist and nbits are already clamped to the data
        core.pq.cp.min_points_per_centroid = 1
    if not core.is_trained:
        core.train(train)
    index = faiss.IndexPreTransform(pca, core) if pca is not None else core
    return index if kind == "ivfpq" else faiss.IndexIDMap2(index)


@contextmanager
def _omp_threads(n: int | None):
    """Run the block with ``n`` OpenMP threads in this thread (unchanged if None)."""
    if n is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _prepare(vectors: np.ndarray, metric: str, dim: int | None = None) -> np.ndarray:
    """Float32 C-contiguous (N, D) array, L2-normalised for cosine (zero rows stay zero)."""
    x = _as_matrix(vectors, dim)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms > 0, norms, 1.0)
    return np.ascontiguousarray(x, dtype=np.float32)


def _as_matrix(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ValueError(f"expected a (N, {dim or 'D'}) array, got shape {x.shape}")
    return x


def _check_ids(ids: np.ndarray, n: int) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64).ravel()
    if ids.size != n:
        raise ValueError(f"{ids.size} ids for {n} vectors")
    if ids.size and ids.min() < 0:
        raise ValueError("ids must be non-negative")
    if np.unique(ids).size != n:
        raise ValueError("ids must be unique")
    return ids


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; expected one of {allowed}")


def _largest_divisor_at_most(n: int, cap: int) -> int:
    return max(m for m in range(1, min(n, cap) + 1) if n % m == 0)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")
