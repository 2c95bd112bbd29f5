"""The Python API: open or create an index, bring it up to date with a folder, query it.

The CLI and the HTTP server are thin shells over :class:`Index`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.index import approximate
from lookalike.dedup import phash
from lookalike.images import DECODING, DEFAULT_MAX_PIXELS, content_hash, decode, read_file
from lookalike.index.indexer import BATCH, IndexReport, update
from lookalike.models.embedder import Embedder, providers
from lookalike.models.registry import ModelSpec, resolve
from lookalike.paths import default_index_path
from lookalike.index.store import DB_NAME, Store, StoreError
from lookalike.vectors import Backend, Mode, Searcher, check_query

#: Where an index's vectors are searched: the embedded index (FAISS or exact) or a Milvus mirror.
STORES = ("embedded", "milvus")

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
    """An on-disk image index bound to one model. Use :meth:`open`; close with :meth:`close`.

    :attr:`lock` (re-entrant) guards the catalog connection: a caller sharing the index between
    threads holds it around each call; :meth:`embed` takes it itself, only for its look-ups.
    With a :attr:`mirror` (``store="milvus"``), every committed change is mirrored to its Milvus
    collection and nearest, farthest and range queries are answered through it.
    """

    def __init__(self, store: Store, spec: ModelSpec, threads: int | None = None, device: str = "cpu",
                 embedder: Embedder | None = None, mirror=None) -> None:
        """Bind ``store`` to ``spec``; ``embedder`` (else one made on first use) embeds query images;
        ``mirror`` a :class:`lookalike.cluster.mirror.Mirror` of ``store``."""
        self.store = store
        self.mirror = mirror
        self.spec = spec
        self.lock = threading.RLock()
        self._threads = threads
        self._device = device
        self._embedder = embedder
        self._exact: tuple[int, Searcher] | None = None  # (generation, searcher)
        self._approximate: tuple[Searcher, Backend, Searcher] | None = None  # (exact one, ANN, searcher)
        self._ann: tuple[int, Backend | None] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, model: str | None = None, layer: str | None = None,
             create: bool = False, rebuild: bool = False, threads: int | None = None,
             device: str = "cpu", weights: str | os.PathLike | None = None, store: str = "embedded",
             uri: str | None = None, collection: str | None = None) -> "Index":
        """Open the index at ``path`` (default :func:`default_index_path`).

        With ``create``, a missing index is created for ``model``; an existing one must have been
        built with the same model (else :class:`StoreError`) unless ``rebuild`` wipes it first.
        Without ``create``, the index must exist and its own model is used.
        ``weights`` is the weights file of a model that takes one (``inception-v3-fid``);
        ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        ``store="milvus"`` mirrors the index to the Milvus collection ``collection`` at ``uri`` (a
        server address or a milvus-lite file; default: the ones the index records) and searches
        there (see :mod:`lookalike.cluster.mirror`); with ``rebuild`` the collection is dropped too.
        """
        providers(device)  # an unavailable device fails before anything is created
        path = Path(path).expanduser() if path is not None else default_index_path()
        client = _milvus_client(store, uri, collection, rebuild)  # a held lite file fails before any write
        try:
            if not create:
                catalog = Store.open(path)
                ident = catalog.model or {}
                spec = resolve(catalog.model_ref, layer or ident.get("layer"), weights, ident.get("weights_sha256"))
                return cls(catalog, spec, threads, device, mirror=_mirror(catalog, store, uri, collection, client))
            spec = resolve(model, layer, weights)
            if rebuild:
                wipe(path)
            embedder = None
            if spec.family == "onnx" and not spec.dim:  # the session that finds the dimension is kept
                embedder = Embedder(spec, threads, device)
                spec = embedder.spec
            catalog = Store.create(path, spec.identity(), ref=model_ref(model, spec))
            return cls(catalog, spec, threads, device, embedder,
                       _mirror(catalog, store, uri, collection, client, fresh=rebuild))
        except BaseException:
            if client is not None:
                client.close()
            raise

    @staticmethod
    def exists(path: str | os.PathLike | None = None) -> bool:
        """True when ``path`` (default :func:`default_index_path`) holds an index."""
        return (Path(path or default_index_path()).expanduser() / DB_NAME).exists()

    def close(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        self.store.close()

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
        return self.store.count()

    @property
    def root(self) -> Path:
        """The index directory."""
        return self.store.root

    @property
    def model(self) -> dict:
        """The identity of the index's model (name, layer, dim, ...)."""
        return self.store.model or {}

    def stats(self) -> dict:
        """Image count, model name and layer, feature dimension and search type (``index_type``)."""
        model = self.model
        return {"count": len(self), "model": model.get("name", ""), "layer": model.get("layer"),
                "dims": self.store.dim, "index_type": self.index_type}

    def info(self, image_id: int) -> dict | None:
        """Catalog row of an indexed image (path, size, mtime_ns, hash, width, height), or None."""
        return self.store.info(image_id)

    def paths(self, ids) -> list[str]:
        """Paths of indexed image ids, in the given order."""
        return self.store.paths(ids)

    def stored(self, image_id: int) -> tuple[np.ndarray, list[int]] | None:
        """The stored vector of an indexed image and the ids of files with its bytes, or None."""
        row = self.store.info(image_id)
        same, vector = self.store.by_hash(row["hash"]) if row is not None else ([], None)
        return None if vector is None else (vector, same)

    def set_ann(self, setting: str) -> None:
        """Choose the approximate-index setting (see :data:`lookalike.index.approximate.SETTINGS`)."""
        approximate.configure(self.store, setting)

    def add(self, folder: str | os.PathLike, batch_size: int = BATCH, workers: int = 2,
            max_pixels: int = DEFAULT_MAX_PIXELS, on_plan=None, on_progress=None,
            follow_links: bool = False) -> IndexReport:
        """Embed new and changed images under ``folder`` and drop deleted ones (see :func:`indexer.update`),
        hashing them for dedup's candidates meanwhile (:class:`lookalike.dedup.phash.HashStore`), then bring the
        approximate index up to date."""
        if not os.path.isdir(folder):
            raise StoreError(f"not a directory: {folder}")
        report = update(self.store, self.embedder, folder, batch_size, workers, max_pixels, on_plan, on_progress,
                        follow_links, sidecar=phash.HashStore(self.store.root))
        self._mirror_changes()
        return report

    def add_shards(self, location: str, on_plan=None, on_progress=None) -> IndexReport:
        """Add the files of Parquet shards written by ``lookalike embed`` (a folder or URI; needs the
        ``cluster`` extra), shard by shard (see :func:`lookalike.cluster.load.load`), then bring the
        approximate index up to date."""
        from lookalike.cluster.load import load

        report = load(self.store, location, on_plan, on_progress)
        self._mirror_changes()
        return report

    def _mirror_changes(self) -> None:
        """Bring the approximate index or the Milvus mirror up to date after an update (the mirror
        also gets new mtimes, which leave the generation as it is)."""
        if self.mirror is not None:  # synced here, not again by ann() for the same generation
            self.mirror.sync()
            self._ann = (self.store.generation, self.mirror.backend)
        self.ann()

    @property
    def index_type(self) -> str:
        """``exact``, the approximate kind (``hnsw``, ``ivfpq``) queries use, or the Milvus
        mirror's (``milvus-flat``, ``milvus-hnsw``, ...)."""
        return self.mirror.index_type if self.mirror is not None else approximate.kind(self.store)

    def ann(self, rebuild: bool = False) -> Backend | None:
        """The approximate index (or the Milvus mirror's backend) kept in step with the catalog, or
        None when search is exact."""
        generation = self.store.generation
        if rebuild or self._ann is None or self._ann[0] != generation:
            if self.mirror is not None:
                self.mirror.sync()
                self._ann = (generation, self.mirror.backend)
            else:
                self._ann = (generation, approximate.sync(self.store, rebuild))
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

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) of the index, loaded once per generation."""
        searcher = self.searcher(approximate=False)
        return searcher.ids, searcher.vectors

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
                same, vector = self.store.by_hash(digest)
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

    def query(self, image: ImageInput, k: int = 10, mode: str = "nearest", metric: str = "cosine",
              seed: int | None = None, exclude_self: bool = False, label: str | None = None,
              **search_options) -> QueryResult:
        """The ``k`` nearest, farthest or random images for ``image`` (path, bytes, PIL image or array).

        ``exclude_self`` drops indexed files whose bytes equal the query's; ``search_options`` are
        those of :meth:`query_vector` (``exact``, ``ef_search``, ``nprobe``).
        """
        check_query(metric, mode, k)
        vector, same = self.embed(image)
        return self._search(vector, k, mode, metric, seed, same if exclude_self else (), label or _label(image),
                            **search_options)

    def query_vector(self, vector: np.ndarray, k: int = 10, mode: str = "nearest", metric: str = "cosine",
                     seed: int | None = None, exclude: tuple[int, ...] | list[int] = (),
                     label: str = "<vector>", exact: bool = False, ef_search: int | None = None,
                     nprobe: int | None = None) -> QueryResult:
        """Search with a feature vector; ids in ``exclude`` never appear in the results.

        Nearest and farthest cosine queries use the approximate index when there is one, unless
        ``exact``; ``ef_search`` (HNSW) and ``nprobe`` (IVF-PQ) trade speed for recall.
        """
        check_query(metric, mode, k)
        return self._search(vector, k, mode, metric, seed, exclude, label, exact, ef_search, nprobe)

    def _search(self, vector: np.ndarray, k: int, mode: str, metric: str, seed: int | None, exclude,
                label: str, exact: bool = False, ef_search: int | None = None,
                nprobe: int | None = None) -> QueryResult:
        """:meth:`query_vector` with options already checked."""
        if mode == "random" and seed is None:
            seed = fresh_seed()
        excluded = set(int(i) for i in exclude)
        approximate = not exact and Mode(mode) is not Mode.random
        distances, ids = self.searcher(approximate).search(vector, k + len(excluded), mode, metric, seed,
                                                           ef_search=ef_search, nprobe=nprobe)
        pairs = [(i, d) for i, d in zip(ids[0].tolist(), distances[0].tolist()) if i >= 0 and i not in excluded]
        # a file removed by another process since the vectors were loaded is left out
        hits = [(i, d, p) for (i, d), p in zip(pairs, self.store.paths([i for i, _ in pairs], missing_ok=True))
                if p is not None][:k]
        matches = [Match(rank, i, p, d) for rank, (i, d, p) in enumerate(hits, start=1)]
        return QueryResult(label, mode, metric, matches, seed if mode == "random" else None)


def model_ref(model: str | None, spec: ModelSpec) -> str:
    """How an index names its model so it can be reopened: a registry name or an absolute path."""
    return str(Path(model).expanduser().resolve()) if spec.family == "onnx" else spec.name


def _milvus_client(store: str, uri: str | None, collection: str | None, rebuild: bool):
    """An open Milvus client for ``--store milvus --uri``, else None; :class:`StoreError` for options
    that do not go together, a missing ``cluster`` extra or a URI that cannot be opened."""
    if store not in STORES:
        raise StoreError(f"unknown store {store!r}; choose from: {', '.join(STORES)}")
    if store == "embedded":
        if uri is not None or collection is not None:
            raise StoreError("--uri and --collection go with --store milvus")
        return None
    try:
        import pymilvus  # noqa: F401

        from lookalike.cluster.milvus import connect
    except ImportError:
        raise StoreError("--store milvus needs the cluster extra: pip install 'lookalike[cluster]'") from None
    if uri is None:
        if rebuild:
            raise StoreError("--rebuild with --store milvus needs --uri")
        return None
    return connect(uri)


def _mirror(catalog: Store, store: str, uri: str | None, collection: str | None, client, fresh: bool = False):
    """The Milvus mirror of ``catalog`` for ``store="milvus"`` (see :meth:`Index.open`), else None."""
    if store != "milvus":
        return None
    from lookalike.cluster.mirror import Mirror, resolve_target

    try:
        return Mirror(catalog, resolve_target(catalog, uri, collection), fresh, client=client)
    except BaseException:
        catalog.close()
        raise


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
