"""The FAISS backend: HNSW, IVF-PQ or exact (flat) structures under caller-given int64 ids.

The only module that imports FAISS. A :class:`FaissBackend` answers the
:class:`~lookalike.vectors.backend.Backend` protocol with distances in the metric's units (see
:mod:`lookalike.vectors.ann` for the kinds and their defaults):

* cosine: vectors are L2-normalised and searched by inner product; the farthest from ``q`` are the
  nearest to ``-q`` (the metric's farthest trick), so the ANN structure itself answers farthest queries.
* l2: Euclidean (the square root of FAISS's squared L2). Farthest has no trick, so an exact chunked
  scan runs over the vectors as the index stores them (raw for exact; SQ-decoded, PQ-decoded and/or
  PCA-projected for hnsw/ivfpq): one pass per batch (at 100k 1280-d, 76 ms exact, 280 ms HNSW SQ8).
* range queries (:meth:`FaissBackend.within`) ask each query's nearest, widening while all of them
  are close, up to a limit beyond which the query is left to the searcher's exact scan.

With ``pca`` and the cosine metric the projection is applied without centring, so inner products are
kept up to a per-query constant and ``-q`` stays valid. Removal is native for exact and ivfpq
(``remove_ids``). HNSW graphs cannot drop nodes, so removed positions become tombstones filtered out
during the graph search; :attr:`FaissBackend.needs_rebuild` turns true once they are a large share.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from lookalike.vectors.ann import FARTHEST_SEARCH_FACTOR, choose_kind, default_params, hnsw_ef_search
from lookalike.vectors.backend import (CHUNK_ROWS, RANGE_FIRST, RANGE_NEAREST_FACTOR, RANGE_NEAREST_SLACK, RANGE_SLACK,
                                      RANGE_WIDEST, to_csr, top_k)
from lookalike.vectors.metric import Metric, get_metric

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
    "exact": set(),
    "hnsw": {"M", "ef_construction", "ef_search", "storage", "pca"},
    "ivfpq": {"nlist", "nprobe", "m", "nbits", "pca"},
}
_TRAIN_MAX = 100_000
_ADD_ROWS = 65_536



class FaissBackend:
    """Vectors under int64 ids in a FAISS structure (see the module docstring)."""

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        metric: str | Metric,
        dim: int,
        params: dict,
        build_count: int,
        tombstones: Iterable[int] = (),
    ):
        """Wrap a built FAISS index; use :meth:`build` or :meth:`load` instead."""
        self.kind, self.dim, self.params, self.build_count = kind, dim, params, build_count
        self.metric = get_metric(metric)
        self.exact = kind == "exact"
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
    ) -> FaissBackend:
        """Build an index of ``kind`` over ``vectors`` (N, D) float32 with unique non-negative ``ids``.

        Parameters default from ``N`` (:func:`default_params`) and may be
        overridden by keyword. ``ivfpq`` falls back to ``exact`` below 16
        vectors (too few to train 4-bit codebooks), ``hnsw`` with no vectors
        (nothing to train its quantizer on), and ``pca`` is dropped
        when there are fewer vectors than its output dimensions;
        ``describe()`` reports what was actually built.
        """
        metric = get_metric(metric)
        if np.ndim(vectors) != 2:
            raise ValueError(f"expected a (N, D) array, got shape {np.shape(vectors)}")
        n, dim = np.shape(vectors)
        ids = _check_ids(ids, n)
        kind = choose_kind(kind, n, dim)
        if kind == "ivfpq" and n < 16 or kind == "hnsw" and n == 0:
            kind, params = "exact", {}
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
        sample = np.sort(np.random.default_rng(0).choice(n, rows, replace=False)) if n > rows else slice(None)
        index = _new_index(kind, metric, dim, p, _prepare(vectors[sample], metric))
        # added chunk by chunk: a memory-mapped collection larger than RAM is never copied whole
        for start in range(0, n, _ADD_ROWS):
            index.add_with_ids(_prepare(vectors[start:start + _ADD_ROWS], metric), ids[start:start + _ADD_ROWS])
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

    def __len__(self) -> int:
        return self.ntotal

    def nearest(self, queries: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None,
                **options) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each query (Q, D) by ascending distance: ``(distances, ids)``, both (Q, k).

        Slots beyond the live count hold id ``-1`` and distance ``inf``. ``ef_search`` (hnsw) and
        ``nprobe`` (ivfpq) override the defaults for this call. Batches under
        :data:`PARALLEL_MIN_QUERIES` queries run on one OpenMP thread.
        """
        q = self._queries(queries, k)
        with _omp_threads(1 if q.shape[0] < PARALLEL_MIN_QUERIES else None):
            return self._search_ann(q, k, False, ef_search, nprobe)

    def farthest(self, queries: np.ndarray, k: int, ef_search: int | None = None, nprobe: int | None = None,
                 **options) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`nearest`, by descending distance; ``ef_search`` / ``nprobe`` default to
        :data:`~lookalike.vectors.ann.FARTHEST_SEARCH_FACTOR` times wider."""
        q = self._queries(queries, k)
        far = self.metric.far_query(q)
        with _omp_threads(1 if q.shape[0] < PARALLEL_MIN_QUERIES else None):
            if far is None:
                internal = self._pre.apply(q) if self._pre is not None else q
                return top_k(internal, self._stored_chunks(), k, self.metric, farthest=True)
            return self._search_ann(far, k, True, ef_search, nprobe)

    def within(self, queries: np.ndarray, radius: float, first: int = RANGE_FIRST, widest: int = RANGE_WIDEST,
               slack: float = RANGE_SLACK, nearest: int = 0, close: float = 0.0,
               **options) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Range query by nearest searches: each query asks for ``first`` neighbours (plus itself),
        four times as many while its farthest answer is still within ``slack`` of what it needs
        (by the index's approximate distance); one that would ask for more than ``widest`` is left
        unfinished. A query needs every id within ``radius``; with ``nearest`` (k > 0) only its k
        nearest within ``radius`` and every id within ``close``: it first asks for
        :data:`RANGE_NEAREST_FACTOR` times k and widens only while its farthest answer is within
        ``slack`` of ``close`` or within :data:`RANGE_NEAREST_SLACK` of its k-th nearest answer (so
        the ids it has not seen are farther than its k nearest; IVF-PQ: ``slack``). Candidates are
        those within that reach."""
        queries = np.atleast_2d(queries)
        if nearest:
            first = max(first, RANGE_NEAREST_FACTOR * nearest)
        # IVF-PQ's coarse codes: the radius's slack; SQ8 or float storage: a small one
        near_slack = slack if self.kind == "ivfpq" else min(slack, RANGE_NEAREST_SLACK)
        pending, width = np.arange(len(queries)), first + 1
        rows, ids, dists = [np.zeros(0, np.intp)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        while len(pending) and width <= widest + 1:
            approx, found = self.nearest(queries[pending], width, **options)
            reach = np.full(len(pending), radius + slack, np.float32)
            if 0 < nearest < width:  # the k-th answer after the query itself; inf when missing
                reach = np.minimum(reach, np.maximum(close + slack, approx[:, nearest] + near_slack))
            more = (found[:, -1] >= 0) & (approx[:, -1] <= reach) & (width < self.ntotal)
            r, slot = np.nonzero((found >= 0) & (approx <= reach[:, None]) & ~more[:, None])
            rows.append(pending[r])
            ids.append(found[r, slot])
            dists.append(approx[r, slot])
            pending, width = pending[more], width * 4
        rows = np.concatenate(rows)
        order = np.argsort(rows, kind="stable")
        unfinished = np.zeros(len(queries), bool)
        unfinished[pending] = True
        return (*to_csr(len(queries), rows[order], np.concatenate(ids)[order], np.concatenate(dists)[order]),
                unfinished)

    def describe(self) -> dict:
        """Kind, metric, dimension, sizes, parameters and rebuild advice, JSON-serialisable."""
        return {
            "kind": self.kind,
            "metric": self.metric.name,
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
            "metric": self.metric.name,
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
    def load(cls, path: str | os.PathLike) -> FaissBackend:
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

    def _queries(self, queries: np.ndarray, k: int) -> np.ndarray:
        if k < 1:
            raise ValueError("k must be >= 1")
        return _prepare(queries, self.metric, self.dim)

    def _search_ann(self, q, k, far, ef_search, nprobe):
        """Search the FAISS structure with normalised queries (``far``: the metric's far queries)."""
        internal = self._pre.apply(q) if self._pre is not None else q
        params = None
        widen = FARTHEST_SEARCH_FACTOR if far else 1
        if self.kind == "hnsw":
            ef = ef_search or widen * (self.params["ef_search"] or hnsw_ef_search(self.ntotal))
            params = faiss.SearchParametersHNSW(efSearch=max(ef, k), sel=self._tombstone_selector())
        elif self.kind == "ivfpq":
            nprobe = nprobe or widen * self.params["nprobe"]
            params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.params["nlist"]))
        raw, labels = self._ann.search(internal, k, params=params)
        if self._id_map is not None:  # (an index of no vectors has an empty map and finds nothing)
            labels = np.where(labels >= 0, self._id_map[np.maximum(labels, 0)], -1) if self._id_map.size else labels
        dist = self.metric.far_distance(raw) if far else self.metric.to_distance(raw)
        return np.where(labels < 0, np.inf, dist).astype(np.float32), labels

    def _stored_chunks(self):
        """Yield ``(vectors, ids)`` of live stored vectors in the index's internal space."""
        if self.kind == "ivfpq":
            yield from self._ivf_chunks()
            return
        n = self._id_map.size
        if self.kind == "exact":
            stored = faiss.rev_swig_ptr(self._ann.get_xb(), n * self._ann.d).reshape(n, self._ann.d)
            yield stored, self._id_map  # flat has no tombstones; top_k reads it in slices
            return
        storage = faiss.downcast_index(self._ann.storage)
        alive = np.ones(n, dtype=bool)
        alive[self._tombstones] = False
        for start in range(0, n, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, n)
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


def _new_index(kind: str, metric: Metric, dim: int, p: dict, train: np.ndarray) -> faiss.Index:
    """FAISS index for ``kind`` trained on ``train``; records ``pca_variance`` in ``p``."""
    ftype = faiss.METRIC_INNER_PRODUCT if metric.inner_product else faiss.METRIC_L2
    pca = None
    d = p.get("pca") or dim
    if p.get("pca"):
        pca = faiss.PCAMatrix(dim, d)
        pca.train(train)
        eig = faiss.vector_to_array(pca.eigenvalues)
        p["pca_variance"] = round(float(eig[:d].sum() / max(eig.sum(), 1e-30)), 4)
        if metric.inner_product:
            # Project without centring: inner products are then kept up to a per-query constant.
            faiss.copy_array_to_vector(np.zeros(d, dtype=np.float32), pca.b)
        train = pca.apply(train)
    if kind == "exact":
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


def _prepare(vectors: np.ndarray, metric: Metric, dim: int | None = None) -> np.ndarray:
    """Float32 C-contiguous (N, D) array as ``metric`` stores it."""
    return metric.normalise(_as_matrix(vectors, dim))


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


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")
