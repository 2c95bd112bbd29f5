"""Searching a Milvus collection with exact distances, holding none of its vectors.

:class:`CollectionSearcher` answers as :class:`~lookalike.vectors.Searcher` does (the same methods,
the same result arrays), asking Milvus for candidates and re-scoring them in float64 on the vectors
Milvus returns with them, so every distance equals the embedded index's:

* nearest (cosine): a Milvus search asking :data:`~lookalike.vectors.searcher.REFINE_FACTOR` times
  the results wanted, vectors included; farthest (cosine): the nearest to −q (cos(−q, x) = −cos(q, x));
* l2, and ``exact`` unless the index is FLAT (exact itself): a scan of every vector, a page at a
  time (the collection's index is cosine);
* random: :func:`sample_ids`, a seeded uniform sample that never lists the collection's ids;
* within (dedup): a Milvus range search (exact on a FLAT index; a scan for queries whose hits fill
  its result limit, and for l2 or ``exact`` on any other index).
"""

from __future__ import annotations

import numpy as np

from lookalike.cluster.milvus import HNSW_EF, MAX_HITS, cosine_range
from lookalike.vectors.backend import scan_within, to_csr, top_k
from lookalike.vectors.metric import Metric, Mode, get_metric
from lookalike.vectors.searcher import REFINE_FACTOR, best_first

#: Collections up to this size draw random samples from their listed ids.
SMALL = 4096
#: Files expected per id range of the random sampler (the collection's size over the ranges).
PER_RANGE = 32
#: Most files an id range may hold for the sample to be uniform (a range holds Poisson(32) files:
#: more than 256 happens with probability below 10⁻¹⁰⁰).
RANGE_CAP = 256


class _Kind:
    """What a caller may ask of the searcher's backend: whether it is exact."""

    def __init__(self, exact: bool) -> None:
        self.exact = exact


