"""An index's map, kept beside it in ``map.npz`` and brought up to date with its vectors.

The file holds the layout (:mod:`lookalike.map.layout`), the k-means clusters
(:mod:`lookalike.map.groups`) and each cluster's most central images, keyed by the image ids it
covers. Ids are never reused and a changed file gets a new id, so the same ids mean the same vectors:
a map whose ids match is used as it is. When images were added or removed since, removed ones are
dropped and new ones placed among their neighbours (old points never move), until the placed ones
pass :data:`REDO_SHARE` of the points last laid out together; then, as for a first map, everything is
laid out anew. The file is written whole or not at all (:mod:`lookalike.atomic`): a
read-only index is mapped in memory, each time.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lookalike import atomic
from lookalike.map import groups, layout

MAP_FILE = "map.npz"
FORMAT = 1
#: Placed points, as a share of those last laid out together, beyond which the map is laid out anew.
REDO_SHARE = 0.1
#: Central images kept per cluster.
CENTRAL = 8


@dataclass(frozen=True)
class Map:
    """Every indexed image's place on the map (``xy`` in [0, 1]², rows in ``ids`` order) and cluster,
    the cluster centres and each cluster's :data:`CENTRAL` most central ids (-1 where it has fewer)."""

    ids: np.ndarray  # (n,) int64, ascending
    xy: np.ndarray  # (n, 2) float32
    clusters: np.ndarray  # (n,) int32, numbered by decreasing size when laid out
    centres: np.ndarray  # (k, dim) float32, unit
    central: np.ndarray  # (k, CENTRAL) int64
    generation: int  # the index generation it is the map of
    method: str  # how it was laid out (:data:`lookalike.map.layout.METHOD`)
    laid_out: int  # points laid out together the last time
    placed: int  # points placed among their neighbours since
    how: str = "cached"  # how this call had it: cached, placed (new points placed in it) or laid out (anew); not saved

    def cluster_sizes(self) -> np.ndarray:
        return np.bincount(self.clusters, minlength=len(self.centres))


def current(root: Path, generation: int, ids: np.ndarray, vectors: np.ndarray, writable: bool = True) -> Map:
    """The map of ``ids`` and their ``vectors`` (ascending ids, as :meth:`Index.vectors` gives them)
    at index ``generation``: the one saved in ``root / MAP_FILE`` when it covers the same ids, else
    one brought up to date from it or laid out anew, saved there when ``writable``."""
    path = root / MAP_FILE
    old = load(path)
    if old is not None and np.array_equal(old.ids, ids):  # the same vectors: the file as it is, of this generation
        return replace(old, generation=generation)
    new = _placed(old, ids, vectors, generation) if old is not None else None
    if new is None:
        new = _laid_out(ids, vectors, generation)
    if writable:
        save(path, new)
    return new


def _laid_out(ids: np.ndarray, vectors: np.ndarray, generation: int) -> Map:
    """Everything laid out anew and clustered."""
    xy = layout.lay_out(vectors)
    centres, labels = groups.kmeans(vectors, groups.cluster_count(len(ids))) if len(ids) else \
        (np.zeros((0, vectors.shape[1]), np.float32), np.zeros(0, np.int32))
    return Map(np.asarray(ids, np.int64), xy, labels, centres, _central(ids, vectors, labels, centres), generation,
               layout.METHOD, len(ids), 0, "laid out")


def _placed(old: Map, ids: np.ndarray, vectors: np.ndarray, generation: int) -> Map | None:
    """``old`` without the points gone from ``ids`` and with the new ones placed among their
    neighbours, or None when it is to be laid out anew (another method, too many placed, or too
    few points left to place among)."""
    kept = np.isin(old.ids, ids)
    new = ~np.isin(ids, old.ids)
    placed = old.placed + int(new.sum())
    if old.method != layout.METHOD or placed > REDO_SHARE * old.laid_out or kept.sum() < layout.NEIGHBOURS:
        return None
    have = np.isin(ids, old.ids[kept])  # rows of the current vectors already on the map
    xy = np.empty((len(ids), 2), np.float32)
    xy[have] = old.xy[kept]
    xy[new] = layout.place(vectors[new], np.asarray(vectors[have]), xy[have])
    labels = np.empty(len(ids), np.int32)
    labels[have] = old.clusters[kept]
    labels[new] = groups.assign(vectors[new], old.centres)
    return replace(old, ids=np.asarray(ids, np.int64), xy=xy, clusters=labels,
                   central=_central(ids, vectors, labels, old.centres), generation=generation, placed=placed, how="placed")


def _central(ids: np.ndarray, vectors: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    out = np.full((len(centres), CENTRAL), -1, np.int64)
    for c, rows in enumerate(groups.central(vectors, labels, centres, CENTRAL)):
        out[c, :len(rows)] = ids[rows]
    return out


def load(path: Path) -> Map | None:
    """The map saved at ``path``, or None when there is none or it is torn, foreign or inconsistent."""
    try:
        with np.load(path, allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            arrays = {name: f[name] for name in ("ids", "xy", "clusters", "centres", "central")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    n, k = len(arrays["ids"]), len(arrays["centres"])
    if (not isinstance(meta, dict) or meta.get("format") != FORMAT or arrays["xy"].shape != (n, 2)
            or arrays["clusters"].shape != (n,) or arrays["central"].shape != (k, CENTRAL)
            or (n and not (0 <= arrays["clusters"].min() and arrays["clusters"].max() < k))):
        return None
    try:
        return Map(**arrays, generation=int(meta["generation"]), method=str(meta["method"]),
                   laid_out=int(meta["laid_out"]), placed=int(meta["placed"]))
    except (KeyError, TypeError, ValueError):
        return None


def save(path: Path, m: Map) -> bool:
    """Write ``m`` to ``path`` whole (:mod:`lookalike.atomic`); False, leaving any earlier file as it
    was, where it cannot be written."""
    meta = {"format": FORMAT, "generation": m.generation, "method": m.method, "laid_out": m.laid_out,
            "placed": m.placed}
    try:
        with atomic.replacing(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), ids=m.ids, xy=m.xy, clusters=m.clusters,
                     centres=m.centres, central=m.central)
    except OSError:
        return False
    return True
