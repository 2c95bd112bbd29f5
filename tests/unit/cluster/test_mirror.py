"""``store="milvus"``: an index mirrored to a real Milvus engine (milvus-lite) answers exactly as the
embedded store, its collection follows added, changed, deleted and touched files, a mirror left
behind by a crash is repaired, dedup's range search runs in Milvus, and the server answers uploads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("milvus_lite")

from helpers import sample_photo  # noqa: E402
from lookalike import dedup  # noqa: E402
from lookalike.api import Index  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402

NAMES = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "horse", "moon")
QUERIES = ("chelsea", "rocket", "coins")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Eight small photos, a flipped copy of one and a byte copy of another."""
    root = tmp_path_factory.mktemp("tiny")
    for name in NAMES:
        sample_photo(name).resize((96, 72)).save(root / f"{name}.jpg", quality=90)
    Image.open(root / "chelsea.jpg").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "chelsea_flip.jpg")
    shutil.copy(root / "coffee.jpg", root / "coffee_copy.jpg")
    return root


@pytest.fixture()
def photos(tiny, tmp_path):
    root = tmp_path / "photos"
    shutil.copytree(tiny, root)
    return root


def answers(idx: Index, root) -> list[dict]:
    return [idx.query(str(root / f"{q}.jpg"), k=5, mode=mode, metric=metric, seed=3).to_dict()
            for q in QUERIES for mode in ("nearest", "farthest", "random") for metric in ("cosine", "l2")]


def collection(idx: Index) -> dict[int, dict]:
    """Every row of the index's Milvus collection (without vectors), by id."""
    rows = idx.mirror.client.query(idx.mirror.target.collection, filter="id >= 0",
                                   output_fields=["path", "size", "mtime_ns", "hash", "width", "height"])
    return {int(r["id"]): {k: r[k] for k in ("path", "size", "mtime_ns", "hash", "width", "height")} for r in rows}


def catalog(idx: Index) -> dict[int, dict]:
    ids = idx.vectors()[0].tolist()
    columns = idx.store.catalog(ids)
    return {i: {k: columns[k][n] for k in columns} for n, i in enumerate(ids)}


def test_milvus_store_answers_as_the_embedded_store(photos, tmp_path):
    db = tmp_path / "m.db"
    with Index.open(tmp_path / "embedded", create=True) as embedded, \
            Index.open(tmp_path / "mirrored", create=True, store="milvus", uri=str(db), collection="photos") as idx:
        embedded.add(photos)
        report = idx.add(photos)
        assert report.indexed == len(idx) == len(embedded) == 10
        assert idx.index_type == "milvus-flat" and idx.stats()["index_type"] == "milvus-flat"
        assert answers(idx, photos) == answers(embedded, photos)
        assert idx.searcher().backend("cosine") is idx.mirror.backend  # the queries went to Milvus
        rows = collection(idx)
        assert rows == catalog(idx) and len(rows) == 10
        props = idx.mirror.client.describe_collection("photos")["properties"]
        assert json.loads(props["lookalike.model"]) == idx.model
        vectors = idx.mirror.client.get("photos", ids=[1, 2], output_fields=["vector"])
        np.testing.assert_array_equal([v["vector"] for v in vectors], idx.searcher().vectors_of(np.array([1, 2])))
        assert json.loads(idx.store.meta("milvus")) == {"uri": str(db), "collection": "photos",
                                                        "token": props["lookalike.index"]}
    with Index.open(tmp_path / "mirrored", store="milvus") as again:  # the recorded target
        assert again.mirror.target.collection == "photos" and len(collection(again)) == 10
    (photos / "moon.jpg").unlink()
    with Index.open(tmp_path / "mirrored", create=True, rebuild=True, store="milvus", uri=str(db),
                    collection="photos") as rebuilt:  # a new index: the collection is dropped and refilled
        rebuilt.add(photos)
        assert rebuilt.mirror.client.describe_collection("photos")["properties"]["lookalike.index"] != \
            props["lookalike.index"]
        assert collection(rebuilt) == catalog(rebuilt) and len(catalog(rebuilt)) == 9


def test_changes_reach_milvus_and_a_crash_is_repaired(photos, tmp_path):
    db = str(tmp_path / "m.db")
    with Index.open(tmp_path / "idx", create=True, store="milvus", uri=db) as idx:
        idx.add(photos)
        old = {r["path"]: i for i, r in collection(idx).items()}
        (photos / "moon.jpg").unlink()
        sample_photo("hubble_deep_field").resize((80, 80)).save(photos / "hubble.jpg")
        shutil.copy(photos / "rocket.jpg", photos / "camera.jpg")  # changed content
        report = idx.add(photos)
        assert (report.indexed, report.removed) == (2, 1)
        rows = collection(idx)
        assert rows == catalog(idx)
        paths = {r["path"]: i for i, r in rows.items()}
        assert str(photos / "moon.jpg") not in paths and str(photos / "hubble.jpg") in paths
        assert paths[str(photos / "camera.jpg")] != old[str(photos / "camera.jpg")]  # a new id
        top = idx.query(str(photos / "hubble.jpg"), k=1).results[0]
        assert (top.path, top.distance) == (str(photos / "hubble.jpg"), pytest.approx(0, abs=1e-6))
        stamp = time.time_ns() - 5 * 10**9
        os.utime(photos / "coffee.jpg", ns=(stamp, stamp))  # same bytes, new mtime: the generation stays
        assert idx.add(photos).indexed == 0
        assert {r["path"]: r["mtime_ns"] for r in collection(idx).values()}[str(photos / "coffee.jpg")] == stamp
    # changes committed to SQLite without reaching Milvus (a process killed in between, or an
    # embedded run): the next milvus run repairs the collection by diffing
    with Index.open(tmp_path / "idx") as embedded:
        (photos / "coins.jpg").unlink()
        shutil.copy(photos / "horse.jpg", photos / "horse2.jpg")
        stamp = time.time_ns() - 10**9
        os.utime(photos / "rocket.jpg", ns=(stamp, stamp))  # same bytes, new mtime: no new id
        report = embedded.add(photos)
        assert (report.indexed, report.removed) == (1, 1)
    with Index.open(tmp_path / "idx", store="milvus") as idx:
        before = {r["path"] for r in collection(idx).values()}
        assert str(photos / "coins.jpg") in before and str(photos / "horse2.jpg") not in before
        assert idx.query(str(photos / "horse.jpg"), k=2).to_dict()["results"][1]["distance"] == 0.0
        rows = collection(idx)
        assert rows == catalog(idx)
        assert {r["path"]: r["mtime_ns"] for r in rows.values()}[str(photos / "rocket.jpg")] == stamp


