"""The HTTP API through FastAPI's test client, over a real index of the sample photos."""

from __future__ import annotations

import io
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image

from helpers import sample_photo, variants
from lookalike.api import Index
from lookalike.images import content_hash
from lookalike.server import create_app


@pytest.fixture(scope="module")
def folder(photo_dir):
    """The photos served (through conftest's ``index`` and ``client``)."""
    return photo_dir


@pytest.fixture(scope="module")
def ids(client, index):
    """Image id by file name."""
    found = client.get("/api/query", params={"id": 1, "k": 1000}).json()["results"]
    assert len(found) == len(index) == 18
    return {r["name"]: r["id"] for r in found}


def jpeg(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def upload(client, data: bytes, name: str = "query.jpg", **params):
    return client.post("/api/query", params=params, files={"file": (name, data, "image/jpeg")})


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but carries almost no data (a bomb's shape)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def test_health_and_stats(client, index):
    assert client.get("/healthz").json() == {"status": "ok"}
    stats = client.get("/api/stats").json()
    assert stats == {"count": 18, "model": index.spec.name, "layer": index.spec.layer,
                     "dims": index.spec.dim, "index_type": "exact",
                     "max_upload_bytes": 20 * 1024 * 1024, "fetch_urls": False}


def test_upload_of_an_indexed_file_finds_it_first(client, photo_dir, ids):
    r = upload(client, (photo_dir / "chelsea.jpg").read_bytes(), "chelsea.jpg", k=5)
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == {"id": ids["chelsea.jpg"], "name": "chelsea.jpg", "folder": None,
                             "upload": content_hash((photo_dir / "chelsea.jpg").read_bytes())}
    assert (body["mode"], body["metric"], body["seed"]) == ("nearest", "cosine", None)
    first = body["results"][0]
    assert first == {"rank": 1, "id": ids["chelsea.jpg"], "name": "chelsea.jpg", "folder": photo_dir.name,
                     "distance": 0.0}
    assert [r["rank"] for r in body["results"]] == [1, 2, 3, 4, 5]
    assert str(photo_dir) not in r.text and "path" not in r.text


def test_upload_of_a_new_photo_finds_its_relatives(client):
    edited = variants(sample_photo("coffee"))["bright"]
    data = jpeg(edited)
    r = upload(client, data, "../../etc/coffee bright.jpg", k=3)
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == {"id": None, "name": "coffee bright.jpg", "folder": None, "upload": content_hash(data)}
    assert {x["name"] for x in body["results"]} <= {"coffee.jpg", "coffee_flip.jpg", "coffee_crop.png"}
    assert 0 < body["results"][0]["distance"] < 0.2


def test_duplicates_of_an_upload(client, photo_dir, ids):
    def duplicates(data, **params):
        return client.post("/api/duplicates", params=params, files={"file": ("q.jpg", data, "image/jpeg")})

    out = io.BytesIO()
    sample_photo("chelsea").save(out, "JPEG", quality=70)
    chelsea = out.getvalue()  # a re-encode, not the indexed bytes
    body = duplicates(chelsea).json()
    assert body["query"]["id"] is None and (body["metric"], body["preset"]) == ("cosine", "near")
    names = [r["name"] for r in body["results"]]
    assert names[0] == "chelsea.jpg" and set(names) <= {"chelsea.jpg", "chelsea_flip.jpg", "chelsea_crop.png"}
    assert all(0 < r["distance"] <= body["threshold"] for r in body["results"])
    assert all(r["evidence"]["inliers"] >= 20 and r["evidence"]["summary"] for r in body["results"])  # verified
    # and said how far the aligned pictures agree (a re-encoded copy: almost everywhere)
    assert all(r["evidence"]["agreement"] >= 0.9 and 0 < r["evidence"]["compared"] <= 1
               and r["evidence"]["shifted"] <= 0.025 for r in body["results"])
    exact = duplicates((photo_dir / "chelsea.jpg").read_bytes(), threshold="exact").json()
    assert exact["results"][0] == {"rank": 1, "id": ids["chelsea.jpg"], "name": "chelsea.jpg",
                                   "folder": photo_dir.name, "distance": 0.0, "evidence": None}
    assert duplicates(jpeg(sample_photo("clock"))).json()["results"] == []
    assert duplicates(chelsea, threshold="0.9").json()["threshold"] == 0.9
    shots = duplicates(chelsea, threshold="shots").json()  # copies are found by shots as by near
    assert shots["preset"] == "shots" and [r["name"] for r in shots["results"]] == names
    bad = duplicates(chelsea, threshold="loose")
    assert bad.status_code == 422 and "unknown preset" in bad.json()["detail"][0]["msg"]
    assert duplicates(b"not an image").status_code == 400


def test_an_upload_posted_again_is_embedded_once(index):
    app = create_app(index, max_upload=10_000_000)
    embedder = index.embedder
    calls = []
    real = embedder.embed_images
    embedder.embed_images = lambda images: calls.append(len(images)) or real(images)
    try:
        with TestClient(app) as c:
            data = jpeg(sample_photo("rocket").rotate(5))  # not indexed bytes
            first = upload(c, data, k=5).json()
            again = upload(c, data, k=5, mode="farthest").json()
            dupes = c.post("/api/duplicates", files={"file": ("q.jpg", data, "image/jpeg")}).json()
            other = upload(c, jpeg(sample_photo("coffee").rotate(5)), k=5).json()
    finally:
        embedder.embed_images = real
    assert calls == [1, 1]  # the rocket once, the coffee once
    assert first["results"][0]["name"].startswith("rocket") and again["mode"] == "farthest"
    assert again["results"][0]["distance"] > first["results"][-1]["distance"]
    assert [{k: v for k, v in r.items() if k != "evidence"} for r in dupes["results"]] == [
        r for r in first["results"] if r["distance"] <= dupes["threshold"]]
    assert other["results"][0]["name"].startswith("coffee")


def test_search_by_id_finds_itself_unless_excluded(client, ids, photo_dir):
    body = client.get("/api/query", params={"id": ids["horse.jpg"], "k": 4}).json()
    assert body["query"] == {"id": ids["horse.jpg"], "name": "horse.jpg", "folder": photo_dir.name, "upload": None}
    assert body["results"][0] == {"rank": 1, "id": ids["horse.jpg"], "name": "horse.jpg", "folder": photo_dir.name,
                                  "distance": 0.0}
    excluded = client.get("/api/query", params={"id": ids["horse.jpg"], "k": 4, "exclude_self": True}).json()
    assert ids["horse.jpg"] not in [x["id"] for x in excluded["results"]]
    assert [x["id"] for x in excluded["results"]][:3] == [x["id"] for x in body["results"]][1:4]


def test_modes_order_results(client, ids):
    query = {"id": ids["astronaut.jpg"], "k": 18}
    nearest = client.get("/api/query", params=query).json()["results"]
    farthest = client.get("/api/query", params={**query, "mode": "farthest"}).json()["results"]
    d_near = [x["distance"] for x in nearest]
    d_far = [x["distance"] for x in farthest]
    assert d_near == sorted(d_near) and d_far == sorted(d_far, reverse=True)
    assert [x["id"] for x in farthest] == [x["id"] for x in nearest][::-1]

    rand = lambda seed: client.get("/api/query", params={**query, "k": 6, "mode": "random", "seed": seed}).json()
    assert rand(1)["mode"] == "random"
    assert rand(1)["results"] == rand(1)["results"]
    assert [x["id"] for x in rand(1)["results"]] != [x["id"] for x in rand(2)["results"]]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_distances_are_those_of_the_stored_vectors(client, index, ids, metric):
    ids_all, vectors = index.vectors()
    vectors = np.asarray(vectors, np.float64)
    q = vectors[list(ids_all).index(ids["rocket.jpg"])]
    if metric == "cosine":
        expected = 1 - vectors @ q / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    else:
        expected = np.linalg.norm(vectors - q, axis=1)
    by_id = dict(zip(ids_all.tolist(), expected))
    found = client.get("/api/query", params={"id": ids["rocket.jpg"], "k": 18, "metric": metric}).json()
    assert found["metric"] == metric and found["results"][0] == {**found["results"][0], "name": "rocket.jpg",
                                                                 "distance": 0.0}
    got = {r["id"]: r["distance"] for r in found["results"]}
    assert got.keys() == by_id.keys()
    for i, d in got.items():
        assert d == pytest.approx(by_id[i], abs=1e-5)


@pytest.mark.parametrize("data, status, words", [
    (b"this is not an image", 400, "not an image"),
    (b"", 400, "empty upload"),
    (jpeg(Image.new("RGB", (64, 64), "red"))[:300], 400, "bad.jpg: cannot"),
    (png_header_only(20_000, 20_000), 413, "too large: 20000x20000 pixels"),
])
def test_bad_uploads_get_a_json_reason(client, data, status, words):
    r = upload(client, data, "bad.jpg")
    assert r.status_code == status
    assert words in r.json()["detail"]


def test_upload_needs_a_file_and_valid_options(client, photo_dir):
    assert client.post("/api/query").status_code == 422
    data = (photo_dir / "moon.jpg").read_bytes()
    for params in ({"mode": "sideways"}, {"metric": "manhattan"}, {"k": 0}, {"k": 1001}, {"seed": "x"}):
        r = upload(client, data, **params)
        assert r.status_code == 422, params
        assert r.json()["detail"][0]["loc"][-1] == next(iter(params))


def test_oversized_uploads_are_refused(index, photo_dir):
    data = (photo_dir / "coins.jpg").read_bytes()
    with TestClient(create_app(index, max_upload=len(data) - 1)) as small:
        r = upload(small, data)
        assert r.status_code == 413 and r.json()["detail"] == f"upload too large: the limit is {len(data) - 1} bytes"
        r = upload(small, b"\xff" * (len(data) + 200_000))  # refused on its Content-Length
        assert r.status_code == 413 and r.json()["detail"] == f"upload too large: the limit is {len(data) - 1} bytes"
        head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jpg"\r\n\r\n'
        chunks = (head if i == 0 else b"x" * 65536 for i in range(9))  # no Content-Length: counted as it streams
        r = small.post("/api/query", content=chunks, headers={"content-type": "multipart/form-data; boundary=b"})
        assert r.status_code == 413 and r.json()["detail"] == f"upload too large: the limit is {len(data) - 1} bytes"
    with TestClient(create_app(index, max_upload=len(data))) as exact:
        assert upload(exact, data).status_code == 200


def test_pixel_limit_is_configurable(index, ids):
    img = Image.new("RGB", (300, 300), "teal")
    with TestClient(create_app(index, max_pixels=300 * 299)) as strict:
        r = upload(strict, jpeg(img), "teal.jpg")
        assert r.status_code == 413
        assert r.json()["detail"] == ("teal.jpg: too large: 300x300 pixels exceeds this server's upload limit of "
                                      "89,700 pixels (lookalike serve --max-pixels)")
        t = strict.get(f"/api/thumbs/{ids['astronaut.jpg']}")  # 512x512: the upload limit is not the index's
        assert t.status_code == 200 and Image.open(io.BytesIO(t.content)).size == (256, 256)


def test_uploads_have_a_lower_pixel_limit_than_indexing(client):
    from lookalike.images import DEFAULT_MAX_PIXELS

    assert 8000 * 7000 < DEFAULT_MAX_PIXELS  # an image that index would decode
    r = upload(client, png_header_only(8000, 7000), "big.png")
    assert r.status_code == 413
    assert r.json()["detail"] == ("big.png: too large: 8000x7000 pixels exceeds this server's upload limit of "
                                  "50,000,000 pixels (lookalike serve --max-pixels)")


def test_images_and_thumbnails_are_served_by_id(client, photo_dir, ids):
    r = client.get(f"/api/images/{ids['coffee_crop.png']}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.content == (photo_dir / "coffee_crop.png").read_bytes()
    t = client.get(f"/api/thumbs/{ids['astronaut.jpg']}")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(t.content))
    assert max(thumb.size) == 256 and thumb.size == (256, 256)  # astronaut is square
    assert client.get(f"/api/thumbs/{ids['astronaut.jpg']}").content == t.content
    wide = Image.open(io.BytesIO(client.get(f"/api/thumbs/{ids['chelsea.jpg']}").content))
    assert wide.width == 256 and wide.height < 256


@pytest.mark.parametrize("url", ["/api/query?id=99999", "/api/images/99999", "/api/thumbs/99999",
                                 "/api/images/0", "/api/thumbs/-1"])
def test_unknown_ids_are_404(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert "no image with id" in r.json()["detail"]


@pytest.mark.parametrize("url", [
    "/api/images/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/images/%2Fetc%2Fpasswd",
    "/api/thumbs/..%2Fchelsea.jpg",
    "/api/images/1/../../../etc/passwd",
    "/static/..%2F..%2Fapp.py",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/docs-assets/..%2F__init__.py",
    "/api/query?id=..%2Fetc%2Fpasswd",
])
def test_no_path_traversal(live_server, url):
    status, body = raw_get(live_server, url)
    assert status in (404, 422), status
    assert b"root:" not in body and b"create_app" not in body and b"swagger_ui_path" not in body


@pytest.fixture(scope="module")
def live_server(index):
    """The app behind a real uvicorn on a free loopback port, for requests an HTTP client would rewrite."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(index), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(30)


def raw_get(port: int, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` byte for byte (no dot-segment removal, no re-encoding): (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        response = b""
        while chunk := conn.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_raw_requests_reach_the_server_unchanged(live_server, index):
    assert raw_get(live_server, "/static/../api/stats")[0] == 404  # an HTTP client would send /api/stats
    status, body = raw_get(live_server, "/api/stats")
    assert status == 200 and f'"count":{len(index)}'.encode() in body


def test_a_query_parameter_cannot_name_a_file(client, photo_dir, ids):
    r = client.get(f"/api/images/{ids['moon.jpg']}", params={"path": "/etc/passwd", "file": "/etc/passwd"})
    assert r.content == (photo_dir / "moon.jpg").read_bytes()


def test_missing_file_is_404(photo_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("moon.jpg", "text.jpg"):
        (folder / name).write_bytes((photo_dir / name).read_bytes())
    with Index.open(tmp_path / "index", create=True) as idx:
        idx.index(folder)
        (folder / "moon.jpg").unlink()
        with TestClient(create_app(idx)) as c:
            moon = c.get("/api/query", params={"id": 1, "k": 2}).json()
            gone = next(r["id"] for r in moon["results"] if r["name"] == "moon.jpg")
            assert c.get(f"/api/images/{gone}").status_code == 404
            assert "is gone" in c.get(f"/api/thumbs/{gone}").json()["detail"]
            assert c.get("/api/query", params={"id": gone}).status_code == 200  # its vector is still indexed


def test_concurrent_searches_agree(client, photo_dir, ids):
    new_photo = jpeg(variants(sample_photo("rocket"))["crop"])

    def by_upload(_):
        return [x["id"] for x in upload(client, new_photo, k=5).json()["results"]]

    def by_id(_):
        return [x["id"] for x in client.get("/api/query", params={"id": ids["coins.jpg"], "k": 5}).json()["results"]]

    with ThreadPoolExecutor(6) as pool:
        uploads = list(pool.map(by_upload, range(6)))
        searches = list(pool.map(by_id, range(6)))
    assert all(u == uploads[0] for u in uploads) and uploads[0][0] == ids["rocket.jpg"]
    assert all(s == searches[0] for s in searches) and searches[0][0] == ids["coins.jpg"]


@pytest.fixture(scope="module")
def image_server(photo_dir):
    """An HTTP server on 127.0.0.1 serving the coffee photo's bytes (helpers.ImageServer)."""
    from helpers import ImageServer

    with ImageServer((photo_dir / "coffee.jpg").read_bytes()) as s:
        yield s


def test_a_server_fetches_no_address_unless_started_to(client, image_server):
    assert client.get("/api/stats").json()["fetch_urls"] is False
    r = client.post("/api/query/url", data={"url": image_server.url("/img.jpg")})
    assert r.status_code == 403 and "--fetch-urls" in r.json()["detail"]
    assert image_server.hosts.count(f"127.0.0.1:{image_server.server.server_address[1]}") == 0  # nothing fetched


def test_a_fetching_server_refuses_its_own_machine_and_network_unless_told(index, image_server):
    with TestClient(create_app(index, fetch_urls=True)) as c:
        assert c.get("/api/stats").json()["fetch_urls"] is True
        for url in (image_server.url("/img.jpg"), image_server.url("/img.jpg", "localhost"),
                    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x.jpg"):
            r = c.post("/api/query/url", data={"url": url})
            assert r.status_code == 400 and "public addresses only" in r.json()["detail"], url
        r = c.post("/api/query/url", data={"url": "file:///etc/passwd"})
        assert r.status_code == 400 and "only http and https" in r.json()["detail"]


def test_an_image_by_its_address_is_queried_like_an_upload(index, image_server, ids):
    with TestClient(create_app(index, max_upload=200_000, fetch_urls=True, fetch_private=True)) as c:
        r = c.post("/api/query/url", data={"url": image_server.url("/redirect/2"), "k": "3"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["query"]["name"] == "img.jpg" and body["query"]["id"] == ids["coffee.jpg"]
        assert body["results"][0]["id"] == ids["coffee.jpg"] and body["results"][0]["distance"] == 0.0
        again = c.get(f"/api/uploads/{body['query']['upload']}/query", params={"k": 3}).json()
        assert again["results"] == body["results"]  # and again by its hash, as an upload
        big = c.post("/api/query/url", data={"url": image_server.url("/stream?n=300000")})
        assert big.status_code == 413 and "over the limit of 200,000 bytes" in big.json()["detail"]
        page = c.post("/api/query/url", data={"url": image_server.url("/page.html")})
        assert page.status_code == 400 and "not an image" in page.json()["detail"]


def test_every_query_route_draws_the_random_rows_its_seed_names(index, image_server, ids, photo_dir):
    """A seed is honoured, and returned, on each route that queries: by id, by upload, by a recent
    upload's hash and by address. The coffee photo is indexed, so each route queries with its stored
    vector and the same seed must draw the same rows everywhere; another seed draws others."""
    coffee = (photo_dir / "coffee.jpg").read_bytes()
    with TestClient(create_app(index, fetch_urls=True, fetch_private=True)) as c:
        digest = upload(c, coffee, k=1).json()["query"]["upload"]

        def draws(seed) -> dict[str, dict]:
            params = {"k": 6, "mode": "random", **({} if seed is None else {"seed": seed})}
            form = {key: str(value) for key, value in params.items()}
            return {"id": c.get("/api/query", params={"id": ids["coffee.jpg"], **params}).json(),
                    "upload": upload(c, coffee, **params).json(),
                    "recent upload": c.get(f"/api/uploads/{digest}/query", params=params).json(),
                    "address": c.post("/api/query/url", data={"url": image_server.url("/img.jpg"), **form}).json()}

        for seed in (7, 8):
            found = draws(seed)
            assert {route: body["seed"] for route, body in found.items()} == dict.fromkeys(found, seed)
            assert {route: body["mode"] for route, body in found.items()} == dict.fromkeys(found, "random")
            rows = {route: [r["id"] for r in body["results"]] for route, body in found.items()}
            assert len(set(map(tuple, rows.values()))) == 1, rows
            assert len(rows["id"]) == 6 and len(set(rows["id"])) == 6
        assert rows["id"] != [r["id"] for r in draws(7)["id"]["results"]]  # seed 8 drew other rows than 7
        for route, body in draws(None).items():  # no seed: a fresh one, returned, that repeats the draw
            again = draws(body["seed"])[route]
            assert isinstance(body["seed"], int) and again["results"] == body["results"], route
