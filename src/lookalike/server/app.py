"""The HTTP API and web page: search an index by uploaded image or by an indexed image's id.

One :class:`Index` (one model session) serves every request. Its SQLite connection is not safe to
use from several threads at once and FastAPI runs handlers in a thread pool, so catalog and search
calls hold :attr:`Index.lock`; decoding and the model run happen outside it. The client never
names a file: images are addressed by their id in the index, and responses carry ids, base names
and the name of the folder holding each file (its class, in a folder-per-class collection), never
paths. A recent upload is addressed by its content hash, so a reloaded page can search with it again.
"""

from __future__ import annotations

import asyncio
import io
import mimetypes
import os
import sqlite3
import stat
from collections import OrderedDict
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, Form, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from lookalike.api import Index
from lookalike.images import DEFAULT_MAX_PIXELS, ImageError, content_hash, decode
from lookalike.vectors import MetricName, Mode
from lookalike.store import StoreError

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
MULTIPART_SLACK = 64 * 1024  # room for the multipart framing and form fields around the file
THUMB_SIZE = 256
MAX_K = 1000
INT64_MAX = 2**63 - 1  # ids and seeds are 64-bit: larger values are refused (422), not a 500
BODY_TIMEOUT = 15.0  # seconds a request body may pause before the request is answered 408


HELP = {"k": "Number of results.", "mode": "nearest first, farthest first, or a random sample.",
        "metric": "cosine (1 - cosine similarity) or l2 (Euclidean).",
        "seed": "Seed for mode=random [default: a fresh one, returned as seed].",
        "exclude_self": "Leave out indexed files with the query's exact bytes.",
        "threshold": "A dedup preset (exact, near, similar) or a cosine distance."}
K = Annotated[int, Query(ge=1, le=MAX_K, description=HELP["k"])]
ModeQ = Annotated[Mode, Query(description=HELP["mode"])]
MetricQ = Annotated[MetricName, Query(description=HELP["metric"])]
SeedQ = Annotated[int | None, Query(ge=0, le=INT64_MAX, description=HELP["seed"])]
IdQ = Annotated[int, Query(ge=-INT64_MAX - 1, le=INT64_MAX, description="Id of an indexed image.")]
IdP = Annotated[int, PathParam(ge=-INT64_MAX - 1, le=INT64_MAX, description="Id of an indexed image.")]
ExcludeQ = Annotated[bool, Query(description=HELP["exclude_self"])]
ThresholdQ = Annotated[str, Query(description=HELP["threshold"])]


class _UploadForm(BaseModel):
    """A multipart body: the image in ``file``; options may come as form fields too (each once: in
    the query string or the form), and any other field is refused with 422."""

    model_config = ConfigDict(extra="forbid")

    def options(self, request: Request, query: dict) -> dict:
        """``query`` (the query-string values) updated with the options given as form fields."""
        given = self.model_fields_set - {"file"}
        twice = sorted(given & set(request.query_params))
        if twice:  # shaped like FastAPI's own 422s, as the schema documents them
            raise RequestValidationError([{"type": "value_error", "loc": ("body", key), "input": getattr(self, key),
                                           "msg": f"{key} given both as a form field and in the query string; "
                                                  "give it once"} for key in twice])
        return {**query, **{key: getattr(self, key) for key in given}}


class SearchForm(_UploadForm):
    file: UploadFile = Field(description="The query image.")
    k: int | None = Field(None, ge=1, le=MAX_K, description=HELP["k"])
    mode: Mode | None = Field(None, description=HELP["mode"])
    metric: MetricName | None = Field(None, description=HELP["metric"])
    seed: int | None = Field(None, ge=0, le=INT64_MAX, description=HELP["seed"])
    exclude_self: bool | None = Field(None, description=HELP["exclude_self"])


class DuplicatesForm(_UploadForm):
    file: UploadFile = Field(description="The image to look for.")
    threshold: str | None = Field(None, description=HELP["threshold"])


class QueryInfo(BaseModel):
    """The query image: its id when it is in the index (an uploaded copy of an indexed file too),
    its folder's name in a search by id, and for an upload its content hash
    (``GET /api/uploads/{hash}/search`` searches with it again)."""

    id: int | None
    name: str
    folder: str | None = None
    upload: str | None = None