class CollectionSearcher:
    """Queries over a :class:`~lookalike.cluster.collection.MilvusCollection` (see the module
    docstring); cosine nearest and farthest go through its vector index unless ``approximate`` is false."""

    def __init__(self, collection, approximate: bool = True, refine_factor: int = REFINE_FACTOR) -> None:
        self.collection = collection
        self.approximate = approximate and collection.vector_index != "flat"
        self.refine_factor = refine_factor

    def __len__(self) -> int:
        return self.collection.count()

    def backend(self, metric: str | Metric, exact: bool = False) -> _Kind:
        """Whether ``metric`` is answered exactly (a scan, or a FLAT index) or through the vector index."""
        return _Kind(exact or get_metric(metric).name != "cosine" or not self.approximate)

    def _scans(self, metric: Metric, exact: bool) -> bool:
        """Whether a query scans every vector: for l2, and for ``exact`` answers unless the vector
        index is FLAT (exact: its cosine search and range search are used)."""
        return metric.name != "cosine" or ((exact or not self.approximate) and self.collection.vector_index != "flat")

    def query(self, queries: np.ndarray, k: int, mode: Mode = Mode.nearest, metric: str | Metric = "cosine",
              seed: int | None = None, exact: bool = False, **options) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`nearest`, :meth:`farthest` or :meth:`random` by ``mode``."""
        if mode is Mode.random:
            return self.random(queries, k, metric, seed)
        return self._ranked(queries, k, get_metric(metric), exact, mode is Mode.farthest, options.get("ef_search"))

    def nearest(self, queries: np.ndarray, k: int, metric: str | Metric = "cosine", exact: bool = False,
                **options) -> tuple[np.ndarray, np.ndarray]:
        return self._ranked(queries, k, get_metric(metric), exact, False, options.get("ef_search"))

    def farthest(self, queries: np.ndarray, k: int, metric: str | Metric = "cosine", exact: bool = False,
                 **options) -> tuple[np.ndarray, np.ndarray]:
        return self._ranked(queries, k, get_metric(metric), exact, True, options.get("ef_search"))

    def random(self, queries: np.ndarray, k: int, metric: str | Metric = "cosine",
               seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A uniform sample of ``min(k, N)`` ids (the same for every query) from
        ``np.random.default_rng(seed)``, in drawing order, with their exact distances."""
        queries = _as_queries(queries)
        ids = sample_ids(self.collection, k, np.random.default_rng(seed))
        vectors, known = self.collection.vectors_of(ids)  # a file removed meanwhile is left out
        ids, vectors = ids[known], vectors[known]
        dists = get_metric(metric).pairwise(queries.astype(np.float64), vectors.astype(np.float64))
        return dists, np.broadcast_to(ids, dists.shape).copy()

    def _ranked(self, queries, k, metric: Metric, exact: bool, farthest: bool, ef_search: int | None):
        queries = _as_queries(queries)
        if self._scans(metric, exact):
            _, ids = top_k(queries, self._chunks(), k, metric, farthest)
            vectors, known = self.collection.vectors_of(np.unique(ids[ids >= 0]))
            by_id = dict(zip(np.unique(ids[ids >= 0]).tolist(), vectors))
            found = [(row[row >= 0], np.asarray([by_id[i] for i in row[row >= 0].tolist()], np.float32))
                     for row in ids]
        else:
            fetch = min(k * self.refine_factor, MAX_HITS)
            found = self._search(-queries if farthest else queries, fetch, ef_search)
        width = max([k, *(len(i) for i, _ in found)])
        ids = np.full((len(queries), width), -1, np.int64)
        dists = np.full((len(queries), width), np.nan)
        for q, (row_ids, vectors) in enumerate(found):
            ids[q, :len(row_ids)] = row_ids
            if len(row_ids):
                dists[q, :len(row_ids)] = metric.pairwise(queries[q:q + 1].astype(np.float64),
                                                          vectors.astype(np.float64))[0]
        dists, ids = best_first(dists, ids, k, farthest)
        keep = min(k, int((ids >= 0).sum(axis=1).max(initial=0)))
        return dists[:, :keep], ids[:, :keep]

    def _search(self, queries: np.ndarray, limit: int, ef_search: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of each query's ``limit`` nearest by the vector index (cosine)."""
        c = self.collection
        params = {"params": {"ef": max(limit, ef_search or HNSW_EF)}} if c.vector_index == "hnsw" else None
        hits = c.client.search(c.name, data=[q.tolist() for q in queries], limit=limit, search_params=params,
                               output_fields=["vector"], **c.reading) if limit else [[] for _ in queries]
        return [(np.array([h["id"] for h in row], np.int64),
                 np.asarray([h["entity"]["vector"] for h in row], np.float32).reshape(len(row), c.dim))
                for row in hits]

    def _chunks(self):
        """Every (vectors, ids), a page at a time."""
        for page in self.collection.pages(["id", "vector"]):
            yield (np.asarray([r["vector"] for r in page], np.float32).reshape(len(page), self.collection.dim),
                   np.fromiter((r["id"] for r in page), np.int64, len(page)))

    def within(self, queries: np.ndarray, radius: float, metric: str | Metric = "cosine", exact: bool = False,
               rescore: bool = True, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every id within ``radius`` of each query, as CSR ``(offsets, ids, distances)`` (distances
        as :meth:`lookalike.vectors.Searcher.within` gives them). With ``rescore`` False the vector
        index's candidates come with its own distances (the caller re-scores them)."""
        queries = _as_queries(queries)
        metric = get_metric(metric)
        c = self.collection
        if self._scans(metric, exact):
            rows, ids, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)]
            for vectors, chunk_ids in self._chunks():
                r, cols, d = scan_within(queries, vectors, radius, metric)
                rows.append(r), ids.append(chunk_ids[cols]), dists.append(d)
            rows, ids, dists = np.concatenate(rows), np.concatenate(ids), np.concatenate(dists)
            keep = dists <= radius
            rows, ids, dists = rows[keep], ids[keep], dists[keep]
            order = np.lexsort((ids, rows))
            return to_csr(len(queries), rows[order], ids[order], np.maximum(dists[order], 0.0))
        hits = c.client.search(c.name, data=[q.tolist() for q in queries], limit=MAX_HITS,
                               search_params={"params": cosine_range(radius)}, **c.reading)
        rows, ids, dists, unfinished = [], [], [], []
        for q, found in enumerate(hits):
            if len(found) >= MAX_HITS:
                unfinished.append(q)
                continue
            for h in found:
                rows.append(q), ids.append(int(h["id"])), dists.append(1.0 - h["distance"])
        rows, ids, dists = np.array(rows, np.int64), np.array(ids, np.int64), np.array(dists, np.float64)
        if rescore and len(ids):
            vectors, known = c.vectors_of(ids)
            rows, ids, vectors = rows[known], ids[known], vectors[known]
            dists = metric.paired(queries[rows], vectors, np.float32)
            keep = dists <= radius
            rows, ids, dists = rows[keep], ids[keep], dists[keep]
        if unfinished:
            more, more_ids, more_d = CollectionSearcher(c, False).within(queries[unfinished], radius, metric)
            more_rows = np.asarray(unfinished)[np.repeat(np.arange(len(unfinished)), np.diff(more))]
            rows, ids = np.concatenate([rows, more_rows]), np.concatenate([ids, more_ids])
            dists = np.concatenate([dists, more_d])
        order = np.lexsort((ids, rows))
        return to_csr(len(queries), rows[order], ids[order], np.maximum(dists[order], 0.0))


