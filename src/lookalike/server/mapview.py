"""The map the web page draws: laid out in a background thread (minutes for a large index the first
time), then answered from memory, as JSON or in typed arrays, until the index changes. The typed
arrays are answered from the index folder's ``map.bin`` while it is current (:mod:`lookalike.map.packed`):
the first page after a server starts reads one file, once."""

from __future__ import annotations

import json
import threading

from fastapi import HTTPException

from lookalike.api import Index
from lookalike.index.store import StoreError
from lookalike.map import packed
from lookalike.map.cache import Map
from lookalike.map.layout import LayoutError
from lookalike.map.payload import payload
from lookalike.text import display_name

#: What :meth:`MapView.get` can answer: the map's encodings (names without their paths).
ENCODINGS = ("json", "binary")


class MapView:
    """The page's map of one index: :meth:`get` answers it in one of :data:`ENCODINGS` for the
    index's current generation, or None while a background thread lays it out (or brings it up to
    date). Each encoding is made on its first request and kept with the map; the typed arrays are
    read from the index folder while they are kept there for this generation, and kept there when
    made (unless the index is read-only)."""

    def __init__(self, index: Index, wait: float = 1.0) -> None:
        """``wait``: how long a request waits for a layout it starts before answering None."""
        self.index = index
        self.wait = wait
        self._lock = threading.Lock()
        self._done: tuple[int, Map, list[str]] | None = None  # (generation, map, paths) of the last map made
        self._encoded: dict[str, bytes] = {}  # the last map made, in each encoding asked for
        self._read: tuple[int, bytes] | None = None  # (generation, typed arrays) last read from map.bin
        self._failed: tuple[int, int, str] | None = None  # (generation, status, why) of a map not made
        self._thread: threading.Thread | None = None

    def get(self, encoding: str = "json") -> tuple[int, bytes] | None:
        """(generation, the map in ``encoding``) of the current map, or None while it is being laid
        out; 501 when the map's library is missing or the collection has no map, 503 when the map
        could not be made."""
        generation = self._generation()
        with self._lock:
            if self._done is not None and self._done[0] == generation and encoding in self._encoded:
                return generation, self._encoded[encoding]
            if encoding == "binary" and self._read is not None and self._read[0] == generation:
                return self._read
        if encoding == "binary" and (kept := packed.stored(self.index.root, generation)) is not None:
            with self._lock:
                self._read = (generation, kept)
            return generation, kept
        with self._lock:
            idle = self._thread is None or not self._thread.is_alive()
            if idle and (self._done is None or self._done[0] != generation):
                self._raise_failed(generation)
                self._thread = threading.Thread(target=self._make, name="lookalike-map", daemon=True)
                self._thread.start()
            thread = self._thread
        thread.join(self.wait)
        with self._lock:
            self._raise_failed(generation)
            if self._done is None or self._done[0] != generation:
                return None
            if encoding not in self._encoded:
                self._encoded[encoding] = self._encode(encoding, *self._done[1:])
            return generation, self._encoded[encoding]

    def _encode(self, encoding: str, m: Map, paths: list[str]) -> bytes:
        if encoding == "json":
            return json.dumps(payload(m, paths, display_name), separators=(",", ":")).encode()
        root = self.index.root
        return packed.stored(root, m.generation) or packed.keep(root, m, paths, not self.index.collection.readonly)

    def _raise_failed(self, generation: int) -> None:
        if self._failed is not None and self._failed[0] == generation:
            status, why = self._failed[1:]
            raise HTTPException(status, why)

    def _make(self) -> None:
        """Lay out (or bring up to date) the map of the current generation and keep it with its paths."""
        generation = self._generation()
        try:
            m = self.index.layout()
            with self.index.lock:
                paths = self.index.paths(m.ids, missing_ok=True)
            if None in paths:  # removed since the map was made: the next request makes it again
                return
        except LayoutError as e:
            with self._lock:
                self._failed = (generation, 501, str(e))
            return
        except Exception as e:  # noqa: BLE001 (a damaged index, a full memory): said, not retried for this generation
            with self._lock:
                self._failed = (generation, 503, f"the map cannot be made: {e}")
            return
        with self._lock:
            self._done, self._encoded = (m.generation, m, paths), {}

    def _generation(self) -> int:
        """The index's generation; 501 for a collection that has no map (a Milvus collection)."""
        try:
            with self.index.lock:
                return self.index.map_generation()
        except StoreError as e:
            raise HTTPException(501, str(e)) from None