class Result(BaseModel):
    rank: int
    id: int
    name: str
    folder: str = Field(description="The name of the folder holding the file (its class, in a "
                                    "folder-per-class collection).")
    distance: float


class SearchResponse(BaseModel):
    query: QueryInfo
    mode: Mode
    metric: MetricName
    seed: int | None = Field(None, description="The seed of a random draw (mode=random), to repeat it.")
    results: list[Result]


class Evidence(BaseModel):
    """Why a file is a duplicate: ORB inliers of one similarity transform and what it says."""

    inliers: int
    matches: int
    rotation: int
    flipped: bool
    scale: float
    shown: float
    filled: float
    brightness: float
    edits: list[str]
    summary: str


class DuplicateResult(Result):
    evidence: Evidence | None = None


class DuplicatesResponse(BaseModel):
    query: QueryInfo
    metric: MetricName
    threshold: float
    preset: str | None
    results: list[DuplicateResult]


class Stats(BaseModel):
    count: int
    model: str
    layer: str | None
    dims: int
    index_type: str
    max_upload_bytes: int


class _Lru:
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


class Searcher:
    """The shared state of one server: the index, its lock, and LRU caches of thumbnails, of the
    vectors of recent uploads (the page posts an upload again for each mode and for its duplicate
    check) and of their (vector, name, ids of indexed copies) by content hash, which a reloaded page
    searches with."""

    def __init__(self, index: Index, max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS,
                 thumb_cache: int = 1024, upload_cache: int = 64) -> None:
        self.index = index
        self.max_upload = max_upload
        self.max_pixels = max_pixels
        self.lock = index.lock
        self._thumbs = _Lru(thumb_cache)
        self._uploads = _Lru(upload_cache)
        self._recent = _Lru(upload_cache)
        with self.lock:
            index.embedder  # the model is loaded once, before the first request

    def info(self, image_id: int) -> dict:
        """Catalog row of an indexed image; 404 when there is none."""
        with self.lock:
            row = self.index.info(image_id)
        if row is None:
            raise HTTPException(404, f"no image with id {image_id} in the index")
        return row

    def stats(self) -> Stats:
        with self.lock:
            return Stats(**self.index.stats(), max_upload_bytes=self.max_upload)

    def search_upload(self, data: bytes, name: str, k: int, mode: str, metric: str, seed: int | None,
                      exclude_self: bool) -> SearchResponse:
        """Search with uploaded image bytes."""
        query, vector, same = self._embed_upload(data, name)
        return self._search(query, vector, k, mode, metric, seed, same if exclude_self else ())

    def search_recent_upload(self, digest: str, k: int, mode: str, metric: str, seed: int | None,
                             exclude_self: bool) -> SearchResponse:
        """Search again with an upload this server still holds, by its content hash; 404 otherwise."""
        with self.lock:
            recent = self._recent.get(digest)
        if recent is None:
            raise HTTPException(404, "this server no longer holds that upload (it keeps the last "
                                     f"{self._recent.size} until it restarts): upload the image again")
        vector, name, same = recent
        query = QueryInfo(id=same[0] if same else None, name=name, upload=digest)
        return self._search(query, vector, k, mode, metric, seed, same if exclude_self else ())

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
                                           for r, row in zip(self._results(found), rows)])

    def _embed_upload(self, data: bytes, name: str) -> tuple[QueryInfo, np.ndarray, list[int]]:
        """The query, its vector and the ids of indexed files with the same bytes (whose stored
        vector is reused); 400/413 for bytes that are not an acceptable image."""
        try:
            vector, same = self.index.embed(data, self.max_pixels, self._uploads)
        except ImageError as e:
            raise HTTPException(413 if str(e).startswith("too large") else 400, f"{name}: {e}") from None
        digest = content_hash(data)
        with self.lock:
            self._recent[digest] = (vector, name, same)
        return QueryInfo(id=same[0] if same else None, name=name, upload=digest), vector, same

    def search_id(self, image_id: int, k: int, mode: str, metric: str, seed: int | None,
                  exclude_self: bool) -> SearchResponse:
        """Search with the stored vector of an indexed image."""
        row = self.info(image_id)
        with self.lock:
            found = self.index.stored(image_id)
        if found is None:  # removed since
            raise HTTPException(404, f"no image with id {image_id} in the index")
        vector, same = found
        query = QueryInfo(id=image_id, name=display_name(row["path"]), folder=folder_name(row["path"]))
        return self._search(query, vector, k, mode, metric, seed, same if exclude_self else ())

    def _search(self, query: QueryInfo, vector, k: int, mode: str, metric: str, seed: int | None,
                exclude) -> SearchResponse:
        with self.lock:
            found = self.index.query_vector(vector, k, mode, metric, seed, exclude, query.name)
        return SearchResponse(query=query, mode=mode, metric=metric, seed=found.seed, results=self._results(found))

    @staticmethod
    def _results(found) -> list[Result]:
        return [Result(rank=m.rank, id=m.id, name=display_name(m.path), folder=folder_name(m.path),
                       distance=round(m.distance, 6)) for m in found.results]

    def original(self, image_id: int) -> tuple[bytes, str]:
        """The bytes and path of an indexed file, only while it is still the file that was indexed
        (same size, modification time and content hash); 404 otherwise. A file replaced by a
        symlink to something else, or by other content, is never served."""
        row = self.info(image_id)
        gone = HTTPException(404, f"the file of image {image_id} is gone or changed since it was indexed")
        try:
            with open(row["path"], "rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode) or (st.st_size, st.st_mtime_ns) != (row["size"], row["mtime_ns"]):
                    raise gone
                data = f.read(row["size"] + 1)
        except OSError:
            raise gone from None
        if content_hash(data) != row["hash"]:
            raise gone
        return data, row["path"]

    def thumbnail(self, image_id: int) -> bytes:
        """A JPEG at most :data:`THUMB_SIZE` pixels on a side of :meth:`original`, cached by (id, content hash)."""
        row = self.info(image_id)
        key = (image_id, row["hash"])
        with self.lock:
            cached = self._thumbs.get(key)
        if cached is not None:
            return cached
        data, _ = self.original(image_id)
        try:
            img = decode(data, THUMB_SIZE, self.max_pixels)
        except ImageError as e:
            raise HTTPException(404, f"image {image_id} cannot be read: {e}") from None
        img.thumbnail((THUMB_SIZE, THUMB_SIZE))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=85)
        data = out.getvalue()
        with self.lock:
            self._thumbs[key] = data
        return data