def sample_ids(collection, k: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform sample of ``min(k, N)`` distinct ids of the collection, in drawing order.

    A small collection (≤ :data:`SMALL` files) draws from its listed ids as the embedded searcher
    does. A larger one never lists them: ids are digests, spread evenly over [0, 2⁶³), cut into
    B = N / :data:`PER_RANGE` equal ranges. Each draw picks a range and a slot in [0,
    :data:`RANGE_CAP`) uniformly and keeps the slot-th smallest id of the range if it has one (and
    it is not drawn yet): every id is kept with the same chance 1 / (B · cap), so the kept ids are a
    uniform sample without replacement. About one draw in eight keeps an id; each round of draws
    is one query for the ids in its ranges. A range over the cap (never expected) is an error.
    """
    n = collection.count()
    k = min(k, n)
    if n <= SMALL:
        ids = np.sort(np.array([r["id"] for page in collection.pages(["id"]) for r in page], np.int64))
        return ids[rng.choice(len(ids), size=min(k, len(ids)), replace=False)] if k else ids[:0]
    ranges = max(1, n // PER_RANGE)
    width = -(-2**63 // ranges)
    chosen: dict[int, None] = {}
    while len(chosen) < k:
        picks = rng.integers(0, ranges, size=8 * (k - len(chosen)) + 8)
        slots = rng.integers(0, RANGE_CAP, size=len(picks))
        wanted = sorted(set(picks.tolist()))
        where = " or ".join(f"(id >= {r * width}" + (f" and id < {(r + 1) * width})" if r < ranges - 1 else ")")
                            for r in wanted)
        held: dict[int, list[int]] = {r: [] for r in wanted}
        for row in collection.client.query(collection.name, filter=where, output_fields=["id"], **collection.reading):
            held[int(row["id"]) // width].append(int(row["id"]))
        for r, slot in zip(picks.tolist(), slots.tolist()):
            members = sorted(held[r])
            if len(members) > RANGE_CAP:
                raise RuntimeError(f"an id range of {collection} holds {len(members)} files (over {RANGE_CAP})")
            if slot < len(members) and len(chosen) < k:
                chosen.setdefault(members[slot])
    return np.fromiter(chosen, np.int64, len(chosen))


def _as_queries(queries: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(queries, dtype=np.float32))
