"""Perceptual hashes of the eight rotations and flips of an image: near-duplicate candidates the
embedding misses (a CNN embedding moves far under a 90° rotation).

A hash is the DCT pHash (32x32 gray thumbnail, the 8x8 lowest frequencies against their median,
64 bits). Rotating or flipping the thumbnail commutes with making it, so the hashes of all eight
dihedral transforms (:data:`TRANSFORMS`) come from one decode. Two images are candidates when a
transform of one hashes within :data:`RADIUS` bits of the other (a binary range search, :mod:`lookalike.vectors.hamming`).
Hashes are kept per content hash in ``hashes.sqlite`` beside the index, made while indexing from
the bytes the indexer reads anyway (:class:`HashStore`), so no image is decoded again for them.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from lookalike.images import ImageError, decode
from lookalike.index.store import BlobTable
from lookalike.vectors import hamming

#: The dihedral transforms, in the order of a hash array's second axis: k quarter turns
#: counter-clockwise, then a mirror flip for the last four.
TRANSFORMS = ("same", "rotated 90°", "rotated 180°", "rotated 270°",
              "flipped", "flipped, rotated 90°", "flipped, rotated 180°", "flipped, rotated 270°")
#: Most differing bits (of 64) for two hashes to make a candidate pair.
RADIUS = 8
_BLANK = np.zeros((len(TRANSFORMS), 8), np.uint8)


def thumbnail(image) -> np.ndarray:
    """The 32x32 float32 gray thumbnail a hash is made from; ImageError when unreadable."""
    from PIL import Image

    return np.asarray(decode(image, size=64).convert("L").resize((32, 32), Image.LANCZOS), np.float32)


def _dct_rows(n: int = 32, keep: int = 8) -> np.ndarray:
    """The first ``keep`` rows of the orthonormal DCT-II matrix of size ``n`` (as :func:`cv2.dct` uses)."""
    k, x = np.arange(keep)[:, None], np.arange(n)[None, :]
    rows = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    rows[0] /= np.sqrt(2.0)
    return rows.astype(np.float32)


_DCT = _dct_rows()


def hashes(thumbs: np.ndarray) -> np.ndarray:
    """(N, 8, 8) uint8: for each of N 32x32 thumbnails, the packed 64-bit pHash of each transform."""
    thumbs = np.asarray(thumbs, np.float32)
    views = []
    for t in range(len(TRANSFORMS)):
        view = np.rot90(thumbs, t % 4, axes=(1, 2))
        views.append(view[:, :, ::-1] if t >= 4 else view)
    low = _DCT @ np.stack(views, axis=1) @ _DCT.T  # (N, 8, 8 x 8) lowest frequencies
    flat = low.reshape(len(thumbs), len(TRANSFORMS), 64)
    return np.packbits(flat > np.median(flat, axis=2, keepdims=True), axis=2)


def image_hashes(image) -> np.ndarray:
    """(8, 8) uint8 hashes of one image's eight transforms; ImageError when unreadable."""
    return hashes(thumbnail(image)[None])[0]


class HashStore:
    """Hashes by content hash (the catalog's ``hash``: equal bytes, equal hashes), in ``hashes.sqlite``
    in ``folder``; in memory only when that cannot be written, or without a ``folder``.

    It is also the indexer's sidecar (:func:`lookalike.index.indexer.index_folder`): :meth:`make` runs in the
    decode threads on each new file's bytes, :meth:`save` stores a committed batch, so an index
    built by ``index`` or ``dedup DIR`` needs no second decode for its hashes.
    """

    def __init__(self, folder: str | Path | None) -> None:
        self.table = None if folder is None else BlobTable(Path(folder) / "hashes.sqlite", "dihedral", "content")
        self.memory: dict[str, bytes] = {}

    def make(self, data: bytes) -> np.ndarray | None:
        """The thumbnail of one file's bytes (None when they do not decode): the decode threads' part."""
        try:
            return thumbnail(data)
        except ImageError:
            return None

    def save(self, thumbs: dict[str, np.ndarray]) -> dict[str, bytes]:
        """Hash thumbnails by content hash in one batch (:func:`hashes` is vectorised) and store them;
        returns the stored bits."""
        fresh = dict(zip(thumbs, (h.tobytes() for h in hashes(np.stack(list(thumbs.values())))))) if thumbs else {}
        self._save(fresh)
        return fresh

    def get(self, contents: list[str], paths: list[str | None], workers: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """(hashes (N, 8, 8), ok (N,) bool) for files of content hashes ``contents`` at ``paths``,
        computing missing ones on ``workers`` threads (default: one per CPU); ``ok`` is False for a
        file that can no longer be decoded or has no path (its hashes are zeros)."""
        found = self._load(set(contents))
        missing = {c: p for c, p in zip(contents, paths) if c not in found and p is not None}
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            thumbs = dict(zip(missing, pool.map(_thumbnail_or_none, missing.values())))
        found.update(self.save({c: t for c, t in thumbs.items() if t is not None}))  # unreadable: tried next time
        out = np.stack([np.frombuffer(found[c], np.uint8).reshape(_BLANK.shape) if c in found else _BLANK
                        for c in contents]) if contents else np.zeros((0, *_BLANK.shape), np.uint8)
        return out, np.array([c in found for c in contents], bool)

    def _load(self, wanted: set[str]) -> dict[str, bytes]:
        found = {c: self.memory[c] for c in wanted if c in self.memory}
        if len(found) < len(wanted) and self.table is not None:
            found.update(self.table.load(wanted - found.keys()))  # an unreadable file: recomputed
        return found

    def _save(self, fresh: dict[str, bytes]) -> None:
        if fresh and (self.table is None or not self.table.save(fresh)):
            self.memory.update(fresh)  # a read-only index: keep them for this process


@functools.lru_cache(maxsize=8)
def store_for(folder: str) -> HashStore:
    """The :class:`HashStore` of an index folder, one per process: hashes a read-only index cannot
    store stay in its memory for the next query (the server's ``/api/duplicates`` among them)."""
    return HashStore(folder)


def _thumbnail_or_none(path: str) -> np.ndarray | None:
    try:
        return thumbnail(path)
    except ImageError:
        return None


def pairs(table: np.ndarray, radius: int = RADIUS, queries: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, transform, bits): transform ``t`` of image ``j`` hashes within ``radius`` bits of image
    ``i`` (untransformed), over the (N, 8, 8) ``table``; with ``queries`` (M, 8, 8), ``j`` indexes the
    queries instead and every hit is returned, else each unordered pair i != j once, at its closest
    transform."""
    probe = table if queries is None else queries
    q, i, dist = hamming.within(table[:, 0], probe.reshape(-1, 8), radius)
    j, t = q // len(TRANSFORMS), q % len(TRANSFORMS)
    if queries is not None:
        return i, j, t, dist
    keep = i != j
    i, j, t, dist = i[keep], j[keep], t[keep], dist[keep]
    # each unordered pair once: its fewest bits (then first transform)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((t, dist, hi, lo))
    first = np.ones(len(order), bool)
    first[1:] = (lo[order][1:] != lo[order][:-1]) | (hi[order][1:] != hi[order][:-1])
    pick = order[first]
    return i[pick], j[pick], t[pick], dist[pick]
