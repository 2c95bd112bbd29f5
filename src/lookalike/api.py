"""The Python API: open or create an index, bring it up to date with a folder, query it.

The CLI and the HTTP server are thin shells over :class:`Index`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from platformdirs import user_data_dir

from lookalike import ann_store
from lookalike import search as _search
from lookalike.ann import AnnIndex
from lookalike.images import DEFAULT_MAX_PIXELS, decode, read_file
from lookalike.indexer import BATCH, IndexReport, content_hash, update
from lookalike.models.embedder import Embedder, providers
from lookalike.models.registry import ModelSpec, resolve
from lookalike.store import DB_NAME, Store, StoreError

ImageInput = str | os.PathLike | bytes | Image.Image | np.ndarray


def default_index_path() -> Path:
    """``$LOOKALIKE_INDEX``, else an index in the user's data directory."""
    return Path(os.environ.get("LOOKALIKE_INDEX") or Path(user_data_dir("lookalike")) / "index")


@dataclass(frozen=True)
class Match:
    """One result: rank (1-based), image id in the index, path and distance to the query."""

    rank: int
    id: int
    path: str
    distance: float


@dataclass(frozen=True)
class QueryResult:
    """The answer to one query image; :meth:`to_dict` is the ``query --json`` shape."""

    query: str
    mode: str
    metric: str
    results: list[Match]

    def to_dict(self) -> dict:
        return {"query": self.query, "mode": self.mode, "metric": self.metric,
                "results": [{"rank": m.rank, "path": m.path, "distance": round(m.distance, 6)}
                            for m in self.results]}


