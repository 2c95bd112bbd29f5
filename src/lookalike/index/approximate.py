"""Keeping an index's approximate-nearest-neighbour structure in step with its catalog.

The setting (``auto``, ``exact``, ``hnsw`` or ``ivfpq``) is stored in the index. ``auto`` keeps exact
search for small collections (see :func:`lookalike.vectors.ann.choose_kind`). The FAISS file lives
beside the catalog and is brought up to date by diffing ids: ids are never reused and a changed file
gets a new id, so added images go in and removed or changed ones come out, and a result can never
be stale. A file that cannot be loaded, or one with too many removals, is rebuilt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lookalike.index.store import Store, StoreError
from lookalike.vectors.ann import choose_kind

if TYPE_CHECKING:  # FAISS loads only for an index with an approximate structure
    from lookalike.vectors.faiss_backend import FaissBackend

SETTINGS = ("auto", "exact", "hnsw", "ivfpq")
ANN_FILE = "ann.faiss"
METRIC = "cosine"


def setting(store: Store) -> str:
    """The index's ANN setting (``auto`` unless set; ``none``, its name in older indexes, is ``exact``)."""
    value = store.meta("ann") or "auto"
    return "exact" if value == "none" else value


def configure(store: Store, value: str) -> None:
    """Choose the ANN setting of an index; :class:`ValueError` for an unknown one."""
    if value not in SETTINGS:
        raise ValueError(f"unknown --ann {value!r}; choose from: {', '.join(SETTINGS)}")
    store.set_meta("ann", value)


def kind(store: Store) -> str:
    """``exact`` or the approximate kind the index's setting gives for its current size."""
    return choose_kind(setting(store), store.count(), max(store.dim, 1))


def sync(store: Store, rebuild: bool = False) -> FaissBackend | None:
    """The up-to-date ANN index of ``store``, or None when its setting gives exact search."""
    path = store.root / ANN_FILE
    wanted = kind(store)
    if wanted == "exact":
        if not store.readonly:
            for stale in (path, path.with_name(path.name + ".json")):
                stale.unlink(missing_ok=True)
        return None
    from lookalike.vectors.faiss_backend import FaissBackend

    generation = str(store.generation)
    built_for, _, built_at = (store.meta("ann_stamp") or "").partition(":")
    ann = None if rebuild or built_for != wanted else _load(path, store.dim)
    if ann is not None and built_at == generation:
        return ann
    ids, vectors = store.vectors()
    if ann is not None and ann.kind == wanted:  # a fallback (ivfpq on < 16 vectors is flat) is rebuilt instead
        have = ann.ids()
        gone = np.setdiff1d(have, ids)
        new = np.setdiff1d(ids, have)
        if gone.size:
            ann.remove(gone)
        if new.size:
            ann.add(np.asarray(vectors[np.searchsorted(ids, new)]), new)
        if ann.needs_rebuild:
            ann = None
    else:
        ann = None
    if ann is None:
        ann = FaissBackend.build(np.asarray(vectors), np.asarray(ids), METRIC, wanted)
    if not store.readonly:
        try:
            ann.save(path)
            store.set_meta("ann_stamp", f"{wanted}:{generation}")
        except (OSError, RuntimeError, StoreError):  # a full disk: search with the one in memory; the file is diffed by ids later
            pass
    return ann


def _load(path, dim: int) -> FaissBackend | None:
    from lookalike.vectors.faiss_backend import FaissBackend

    if not path.exists():
        return None
    try:
        ann = FaissBackend.load(path)
    except (OSError, ValueError, KeyError, RuntimeError):  # a torn or foreign file: rebuild it
        return None
    return ann if (ann.metric.name, ann.dim) == (METRIC, dim) else None
