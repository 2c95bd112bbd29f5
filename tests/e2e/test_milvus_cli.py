"""``--store milvus`` from the command line, on a milvus-lite file: index, query, show and dedup print
what the embedded store prints; ``serve`` answers an upload search, and an ``index`` run beside it
on the same lite file stops with one line and changes nothing."""

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
    root = tmp_path_factory.mktemp("milvus-cli")
    photos = root / "photos"
    photos.mkdir()
    for name in NAMES:
        sample_photo(name).resize((80, 60)).save(photos / f"{name}.jpg", quality=90)
    shutil.copy(photos / "coins.jpg", photos / "coins_copy.jpg")
    return root


def cli_json(*args) -> dict:
    return json.loads(run_cli(*args, "--json").stdout)


def test_milvus_store_prints_what_the_embedded_store_prints(tiny, tmp_path):
    photos, db = tiny / "photos", tmp_path / "m.db"
    embedded, mirrored = ["--index", tmp_path / "embedded"], ["--index", tmp_path / "mirrored", "--store", "milvus"]
    reports = [cli_json("index", photos, *embedded),
               cli_json("index", photos, *mirrored, "--uri", db, "--collection", "photos")]
    for report in reports:
        del report["seconds"], report["images_per_second"]
    assert reports[0] == reports[1] and reports[0]["indexed"] == len(NAMES) + 1
    queries = (photos / "rocket.jpg", photos / "moon.jpg")
    for options in (["-k", "4"], ["-k", "3", "--mode", "random", "--seed", "11"]):
        assert cli_json("query", *queries, *mirrored, *options) == cli_json("query", *queries, *embedded, *options)
    got, want = (cli_json("dedup", *where, "--threshold", "exact") for where in (mirrored, embedded))
    assert (got.pop("search"), want.pop("search")) == ("milvus-flat", "exact")
    for report in (got, want):
        del report["seconds"]
        report["stages"] = {k: v for k, v in report["stages"].items() if not k.endswith(("seconds", "ms_per_pair"))}
    assert got == want and [len(g["duplicates"]) for g in got["groups"]] == [1]
    out = tmp_path / "show.png"
    shown = run_cli("show", photos / "chelsea.jpg", *mirrored, "--seed", "2", "-o", out)
    assert shown.stdout.strip() == str(out) and out.stat().st_size > 0


def test_serve_answers_and_an_index_beside_it_stops_with_one_line(tiny, tmp_path):
    photos, db, index = tiny / "photos", tmp_path / "m.db", tmp_path / "mirrored"
    run_cli("index", photos, "--index", index, "--store", "milvus", "--uri", db)
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "w") as err:
        server = subprocess.Popen([sys.executable, "-m", "lookalike", "serve", "--index", str(index), "--store",
                                   "milvus", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_until_serving(server, port, log, 180)
        data = (photos / "horse.jpg").read_bytes()
        found = httpx.post(f"http://127.0.0.1:{port}/api/search", params={"k": 2},
                           files={"file": ("q.jpg", data, "image/jpeg")}, timeout=60).json()
        assert [r["name"] for r in found["results"]][0] == "horse.jpg" and found["results"][0]["distance"] == 0
        assert httpx.get(f"http://127.0.0.1:{port}/api/stats").json()["index_type"] == "milvus-flat"
        extra = tmp_path / "more"
        shutil.copytree(photos, extra)
        beside = run_cli("index", extra, "--index", index, "--store", "milvus", check=False)
        assert beside.returncode == 1
        assert beside.stderr.strip().splitlines() == [
            f"error: cannot open milvus-lite database {db}: another process has it open (milvus-lite allows one "
            "process per file: stop the other `lookalike serve` or `index`, or use a Milvus server URI)"]
        after = httpx.get(f"http://127.0.0.1:{port}/api/stats").json()
        assert after["count"] == len(NAMES) + 1
    finally:
        server.terminate()
        server.wait(30)
    assert cli_json("index", photos, "--index", index, "--store", "milvus")["unchanged"] == len(NAMES) + 1
