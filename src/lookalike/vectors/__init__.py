"""The search stage: metrics, one searcher per index generation, and the backends behind it.

* :mod:`~lookalike.vectors.metric`: the metrics (cosine, l2) and the one check of query options;
* :mod:`~lookalike.vectors.searcher`: :class:`Searcher`, nearest / farthest / random / range
  queries with exact distances;
* :mod:`~lookalike.vectors.backend`: the :class:`Backend` protocol and the exact NumPy backend;
* :mod:`~lookalike.vectors.faiss_backend`: HNSW / IVF-PQ / flat through FAISS (imported only there
  and in :mod:`~lookalike.vectors.hamming`, the binary-code search of dedup's hashes and ORB matches);
* :mod:`~lookalike.vectors.ann`: choosing and checking an approximate structure.
"""

from lookalike.vectors.backend import Backend, ExactBackend
from lookalike.vectors.metric import METRICS, MODES, Metric, MetricName, Mode, check_query, get_metric
from lookalike.vectors.searcher import Searcher

__all__ = ["Backend", "ExactBackend", "METRICS", "MODES", "Metric", "MetricName", "Mode", "Searcher",
           "check_query", "get_metric"]
