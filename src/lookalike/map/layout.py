"""The 2-D layout of a collection's embeddings, and placing new points on an existing one.

Unit vectors (cosine geometry) are reduced to :data:`PCA_DIMS` by PCA (fitted on at most
:data:`PCA_FIT_ROWS` of them), their :data:`UMAP_NEIGHBOURS` nearest neighbours found by FAISS
(exact up to :data:`SEEDED_UP_TO` points, an HNSW graph above), and UMAP (umap-learn; the ``map``
extra) lays them out from those neighbours. Up to :data:`SEEDED_UP_TO` points UMAP runs seeded on one
thread from its spectral start, so the same vectors give the same map; larger maps use every core,
start from the PCA of the reduced vectors and run :data:`LARGE_EPOCHS` epochs (the spectral start and
UMAP's 200 epochs take minutes there), and may differ slightly from one run to the next. New points are placed
at the similarity-weighted mean of their :data:`NEIGHBOURS` nearest laid-out points (by cosine); the
laid-out points do not move.
"""

from __future__ import annotations

import warnings

import numpy as np

from lookalike.vectors import get_metric

PCA_DIMS = 50
PCA_FIT_ROWS = 20_000
UMAP_NEIGHBOURS = 15
NEIGHBOURS = 10
SEEDED_UP_TO = 20_000
LARGE_EPOCHS = 100
HNSW_LINKS = 16
HNSW_SEARCH = 48
SEED = 0
_unit = get_metric("cosine")  # rows scaled to unit length
METHOD = f"pca{PCA_DIMS}+umap{UMAP_NEIGHBOURS}"


class LayoutError(ValueError):
    """The map cannot be made (its optional library is missing); one line for the user."""


def lay_out(vectors: np.ndarray, seed: int = SEED) -> np.ndarray:
    """The (n, 2) float32 layout of ``vectors`` (n, d), scaled into [0, 1]² (see :func:`fit_unit_square`)."""
    x = _unit.normalise(vectors)
    n = len(x)
    if n < 4:  # too few for UMAP: a line is as good a map
        return fit_unit_square(np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32))
    try:
        from sklearn.decomposition import PCA
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # umap's import-time notes (tensorflow, numba)
            import umap
    except ImportError:
        raise LayoutError("the map needs the map extra: pip install 'lookalike[map]'") from None
    dims = min(PCA_DIMS, n - 1, x.shape[1])
    pca = PCA(dims, svd_solver="randomized" if n > 1000 else "full", random_state=seed)
    fit = x if n <= PCA_FIT_ROWS else x[np.sort(np.random.default_rng(seed).choice(n, PCA_FIT_ROWS, replace=False))]
    reduced = np.ascontiguousarray(pca.fit(fit).transform(x), np.float32)
    seeded = n <= SEEDED_UP_TO
    k = min(UMAP_NEIGHBOURS, n - 1)
    reducer = umap.UMAP(n_neighbors=k, random_state=seed if seeded else None, n_jobs=1 if seeded else -1,
                        n_epochs=None if seeded else LARGE_EPOCHS, init="spectral" if seeded else "pca",
                        precomputed_knn=neighbours(reduced, k, exact=seeded))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a graph too small for a spectral start falls back to a random one
        xy = reducer.fit_transform(reduced)
    return fit_unit_square(np.asarray(xy, np.float32))


def neighbours(x: np.ndarray, k: int, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` nearest rows of ``x`` (its own among them, as UMAP's own search gives it) and
    their Euclidean distances, by FAISS: exact, or through an HNSW graph (:data:`HNSW_LINKS` links a
    point, :data:`HNSW_SEARCH` candidates a search)."""
    import faiss

    if exact:
        index = faiss.IndexFlatL2(x.shape[1])
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], HNSW_LINKS)
    index.add(x)
    if not exact:
        index.hnsw.efSearch = HNSW_SEARCH
    squared, rows = index.search(x, k)
    return rows.astype(np.int64), np.sqrt(np.maximum(squared, 0))


def place(new: np.ndarray, laid: np.ndarray, laid_xy: np.ndarray, k: int = NEIGHBOURS) -> np.ndarray:
    """Places (m, 2) for ``new`` vectors on a layout of ``laid`` vectors at ``laid_xy``: each at the
    mean of its ``k`` nearest laid-out points by cosine, weighted by 1 / (distance + 10⁻⁶), so an exact
    duplicate lands on its twin."""
    from lookalike.vectors import Searcher

    if not len(new):
        return np.zeros((0, 2), np.float32)
    searcher = Searcher(np.arange(len(laid), dtype=np.int64), np.ascontiguousarray(laid, np.float32))
    distances, rows = searcher.nearest(np.ascontiguousarray(new, np.float32), k, "cosine", exact=True)
    weights = 1.0 / (np.maximum(distances, 0) + 1e-6)
    return ((weights[:, :, None] * laid_xy[rows]).sum(axis=1) / weights.sum(axis=1, keepdims=True)).astype(np.float32)


def fit_unit_square(xy: np.ndarray) -> np.ndarray:
    """``xy`` shifted and scaled alike on both axes (shapes keep their proportions) into [0, 1]²,
    centred on the shorter axis; a single place goes to the centre."""
    xy = np.asarray(xy, np.float64)
    if not len(xy):
        return np.zeros((0, 2), np.float32)
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = float((high - low).max())
    scaled = (xy - low) / span if span > 0 else np.zeros_like(xy)
    scaled += (1 - (scaled.max(axis=0) - scaled.min(axis=0))) / 2
    return scaled.astype(np.float32)

