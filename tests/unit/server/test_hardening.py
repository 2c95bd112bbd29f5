"""Server hardening (issue 15): parameter ranges, error shapes, a stalled body, the served file."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient

from helpers import sample_photo, serving_in_thread
from lookalike.api import Index
from lookalike.server import create_app


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    for name in ("chelsea", "rocket", "coffee"):
        sample_photo(name).save(root / f"{name}.jpg")
    return root


def _id(client, name: str) -> int:
    found = client.get("/api/query", params={"id": 1, "k": 10}).json()["results"]
    return {r["name"]: r["id"] for r in found}[name]


@pytest.mark.parametrize("url", ["/api/images/9223372036854775808", "/api/thumbs/-9223372036854775809",
                                 "/api/query?id=99999999999999999999", "/api/query?id=1&mode=random&seed=-1",
                                 "/api/query?id=1&mode=random&seed=18446744073709551616"])
def test_values_outside_64_bit_are_a_422_with_the_schema_shape(client, url):
    r = client.get(url)
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)


@pytest.mark.parametrize("digest", ["0" * 31 + "G", "0" * 33, "..."])
def test_a_recent_upload_is_asked_for_by_a_content_hash_only(client, digest):
    r = client.get(f"/api/uploads/{digest}/query")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "digest"], r.text
    assert client.get(f"/api/uploads/{'0' * 32}/query").status_code == 404  # a hash the server does not hold


def test_an_unknown_threshold_is_a_422_with_the_schema_shape(client, folder):
    r = client.post("/api/duplicates", params={"threshold": "sideways"},
                    files={"file": ("q.jpg", (folder / "rocket.jpg").read_bytes(), "image/jpeg")})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "threshold"] and "sideways" in error["msg"]


def test_a_body_shorter_than_its_content_length_is_answered_408(index):
    with serving_in_thread(create_app(index, body_timeout=1.0)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            conn.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 1000\r\n\r\n--b\r\n")
            started = time.monotonic()
            answer = conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 10


def test_only_the_indexed_file_itself_is_served(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "rocket", "coffee", "horse"):
        sample_photo(name).save(folder / f"{name}.jpg")
    secret = tmp_path / "secret.jpg"
    sample_photo("astronaut").save(secret)
    with Index.open(tmp_path / "ix", create=True) as idx, TestClient(create_app(idx)) as c:
        idx.index(folder)
        ids = {name: _id(c, name) for name in ("chelsea.jpg", "rocket.jpg", "coffee.jpg", "horse.jpg")}
        served = c.get(f"/api/images/{ids['chelsea.jpg']}")
        assert served.status_code == 200 and served.content == (folder / "chelsea.jpg").read_bytes()
        assert served.headers["content-type"] == "image/jpeg"
        (folder / "rocket.jpg").unlink()
        (folder / "rocket.jpg").symlink_to(secret)  # a symlink to a file outside the folder
        shutil.copy(secret, folder / "coffee.jpg")  # other content under the indexed name
        data = bytearray((folder / "horse.jpg").read_bytes())
        stat = (folder / "horse.jpg").stat()
        data[-100] ^= 0xFF  # same size and modification time, other bytes
        (folder / "horse.jpg").write_bytes(bytes(data))
        os.utime(folder / "horse.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        for name in ("rocket.jpg", "coffee.jpg", "horse.jpg"):
            assert c.get(f"/api/images/{ids[name]}").status_code == 404, name
            assert c.get(f"/api/thumbs/{ids[name]}").status_code == 404, name
        assert c.get(f"/api/thumbs/{ids['chelsea.jpg']}").status_code == 200


def test_an_indexed_file_replaced_by_a_fifo_is_a_404_and_blocks_nothing(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "rocket"):
        sample_photo(name).save(folder / f"{name}.jpg")
    with Index.open(tmp_path / "ix", create=True) as idx, TestClient(create_app(idx)) as c:
        idx.index(folder)
        rocket = _id(c, "rocket.jpg")
        (folder / "rocket.jpg").unlink()
        os.mkfifo(folder / "rocket.jpg")  # nothing writes to it: opening it to read would wait forever
        answers = {}

        def ask():
            answers.update({url: c.get(url).status_code for url in (f"/api/images/{rocket}", f"/api/thumbs/{rocket}")})

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        asking.join(20)
        blocked = asking.is_alive()
        if blocked:  # let the blocked reader go (end of file), so that the server can stop
            os.close(os.open(folder / "rocket.jpg", os.O_WRONLY | os.O_NONBLOCK))
        assert not blocked and set(answers.values()) == {404}, answers
        assert c.get("/healthz").status_code == 200


def test_a_vector_cache_damaged_under_a_running_server_is_not_searched(folder, tmp_path):
    with Index.open(tmp_path / "ix", create=True) as idx, TestClient(create_app(idx)) as c:
        idx.index(folder)
        first = c.get("/api/query", params={"id": 1, "k": 3}).json()["results"]
        assert [r["distance"] for r in first][0] == 0.0 and first[1]["distance"] > 0.05
        cache = next(idx.root.glob("vectors-*.npy"))
        size = cache.stat().st_size
        with open(cache, "r+b") as f:  # in place, as a disk error or another program would: the mapping sees it
            f.seek(128)
            f.write(b"\0" * (size - 128))
        assert c.get("/api/query", params={"id": 1, "k": 3}).json()["results"] == first
        os.truncate(next(idx.root.glob("vectors-*.npy")), 200)  # reading a mapped page past the end: SIGBUS
        assert c.get("/api/query", params={"id": 1, "k": 3}).json()["results"] == first
        assert next(idx.root.glob("vectors-*.npy")).stat().st_size == size  # rebuilt from the catalog
