"""The distance metrics, defined once, and the one check of a query's options.

A :class:`Metric` is an object per metric; callers use its methods and never branch on its name:

* ``cosine``: ``1 - cosine similarity``, in [0, 2]. Vectors are searched as L2-normalised rows by
  inner product, and the farthest vector from ``q`` is the nearest to ``-q`` (the farthest trick).
* ``l2``: Euclidean distance on the raw features. Backends search squared distances; there is no
  farthest trick, so farthest queries need a scan.

Zero vectors are at cosine distance 1 from everything.
"""

from __future__ import annotations

from enum import Enum

import numpy as np


class Metric:
    """One distance metric (see the module docstring); use the instances in :data:`METRICS`."""

    #: The metric's name in options, JSON and files.
    name: str
    #: True when backends search it as inner product on :meth:`normalise`-d rows, else as squared L2.
    inner_product: bool

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """Rows as backends store and search them: a float32 C-contiguous (N, D) array."""
        return np.ascontiguousarray(x, dtype=np.float32)

    def pairwise(self, queries: np.ndarray, vectors: np.ndarray, sq_norms: np.ndarray | None = None) -> np.ndarray:
        """(Q, N) distances between raw rows, in the dtype of the inputs.

        ``sq_norms`` are the rows' squared norms when already known (see :func:`squared_norms`).
        """
        raise NotImplementedError

    def paired(self, a: np.ndarray, b: np.ndarray, dtype: type = np.float64, sq_a: np.ndarray | None = None,
               sq_b: np.ndarray | None = None) -> np.ndarray:
        """Float64 distances between rows ``a[i]`` and ``b[i]``, computed in ``dtype`` (float32:
        half the bytes of float64 per element, about 1e-7 off). ``sq_a`` and ``sq_b`` are the rows'
        squared norms when already known (cosine then reads each row once, not twice)."""
        raise NotImplementedError

    def to_distance(self, raw: np.ndarray) -> np.ndarray:
        """Distances from a backend's raw scores (inner products of normalised rows, or squared L2)."""
        raise NotImplementedError

    def far_query(self, queries: np.ndarray) -> np.ndarray | None:
        """Normalised queries whose nearest are the farthest of ``queries``, or None without such a trick."""
        return None

    def far_distance(self, raw: np.ndarray) -> np.ndarray:
        """Distances from the raw scores a :meth:`far_query` search returns."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<metric {self.name}>"


class Cosine(Metric):
    name, inner_product = "cosine", True

    def normalise(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        norms = np.linalg.norm(x, axis=-1, keepdims=True)
        return np.ascontiguousarray(x / np.where(norms > 0, norms, 1.0), dtype=np.float32)

    def pairwise(self, queries, vectors, sq_norms=None):
        if sq_norms is None:
            sq_norms = np.einsum("ij,ij->i", vectors, vectors)
        qn = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        d = qn @ vectors.T
        d /= np.maximum(np.sqrt(sq_norms), 1e-12).astype(d.dtype)
        np.subtract(1.0, d, out=d)
        return np.clip(d, 0.0, 2.0, out=d)

    def paired(self, a, b, dtype=np.float64, sq_a=None, sq_b=None):
        a, b = np.asarray(a, dtype), np.asarray(b, dtype)
        sq_a = np.einsum("ij,ij->i", a, a) if sq_a is None else sq_a
        sq_b = np.einsum("ij,ij->i", b, b) if sq_b is None else sq_b
        squares = np.asarray(sq_a, np.float64) * sq_b
        return np.clip(1.0 - np.einsum("ij,ij->i", a, b) / np.maximum(np.sqrt(squares), 1e-24), 0.0, 2.0)

    def to_distance(self, raw):
        return 1.0 - raw

    def far_query(self, queries):
        return -self.normalise(queries)

    def far_distance(self, raw):
        return 1.0 + raw


class L2(Metric):
    name, inner_product = "l2", False

    def pairwise(self, queries, vectors, sq_norms=None):
        if sq_norms is None:
            sq_norms = np.einsum("ij,ij->i", vectors, vectors)
        sq = queries @ vectors.T
        sq *= -2.0
        sq += np.einsum("ij,ij->i", queries, queries)[:, None]
        sq += sq_norms[None, :].astype(sq.dtype)
        return np.sqrt(np.maximum(sq, 0.0, out=sq), out=sq)

    def paired(self, a, b, dtype=np.float64, sq_a=None, sq_b=None):
        diff = np.asarray(a, dtype) - np.asarray(b, dtype)
        return np.sqrt(np.einsum("ij,ij->i", diff, diff).astype(np.float64))

    def to_distance(self, raw):
        return np.sqrt(np.maximum(raw, 0.0))


#: Every metric by name.
METRICS: dict[str, Metric] = {m.name: m for m in (Cosine(), L2())}
# The names as an enum for option parsers (CLI, HTTP); its name and docstring are the OpenAPI schema's.
MetricName = Enum("Metric", {name: name for name in METRICS}, type=str)
MetricName.__doc__ = "``cosine``: 1 - cosine similarity; ``l2``: Euclidean distance on the raw features."


class Mode(str, Enum):
    """Which results a query returns: nearest first, farthest first, or a uniform sample."""

    nearest = "nearest"
    farthest = "farthest"
    random = "random"


MODES = tuple(m.value for m in Mode)


def get_metric(metric: str | Metric) -> Metric:
    """The :class:`Metric` named ``metric``; ValueError with a one-line message for an unknown one."""
    if isinstance(metric, Metric):
        return metric
    try:
        return METRICS[str(getattr(metric, "value", metric))]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; choose from: {', '.join(METRICS)}") from None


def check_query(metric: str | Metric, mode: str | Mode, k: int) -> tuple[Metric, Mode]:
    """The query's :class:`Metric` and :class:`Mode`, checked once where a query enters (given as names
    or already typed); ValueError with a one-line message for an unknown metric or mode, or k < 1."""
    found = get_metric(metric)
    if str(getattr(mode, "value", mode)) not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from: {', '.join(MODES)}")
    if k < 1:
        raise ValueError(f"k must be at least 1, not {k}")
    return found, Mode(mode)


def squared_norms(vectors: np.ndarray, chunk_rows: int = 32768) -> np.ndarray:
    """Squared L2 norm of every row, computed chunk by chunk (works on memory-mapped arrays)."""
    out = np.empty(len(vectors), np.float32)
    for start in range(0, len(vectors), chunk_rows):
        chunk = np.asarray(vectors[start:start + chunk_rows], dtype=np.float32)
        out[start:start + len(chunk)] = np.einsum("ij,ij->i", chunk, chunk)
    return out