class Index:
    """An on-disk image index bound to one model. Use :meth:`open`; close with :meth:`close`."""

    def __init__(self, store: Store, spec: ModelSpec, threads: int | None = None, device: str = "cpu") -> None:
        self.store = store
        self.spec = spec
        self._threads = threads
        self._device = device
        self._embedder: Embedder | None = None
        self._vectors: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._ann: tuple[int, AnnIndex | None] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, model: str | None = None, layer: str | None = None,
             create: bool = False, rebuild: bool = False, threads: int | None = None,
             device: str = "cpu", weights: str | os.PathLike | None = None) -> "Index":
        """Open the index at ``path`` (default :func:`default_index_path`).

        With ``create``, a missing index is created for ``model``; an existing one must have been
        built with the same model (else :class:`StoreError`) unless ``rebuild`` wipes it first.
        Without ``create``, the index must exist and its own model is used.
        ``weights`` is the weights file of a model that takes one (``inception-v3-fid``);
        ``device`` is ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        """
        providers(device)  # an unavailable device fails before anything is created
        path = Path(path).expanduser() if path is not None else default_index_path()
        if not create:
            store = Store.open(path)
            ident = store.model or {}
            spec = resolve(store.model_ref, layer or ident.get("layer"), weights, ident.get("weights_sha256"))
            return cls(store, spec, threads, device)
        spec = resolve(model, layer, weights)
        if rebuild:
            wipe(path)
        if spec.family == "onnx" and not spec.dim:
            spec = Embedder(spec, threads, device).spec
        store = Store.create(path, spec.identity(), ref=model_ref(model, spec))
        return cls(store, spec, threads, device)

    def close(self) -> None:
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

    def add(self, folder: str | os.PathLike, batch_size: int = BATCH, workers: int = 2,
            max_pixels: int = DEFAULT_MAX_PIXELS, on_plan=None, on_progress=None) -> IndexReport:
        """Embed new and changed images under ``folder`` and drop deleted ones (see :func:`indexer.update`),
        then bring the approximate index up to date."""
        if not os.path.isdir(folder):
            raise StoreError(f"not a directory: {folder}")
        report = update(self.store, self.embedder, folder, batch_size, workers, max_pixels, on_plan, on_progress)
        self.ann()
        return report

    @property
    def index_type(self) -> str:
        """``exact``, or the approximate kind (``hnsw``, ``ivfpq``) queries use."""
        return ann_store.kind(self.store)

    def ann(self, rebuild: bool = False) -> AnnIndex | None:
        """The approximate index kept in step with the catalog, or None when search is exact."""
        generation = self.store.generation
        if rebuild or self._ann is None or self._ann[0] != generation:
            self._ann = (generation, ann_store.sync(self.store, rebuild))
        return self._ann[1]

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """All (ids, vectors) of the index, loaded once per generation."""
        return self._loaded()[1:3]

    def vectors_of(self, wanted: np.ndarray) -> np.ndarray:
        """The stored vectors of the indexed ids ``wanted``, in that order."""
        ids, vectors = self.vectors()
        return np.asarray(vectors[np.searchsorted(ids, wanted)])

    def _loaded(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """(generation, ids, vectors, squared norms), refreshed when the index changed."""
        generation = self.store.generation
        if self._vectors is None or self._vectors[0] != generation:
            ids, vectors = self.store.vectors()
            self._vectors = (generation, ids, vectors, _search.squared_norms(vectors))
        return self._vectors

    def embed(self, image: ImageInput) -> tuple[np.ndarray, list[int]]:
        """The query vector of an image, and the ids of indexed files with identical bytes.

        A file whose bytes are already in the index reuses the stored vector (no model run).
        """
        if isinstance(image, (str, os.PathLike, bytes)):
            data = image if isinstance(image, bytes) else read_file(image)
            same, vector = self.store.by_hash(content_hash(data))
            if vector is not None:
                return vector, same
            image = data
        rgb = decode(image, self.spec.preprocessing.decode_size)
        return self.embedder.embed_images([rgb])[0], []

    def query(self, image: ImageInput, k: int = 10, mode: str = "nearest", metric: str = "cosine",
              seed: int | None = None, exclude_self: bool = False, label: str | None = None,
              **search_options) -> QueryResult:
        """The ``k`` nearest, farthest or random images for ``image`` (path, bytes, PIL image or array).

        ``exclude_self`` drops indexed files whose bytes equal the query's; ``search_options`` are
        those of :meth:`query_vector` (``exact``, ``ef_search``, ``nprobe``).
        """
        _search.check_options(metric, mode, k)
        vector, same = self.embed(image)
        return self.query_vector(vector, k, mode, metric, seed, same if exclude_self else (),
                                 label or _label(image), **search_options)

    def query_vector(self, vector: np.ndarray, k: int = 10, mode: str = "nearest", metric: str = "cosine",
                     seed: int | None = None, exclude: tuple[int, ...] | list[int] = (),
                     label: str = "<vector>", exact: bool = False, ef_search: int | None = None,
                     nprobe: int | None = None) -> QueryResult:
        """Search with a feature vector; ids in ``exclude`` never appear in the results.

        Nearest and farthest cosine queries use the approximate index when there is one, unless
        ``exact``; ``ef_search`` (HNSW) and ``nprobe`` (IVF-PQ) trade speed for recall.
        """
        _search.check_options(metric, mode, k)
        excluded = set(int(i) for i in exclude)
        ann = None if exact or mode == "random" or metric != ann_store.METRIC else self.ann()
        _, ids, vectors, sq_norms = self._loaded()
        if ann is not None:
            # candidates are re-scored on the stored vectors, so distances are exact, as in exact search
            found = ann.search(vector[None], k + len(excluded), mode, ef_search, nprobe, refine=self.vectors_of)[1][0]
            found = found[found >= 0]
            distances = _search.pairwise(vector[None].astype(np.float64),
                                         self.vectors_of(found).astype(np.float64), metric)[0]
            pairs = list(zip(found.tolist(), distances.tolist()))
        else:
            distances, positions = _search.search(vector[None], vectors, k + len(excluded), metric, mode, seed,
                                                  sq_norms=sq_norms)
            pairs = [(int(i), float(d)) for i, d in zip(ids[positions[0]], distances[0])]
        pairs = [(i, d) for i, d in pairs if i not in excluded]
        # a file removed by another process since the vectors were loaded is left out
        hits = [(i, d, p) for (i, d), p in zip(pairs, self.store.paths([i for i, _ in pairs], missing_ok=True))
                if p is not None][:k]
        matches = [Match(rank, i, p, d) for rank, (i, d, p) in enumerate(hits, start=1)]
        return QueryResult(label, mode, metric, matches)


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
