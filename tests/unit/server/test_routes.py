"""The app's routes (server/app.py) over a stand-in index (helpers.stand_in_index: no model), each
test building its own app: every route's defaults and options, the headers and media types a client
reads, the map's 202/304 answers, limits exactly at their edges, the 503 of an unreadable index, and
the offline docs and page. The same routes over a real model are in test_app.py."""

from __future__ import annotations

import io
import socket
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from helpers import ImageServer, serving_in_thread
from lookalike.dedup.rules import presets
from lookalike.images import content_hash
from lookalike.index.store import StoreError
from lookalike.server import app as app_module
from lookalike.server import create_app


def reference(idx, query_id: int, metric: str = "cosine") -> dict[int, float]:
    """Distance from an indexed image's stored vector to every one, by id, computed here."""
    ids, vectors = idx.vectors()
    x = np.asarray(vectors, np.float64)
    q = x[list(ids).index(query_id)]
    if metric == "cosine":
        d = 1 - x @ q / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    else:
        d = np.linalg.norm(x - q, axis=1)
    return dict(zip(ids.tolist(), d.tolist()))


def upload(client, data: bytes, name: str = "q.png", params=None, form=None, route="/api/query"):
    return client.post(route, params=params or {}, data=form or {}, files={"file": (name, data, "image/png")})


def test_each_query_route_answers_the_12_nearest_by_cosine_with_the_query_itself_by_default(served):
    idx, folder, ids = served
    data = (folder / "c00.png").read_bytes()
    want = reference(idx, ids["c00.png"])
    with ImageServer(data) as images, TestClient(create_app(idx, fetch_urls=True, fetch_private=True)) as c:
        by_upload = upload(c, data, "c00.png").json()
        digest = by_upload["query"]["upload"]
        answers = {"id": c.get("/api/query", params={"id": ids["c00.png"]}).json(), "upload": by_upload,
                   "recent upload": c.get(f"/api/uploads/{digest}/query").json(),
                   "address": c.post("/api/query/url", data={"url": images.url("/img.jpg")}).json()}
    assert digest == content_hash(data)
    nearest = sorted(want, key=lambda i: (want[i], i))[:12]
    for route, body in answers.items():
        assert (body["mode"], body["metric"], body["seed"]) == ("nearest", "cosine", None), route
        assert [r["rank"] for r in body["results"]] == list(range(1, 13)), route
        assert {r["id"] for r in body["results"]} == set(nearest), route  # itself and its copy included
        assert {r["id"]: r["distance"] for r in body["results"]} == pytest.approx(
            {i: want[i] for i in nearest}, abs=1e-5), route
    assert answers["id"]["query"] == {"id": ids["c00.png"], "name": "c00.png", "folder": "photos", "upload": None}
    assert answers["upload"]["query"] == {"id": min(ids["c00.png"], ids["copy.png"]), "name": "c00.png",
                                          "folder": None, "upload": digest}
    assert answers["recent upload"]["query"] == answers["upload"]["query"]
    assert answers["address"]["query"] == {**answers["upload"]["query"], "name": "img.jpg"}


def test_each_query_route_passes_on_every_option(served):
    """k, mode, metric, seed and exclude_self reach the search on every route, as query parameters
    and (for a posted image) as form fields."""
    idx, folder, ids = served
    data = (folder / "c03.png").read_bytes()
    want = reference(idx, ids["c03.png"], "l2")
    farthest = sorted(want, key=lambda i: (-want[i], i))[:3]
    params = {"k": 3, "mode": "farthest", "metric": "l2", "exclude_self": True}
    form = {key: str(value) for key, value in params.items()}
    with ImageServer(data) as images, TestClient(create_app(idx, fetch_urls=True, fetch_private=True)) as c:
        digest = upload(c, data).json()["query"]["upload"]
        answers = {"id": c.get("/api/query", params={"id": ids["c03.png"], **params}).json(),
                   "upload": upload(c, data, params=params).json(),
                   "upload, form": upload(c, data, form=form).json(),
                   "recent upload": c.get(f"/api/uploads/{digest}/query", params=params).json(),
                   "address": c.post("/api/query/url", params=params, data={"url": images.url("/img.jpg")}).json(),
                   "address, form": c.post("/api/query/url", data={"url": images.url("/img.jpg"), **form}).json()}
        drawn = {"mode": "random", "seed": 5, "exclude_self": True, "k": len(ids)}
        random = {"id": c.get("/api/query", params={"id": ids["c03.png"], **drawn}).json(),
                  "upload": upload(c, data, params=drawn).json(),
                  "upload, form": upload(c, data, form={key: str(value) for key, value in drawn.items()}).json(),
                  "recent upload": c.get(f"/api/uploads/{digest}/query", params=drawn).json(),
                  "address": c.post("/api/query/url", params=drawn, data={"url": images.url("/img.jpg")}).json()}
    for route, body in answers.items():
        assert (body["mode"], body["metric"]) == ("farthest", "l2"), route
        assert [r["id"] for r in body["results"]] == farthest, route
        assert [r["distance"] for r in body["results"]] == pytest.approx([want[i] for i in farthest], abs=1e-4)
    for route, body in random.items():
        assert body["seed"] == 5 and body["mode"] == "random", route
        assert len(body["results"]) == len(ids) - 1 and ids["c03.png"] not in {r["id"] for r in body["results"]}, route
        assert [r["id"] for r in body["results"]] == [r["id"] for r in random["id"]["results"]], route  # one draw


