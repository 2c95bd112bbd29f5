"""The shared state of one server and the searches it answers: by upload, by recent upload, by id."""

from __future__ import annotations

import threading

import numpy as np
from fastapi import HTTPException
from fastapi.exceptions import RequestValidationError

from lookalike.api import Index
from lookalike.fetch import TIMEOUT, FetchError, FetchTooLarge, fetch
from lookalike.images import UPLOAD_MAX_PIXELS, ImageError, content_hash
from lookalike.server.files import IndexedFiles, Lru
from lookalike.server.schemas import (DuplicateResult, DuplicatesResponse, QueryInfo, QueryResponse, Stats,
                                      display_name, folder_name, results)
from lookalike.server.uploads import DEFAULT_MAX_UPLOAD, refused
from lookalike.vectors import MetricName, Mode


#: Fetches by address at once: each holds a server thread for up to the fetch timeout.
FETCHING = threading.BoundedSemaphore(4)


class ServerState:
    """One server's index, its lock, its :class:`IndexedFiles`, and LRU caches of the vectors of recent
    uploads (the page posts an upload again for each mode and for its duplicate check) and of their
    (vector, name, ids of indexed copies) by content hash, which a reloaded page searches with.

    Uploads are refused over ``max_upload`` bytes or ``max_pixels`` pixels. Images are fetched by
    their address only with ``fetch_urls``, within the same limits, from public addresses only
    unless ``fetch_private``, and at most :data:`FETCHING` at a time.
    """

    def __init__(self, index: Index, files: IndexedFiles, max_upload: int = DEFAULT_MAX_UPLOAD,
                 max_pixels: int = UPLOAD_MAX_PIXELS, upload_cache: int = 64, fetch_urls: bool = False,
                 fetch_private: bool = False) -> None:
        self.index = index
        self.files = files
        self.max_upload = max_upload
        self.max_pixels = max_pixels
        self.fetch_urls = fetch_urls
        self.fetch_private = fetch_private
        self.lock = index.lock
        self._uploads = Lru(upload_cache)
        self._recent = Lru(upload_cache)
        with self.lock:
            index.embedder  # the model is loaded once, before the first request

    def stats(self) -> Stats:
        with self.lock:
            return Stats(**self.index.stats(), max_upload_bytes=self.max_upload, fetch_urls=self.fetch_urls)

    def fetch(self, url: str) -> tuple[bytes, str]:
        """The bytes and name of the image at ``url`` (:func:`lookalike.fetch.fetch`): 403 when this
        server does not fetch addresses, 413 over the upload limit, 503 while :data:`FETCHING`
        fetches are running for a whole fetch's time, else 400 with the reason."""
        if not self.fetch_urls:
            raise HTTPException(403, "this server does not fetch image addresses (start it with "
                                     "lookalike serve --fetch-urls)")
        if not FETCHING.acquire(timeout=TIMEOUT):
            raise HTTPException(503, "the server is fetching other images: try again")
        try:
            return fetch(url, self.max_upload, public_only=not self.fetch_private)
        except FetchError as e:
            raise HTTPException(413 if isinstance(e, FetchTooLarge) else 400, f"{url}: {e}") from None
        finally:
            FETCHING.release()

    def query_upload(self, data: bytes, name: str, k: int, mode: Mode, metric: MetricName, seed: int | None,
                     exclude_self: bool) -> QueryResponse:
        """Query with uploaded image bytes."""
        query, vector, same = self._embed_upload(data, name)
        return self._query(query, vector, k, mode, metric, seed, same if exclude_self else ())

    def query_recent_upload(self, digest: str, k: int, mode: Mode, metric: MetricName, seed: int | None,
                            exclude_self: bool) -> QueryResponse:
        """Query again with an upload this server still holds, by its content hash; 404 otherwise."""
        with self.lock:
            recent = self._recent.get(digest)
        if recent is None:
            raise HTTPException(404, "this server no longer holds that upload (it keeps the last "
                                     f"{self._recent.size} until it restarts): upload the image again")
        vector, name, same = recent
        query = QueryInfo(id=same[0] if same else None, name=name, upload=digest)
        return self._query(query, vector, k, mode, metric, seed, same if exclude_self else ())

    def duplicates_upload(self, data: bytes, name: str, threshold: str) -> DuplicatesResponse:
        """Indexed images within a dedup preset or cosine distance of uploaded image bytes."""
        from lookalike import dedup

        with self.lock:
            model = self.index.model
        try:
            rule, preset = dedup.resolve_threshold(threshold, model)
        except ValueError as e:
            raise RequestValidationError([{"type": "value_error", "loc": ("query", "threshold"), "msg": str(e),
                                            "input": threshold}]) from None
        query, vector, same = self._embed_upload(data, name)
        with self.lock:
            found = dedup.duplicates_of_vector(self.index, vector, same, rule, name, data)
        rows = found.to_dict()["results"]
        return DuplicatesResponse(query=query, metric=found.metric, threshold=rule.radius, preset=preset,
                                  results=[DuplicateResult(**r.model_dump(), evidence=row.get("evidence"))
                                           for r, row in zip(results(found), rows)])

    def _embed_upload(self, data: bytes, name: str) -> tuple[QueryInfo, np.ndarray, list[int]]:
        """The query, its vector and the ids of indexed files with the same bytes (whose stored
        vector is reused); 400/413 for bytes that are not an acceptable image."""
        try:
            vector, same = self.index.embed(data, self.max_pixels, self._uploads)
        except ImageError as e:
            raise refused(name, e) from None
        digest = content_hash(data)
        with self.lock:
            self._recent[digest] = (vector, name, same)
        return QueryInfo(id=same[0] if same else None, name=name, upload=digest), vector, same

    def query_id(self, image_id: int, k: int, mode: Mode, metric: MetricName, seed: int | None,
                 exclude_self: bool) -> QueryResponse:
        """Query with the stored vector of an indexed image."""
        row = self.files.info(image_id)
        with self.lock:
            found = self.index.stored(image_id, row)
        if found is None:  # removed since
            raise HTTPException(404, f"no image with id {image_id} in the index")
        vector, same = found
        query = QueryInfo(id=image_id, name=display_name(row["path"]), folder=folder_name(row["path"]))
        return self._query(query, vector, k, mode, metric, seed, same if exclude_self else ())

    def _query(self, query: QueryInfo, vector, k: int, mode: Mode, metric: MetricName, seed: int | None,
               exclude) -> QueryResponse:
        with self.lock:
            found = self.index.query_vector(vector, k, mode, metric, seed, exclude, query.name)
        return QueryResponse(query=query, mode=mode, metric=metric, seed=found.seed, results=results(found))