def test_dedup_through_milvus_groups_as_embedded(photos, tmp_path):
    with Index.open(tmp_path / "embedded", create=True) as embedded, \
            Index.open(tmp_path / "mirrored", create=True, store="milvus", uri=str(tmp_path / "m.db")) as idx:
        embedded.add(photos)
        idx.add(photos)
        for threshold in ("exact", "near", "0.3"):
            rule, preset = dedup.resolve_threshold(threshold, idx.model)
            got = dedup.find_duplicates(idx, rule, preset).to_dict()
            want = dedup.find_duplicates(embedded, rule, preset).to_dict()
            assert (got.pop("search"), want.pop("search")) == ("milvus-flat", "exact")
            for report in (got, want):
                del report["seconds"]
                report["stages"] = {k: v for k, v in report["stages"].items() if not k.endswith(("seconds", "ms_per_pair"))}
            assert got == want
        groups = [sorted(os.path.basename(p) for p in [g["keep"], *(d["path"] for d in g["duplicates"])])
                  for g in got["groups"]]
        assert sorted(groups) == [["chelsea.jpg", "chelsea_flip.jpg"], ["coffee.jpg", "coffee_copy.jpg"]]
        assert idx.searcher().backend("cosine") is idx.mirror.backend


def test_server_answers_an_upload_search_from_milvus(photos, tmp_path):
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    with Index.open(tmp_path / "embedded", create=True) as embedded:
        embedded.add(photos)
        want = embedded.query(str(photos / "rocket.jpg"), k=3).to_dict()["results"]
    with Index.open(tmp_path / "mirrored", create=True, store="milvus", uri=str(tmp_path / "m.db")) as idx:
        idx.add(photos)
    with Index.open(tmp_path / "mirrored", store="milvus") as idx, TestClient(create_app(idx)) as client:
        data = (photos / "rocket.jpg").read_bytes()
        found = client.post("/api/search", params={"k": 3}, files={"file": ("q.jpg", data, "image/jpeg")}).json()
        assert [(r["name"], r["distance"]) for r in found["results"]] == [
            (os.path.basename(r["path"]), pytest.approx(r["distance"], abs=1e-6)) for r in want]
        assert client.get("/api/stats").json()["index_type"] == "milvus-flat"


def test_refusals_are_one_line_and_write_nothing(photos, tmp_path):
    db = str(tmp_path / "m.db")
    with Index.open(tmp_path / "a", create=True, store="milvus", uri=db) as a:
        a.add(photos)
    with pytest.raises(StoreError, match="mirrors another lookalike index; name another with --collection"):
        Index.open(tmp_path / "b", create=True, store="milvus", uri=db)
    with pytest.raises(StoreError, match="is not mirrored to Milvus yet: give --uri"):
        Index.open(tmp_path / "b", store="milvus")
    with pytest.raises(StoreError, match="--uri and --collection go with --store milvus"):
        Index.open(tmp_path / "a", uri=db)
    # milvus-lite: one process per file (a process keeps the files it opened until it exits, so the
    # other process holds a file this one never opened). A clear error, and nothing is written
    held = str(tmp_path / "held.db")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, pymilvus; c = pymilvus.MilvusClient(sys.argv[1]); "
                               "print('held', flush=True); sys.stdin.read()", held],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        message = (f"cannot open milvus-lite database {held}: another process has it open (milvus-lite allows one "
                   "process per file: stop the other `lookalike serve` or `index`, or use a Milvus server URI)")
        for path, create in ((tmp_path / "a", False), (tmp_path / "c", True)):
            with pytest.raises(StoreError) as refused:
                Index.open(path, create=create, store="milvus", uri=held)
            assert str(refused.value) == message
    finally:
        holder.communicate("", timeout=60)
    assert not (tmp_path / "c").exists()
    with Index.open(tmp_path / "a", store="milvus") as a:
        assert a.mirror.target.uri == db and len(a) == 10 and len(collection(a)) == 10
        hit = a.query((photos / "coins.jpg").read_bytes(), k=1).results[0]
        assert hit.path == str(photos / "coins.jpg") and hit.distance == pytest.approx(0, abs=1e-9)  # up to rounding
