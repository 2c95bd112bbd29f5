"""An index folder on this machine as a :class:`~lookalike.index.collection.Collection`: the SQLite
catalog (:class:`~lookalike.index.store.Store`), its memory-mapped vector cache, and the approximate
index (:mod:`lookalike.index.approximate`) kept in step with it; adding a folder or Parquet shards to it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lookalike.dedup import phash
from lookalike.index import approximate as ann_file
from lookalike import images
from lookalike.images import read_file
from lookalike.index.indexer import IndexReport, index_folder
from lookalike.index.store import Store
from lookalike.vectors import Backend, Searcher


class EmbeddedCollection:
    """The index folder of ``store``; one searcher per catalog generation."""

    local = True

    def __init__(self, store: Store) -> None:
        self.store = store
        self._exact: tuple[int, Searcher] | None = None  # (generation, searcher)
        self._approximate: tuple[Searcher, Backend, Searcher] | None = None  # (exact one, ANN, searcher)
        self._ann: tuple[int, Backend | None] | None = None

    @property
    def root(self) -> Path:
        """The index directory."""
        return self.store.root

    @property
    def location(self) -> str:
        return str(self.store.root)

    @property
    def model(self) -> dict:
        return self.store.model or {}

    @property
    def model_ref(self) -> str:
        return self.store.model_ref

    @property
    def readonly(self) -> bool:
        return self.store.readonly

    @property
    def dim(self) -> int:
        return self.store.dim

    @property
    def hashes(self) -> phash.HashStore:
        return phash.store_for(str(self.store.root))

    @property
    def index_type(self) -> str:
        """``exact`` or the approximate kind (``hnsw``, ``ivfpq``) queries use."""
        return ann_file.kind(self.store)

    def close(self) -> None:
        self.store.close()

    def count(self) -> int:
        return self.store.count()

    def paths(self, ids, missing_ok: bool = False) -> list[str | None]:
        return self.store.paths(ids, missing_ok)

    def info(self, image_id: int) -> dict | None:
        return self.store.info(image_id)

    def columns(self, ids) -> dict[str, list]:
        return self.store.columns(ids)

    def by_hash(self, content_hash: str) -> tuple[list[int], np.ndarray | None]:
        return self.store.by_hash(content_hash)

    def members(self, under: str | None = None) -> tuple[list[int], list[tuple[str, str]]]:
        records = self.store.records(under).values()
        return ([r.id for r in records if r.status == "ok"],
                sorted((r.path, r.error or "unreadable") for r in records if r.status != "ok"))

    def read(self, name: str) -> bytes:
        return read_file(name)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors), loaded once per generation (memory-mapped from the cache)."""
        searcher = self.searcher(approximate=False)
        return searcher.ids, searcher.vectors

    def set_ann(self, setting: str) -> None:
        """Choose the approximate-index setting (see :data:`lookalike.index.approximate.SETTINGS`): the
        next query searches as it says, the catalog changed or not."""
        ann_file.configure(self.store, setting)
        self._ann = None

    def ann(self, rebuild: bool = False) -> Backend | None:
        """The approximate index kept in step with the catalog, or None when search is exact."""
        generation = self.store.generation
        if rebuild or self._ann is None or self._ann[0] != generation:
            self._ann = (generation, ann_file.sync(self.store, rebuild))
        return self._ann[1]

    def searcher(self, approximate: bool = True) -> Searcher:
        """The searcher over the index's vectors, one per generation (made anew when its cache files
        were changed under it): with the approximate index (brought up to date first) unless
        ``approximate`` is false or search is exact."""
        generation = self.store.generation
        if self._exact is None or self._exact[0] != generation or self.store.cache_changed():
            ids, vectors = self.store.vectors()
            self._exact = (generation, Searcher(ids, vectors))
        exact = self._exact[1]
        ann = self.ann() if approximate else None
        if ann is None:
            return exact
        if self._approximate is None or self._approximate[:2] != (exact, ann):
            self._approximate = (exact, ann, exact.with_backends([ann]))
        return self._approximate[2]

    def index(self, folder: str | os.PathLike, embedder, batch_size: int, workers: int, max_pixels: int,
              on_plan=None, on_progress=None, follow_links: bool = False) -> IndexReport:
        """Make the index match ``folder``: embed new and changed images, drop deleted ones (see
        :func:`~lookalike.index.indexer.index_folder`), hashing them for dedup's candidates meanwhile,
        then bring the approximate index up to date."""
        report = index_folder(self.store, embedder, images.folder(folder), batch_size, workers, max_pixels,
                              on_plan, on_progress, follow_links, sidecar=self.hashes)
        self.ann()
        return report