def test_an_option_given_twice_is_a_422_naming_it(served):
    idx, folder, _ = served
    data = (folder / "c01.png").read_bytes()
    with TestClient(create_app(idx)) as c:
        r = upload(c, data, params={"k": 2}, form={"k": "3"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "k"]
        r = upload(c, data, params={"threshold": "exact"}, form={"threshold": "near"}, route="/api/duplicates")
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "threshold"]


def test_duplicates_default_to_the_near_preset_and_take_a_threshold_as_parameter_or_form_field(served):
    idx, folder, ids = served
    data = (folder / "c00.png").read_bytes()
    near, exact_radius = presets(idx.model)["near"].radius, presets(idx.model)["exact"].radius
    want = reference(idx, ids["c00.png"])
    with TestClient(create_app(idx)) as c:
        default = upload(c, data, route="/api/duplicates").json()
        exact = upload(c, data, params={"threshold": "exact"}, route="/api/duplicates").json()
        form = upload(c, data, form={"threshold": "exact"}, route="/api/duplicates").json()
        wide = upload(c, data, params={"threshold": "2"}, route="/api/duplicates").json()
    assert (default["preset"], default["threshold"], default["metric"]) == ("near", near, "cosine")
    copies = sorted([ids["c00.png"], ids["copy.png"]])
    assert exact == form and exact["preset"] == "exact" and exact["threshold"] == exact_radius
    assert exact["query"] == {"id": copies[0], "name": "q.png", "folder": None, "upload": content_hash(data)}
    assert sorted(r["id"] for r in exact["results"]) == sorted(i for i, d in want.items() if d <= exact_radius)
    assert [r["id"] for r in exact["results"]][:2] == copies and exact["results"][1]["distance"] == 0.0
    assert wide["preset"] is None and len(wide["results"]) == len(ids)


def test_stats_and_health_say_the_limits_the_app_was_made_with(served):
    idx, _, ids = served
    app = create_app(idx, max_upload=12_345)
    assert (app.state.server.index, app.state.server.max_upload) == (idx, 12_345)  # the state it serves from
    assert app.url_path_for("static", path="app.js") == "/static/app.js"  # the mounts, by name
    assert app.url_path_for("docs-assets", path="swagger-ui.css") == "/docs-assets/swagger-ui.css"
    with TestClient(app) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/api/stats").json() == {"count": len(ids), "model": idx.model["name"], "layer": idx.model["layer"],
                                              "dims": 8, "index_type": "exact", "max_upload_bytes": 12_345,
                                              "fetch_urls": False}
    with TestClient(create_app(idx, fetch_urls=True)) as c:
        assert c.get("/api/stats").json()["fetch_urls"] is True


def test_an_upload_exactly_at_the_byte_and_pixel_limits_is_read_and_one_more_refused(served):
    idx, folder, _ = served
    out = io.BytesIO()
    Image.new("RGB", (48, 32), (90, 90, 200)).save(out, "PNG")
    data = out.getvalue()  # 48 x 32 = 1,536 pixels, not indexed (an indexed file's bytes are not decoded)
    with TestClient(create_app(idx, max_upload=len(data), max_pixels=1536)) as c:
        assert upload(c, data).status_code == 200
    with TestClient(create_app(idx, max_upload=len(data) - 1)) as c:
        r = upload(c, data)
        assert (r.status_code, r.json()["detail"]) == (413, f"upload too large: the limit is {len(data) - 1} bytes")
        big = c.post("/api/query", content=b"x" * (len(data) + 64 * 1024),  # refused on its Content-Length
                     headers={"content-type": "multipart/form-data; boundary=b"})
        assert (big.status_code, big.json()["detail"]) == (413, f"upload too large: the limit is {len(data) - 1} bytes")
    with TestClient(create_app(idx, max_pixels=1535)) as c:
        r = upload(c, data, "small.png")
        assert r.status_code == 413 and r.json()["detail"] == (
            "small.png: too large: 48x32 pixels exceeds this server's upload limit of 1,535 pixels "
            "(lookalike serve --max-pixels)")


