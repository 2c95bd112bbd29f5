"""GET /api/map: the map of the served index, 202 while it is laid out, 501 without its library."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from helpers import read_binary_map
from lookalike.map.cache import MAP_FILE, Map, save
from lookalike.map.layout import LayoutError
from lookalike.map import packed
from lookalike.map.packed import PACKED_FILE
from lookalike.server import create_app

pytest.importorskip("umap", reason="the map needs umap-learn (the map extra)")
# Tests marked slow run UMAP: its first call in a process compiles it (numba), about a minute
# on 2 cores.


@pytest.fixture(scope="module")
def folder(photo_dir):
    return photo_dir


def get_map(client, seconds: float = 300, url: str = "/api/map"):
    deadline = time.monotonic() + seconds
    while True:
        r = client.get(url)
        if r.status_code != 202:
            return r
        assert time.monotonic() < deadline
        time.sleep(0.2)


@pytest.mark.slow
def test_the_map_names_images_without_paths(index, photo_dir):
    with TestClient(create_app(index)) as client:
        r = get_map(client)
        assert r.status_code == 200
        data = r.json()
        ids, _ = index.vectors()
        assert data["count"] == 18 and data["ids"] == ids.tolist()
        assert data["names"] == [os.path.basename(p) for p in index.paths(ids)]
        assert data["folders"] == [{"name": photo_dir.name, "size": 18}] and data["folder"] == [0] * 18
        assert data["color"] == "cluster"  # one folder: coloured by cluster
        m = index.layout()
        assert data["cluster"] == m.clusters.tolist()
        assert [c["size"] for c in data["clusters"]] == m.cluster_sizes().tolist() and sum(m.cluster_sizes()) == 18
        assert data["x"] == [round(float(x) * 1e6) for x in m.xy[:, 0]] and data["scale"] == 10**6
        assert all(0 <= v <= data["scale"] for v in data["x"] + data["y"])
        again = client.get("/api/map", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""


def test_the_page_reads_the_same_map_in_typed_arrays(index, photo_dir, monkeypatch):
    """GET /api/map/binary holds what GET /api/map holds (a map made here, without UMAP), and is
    made once per generation."""
    ids, _ = index.vectors()
    n = len(ids)
    xy = np.stack([np.linspace(0, 1, n), np.linspace(1, 0, n) ** 2], axis=1).astype(np.float32)
    made = Map(ids, xy, np.arange(n, dtype=np.int32) % 2, np.eye(2, 4, dtype=np.float32),
               np.array([[ids[0]] + [-1] * 7, [ids[1]] + [-1] * 7]), index.map_generation(), "by hand", n, 0)
    monkeypatch.setattr(index, "layout", lambda: made)
    (index.root / PACKED_FILE).unlink(missing_ok=True)  # packed from a map laid out by an earlier test
    with TestClient(create_app(index)) as client:
        r = get_map(client, seconds=30, url="/api/map/binary")
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        head, columns = read_binary_map(r.content)
        data = get_map(client).json()
        assert columns["ids"].tolist() == data["ids"] == ids.tolist()
        assert columns["x"].tobytes() == xy[:, 0].tobytes() and columns["y"].tobytes() == xy[:, 1].tobytes()
        assert columns["names"] == data["names"] == [os.path.basename(p) for p in index.paths(ids)]
        assert columns["folder"].tolist() == data["folder"] == [0] * n
        assert columns["cluster"].tolist() == data["cluster"] == [i % 2 for i in range(n)]
        assert head["folders"] == data["folders"] == [{"name": photo_dir.name, "size": n}]
        assert head["clusters"] == data["clusters"] == [{"size": (n + 1) // 2, "central": [int(ids[0])]},
                                                        {"size": n // 2, "central": [int(ids[1])]}]
        assert client.get("/api/map/binary").content == r.content
        again = client.get("/api/map/binary", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
    (index.root / PACKED_FILE).unlink(missing_ok=True)  # kept where an earlier test left map.npz: not that map


def test_a_server_answers_the_typed_arrays_kept_beside_the_index(index, monkeypatch):
    """The typed arrays made once are kept in map.bin: a server started later answers them without
    making the map; after a change of the index they are made again, from the map brought up to date."""
    ids, _ = index.vectors()
    n = len(ids)
    made = Map(ids, np.stack([np.linspace(0, 1, n)] * 2, axis=1).astype(np.float32), np.zeros(n, np.int32),
               np.eye(1, 4, dtype=np.float32), np.array([[ids[0]] + [-1] * 7]), index.map_generation(), "by hand", n, 0)
    save(index.root / MAP_FILE, made)  # as layout() leaves it
    (index.root / PACKED_FILE).unlink(missing_ok=True)
    calls = []
    monkeypatch.setattr(index, "layout", lambda: calls.append(1) or replace(made, generation=index.map_generation()))
    try:
        with TestClient(create_app(index)) as client:
            first = get_map(client, seconds=30, url="/api/map/binary")
        assert calls == [1] and (index.root / PACKED_FILE).exists()
        with TestClient(create_app(index)) as client:  # a server started later
            again = client.get("/api/map/binary")
            assert again.status_code == 200 and again.content == first.content and calls == [1]
            assert again.headers["etag"] == first.headers["etag"]
            index.collection.store.put([], errors=[("/nowhere/torn.jpg", 10, 0, "not an image")])
            after = get_map(client, seconds=30, url="/api/map/binary")
            assert calls == [1, 1] and read_binary_map(after.content)[0]["generation"] == index.map_generation()
            assert after.headers["etag"] != first.headers["etag"]
    finally:
        (index.root / MAP_FILE).unlink()  # the map is this test's own: later tests lay theirs out
        (index.root / PACKED_FILE).unlink(missing_ok=True)


def test_the_typed_arrays_are_read_from_map_bin_once_per_generation(index, monkeypatch):
    """A server answers map.bin from memory after its first read, and reads it again only for a new
    generation; a server that made the map answers its own copy without reading the file."""
    ids, _ = index.vectors()
    n = len(ids)
    made = Map(ids, np.stack([np.linspace(0, 1, n)] * 2, axis=1).astype(np.float32), np.zeros(n, np.int32),
               np.eye(1, 4, dtype=np.float32), np.array([[ids[0]] + [-1] * 7]), index.map_generation(), "by hand", n, 0)
    save(index.root / MAP_FILE, made)
    (index.root / PACKED_FILE).unlink(missing_ok=True)
    monkeypatch.setattr(index, "layout", lambda: replace(made, generation=index.map_generation()))
    reads = []
    stored = packed.stored
    monkeypatch.setattr(packed, "stored", lambda root, generation: reads.append(generation) or stored(root, generation))
    try:
        with TestClient(create_app(index)) as client:  # makes the map, keeps map.bin
            first = get_map(client, seconds=30, url="/api/map/binary")
            made_reads = len(reads)
            for _ in range(3):
                assert client.get("/api/map/binary").content == first.content
            assert client.get("/api/map/binary", headers={"If-None-Match": first.headers["etag"]}).status_code == 304
            assert len(reads) == made_reads
        reads.clear()
        with TestClient(create_app(index)) as client:  # a server started later: one read
            for _ in range(3):
                assert client.get("/api/map/binary").content == first.content
            assert reads == [index.map_generation()]
            index.collection.store.put([], errors=[("/nowhere/torn.jpg", 10, 0, "not an image")])
            after = get_map(client, seconds=30, url="/api/map/binary")
            assert read_binary_map(after.content)[0]["generation"] == index.map_generation() != reads[0]
            assert reads[1:2] == [index.map_generation()]
    finally:
        (index.root / MAP_FILE).unlink()
        (index.root / PACKED_FILE).unlink(missing_ok=True)


@pytest.mark.slow
def test_202_while_laying_out(index, monkeypatch):
    release = threading.Event()
    real = index.layout

    def slow():
        assert release.wait(60)
        return real()

    monkeypatch.setattr(index, "layout", slow)
    with TestClient(create_app(index)) as client:
        r = client.get("/api/map")
        assert r.status_code == 202 and r.headers["retry-after"] == "2"
        assert r.json() == {"detail": "laying out the map of 18 images; ask again shortly"}
        assert client.get("/api/map").status_code == 202  # the same layout, not a second one
        release.set()
        assert get_map(client).json()["count"] == 18


def test_501_without_the_map_extra(index, monkeypatch):
    calls = []

    def missing():
        calls.append(1)
        raise LayoutError("the map needs the map extra: pip install 'lookalike[map]'")

    monkeypatch.setattr(index, "layout", missing)
    with TestClient(create_app(index)) as client:
        for _ in range(2):
            r = get_map(client)
            assert r.status_code == 501 and r.json()["detail"] == "the map needs the map extra: pip install 'lookalike[map]'"
    assert calls == [1]  # not tried again for the same generation


@pytest.mark.slow
def test_a_new_generation_with_the_same_images(index):
    """A change that leaves the images as they were (a file that failed to decode) moves the
    generation on: the map is answered again, from the file, not laid out anew or waited for."""
    with TestClient(create_app(index)) as client:
        first = get_map(client)
        before = index.collection.store.generation
        index.collection.store.put([], errors=[("/nowhere/broken.jpg", 10, 0, "not an image")])
        assert index.collection.store.generation == before + 1
        again = get_map(client, seconds=30)
        assert again.status_code == 200 and again.headers["etag"] != first.headers["etag"]
        assert again.json()["generation"] == before + 1 and again.json()["x"] == first.json()["x"]


def test_a_milvus_collection_has_no_map(tmp_path):
    """A map is kept in an index folder: over a Milvus collection, layout() refuses in one line and
    GET /api/map answers 501 with it."""
    pytest.importorskip("milvus_lite")
    from lookalike.cluster.collection import create, open_index
    from lookalike.cluster.embed import model_spec
    from lookalike.index.store import StoreError

    db = str(tmp_path / "c.db")
    create(db, "photos", model_spec().identity())
    line = f"collection photos at {db} has no map: a map is kept in an index folder, and this is a Milvus collection"
    with open_index(db, "photos") as idx:
        with pytest.raises(StoreError) as refused:
            idx.layout()
        assert str(refused.value) == line
        with TestClient(create_app(idx)) as client:
            r = client.get("/api/map")
            assert r.status_code == 501 and r.json() == {"detail": line}
