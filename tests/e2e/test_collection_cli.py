"""A collection from the command line, on a milvus-lite file: ``embed`` then ``ingest`` with no index
folder; ``query``, ``show``, ``dedup`` and ``serve`` with ``--uri`` print what an index folder
loaded from the same shards prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("milvus_lite")

from helpers import free_port, run_cli, sample_photo, wait_until_serving  # noqa: E402

pytestmark = pytest.mark.slow

NAMES = ("chelsea", "coffee", "rocket", "coins", "horse", "moon")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Six small photos and a byte copy, embedded into shards."""
    root = tmp_path_factory.mktemp("collection-cli")
    photos = root / "photos"
    photos.mkdir()
    for name in NAMES:
        sample_photo(name).resize((80, 60)).save(photos / f"{name}.jpg", quality=90)
    shutil.copy(photos / "coins.jpg", photos / "coins_copy.jpg")
    run_cli("embed", photos, "--out", root / "shards", "--quiet")
    return root


def cli_json(*args):
    return json.loads(run_cli(*args, "--json").stdout)


def tied_as_sets(reports: list[dict]) -> list[dict]:
    """``reports`` with each query's results grouped by distance: files at one distance (here the
    byte copies) may come in either order, and a group cut by ``-k`` holds either of them."""
    for report in reports:
        groups: dict[float, list[str]] = {}
        for r in report["results"]:
            groups.setdefault(r["distance"], []).append(r["path"])
        *whole, (last, cut) = groups.items() or [(None, [])]
        report["results"] = [(d, sorted(paths)) for d, paths in whole] + [(last, len(cut))]
    return reports


def test_a_collection_prints_what_an_index_folder_prints(tiny, tmp_path):
    photos, shards, db = tiny / "photos", tiny / "shards", tmp_path / "c.db"
    report = cli_json("ingest", shards, "--uri", db, "--collection", "photos")
    assert (report["written"], report["total"], report["skipped"]) == (len(NAMES) + 1, len(NAMES) + 1, [])
    again = run_cli("ingest", shards, "--uri", db, "--collection", "photos").stdout
    assert again.startswith(f"written 0, unchanged {len(NAMES) + 1}, removed 0, skipped 0; {len(NAMES) + 1} images "
                            f"in collection photos at {db}")
    folder = ["--index", tmp_path / "folder"]
    run_cli("index", "--from", shards, *folder, "--quiet")
    collection = ["--uri", db, "--collection", "photos"]
    queries = (photos / "rocket.jpg", photos / "moon.jpg")
    for options in (["-k", "4"], ["-k", "3", "--mode", "farthest", "--metric", "l2"], ["--exclude-self"]):
        got, want = (cli_json("query", *queries, *where, *options) for where in (collection, folder))
        assert tied_as_sets(got) == tied_as_sets(want)
    got, want = (cli_json("dedup", *where, "--threshold", "exact") for where in (collection, folder))
    assert (got.pop("search"), want.pop("search")) == ("milvus-flat", "exact")
    for report in (got, want):
        del report["seconds"]
        report["stages"] = {k: v for k, v in report["stages"].items() if not k.endswith(("seconds", "ms_per_pair"))}
    assert got == want and [len(g["duplicates"]) for g in got["groups"]] == [1]
    out = tmp_path / "show.png"
    shown = run_cli("show", photos / "chelsea.jpg", *collection, "--seed", "2", "-o", out)
    assert shown.stdout.strip() == str(out) and out.stat().st_size > 0
    refused = run_cli("index", photos, *folder, "--collection", "photos", check=False)
    assert refused.returncode == 2  # index takes no --collection: a collection is filled by ingest
    missing = run_cli("query", photos / "moon.jpg", "--uri", db, "--collection", "nope", check=False)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"error: no collection nope at {db} (fill one with: lookalike ingest SHARDS --uri {db} --collection nope)"]


def test_serve_answers_from_a_collection(tiny, tmp_path):
    photos, db = tiny / "photos", tmp_path / "c.db"
    run_cli("ingest", tiny / "shards", "--uri", db, "--quiet")
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "w") as err:
        server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--uri", str(db), "--port", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_until_serving(server, port, log, 180)
        data = (photos / "horse.jpg").read_bytes()
        found = httpx.post(f"http://127.0.0.1:{port}/api/query", params={"k": 2},
                           files={"file": ("q.jpg", data, "image/jpeg")}, timeout=60).json()
        assert [r["name"] for r in found["results"]][0] == "horse.jpg" and found["results"][0]["distance"] == 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/stats").json()["index_type"] == "milvus-flat"
        image = httpx.get(f"http://127.0.0.1:{port}/api/images/{found['results'][0]['id']}", timeout=30)
        assert image.status_code == 200 and image.content == data
        thumb = httpx.get(f"http://127.0.0.1:{port}/api/thumbs/{found['results'][0]['id']}", timeout=30)
        assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8"
    finally:
        server.terminate()
        server.wait(30)
    assert "serving 7 images from collection lookalike at" in log.read_text()