def test_a_stalled_body_is_answered_408_after_the_apps_timeout(served):
    idx, _, _ = served
    with serving_in_thread(create_app(idx, body_timeout=0.5)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 1000\r\n\r\n--b\r\n")
            answer = b""
            while b"}" not in answer and (chunk := conn.recv(4096)):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert answer.endswith(b'{"detail":"request body incomplete: nothing received for 0.5 s"}')


def test_originals_and_thumbnails_carry_their_media_type_and_a_private_cache_header(served):
    idx, folder, ids = served
    with TestClient(create_app(idx)) as c:
        png = c.get(f"/api/images/{ids['c01.png']}")
        tga = c.get(f"/api/images/{ids['c12.tga']}")
        thumb = c.get(f"/api/thumbs/{ids['c12.tga']}")
    assert png.content == (folder / "c01.png").read_bytes() and png.headers["content-type"] == "image/png"
    assert tga.content == (folder / "c12.tga").read_bytes()
    assert tga.headers["content-type"] == "application/octet-stream"  # no registered type for .tga
    assert thumb.headers["content-type"] == "image/jpeg" and Image.open(io.BytesIO(thumb.content)).size == (48, 32)
    for r in (png, tga, thumb):
        assert r.status_code == 200 and r.headers["cache-control"] == "private, max-age=300"


class StandInMaps:
    """A MapView that answers what a test sets: None (being laid out) or (generation, bytes)."""

    made = None
    asked: list[str] = []
    index = None

    def __init__(self, index) -> None:
        StandInMaps.index = index

    def get(self, encoding: str = "json"):
        StandInMaps.asked.append(encoding)
        return StandInMaps.made


def test_the_map_is_202_while_laid_out_then_served_with_an_etag_per_encoding_and_generation(served, monkeypatch):
    idx, _, ids = served
    monkeypatch.setattr(app_module, "MapView", StandInMaps)
    monkeypatch.setattr(StandInMaps, "made", None)
    monkeypatch.setattr(StandInMaps, "asked", [])
    monkeypatch.setattr(StandInMaps, "index", None)
    with TestClient(create_app(idx)) as c:
        pending = c.get("/api/map")
        StandInMaps.made = (7, b'{"count": 3}')
        json_map = c.get("/api/map")
        binary = c.get("/api/map/binary")
        same = c.get("/api/map", headers={"If-None-Match": '"map-json-7"'})
        other = c.get("/api/map", headers={"If-None-Match": '"map-binary-7"'})
        same_binary = c.get("/api/map/binary", headers={"If-None-Match": '"map-binary-7"'})
    assert StandInMaps.index is idx and StandInMaps.asked == ["json", "json", "binary", "json", "json", "binary"]
    assert pending.status_code == 202 and pending.headers["retry-after"] == "2"
    assert pending.json() == {"detail": f"laying out the map of {len(ids)} images; ask again shortly"}
    assert (json_map.status_code, json_map.content, json_map.headers["content-type"]) == (
        200, b'{"count": 3}', "application/json")
    assert (json_map.headers["etag"], json_map.headers["cache-control"]) == ('"map-json-7"', "no-cache")
    assert (binary.status_code, binary.headers["content-type"]) == (200, "application/octet-stream")
    assert (binary.headers["etag"], binary.headers["cache-control"]) == ('"map-binary-7"', "no-cache")
    for unchanged, etag in ((same, '"map-json-7"'), (same_binary, '"map-binary-7"')):
        assert (unchanged.status_code, unchanged.content) == (304, b"")
        assert (unchanged.headers["etag"], unchanged.headers["cache-control"]) == (etag, "no-cache")
    assert other.status_code == 200 and other.content == b'{"count": 3}'


def test_an_index_that_cannot_be_read_is_a_503_in_one_line(served, monkeypatch):
    idx, _, _ = served

    def unreadable():
        raise StoreError("catalog.db is damaged")

    with TestClient(create_app(idx)) as c:
        monkeypatch.setattr(idx, "stats", unreadable)
        r = c.get("/api/stats")
    assert (r.status_code, r.json()) == (503, {"detail": "the index cannot be read: catalog.db is damaged"})


def test_openapi_and_offline_docs(served):
    idx, _, _ = served
    with TestClient(create_app(idx)) as client:
        schema = client.get("/openapi.json").json()
        assert {"/api/query", "/api/images/{image_id}", "/api/thumbs/{image_id}", "/api/stats", "/healthz"} <= set(schema["paths"])
        assert {"get", "post"} == set(schema["paths"]["/api/query"])
        docs = client.get("/docs")
        assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
        assert "<title>lookalike API</title>" in docs.text and "'/openapi.json'" in docs.text
        assert '"validatorUrl": null' in docs.text and "/docs-assets/swagger-ui.css" in docs.text
        assert 'href="/docs-assets/favicon-32x32.png"' in docs.text
        assert "http://" not in docs.text and "https://" not in docs.text
        for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
            assert client.get(f"/docs-assets/{asset}").status_code == 200, asset
        assert client.get("/redoc").status_code == 404


def test_the_openapi_document_lists_each_answer_the_server_gives_in_its_own_words(served, monkeypatch):
    """The statuses the server answers (408 for a stalled body and 503 for an unreadable index on any
    route, test_hardening.py; 202 while a map is laid out, its body ``{"detail": ...}``, 304 for an
    unchanged map and 501 without the map library, test_mapview.py) are documented, each with a
    description of its own rather than HTTP's reason phrase; the document names the package's version."""
    from http import HTTPStatus

    idx, _, _ = served
    monkeypatch.setattr(app_module, "_version", lambda: "9.8.7")  # not FastAPI's default 0.1.0
    with TestClient(create_app(idx)) as client:
        schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "lookalike" and schema["info"]["version"] == "9.8.7"
    assert schema["info"]["description"] == ("Content-based image similarity search: nearest, random and "
                                             "farthest images.")
    operations = [op for path in schema["paths"].values() for op in path.values()]
    assert len(operations) >= 10
    for op in operations:
        assert {"408", "503"} <= set(op["responses"]), op["operationId"]
    for path in ("/api/map", "/api/map/binary"):
        documented = schema["paths"][path]["get"]["responses"]
        assert {"202", "304", "501"} <= set(documented), path
        pending = documented["202"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "detail" in schema["components"]["schemas"][pending]["properties"]
    for op in operations:
        for code, answer in op["responses"].items():
            if code not in ("200", "422"):
                assert answer["description"] not in (HTTPStatus(int(code)).phrase, "Additional Response"), (code, op)


def test_the_version_is_the_installed_packages_or_0_when_it_is_not_installed(monkeypatch):
    import importlib.metadata

    assert app_module._version() == version("lookalike")

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert app_module._version() == "0"


def test_page_and_its_assets_are_local(served):
    idx, _, _ = served
    with TestClient(create_app(idx)) as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.content == (app_module.STATIC / "index.html").read_bytes()
        for asset in ("/static/app.js", "/static/style.css"):
            assert asset in page.text
            r = client.get(asset)
            assert r.status_code == 200 and r.content == (app_module.STATIC / asset.rsplit("/", 1)[1]).read_bytes()
            assert "http://" not in r.text and "https://" not in r.text
        assert "http://" not in page.text and "https://" not in page.text


def test_options_given_twice_are_each_named_in_fastapis_shape_in_order(served):
    idx, folder, _ = served
    with TestClient(create_app(idx)) as c:
        r = upload(c, (folder / "c01.png").read_bytes(), params={"mode": "farthest", "k": 2, "seed": 1},
                   form={"mode": "random", "k": "3", "metric": "l2"})
    assert r.status_code == 422
    assert r.json()["detail"] == [
        {"type": "value_error", "loc": ["body", key], "input": value,
         "msg": f"{key} given both as a form field and in the query string; give it once"}
        for key, value in (("k", 3), ("mode", "random"))]


def test_results_name_files_and_folders_without_paths_and_round_distances_to_6_places(tmp_path):
    from helpers import stand_in_index

    odd = 'a <b>&"x\'.png'  # HTML metacharacters, given back as they are (JSON escapes what it must)
    for folder, rgb in (("photos", (200, 10, 10)), ("photos 2", (190, 30, 15)), ("photos 2/inner", (10, 10, 200))):
        (tmp_path / folder).mkdir(parents=True)
        Image.new("RGB", (30, 20), rgb).save(tmp_path / folder / odd)
    with stand_in_index(tmp_path / "ix") as idx:
        idx.index(tmp_path)
        with TestClient(create_app(idx)) as c:
            body = c.get("/api/query", params={"id": 1, "k": 3}).json()
        want = reference(idx, 1)
    assert body["query"]["name"] == odd and body["query"]["folder"] in ("photos", "photos 2", "inner")
    assert sorted((r["folder"], r["name"]) for r in body["results"]) == [
        ("inner", odd), ("photos", odd), ("photos 2", odd)]
    assert str(tmp_path) not in str(body)
    for r in body["results"]:
        assert r["distance"] == round(r["distance"], 6) and r["distance"] == pytest.approx(want[r["id"]], abs=2e-6)
    assert any(r["distance"] != round(r["distance"], 5) for r in body["results"])


def test_the_openapi_document_says_each_routes_answers_tags_and_media_types(served):
    idx, _, _ = served
    with TestClient(create_app(idx)) as client:
        schema = client.get("/openapi.json").json()
    every = {"408": "Request body incomplete", "503": "The index cannot be read"}
    upload_errors = {**every, "400": "Not an image", "413": "Upload too large"}
    map_answers = {**every, "202": "Being laid out: ask again shortly",
                   "304": "Unchanged since the ETag given in If-None-Match",
                   "501": "The map's library (the map extra) is not installed, or a Milvus collection (a map is "
                          "kept in an index folder)"}
    want = {("/healthz", "get"): ("meta", every), ("/api/stats", "get"): ("meta", every),
            ("/api/query", "post"): ("query", upload_errors),
            ("/api/query", "get"): ("query", {**every, "404": "Unknown id"}),
            ("/api/query/url", "post"): ("query", {**every, "503": "The index cannot be read, or too many fetches at once",
                                                   "400": "No image at that address",
                                                   "403": "This server does not fetch addresses",
                                                   "413": "Image too large"}),
            ("/api/duplicates", "post"): ("query", upload_errors),
            ("/api/uploads/{digest}/query", "get"): ("query", {**every,
                                                              "404": "The server no longer holds that upload"}),
            ("/api/map", "get"): ("map", map_answers), ("/api/map/binary", "get"): ("map", map_answers),
            ("/api/images/{image_id}", "get"): ("images", {**every, "404": "Unknown id or missing file"}),
            ("/api/thumbs/{image_id}", "get"): ("images", {**every, "404": "Unknown id or unreadable"})}
    got = {(path, method): (op["tags"][0], {code: answer["description"] for code, answer in op["responses"].items()
                                            if code not in ("200", "422")})
           for path, ops in schema["paths"].items() for method, op in ops.items()}
    assert got == want
    paths = schema["paths"]
    assert set(paths["/api/images/{image_id}"]["get"]["responses"]["200"]["content"]) == {"image/*"}
    assert set(paths["/api/thumbs/{image_id}"]["get"]["responses"]["200"]["content"]) == {"image/jpeg"}
    assert set(paths["/api/map/binary"]["get"]["responses"]["200"]["content"]) == {"application/octet-stream"}
    assert paths["/api/map"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MapResponse"}
    (digest,) = paths["/api/uploads/{digest}/query"]["get"]["parameters"][:1]
    assert digest["schema"]["pattern"] == "^[0-9a-f]{32}$"
    assert digest["description"] == "Content hash of a recent upload (query.upload of its query)."


def test_a_query_parameter_named_like_the_posted_file_or_address_is_no_option_and_changes_nothing(served):
    idx, folder, _ = served
    data = (folder / "c02.png").read_bytes()
    with ImageServer(data) as images, TestClient(create_app(idx, fetch_urls=True, fetch_private=True)) as c:
        plain = upload(c, data, params={"k": 3}).json()
        named = upload(c, data, params={"k": 3, "file": "/etc/passwd", "url": "http://169.254.169.254/"})
        by_url = c.post("/api/query/url", params={"k": 3, "url": "http://169.254.169.254/", "file": "/etc/passwd"},
                        data={"url": images.url("/img.jpg")})
    assert named.status_code == 200 and named.json() == plain
    assert by_url.status_code == 200 and by_url.json()["results"] == plain["results"]
