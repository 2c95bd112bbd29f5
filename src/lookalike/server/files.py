"""Serving indexed files: the original bytes and a thumbnail, only while the file is the one indexed."""

from __future__ import annotations

import io
import os
from collections import OrderedDict

from fastapi import HTTPException

from lookalike.api import Index
from lookalike.images import DECODING, DEFAULT_MAX_PIXELS, ImageError, content_hash, decode, open_file

THUMB_SIZE = 256


class Lru:
    """A mapping of at most ``size`` entries that forgets the least recently used (not thread-safe)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key):
        """The value under ``key`` (now the most recently used), or None."""
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def __setitem__(self, key, value) -> None:
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class IndexedFiles:
    """Catalog rows, original bytes and thumbnails (an LRU cache of ``thumb_cache``) of an index's
    images; thumbnails decode images of up to ``max_pixels`` (what indexing accepts)."""

    def __init__(self, index: Index, max_pixels: int = DEFAULT_MAX_PIXELS, thumb_cache: int = 1024) -> None:
        self.index = index
        self.max_pixels = max_pixels
        self._thumbs = Lru(thumb_cache)

    def info(self, image_id: int) -> dict:
        """Catalog row of an indexed image; 404 when there is none."""
        with self.index.lock:
            row = self.index.info(image_id)
        if row is None:
            raise HTTPException(404, f"no image with id {image_id} in the index")
        return row

    def original(self, image_id: int) -> tuple[bytes, str]:
        """The bytes and path of an indexed file (a local path, or a URI read through the collection),
        only while it is still the file that was indexed (same size, modification time and content
        hash; a URI: size and content hash); 404 otherwise. A file replaced by a
        symlink to something else, or by other content, is never served."""
        row = self.info(image_id)
        gone = HTTPException(404, f"the file of image {image_id} is gone or changed since it was indexed")
        if "://" in row["path"]:  # a URI: read through the collection, checked by size and content
            try:
                data = self.index.read(row["path"])
            except ImageError:
                raise gone from None
        else:
            try:
                with open_file(row["path"]) as f:  # a regular file, never blocking on a FIFO or device
                    st = os.fstat(f.fileno())
                    if not _as_indexed(st, row):
                        raise gone
                    data = f.read(row["size"] + 1)
            except (OSError, ImageError):
                raise gone from None
        if len(data) != row["size"] or content_hash(data) != row["hash"]:
            raise gone
        return data, row["path"]

    def thumbnail(self, image_id: int) -> bytes:
        """A JPEG at most :data:`THUMB_SIZE` pixels on a side of :meth:`original`, cached by (id, content
        hash); a cached one is served only while a local file keeps its indexed size and modification
        time (one stat; a URI is not read again), so a file changed or gone is a 404 as for :meth:`original`."""
        row = self.info(image_id)
        key = (image_id, row["hash"])
        with self.index.lock:
            cached = self._thumbs.get(key)
        if cached is not None and _stat_unchanged(row):
            return cached
        data, _ = self.original(image_id)
        try:
            with DECODING:  # held until the decoded image is small
                img = decode(data, THUMB_SIZE, self.max_pixels)
                img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        except ImageError as e:
            raise HTTPException(404, f"image {image_id} cannot be read: {e}") from None
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
        data = out.getvalue()
        with self.index.lock:
            self._thumbs[key] = data
        return data


def _as_indexed(st: os.stat_result, row: dict) -> bool:
    """Whether a file's stat shows the size and modification time its catalog row indexed."""
    return (st.st_size, st.st_mtime_ns) == (row["size"], row["mtime_ns"])


def _stat_unchanged(row: dict) -> bool:
    """Whether the catalog row's file (a URI: always) still has its indexed size and modification time."""
    if "://" in row["path"]:
        return True
    try:
        return _as_indexed(os.stat(row["path"]), row)
    except OSError:
        return False
