"""The HTTP API and web page: search an index by uploaded image or by an indexed image's id.

One :class:`~lookalike.server.state.ServerState` over one :class:`Index` (one model session) serves
every request. Its SQLite connection is not safe to use from several threads at once and FastAPI
runs handlers in a thread pool, so catalog and search calls hold :attr:`Index.lock`; decoding and the
model run happen outside it. The client never names a file: images are addressed by their id in the
index, and responses carry ids, base names and the name of the folder holding each file (its class,
in a folder-per-class collection), never paths. A recent upload is addressed by its content hash, so
a reloaded page can search with it again.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, Path as PathParam, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from lookalike.api import Index
from lookalike.images import UPLOAD_MAX_PIXELS
from lookalike.server.files import IndexedFiles
from lookalike.server.mapview import MapView
from lookalike.server.schemas import (K, DuplicatesForm, DuplicatesResponse, ExcludeQ, IdP, IdQ, MapResponse, MetricQ,
                                      ModeQ, Pending, QueryForm, QueryResponse, SeedQ, Stats, ThresholdQ,
                                      UrlQueryForm)
from lookalike.server.state import ServerState
from lookalike.server.uploads import BODY_TIMEOUT, DEFAULT_MAX_UPLOAD, BodyLimit, read_upload, return_freed_images
from lookalike.index.store import StoreError
from lookalike.vectors import MetricName, Mode

STATIC = Path(__file__).with_name("static")


def create_app(index: Index, max_upload: int = DEFAULT_MAX_UPLOAD, max_pixels: int = UPLOAD_MAX_PIXELS,
               body_timeout: float = BODY_TIMEOUT, fetch_urls: bool = False, fetch_private: bool = False) -> FastAPI:
    """The web app over an open ``index``: uploads up to ``max_upload`` bytes and ``max_pixels`` pixels,
    a request body that pauses ``body_timeout`` seconds answered 408; with ``fetch_urls``, queries by
    an image's address (public addresses only, unless ``fetch_private``). Large freed allocations go
    back to the system from then on (:func:`~lookalike.server.uploads.return_freed_images`)."""
    from swagger_ui_bundle import swagger_ui_path

    return_freed_images()

    files = IndexedFiles(index)
    server = ServerState(index, files, max_upload, max_pixels, fetch_urls=fetch_urls, fetch_private=fetch_private)
    maps = MapView(index)
    app = FastAPI(title="lookalike", version=_version(), docs_url=None, redoc_url=None,
                  responses={408: {"description": "Request body incomplete"},
                             503: {"description": "The index cannot be read"}},
                  description="Content-based image similarity search: nearest, random and farthest images.")
    app.state.server = server

    @app.exception_handler(StoreError)
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
        return server.stats()

    @app.post("/api/query", tags=["query"],
              responses={400: {"description": "Not an image"}, 413: {"description": "Upload too large"}})
    async def query_upload(request: Request, form: Annotated[QueryForm, Form(media_type="multipart/form-data")],
                           k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                           seed: SeedQ = None, exclude_self: ExcludeQ = False) -> QueryResponse:
        """Query with an uploaded image (multipart field ``file``); the options may be query
        parameters or form fields."""
        o = form.options(request, {"k": k, "mode": mode, "metric": metric, "seed": seed, "exclude_self": exclude_self})
        data, name = await read_upload(form.file, max_upload)
        return await run_in_threadpool(server.query_upload, data, name, o["k"], o["mode"], o["metric"], o["seed"],
                                       o["exclude_self"])

    @app.post("/api/query/url", tags=["query"],
              responses={400: {"description": "No image at that address"}, 403: {"description": "This server "
                         "does not fetch addresses"}, 413: {"description": "Image too large"},
                         503: {"description": "The index cannot be read, or too many fetches at once"}})
    async def query_url(request: Request, form: Annotated[UrlQueryForm, Form()],
                        k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                        seed: SeedQ = None, exclude_self: ExcludeQ = False) -> QueryResponse:
        """Query with the image at an address (form field ``url``, http or https) that the server
        fetches, within its upload limits and 10 s: only on a server started with ``--fetch-urls``,
        and never from a loopback, private or link-local address unless also ``--fetch-private``.
        The answer's ``query.upload`` queries with it again, as for an upload."""
        o = form.options(request, {"k": k, "mode": mode, "metric": metric, "seed": seed, "exclude_self": exclude_self})
        data, name = await run_in_threadpool(server.fetch, form.url)
        return await run_in_threadpool(server.query_upload, data, name, o["k"], o["mode"], o["metric"], o["seed"],
                                       o["exclude_self"])

    @app.post("/api/duplicates", tags=["query"],
              responses={400: {"description": "Not an image"}, 413: {"description": "Upload too large"}})
    async def duplicates_upload(request: Request, form: Annotated[DuplicatesForm, Form(media_type="multipart/form-data")],
                                threshold: ThresholdQ = "near") -> DuplicatesResponse:
        """Is this image already in the index? Every indexed image that duplicates it, nearest first
        (files with the same bytes at distance 0); with a two-stage preset (near, similar, shots: other
        shots of the scene too), each candidate is verified and its evidence given."""
        o = form.options(request, {"threshold": threshold})
        data, name = await read_upload(form.file, max_upload)
        return await run_in_threadpool(server.duplicates_upload, data, name, o["threshold"])

    @app.get("/api/query", tags=["query"], responses={404: {"description": "Unknown id"}})
    def query_id(id: IdQ,
                 k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                 seed: SeedQ = None, exclude_self: ExcludeQ = False) -> QueryResponse:
        """Query with an image already in the index (it finds itself at distance 0 unless excluded)."""
        return server.query_id(id, k, mode, metric, seed, exclude_self)

    @app.get("/api/uploads/{digest}/query", tags=["query"],
             responses={404: {"description": "The server no longer holds that upload"}})
    def query_recent_upload(digest: Annotated[str, PathParam(description="Content hash of a recent upload "
                                                             "(query.upload of its query).",
                                                             pattern="^[0-9a-f]{32}$")],
                            k: K = 12, mode: ModeQ = Mode.nearest, metric: MetricQ = MetricName.cosine,
                            seed: SeedQ = None, exclude_self: ExcludeQ = False) -> QueryResponse:
        """Query again with a recent upload (the last 64 since the server started), without its bytes."""
        return server.query_recent_upload(digest, k, mode, metric, seed, exclude_self)

    def answer_map(request: Request, encoding: str, media_type: str) -> Response:
        made = maps.get(encoding)
        if made is None:
            return JSONResponse({"detail": f"laying out the map of {server.stats().count} images; ask again "
                                           "shortly"}, 202, headers={"Retry-After": "2"})
        generation, data = made
        etag = f'"map-{encoding}-{generation}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=media_type, headers=headers)

    map_responses = {202: {"model": Pending, "description": "Being laid out: ask again shortly"},
                     304: {"description": "Unchanged since the ETag given in If-None-Match"},
                     501: {"description": "The map's library (the map extra) is not installed, or a Milvus "
                                          "collection (a map is kept in an index folder)"}}

    @app.get("/api/map", tags=["map"], response_model=MapResponse, responses=map_responses)
    def image_map(request: Request) -> Response:
        """Every indexed image as a point on a 2-D layout of its embedding, with its folder and k-means
        cluster (see the map in the page). The first request for a large index starts laying it out
        and answers 202 until it is done; the map is then kept beside the index."""
        return answer_map(request, "json", "application/json")

    @app.get("/api/map/binary", tags=["map"], response_class=Response,
             responses={200: {"content": {"application/octet-stream": {}}}, **map_responses})
    def image_map_binary(request: Request) -> Response:
        """The map of GET /api/map in typed arrays, as the page reads it: a JSON header (folders,
        clusters, where each column lies), then ids (float64), x and y (float32, in [0, 1]), folder
        and cluster (int32) and the NUL-ended names (see docs/map.md)."""
        return answer_map(request, "binary", "application/octet-stream")

    @app.get("/api/images/{image_id}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/*": {}}}, 404: {"description": "Unknown id or missing file"}})
    def image(image_id: IdP) -> Response:
        """The original file of an indexed image, while it is unchanged since indexing."""
        data, path = files.original(image_id)
        media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=300"})

    @app.get("/api/thumbs/{image_id}", tags=["images"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "Unknown id or unreadable"}})
    def thumb(image_id: IdP) -> Response:
        """A JPEG thumbnail (at most 256 px on a side) of an indexed image."""
        return Response(files.thumbnail(image_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=300"})

    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookalike")
    except PackageNotFoundError:
        return "0"
