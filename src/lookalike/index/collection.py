"""What :class:`~lookalike.api.Index` knows of where its images live: the :class:`Collection` protocol.

Two implementations: :class:`lookalike.index.embedded.EmbeddedCollection`, an index folder on this
machine (SQLite catalog, vector cache, FAISS file), and
:class:`lookalike.cluster.collection.MilvusCollection`, a Milvus collection holding the catalog and
the vectors of a scale-out collection. Index, dedup and the server use only what is here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np


class Collection(Protocol):
    """The catalog look-ups and searches of one collection of embedded images (ids are int64)."""

    #: The identity of the model the vectors were made with (name, layer, dim, preprocessing, ...).
    model: dict
    #: How that model is found again: a registry name or a path.
    model_ref: str
    #: True when this process cannot change the collection.
    readonly: bool
    #: True when the vectors are on this machine (an index folder), so one request may read them all;
    #: False for a Milvus collection, which a request asks through its vector index.
    local: bool

    @property
    def location(self) -> str:
        """Where the collection is, for messages (an index folder, or ``collection C at URI``)."""

    @property
    def index_type(self) -> str:
        """How nearest queries search it: ``exact``, ``hnsw``, ``ivfpq``, ``milvus-hnsw``, ..."""

    @property
    def dim(self) -> int:
        """The vectors' dimension."""

    @property
    def hashes(self):
        """The :class:`~lookalike.dedup.phash.HashStore` of its files' dihedral hashes (dedup's candidates)."""

    def close(self) -> None: ...

    def count(self) -> int:
        """Number of embedded images."""

    def paths(self, ids: Iterable[int], missing_ok: bool = False) -> list[str | None]:  # pragma: no mutate
        """Names of image ids in order; None for one not held with ``missing_ok``, else KeyError."""

    def info(self, image_id: int) -> dict | None:
        """Catalog row (path, size, mtime_ns, hash, width, height) of an image, or None."""

    def columns(self, ids: Iterable[int]) -> dict[str, list]:
        """The catalog columns of image ids, one list per column, in order."""

    def by_hash(self, content_hash: str) -> tuple[list[int], np.ndarray | None]:
        """Ids of the images with these bytes (ascending), and their vector."""

    def members(self, under: str | None = None) -> tuple[list[int], list[tuple[str, str]]]:
        """Ids of the embedded images (below ``under`` if given), and the files skipped with reasons."""

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, vector), ids ascending (dedup over the whole collection)."""

    def searcher(self, approximate: bool = True):  # pragma: no mutate
        """Its :class:`~lookalike.vectors.Searcher` (or one answering alike): exact distances, candidates
        through the approximate index unless ``approximate`` is false."""

    def read(self, name: str) -> bytes:
        """The bytes of an image by its stored name; :class:`~lookalike.images.ImageError` when unreadable."""
