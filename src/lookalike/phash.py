"""Perceptual hashes of the eight rotations and flips of an image: near-duplicate candidates the
embedding misses (a CNN embedding moves far under a 90° rotation).

A hash is the DCT pHash (32x32 gray thumbnail, the 8x8 lowest frequencies against their median,
64 bits). Rotating or flipping the thumbnail commutes with making it, so the hashes of all eight
dihedral transforms (:data:`TRANSFORMS`) come from one decode. Two images are candidates when a
transform of one hashes within :data:`RADIUS` bits of the other (a FAISS binary range search).
Hashes are kept per image id in ``hashes.sqlite`` beside the index (ids are never reused), so each
image is decoded for them once.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from lookalike.images import ImageError, decode

#: The dihedral transforms, in the order of a hash array's second axis: k quarter turns
#: counter-clockwise, then a mirror flip for the last four.
TRANSFORMS = ("same", "rotated 90°", "rotated 180°", "rotated 270°",
              "flipped", "flipped, rotated 90°", "flipped, rotated 180°", "flipped, rotated 270°")
#: Most differing bits (of 64) for two hashes to make a candidate pair.
RADIUS = 10
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
    """Hashes by image id, in ``hashes.sqlite`` in ``folder``; in memory only when that cannot be written."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / "hashes.sqlite"
        self.memory: dict[int, bytes] = {}

    def get(self, ids: np.ndarray, paths: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        """(hashes (N, 8, 8), ok (N,) bool) for images ``ids`` at ``paths``, computing missing ones;
        ``ok`` is False for a file that can no longer be decoded or has no path (its hashes are zeros)."""
        ids = [int(i) for i in ids]
        found = self._load(ids)
        missing = [n for n, i in enumerate(ids) if i not in found]
        fresh = {}
        for n in missing:
            try:
                fresh[ids[n]] = image_hashes(paths[n]).tobytes() if paths[n] is not None else b""
            except ImageError:
                fresh[ids[n]] = b""
        self._save({i: h for i, h in fresh.items() if h})  # an unreadable file is tried again next time
        found.update(fresh)
        out = np.stack([np.frombuffer(found[i], np.uint8).reshape(_BLANK.shape) if found[i] else _BLANK
                        for i in ids]) if ids else np.zeros((0, *_BLANK.shape), np.uint8)
        return out, np.array([bool(found[i]) for i in ids], bool)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("CREATE TABLE IF NOT EXISTS hashes (id INTEGER PRIMARY KEY, bits BLOB NOT NULL)")
        return conn

    def _load(self, ids: list[int]) -> dict[int, bytes]:
        found = {i: self.memory[i] for i in ids if i in self.memory}
        if not self.path.exists():
            return found
        try:
            with self._connect() as conn:
                for start in range(0, len(ids), 500):
                    part = ids[start:start + 500]
                    found.update(conn.execute(f"SELECT id, bits FROM hashes WHERE id IN ({','.join('?' * len(part))})",
                                              part).fetchall())
        except sqlite3.Error:
            pass  # an unreadable cache is recomputed
        return found

    def _save(self, fresh: dict[int, bytes]) -> None:
        if not fresh:
            return
        try:
            with self._connect() as conn:
                conn.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?)", fresh.items())
        except (sqlite3.Error, OSError):
            self.memory.update(fresh)  # a read-only index: keep them for this process


def pairs(table: np.ndarray, radius: int = RADIUS, queries: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, transform, bits): transform ``t`` of image ``j`` hashes within ``radius`` bits of image
    ``i`` (untransformed), over the (N, 8, 8) ``table``; with ``queries`` (M, 8, 8), ``j`` indexes the
    queries instead and every hit is returned, else each unordered pair i != j once, at its closest
    transform."""
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(np.ascontiguousarray(table[:, 0]))
    probe = table if queries is None else queries
    lims, dist, labels = index.range_search(np.ascontiguousarray(probe.reshape(-1, 8)), radius + 1)
    q = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
    j, t, i = q // len(TRANSFORMS), q % len(TRANSFORMS), labels.astype(np.int64)
    dist = dist.astype(np.int64)
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
