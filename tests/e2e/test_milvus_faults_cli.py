"""A damaged milvus-lite database: every command that opens it (``query``, ``dedup``, ``ingest``)
says so in one line naming the file and the remedy, and ``ingest --rebuild`` makes it again from
the shards (each command its own process, as a user runs them)."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("milvus_lite")

from helpers import run_cli, sample_photo  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """Three photos embedded into shards and a pristine milvus-lite collection of them."""
    root = tmp_path_factory.mktemp("milvus-faults")
    (root / "photos").mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        sample_photo(name).resize((80, 60)).save(root / "photos" / f"{name}.jpg")
    run_cli("embed", root / "photos", "--out", root / "shards", "--quiet")
    run_cli("ingest", root / "shards", "--uri", root / "m.db", "--quiet")
    return root


def _damage(db, kind: str) -> None:
    if kind in ("empty file", "garbage file"):
        shutil.rmtree(db)
        db.write_bytes(b"" if kind == "empty file" else b"not a database\n" * 20)
        return
    pattern = {"schema": "schema.json", "data": "data/*.parquet", "vector index": "indexes/*.vector.*",
               "hash index": "indexes/*.hash.*"}[kind]
    (target,) = sorted((db / "collections" / "lookalike").rglob(pattern))  # milvus-lite's own files
    target.write_bytes(b"garbage\n")


@pytest.mark.parametrize("kind", ["schema", "data", "vector index", "hash index", "empty file", "garbage file"])
def test_a_damaged_lite_database_is_one_line_and_ingest_rebuild_makes_it_again(ingested, tmp_path, kind):
    db, photos, shards = tmp_path / "m.db", ingested / "photos", ingested / "shards"
    shutil.copytree(ingested / "m.db", db)
    query = ["query", photos / "coffee.jpg", "--uri", db, "--json"]
    assert len(json.loads(run_cli(*query).stdout)["results"]) == 3
    _damage(db, kind)
    for args in (query, ["dedup", "--uri", db], ["ingest", shards, "--uri", db, "--quiet"]):
        proc = run_cli(*args, check=False)
        assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-3000:]
        assert str(db) in proc.stderr and "--rebuild" in proc.stderr, proc.stderr
    run_cli("ingest", shards, "--uri", db, "--rebuild", "--quiet")
    top = json.loads(run_cli(*query).stdout)["results"]
    assert top[0]["path"] == str(photos / "coffee.jpg") and len(top) == 3 and db.is_dir()