class UploadTooLarge(HTTPException):
    """413 for an upload over the limit; raised while the body is received too, where FastAPI passes it on."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"upload too large: the limit is {limit} bytes")


class BodyTimeout(HTTPException):
    """408 for a request body that stops arriving (a Content-Length larger than what is sent)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(408, f"request body incomplete: nothing received for {seconds:g} s")


class BodyLimit:
    """ASGI middleware: JSON 413 for a request body over an upload of ``limit`` bytes plus multipart framing,
    whether its Content-Length says so or it streams past the limit (chunked); 408 when the body pauses
    for ``timeout`` seconds."""

    def __init__(self, app, limit: int, timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        most = self.limit + MULTIPART_SLACK
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > most:
            error = UploadTooLarge(self.limit)
            return await JSONResponse({"detail": error.detail}, error.status_code)(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout) from None
            received += len(message.get("body", b""))
            if received > most:
                raise UploadTooLarge(self.limit)
            return message

        await self.app(scope, counting_receive, send)


def create_app(index: Index, max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS,
               body_timeout: float = BODY_TIMEOUT) -> FastAPI:
    """The web app over an open ``index``: uploads up to ``max_upload`` bytes and ``max_pixels`` pixels,
    a request body that pauses ``body_timeout`` seconds answered 408."""
    from swagger_ui_bundle import swagger_ui_path

    searcher = Searcher(index, max_upload, max_pixels)
    app = FastAPI(title="lookalike", version=_version(), docs_url=None, redoc_url=None,
                  responses={408: {"description": "Request body incomplete"},
                             503: {"description": "The index cannot be read"}},
                  description="Content-based image similarity search: nearest, random and farthest images.")
    app.state.searcher = searcher

    @app.exception_handler(StoreError)
    @app.exception_handler(sqlite3.DatabaseError)
    async def index_unreadable(request, exc) -> JSONResponse:
        """503 with one line when the index cannot be read (damaged catalog, vanished disk)."""
        return JSONResponse({"detail": f"the index cannot be read: {exc}"}, 503)

    app.add_middleware(BodyLimit, limit=max_upload, timeout=body_timeout)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="lookalike API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict:
        """Liveness: the server answers."""
        return {"status": "ok"}

    @app.get("/api/stats", tags=["meta"])
    def stats() -> Stats:
        """Number of indexed images, the model, its feature dimension and the search method."""
        return searcher.stats()

    @app.post("/api/search", tags=["search"],
              responses={400: {"description": "Not an image"}, 413: {"description": "Upload too large"}})
    async def search_upload(request: Request, form: Annotated[SearchForm, Form()],
                            k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                            seed: SeedQ = None, exclude_self: ExcludeQ = False) -> SearchResponse:
        """Search with an uploaded image (multipart field ``file``); the options may be query
        parameters or form fields."""
        o = form.options(request, {"k": k, "mode": mode, "metric": metric, "seed": seed, "exclude_self": exclude_self})
        data, name = await _read_upload(form.file, max_upload)
        return await run_in_threadpool(searcher.search_upload, data, name, o["k"], o["mode"].value,
                                       o["metric"].value, o["seed"], o["exclude_self"])

    @app.post("/api/duplicates", tags=["search"],
              responses={400: {"description": "Not an image"}, 413: {"description": "Upload too large"}})
    async def duplicates_upload(request: Request, form: Annotated[DuplicatesForm, Form()],
                                threshold: ThresholdQ = "near") -> DuplicatesResponse:
        """Is this image already in the index? Every indexed image that duplicates it, nearest first
        (files with the same bytes at distance 0); with a two-stage preset (near, similar), each
        candidate is verified and its evidence given."""
        o = form.options(request, {"threshold": threshold})
        data, name = await _read_upload(form.file, max_upload)
        return await run_in_threadpool(searcher.duplicates_upload, data, name, o["threshold"])

    @app.get("/api/search", tags=["search"], responses={404: {"description": "Unknown id"}})
    def search_id(id: IdQ,
                  k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                  seed: SeedQ = None, exclude_self: ExcludeQ = False) -> SearchResponse:
        """Search with an image already in the index (it finds itself at distance 0 unless excluded)."""
        return searcher.search_id(id, k, mode.value, metric.value, seed, exclude_self)

    @app.get("/api/uploads/{digest}/search", tags=["search"],
             responses={404: {"description": "The server no longer holds that upload"}})
    def search_recent_upload(digest: Annotated[str, PathParam(description="Content hash of a recent upload "
                                                              "(query.upload of its search).")],
                             k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                             seed: SeedQ = None, exclude_self: ExcludeQ = False) -> SearchResponse:
        """Search again with a recent upload (the last 64 since the server started), without its bytes."""
        return searcher.search_recent_upload(digest, k, mode.value, metric.value, seed, exclude_self)

    @app.get("/api/images/{image_id}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/*": {}}}, 404: {"description": "Unknown id or missing file"}})
    def image(image_id: IdP) -> Response:
        """The original file of an indexed image, while it is unchanged since indexing."""
        data, path = searcher.original(image_id)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/thumbs/{image_id}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Unknown id or unreadable"}})
    def thumb(image_id: IdP) -> Response:
        """A JPEG thumbnail (at most 256 px on a side) of an indexed image."""
        return Response(searcher.thumbnail(image_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})

    return app


async def _read_upload(file: UploadFile, max_upload: int) -> tuple[bytes, str]:
    """The uploaded bytes and base name; 413 over ``max_upload`` bytes, 400 when empty."""
    data = await file.read(max_upload + 1)
    if len(data) > max_upload:
        raise UploadTooLarge(max_upload)
    if not data:
        raise HTTPException(400, "empty upload: not an image")
    return data, os.path.basename(file.filename or "") or "upload"


def display_name(path: str) -> str:
    """The base name of a path as valid text: bytes that are not UTF-8 show as U+FFFD."""
    return os.path.basename(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def folder_name(path: str) -> str:
    """The name of the folder holding a file (its class in a folder-per-class collection), as valid text."""
    return display_name(os.path.dirname(path))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookalike")
    except PackageNotFoundError:
        return "0"
