"""The Python API: open or create an index, bring it up to date with a folder, query it.

The CLI and the HTTP server are thin shells over :class:`Index`, which reaches its images only
through the :class:`~lookalike.index.collection.Collection` protocol (an index folder, or a Milvus
collection opened by :func:`lookalike.cluster.collection.open_index`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lookalike.index.collection import Collection
from lookalike.index.embedded import EmbeddedCollection
from lookalike.images import DECODING, DEFAULT_MAX_PIXELS, content_hash, decode, read_file
from lookalike.index.indexer import BATCH, IndexReport
from lookalike.models.embedder import Embedder, providers, with_dimension
from lookalike.models.registry import ModelSpec, resolve
from lookalike.paths import index_path
from lookalike.index.sqlite import DB_NAME
from lookalike.index.store import Store, StoreError, describe_model as _describe
from lookalike.vectors import Backend, Metric, Mode, Searcher, check_query

if TYPE_CHECKING:  # the map's libraries load only when a map is asked for
    from lookalike.map.cache import Map

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


@dataclass(frozen=True)
class Match:
    """One result: rank (1-based), image id in the index, path and distance to the query."""

    rank: int
    id: int
    path: str
    distance: float


@dataclass(frozen=True)
class QueryResult:
    """The answer to one query image; :meth:`to_dict` is the ``query --json`` shape. ``seed`` is the
    seed of a random draw (the one given, or a fresh one), None for the other modes."""

    query: str
    mode: str
    metric: str
    results: list[Match]
    seed: int | None = None

    def to_dict(self) -> dict:
        out = {"query": self.query, "mode": self.mode, "metric": self.metric,
               "results": [{"rank": m.rank, "path": m.path, "distance": round(m.distance, 6)}
                           for m in self.results]}
        return out if self.seed is None else {**out, "seed": self.seed}


def fresh_seed() -> int:
    """A new seed for a random draw that is to be reported, so that the draw can be repeated."""
    return secrets.randbelow(2**32)


class Index:
    """A collection of embedded images bound to one model, and the model that embeds queries. Use
    :meth:`open` for an index folder (or :meth:`over` for any :class:`~lookalike.index.collection.Collection`,
    such as a Milvus collection); close with :meth:`close`.

    :attr:`lock` (re-entrant) guards the collection's connection: a caller sharing the index between
    threads holds it around each call; :meth:`embed` takes it itself, only for its look-ups.
    """

    def __init__(self, collection: Collection, spec: ModelSpec, threads: int | None = None, device: str = "cpu",
                 embedder: Embedder | None = None) -> None:
        """Bind ``collection`` to ``spec``; ``embedder`` (else one made on first use) embeds query images."""
        self.collection = collection
        self.spec = spec
        self.lock = threading.RLock()
        self._threads = threads
        self._device = device
        self._embedder = embedder

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, model: str | None = None, layer: str | None = None,
             create: bool = False, rebuild: bool = False, threads: int | None = None,
             device: str = "cpu", weights: str | os.PathLike | None = None) -> "Index":
        """Open the index folder at ``path`` (default: :func:`~lookalike.paths.index_path`).

        With ``create``, a missing index is created for ``model`` (default: the default model); an
        existing one is opened with ``model`` (default: its own), which must be the one it was built
        with (else :class:`StoreError`) unless ``rebuild`` wipes it first. Without ``create``, the
        index must exist and its own model is used (``layer``, if given, must be its own).
        ``weights`` is the weights file of a model that takes one (``inception-v3-fid``);
        ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        """
        providers(device)  # an unavailable device fails before anything is created
        path = index_path(path)
        if not create:
            return cls.over(EmbeddedCollection(Store.open(path)), layer, threads, device, weights,
                            check=layer is not None)
        if model is None and not rebuild and cls.exists(path):
            with Store.open(path) as store:
                model, layer = store.model_ref, layer or (store.model or {}).get("layer")
        spec, embedder = with_dimension(resolve(model, layer, weights), threads, device)
        if rebuild:
            wipe(path)
        store = Store.create(path, spec.identity(), ref=model_ref(model, spec))
        return cls(EmbeddedCollection(store), spec, threads, device, embedder)

    @classmethod
    def over(cls, collection: Collection, layer: str | None = None, threads: int | None = None,
             device: str = "cpu", weights: str | os.PathLike | None = None, model: str | None = None,
             check: bool = False) -> "Index":
        """An index over ``collection`` with its own model (found by ``model``, default the
        collection's ``model_ref``). With ``check``, :class:`StoreError` (one line) unless the model
        found here is the one the collection's vectors were made with. The collection is closed
        when this fails."""
        try:
            ident = collection.model or {}
            spec = resolve(model or collection.model_ref, layer or ident.get("layer"), weights,
                           ident.get("weights_sha256"))
            if check and spec.identity() != ident:
                raise StoreError(f"{collection.location} holds vectors of {_describe(ident)}, but the model "
                                 f"found here is {_describe(spec.identity())}: query with the model the "
                                 "collection was embedded with")
            return cls(collection, spec, threads, device)
        except BaseException:
            collection.close()
            raise

    @staticmethod
    def exists(path: str | os.PathLike | None = None) -> bool:
        """True when ``path`` (default: :func:`~lookalike.paths.index_path`) holds an index."""
        return (index_path(path) / DB_NAME).exists()

    def close(self) -> None:
        self.collection.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def embedder(self) -> Embedder:
        """The ONNX Runtime session, created on first use."""
        if self._embedder is None:
            self._embedder = Embedder(self.spec, self._threads, self._device)
        return self._embedder

    def __len__(self) -> int:
        return self.collection.count()

    @property
    def location(self) -> str:
        """Where the collection is: the index folder, or ``collection C at URI``."""
        return self.collection.location

    @property
    def root(self) -> Path:
        """The index folder (an index folder's only)."""
        return self._folder("has no folder").root

    @property
    def model(self) -> dict:
        """The identity of the index's model (name, layer, dim, ...)."""
        return self.collection.model or {}

    @property
    def index_type(self) -> str:
        """``exact``, the approximate kind (``hnsw``, ``ivfpq``) queries use, or a Milvus collection's
        (``milvus-hnsw``, ...)."""
        return self.collection.index_type

    def stats(self) -> dict:
        """Image count, model name and layer, feature dimension and search type (``index_type``)."""
        model = self.model
        return {"count": len(self), "model": model.get("name", ""), "layer": model.get("layer"),
                "dims": self.collection.dim, "index_type": self.index_type}

    def info(self, image_id: int) -> dict | None:
        """Catalog row of an indexed image (path, size, mtime_ns, hash, width, height), or None."""
        return self.collection.info(image_id)

    def paths(self, ids, missing_ok: bool = False) -> list[str | None]:
        """Paths of indexed image ids, in the given order (see :meth:`Collection.paths`)."""
        return self.collection.paths(ids, missing_ok)

    def columns(self, ids) -> dict[str, list]:
        """Path, size, mtime_ns, hash, width and height of image ids, one list per column, in order."""
        return self.collection.columns(ids)

    def members(self, under: str | None = None) -> tuple[list[int], list[tuple[str, str]]]:
        """Ids of the embedded images (below ``under`` if given), and the files skipped with reasons."""
        return self.collection.members(under)

    def read(self, name: str) -> bytes:
        """The bytes of an indexed image by its path (or URI); :class:`ImageError` when unreadable."""
        return self.collection.read(name)

    @property
    def hashes(self):
        """The dihedral hashes of the indexed files (:class:`lookalike.dedup.phash.HashStore`)."""
        return self.collection.hashes

    def stored(self, image_id: int, row: dict | None = None) -> tuple[np.ndarray, list[int]] | None:
        """The stored vector of an indexed image and the ids of files with its bytes, or None; ``row``:
        its catalog row (:meth:`info`) when the caller has read it already."""
        row = row or self.collection.info(image_id)
        same, vector = self.collection.by_hash(row["hash"]) if row is not None else ([], None)
        return None if vector is None else (vector, same)

    def _folder(self, what: str) -> EmbeddedCollection:
        """The index folder, or :class:`StoreError` saying the collection ``what``."""
        if not isinstance(self.collection, EmbeddedCollection):
            raise StoreError(f"{self.collection.location} {what}: it is a Milvus collection (fill it with "
                             "`lookalike ingest`)")
        return self.collection

    def set_ann(self, setting: str) -> None:
        """Choose the approximate-index setting of an index folder (see :data:`lookalike.index.approximate.SETTINGS`)."""
        self._folder("takes no --ann setting").set_ann(setting)

    def index(self, folder: str | os.PathLike, batch_size: int = BATCH, workers: int = 2,
              max_pixels: int = DEFAULT_MAX_PIXELS, on_plan=None, on_progress=None,
              follow_links: bool = False) -> IndexReport:
        """Make the index folder match ``folder``: embed new and changed images, drop deleted ones
        (see :meth:`EmbeddedCollection.index`)."""
        return self._folder("cannot index a folder").index(folder, self.embedder, batch_size, workers, max_pixels,
                                                           on_plan, on_progress, follow_links)

    def ann(self, rebuild: bool = False) -> Backend | None:
        """The approximate index of an index folder kept in step with the catalog, or None when search is exact."""
        return self._folder("has no FAISS index").ann(rebuild)

    def searcher(self, approximate: bool = True) -> Searcher:
        """The collection's searcher (see :meth:`Collection.searcher`)."""
        return self.collection.searcher(approximate)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) of the collection, ids ascending."""
        return self.collection.vectors()

    def map_generation(self) -> int:
        """The catalog generation the map is kept for: one more with each change of the index folder.
        A map is an index folder's only: :class:`StoreError` for a Milvus collection, which has no
        folder to keep it in."""
        if not isinstance(self.collection, EmbeddedCollection):
            raise StoreError(f"{self.location} has no map: a map is kept in an index folder, and this is a "
                             "Milvus collection")
        return self.collection.store.generation

    def layout(self) -> "Map":
        """The map of every indexed image (:mod:`lookalike.map`; the ``map`` extra): laid out once for a
        set of images and kept beside the index in ``map.npz``; images added since are placed among
        their neighbours. A map laid out or brought up to date is also kept packed as the web page
        reads it (:mod:`lookalike.map.packed`). Holds :attr:`lock` only to read the vectors and
        paths, not while laying out; :class:`StoreError` as :meth:`map_generation`."""
        from lookalike.map import packed
        from lookalike.map.cache import current

        with self.lock:
            generation = self.map_generation()
            ids, vectors = self.vectors()
        writable = not self.collection.readonly
        m = current(self.root, generation, ids, vectors, writable=writable)
        if writable and m.how != "cached":
            with self.lock:
                paths = self.paths(m.ids, missing_ok=True)
            if None not in paths:  # else an image on the map was removed since: packed when next asked for
                packed.keep(self.root, m, paths)
        return m

    def embed(self, image: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS,
              cache: MutableMapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, list[int]]:
        """The query vector of an image, and the ids of indexed files with identical bytes.

        A file whose bytes are already in the index reuses the stored vector, and bytes whose
        content hash is in ``cache`` reuse its vector (no model run); a computed vector of bytes is
        put in ``cache``. :class:`~lookalike.images.ImageError` for an image over ``max_pixels``
        or one that cannot be decoded. Decoding and the model run outside :attr:`lock`.
        """
        digest = None
        if isinstance(image, (str, os.PathLike, bytes)):
            data = image if isinstance(image, bytes) else read_file(image, max_pixels)
            digest = content_hash(data)
            with self.lock:
                same, vector = self.collection.by_hash(digest)
                if vector is None and cache is not None:
                    vector = cache.get(digest)
            if vector is not None:
                return vector, same
            image = data
        with DECODING:  # held through the model run: decoded images waiting for the model would add up
            rgb = decode(image, self.spec.preprocessing.decode_size, max_pixels)
            vector = self.embedder.embed_images([rgb])[0]
        if cache is not None and digest is not None:
            with self.lock:
                cache[digest] = vector
        return vector, []

    def query(self, image: ImageInput, k: int = 10, mode: str | Mode = "nearest", metric: str | Metric = "cosine",
              seed: int | None = None, exclude_self: bool = False, label: str | None = None,
              **search_options) -> QueryResult:
        """The ``k`` nearest, farthest or random images for ``image`` (path, bytes, PIL image or array).

        ``exclude_self`` drops indexed files whose bytes equal the query's; ``search_options`` are
        those of :meth:`query_vector` (``exact``, ``ef_search``, ``nprobe``).
        """
        metric, mode = check_query(metric, mode, k)
        vector, same = self.embed(image)
        return self._search(vector, k, mode, metric, seed, same if exclude_self else (), label or _label(image),
                            **search_options)

    def query_vector(self, vector: np.ndarray, k: int = 10, mode: str | Mode = "nearest",
                     metric: str | Metric = "cosine", seed: int | None = None,
                     exclude: tuple[int, ...] | list[int] = (), label: str = "<vector>", exact: bool = False,
                     ef_search: int | None = None, nprobe: int | None = None) -> QueryResult:
        """Query with a feature vector; ids in ``exclude`` never appear in the results.

        A random draw without a ``seed`` gets a fresh one, reported in the result. Nearest and
        farthest cosine queries use the approximate index when there is one, unless ``exact``;
        ``ef_search`` (HNSW) and ``nprobe`` (IVF-PQ) trade speed for recall.
        """
        metric, mode = check_query(metric, mode, k)
        return self._search(vector, k, mode, metric, seed, exclude, label, exact, ef_search, nprobe)

    def _search(self, vector: np.ndarray, k: int, mode: Mode, metric: Metric, seed: int | None, exclude,
                label: str, exact: bool = False, ef_search: int | None = None,
                nprobe: int | None = None) -> QueryResult:
        """:meth:`query_vector` with options already checked."""
        if mode is Mode.random and seed is None:
            seed = fresh_seed()
        excluded = set(int(i) for i in exclude)
        approximate = not exact and mode is not Mode.random
        distances, ids = self.searcher(approximate).query(vector, k + len(excluded), mode, metric, seed,
                                                           ef_search=ef_search, nprobe=nprobe)
        pairs = [(i, d) for i, d in zip(ids[0].tolist(), distances[0].tolist()) if i >= 0 and i not in excluded]
        # a file removed by another process since the vectors were loaded is left out
        hits = [(i, d, p) for (i, d), p in zip(pairs, self.collection.paths([i for i, _ in pairs], missing_ok=True))
                if p is not None][:k]
        matches = [Match(rank, i, p, d) for rank, (i, d, p) in enumerate(hits, start=1)]
        return QueryResult(label, mode.value, metric.name, matches, seed if mode is Mode.random else None)


def model_ref(model: str | None, spec: ModelSpec) -> str:
    """How an index names its model so it can be reopened: a registry name or an absolute path."""
    return str(Path(model).expanduser().resolve()) if spec.family == "onnx" else spec.name


def wipe(path: Path) -> None:
    """Delete an index directory (refusing anything that does not look like one)."""
    if not path.exists():
        return
    if not (path / DB_NAME).exists():
        raise StoreError(f"refusing to --rebuild {path}: it is not a lookalike index")
    shutil.rmtree(path)


def _label(image: ImageInput) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    return "<upload>" if isinstance(image, bytes) else "<image>"
