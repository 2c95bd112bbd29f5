"""What one server keeps and answers (server/state.py), through its app over a stand-in index: recent
uploads held up to exactly their limit, an upload embedded once, byte copies excluded together,
duplicates with their evidence, and each refusal of a fetch or a query in its own words."""

from __future__ import annotations

import io
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from helpers import ImageServer, sample_photo
from lookalike.dedup.rules import presets
from lookalike.images import content_hash
from lookalike.server import create_app, state


def png(rgb, size=(40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, "PNG")
    return out.getvalue()


def upload(client, data: bytes, name: str = "q.png", route: str = "/api/query", **params):
    return client.post(route, params=params, files={"file": (name, data, "image/png")})


def test_the_last_64_uploads_are_held_for_a_query_by_hash_and_the_65th_drops_the_oldest(served):
    idx, _, _ = served
    pictures = [png((i, 255 - i, 100)) for i in range(65)]
    with TestClient(create_app(idx)) as c:
        for data in pictures[:64]:
            assert upload(c, data, k=1).status_code == 200
        first = c.get(f"/api/uploads/{content_hash(pictures[0])}/query", params={"k": 2})
        assert first.status_code == 200 and first.json()["query"] == {
            "id": None, "name": "q.png", "folder": None, "upload": content_hash(pictures[0])}
        upload(c, pictures[64], k=1)
        gone = c.get(f"/api/uploads/{content_hash(pictures[1])}/query")  # the oldest since the first was asked for
        assert gone.status_code == 404 and gone.json()["detail"] == (
            "this server no longer holds that upload (it keeps the last 64 until it restarts): upload the image again")
        assert c.get(f"/api/uploads/{content_hash(pictures[0])}/query").status_code == 200


def test_an_upload_posted_again_is_embedded_once_and_searched_as_asked(served):
    idx, _, _ = served
    data = png((10, 200, 90))
    with TestClient(create_app(idx)) as c:
        before = idx.embedder.images
        nearest = upload(c, data, k=3).json()
        farthest = upload(c, data, k=3, mode="farthest").json()
        dupes = upload(c, data, route="/api/duplicates", threshold="2").json()
        assert idx.embedder.images == before + 1
        upload(c, png((10, 200, 91)), k=1)
        assert idx.embedder.images == before + 2
    assert nearest["query"] == farthest["query"] == dupes["query"] == {
        "id": None, "name": "q.png", "folder": None, "upload": content_hash(data)}
    assert nearest["results"][0]["distance"] <= nearest["results"][-1]["distance"]
    assert farthest["results"][0]["distance"] > nearest["results"][-1]["distance"]
    assert [r["id"] for r in dupes["results"]][:3] == [r["id"] for r in nearest["results"]]


def test_excluding_the_query_leaves_out_every_file_with_its_bytes_on_each_route(served):
    idx, folder, ids = served
    data = (folder / "c00.png").read_bytes()
    copies = {ids["c00.png"], ids["copy.png"]}
    with TestClient(create_app(idx)) as c:
        answers = {"id": c.get("/api/query", params={"id": ids["c00.png"], "k": 20, "exclude_self": True}).json(),
                   "upload": upload(c, data, k=20, exclude_self=True).json(),
                   "recent upload": c.get(f"/api/uploads/{content_hash(data)}/query",
                                          params={"k": 20, "exclude_self": True}).json()}
        kept = c.get("/api/query", params={"id": ids["copy.png"], "k": 2}).json()
    for route, body in answers.items():
        assert {r["id"] for r in body["results"]} == set(ids.values()) - copies, route
    assert {r["id"] for r in kept["results"]} == copies and {r["distance"] for r in kept["results"]} == {0.0}
    assert kept["query"] == {"id": ids["copy.png"], "name": "copy.png", "folder": "photos", "upload": None}


def test_duplicates_of_an_upload_are_verified_and_carry_their_evidence(tmp_path):
    from helpers import stand_in_index

    folder = tmp_path / "photos"
    folder.mkdir()
    chelsea = sample_photo("chelsea")
    chelsea.save(folder / "chelsea.jpg", quality=90)
    sample_photo("rocket").save(folder / "rocket.jpg", quality=90)
    out = io.BytesIO()
    chelsea.save(out, "JPEG", quality=70)  # a re-encode: not the indexed bytes
    with stand_in_index(tmp_path / "ix") as idx:
        idx.index(folder)
        with TestClient(create_app(idx)) as c:
            body = upload(c, out.getvalue(), "again.jpg", route="/api/duplicates").json()
        near = presets(idx.model)["near"].radius
    assert (body["preset"], body["threshold"]) == ("near", near)
    (found,) = body["results"]
    assert (found["rank"], found["name"], found["folder"]) == (1, "chelsea.jpg", "photos")
    assert body["query"]["id"] is None and found["distance"] <= body["threshold"]
    evidence = found["evidence"]
    assert evidence["inliers"] >= 20 and evidence["agreement"] >= 0.9 and evidence["summary"]
    assert (evidence["rotation"], evidence["flipped"]) == (0, False) and evidence["scale"] == pytest.approx(1, abs=0.01)


def test_an_unknown_threshold_is_a_422_shaped_as_fastapis_own(served):
    idx, folder, _ = served
    with TestClient(create_app(idx)) as c:
        r = upload(c, (folder / "c01.png").read_bytes(), route="/api/duplicates", threshold="loose")
    assert r.status_code == 422
    assert r.json()["detail"] == [{"type": "value_error", "loc": ["query", "threshold"], "input": "loose",
                                   "msg": "unknown preset 'loose'; choose from: exact, near, similar, shots or a "
                                          "cosine distance"}]


def test_an_image_removed_since_its_row_was_read_is_a_404(served, monkeypatch):
    idx, _, ids = served
    with TestClient(create_app(idx)) as c:
        monkeypatch.setattr(idx, "stored", lambda image_id, row=None: None)
        r = c.get("/api/query", params={"id": ids["c05.png"]})
    assert (r.status_code, r.json()) == (404, {"detail": f"no image with id {ids['c05.png']} in the index"})


def test_each_refused_fetch_says_why_with_its_status(served):
    idx, folder, _ = served
    with ImageServer((folder / "c04.png").read_bytes()) as images:
        with TestClient(create_app(idx)) as c:
            r = c.post("/api/query/url", data={"url": images.url("/img.jpg")})
            assert (r.status_code, r.json()["detail"]) == (403, "this server does not fetch image addresses (start "
                                                                "it with lookalike serve --fetch-urls)")
        with TestClient(create_app(idx, fetch_urls=True)) as c:
            url = images.url("/img.jpg")
            r = c.post("/api/query/url", data={"url": url})
            assert r.status_code == 400 and r.json()["detail"].startswith(f"{url}: ")
            assert "public addresses only" in r.json()["detail"]
        with TestClient(create_app(idx, max_upload=200_000, fetch_urls=True, fetch_private=True)) as c:
            url = images.url("/stream?n=300000")
            r = c.post("/api/query/url", data={"url": url})
            assert r.status_code == 413 and r.json()["detail"].startswith(f"{url}: ")
            assert "over the limit of 200,000 bytes" in r.json()["detail"]
            assert c.post("/api/query/url", data={"url": images.url("/img.jpg")}).status_code == 200
    assert images.hosts.count(f"127.0.0.1:{images.server.server_address[1]}") == 2  # the stream and the image: the address refused as private was never asked


def test_a_fetch_waits_at_most_the_fetch_timeout_for_a_free_slot(served, monkeypatch):
    idx, _, _ = served
    busy = threading.BoundedSemaphore(1)
    busy.acquire()
    monkeypatch.setattr(state, "FETCHING", busy)
    monkeypatch.setattr(state, "TIMEOUT", 0.2)
    with TestClient(create_app(idx, fetch_urls=True, fetch_private=True)) as c:
        r = c.post("/api/query/url", data={"url": "http://127.0.0.1:9/x.jpg"})
        assert (r.status_code, r.json()["detail"]) == (503, "the server is fetching other images: try again")
        busy.release()
        r = c.post("/api/query/url", data={"url": "http://127.0.0.1:9/x.jpg"})
        assert r.status_code == 400  # a free slot: fetched (nothing listens there), and the slot given back
    assert busy.acquire(blocking=False)


def test_four_fetches_run_at_once():
    assert [state.FETCHING.acquire(blocking=False) for _ in range(5)] == [True] * 4 + [False]
    for _ in range(4):
        state.FETCHING.release()
    with pytest.raises(ValueError):
        state.FETCHING.release()  # bounded: never more than 4


def test_a_server_state_fetches_no_address_by_default_and_public_ones_only_when_told_to(served):
    from fastapi import HTTPException

    from lookalike.server.files import IndexedFiles

    idx, _, _ = served
    files = IndexedFiles(idx)
    with pytest.raises(HTTPException) as refused:
        state.ServerState(idx, files).fetch("http://127.0.0.1:9/x.jpg")
    assert refused.value.status_code == 403
    with pytest.raises(HTTPException) as private:
        state.ServerState(idx, files, fetch_urls=True).fetch("http://127.0.0.1:9/x.jpg")
    assert private.value.status_code == 400 and "public addresses only" in private.value.detail
