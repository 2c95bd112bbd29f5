"""A Milvus collection as the system of record, on milvus-lite: shards ingested with no local index
answer as an index folder loaded from the same shards; re-runs write nothing; the newest row of a
file wins whatever the order shards come in, and a failure stays recorded; two names of one key
never replace each other; one image's duplicates never read the whole collection; a served
query by id makes four reads, none waiting for a time tick; the random
sampler is uniform without listing ids; refusals are one line. (The server path, Ray writers and several processes: tests/e2e/test_collection_server.py.)"""

from __future__ import annotations

import contextlib
import shutil

import numpy as np
import pytest

pytest.importorskip("milvus_lite")
pytestmark = pytest.mark.slow  # a Milvus server per collection, and the real model

from helpers import assert_same_answers  # noqa: E402
from lookalike.api import Index  # noqa: E402
from lookalike.cluster import collection_search  # noqa: E402
from lookalike.cluster.collection import MilvusCollection, create, file_id, open_index  # noqa: E402
from lookalike.cluster.embed import embed, model_spec  # noqa: E402
from lookalike.cluster.ingest import ingest  # noqa: E402
from lookalike.cluster.from_shards import index_shards  # noqa: E402
from lookalike.cluster.shards import Shards, table  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402


@pytest.fixture(scope="module")
def shards(photo_dir, tmp_path_factory):
    """Shards of the shared photos plus a broken file, and the photo folder."""
    root = tmp_path_factory.mktemp("collection")
    photos = root / "photos"
    shutil.copytree(photo_dir, photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    embed(str(photos), str(root / "shards"), model_spec(), "local", shard_rows=7)
    return photos, str(root / "shards")


@pytest.fixture(scope="module")
def folder_index(shards, tmp_path_factory):
    """The index folder loaded from the same shards (the reference)."""
    with Index.open(tmp_path_factory.mktemp("folder") / "index", create=True) as idx:
        index_shards(idx, shards[1])
        yield idx


def test_a_collection_answers_as_the_index_folder(shards, folder_index, tmp_path):
    photos, location = shards
    db = str(tmp_path / "c.db")
    report = ingest(location, db, "photos")
    n = len(folder_index)
    assert (report.written, report.unchanged, report.total) == (n, 0, n)
    assert report.skipped == [(str(photos / "broken.jpg"), report.skipped[0][1])]
    assert _index_type(db, "photos", "hash") == "INVERTED"  # uploads look their content hash up
    with open_index(db, "photos") as idx:
        assert (len(idx), idx.index_type, idx.model) == (n, "milvus-flat", folder_index.model)
        queries = [photos / f"{name}.jpg" for name in ("chelsea", "coffee", "rocket", "coins")]
        assert_same_answers(idx, folder_index, queries)
        some = folder_index.query(str(queries[0]), k=1).results[0]
        assert idx.info(file_id(some.path))["path"] == some.path
        assert idx.stored(file_id(some.path))[1] == [file_id(some.path)]
        assert idx.members()[1] == folder_index.members()[1] == [(str(photos / "broken.jpg"), report.skipped[0][1])]
    again = ingest(location, db, "photos")
    assert (again.written, again.unchanged, again.removed, again.total) == (0, n, 0, n)


def test_duplicates_of_one_image_ask_the_vector_index_and_hash_only_the_nearest(shards, folder_index, tmp_path,
                                                                               monkeypatch):
    from lookalike import dedup
    from lookalike.dedup import find

    photos, location = shards
    db = str(tmp_path / "d.db")
    ingest(location, db, "photos")
    rule = dedup.presets(folder_index.model)["near"]
    query = photos / "chelsea.jpg"
    expected = dedup.duplicates_of(folder_index, str(query), rule)
    assert {m.path for m in expected.results} >= {str(photos / "chelsea_flip.jpg"), str(photos / "chelsea_crop.png")}
    with open_index(db, "photos") as idx:
        for whole in ("pages", "vectors"):  # no request reads the whole collection
            monkeypatch.setattr(MilvusCollection, whole, lambda *a: pytest.fail(f"{whole} read every row"))
        hashed = []
        get = idx.hashes.get
        monkeypatch.setattr(idx.hashes, "get",
                            lambda contents, paths: hashed.append(len(contents)) or get(contents, paths))
        monkeypatch.setattr(find, "HASH_POOL", 5)
        got = dedup.duplicates_of(idx, str(query), rule)
    assert hashed == [5]  # the 5 nearest files' hashes, not every file's
    assert [(m.path, round(m.distance, 6)) for m in got.results] == \
        [(m.path, round(m.distance, 6)) for m in expected.results]


def _shard(rows: list[tuple[str, int, np.ndarray | None]], dim: int = 8) -> object:
    """A shard of hand-made rows (path, mtime_ns, vector or None for a failure) of a tiny model."""
    ident = {"name": "tiny", "layer": "pool", "dim": dim}
    ok = [v for _, _, v in rows if v is not None]
    cols = {"path": [p for p, _, _ in rows], "size": [10] * len(rows), "mtime_ns": [m for _, m, _ in rows],
            "hash": [f"{m:032x}" for _, m, _ in rows], "width": [4] * len(rows), "height": [4] * len(rows),
            "error": [None if v is not None else "not an image" for _, _, v in rows]}
    return table(cols, np.array(ok, np.float32).reshape(len(ok), dim), ident)


def _opened(db: str, name: str = "c") -> contextlib.closing:
    return contextlib.closing(MilvusCollection(db, name))


def _index_type(db: str, name: str, field: str) -> str:
    from pymilvus import MilvusClient

    client = MilvusClient(db)
    try:
        return client.describe_index(name, field)["index_type"]
    finally:
        client.close()


def _stored(db: str, name: str) -> dict[str, tuple[int, list[float]]]:
    from pymilvus import MilvusClient

    client = MilvusClient(db)
    try:
        rows = client.query(name, filter="id >= 0", output_fields=["path", "mtime_ns", "vector"])
    finally:
        client.close()
    assert len({r["path"] for r in rows}) == len(rows)
    return {r["path"]: (r["mtime_ns"], [round(x, 3) for x in r["vector"]]) for r in rows}


def test_the_newest_row_wins_whatever_order_the_shards_come_in(tmp_path):
    v = np.eye(8, dtype=np.float32)
    old = [("/p/a.jpg", 100, v[0]), ("/p/b.jpg", 100, v[1]), ("/p/c.jpg", 100, v[2])]
    new = [("/p/a.jpg", 200, v[3]), ("/p/b.jpg", 50, v[4])]
    folders = {}
    for label, rows in (("old", old), ("new", new)):
        folders[label] = str(tmp_path / label)
        Shards(folders[label]).write(_shard(rows))
    both = str(tmp_path / "both")
    for rows in (old, new):
        Shards(both).write(_shard(rows))
    results = []
    for order in (("old", "new"), ("new", "old")):
        db = str(tmp_path / f"{'-'.join(order)}.db")
        for label in order:
            ingest(folders[label], db, "c")
        results.append(_stored(db, "c"))
    ingest(both, str(tmp_path / "both.db"), "c")
    results.append(_stored(str(tmp_path / "both.db"), "c"))
    expected = {"/p/a.jpg": (200, v[3].tolist()), "/p/b.jpg": (100, v[1].tolist()), "/p/c.jpg": (100, v[2].tolist())}
    assert results == [expected] * 3
    Shards(both).write(_shard([("/p/c.jpg", 300, None)]))  # c no longer decodes: its row goes
    report = ingest(both, str(tmp_path / "both.db"), "c")
    assert (report.written, report.removed, report.skipped) == (0, 1, [("/p/c.jpg", "not an image")])
    assert set(_stored(str(tmp_path / "both.db"), "c")) == {"/p/a.jpg", "/p/b.jpg"}


def test_a_file_that_stopped_decoding_stays_skipped_whatever_shards_come_after(tmp_path):
    v = np.eye(8, dtype=np.float32)
    folders = {label: str(tmp_path / label) for label in ("good", "failed", "newer")}
    Shards(folders["good"]).write(_shard([("/p/a.jpg", 100, v[0]), ("/p/c.jpg", 100, v[2])]))
    Shards(folders["failed"]).write(_shard([("/p/c.jpg", 300, None)]))
    Shards(folders["newer"]).write(_shard([("/p/c.jpg", 400, v[5])]))
    for order in (("good", "failed", "good"), ("failed", "good")):  # the older good row never comes back
        db = str(tmp_path / f"{'-'.join(order)}.db")
        for label in order:
            ingest(folders[label], db, "c")
        assert set(_stored(db, "c")) == {"/p/a.jpg"}
        with _opened(db) as c:  # listed as skipped, as an index folder lists a file it could not read
            assert c.members() == ([file_id("/p/a.jpg")], [("/p/c.jpg", "not an image")])
    again = ingest(folders["newer"], db, "c")  # a newer version that decodes replaces the failure
    assert (again.written, _stored(db, "c")["/p/c.jpg"]) == (1, (400, v[5].tolist()))
    with _opened(db) as c:
        assert c.members()[1] == []
    assert ingest(folders["failed"], db, "c").written == 0 and "/p/c.jpg" in _stored(db, "c")


def test_a_file_twice_in_one_shard_is_written_once_its_newest_row(tmp_path):
    v = np.eye(8, dtype=np.float32)
    Shards(str(tmp_path / "s")).write(_shard([("/p/a.jpg", 200, v[1]), ("/p/a.jpg", 300, v[2]),
                                              ("/p/a.jpg", 100, v[3])]))
    report = ingest(str(tmp_path / "s"), str(tmp_path / "d.db"), "c")
    assert (report.written, report.total) == (1, 1)
    assert _stored(str(tmp_path / "d.db"), "c") == {"/p/a.jpg": (300, v[2].tolist())}


def test_two_names_of_one_key_never_replace_each_other(tmp_path, monkeypatch):
    from lookalike.cluster import ingest as ingest_module

    v = np.eye(8, dtype=np.float32)
    Shards(str(tmp_path / "s")).write(_shard([("/p/a.jpg", 100, v[0]), ("/p/b.jpg", 100, v[1]),
                                              ("/p/c.jpg", 100, v[2])]))
    Shards(str(tmp_path / "s")).write(_shard([("/p/d.jpg", 100, v[3])]))
    clash = {"/p/b.jpg": "/p/a.jpg", "/p/d.jpg": "/p/a.jpg"}  # one batch, and another shard's writer
    monkeypatch.setattr(ingest_module, "file_id", lambda name: file_id(clash.get(name, name)))
    report = ingest(str(tmp_path / "s"), str(tmp_path / "k.db"), "c")
    assert (report.written, report.total) == (2, 2)
    assert sorted(report.skipped) == [(p, f"its id {file_id('/p/a.jpg')} is also the id of /p/a.jpg")
                                      for p in ("/p/b.jpg", "/p/d.jpg")]
    assert _stored(str(tmp_path / "k.db"), "c") == {"/p/a.jpg": (100, v[0].tolist()),
                                                     "/p/c.jpg": (100, v[2].tolist())}


def test_delete_gone_removes_files_gone_from_source(shards, tmp_path):
    photos, location = shards
    source = tmp_path / "photos"
    shutil.copytree(photos, source)
    out = str(tmp_path / "shards")
    embed(str(source), out, model_spec(), "local")
    db = str(tmp_path / "g.db")
    first = ingest(out, db)
    (source / "coins.jpg").unlink()
    kept = ingest(out, db)
    assert (kept.gone, kept.total) == (0, first.total)
    pruned = ingest(out, db, delete_gone=str(source))
    assert (pruned.gone, pruned.total) == (1, first.total - 1)
    with open_index(db) as idx:
        assert str(source / "coins.jpg") not in idx.paths(idx.members()[0])


def test_random_draws_are_uniform_without_listing_ids(tmp_path, monkeypatch):
    db, dim, n, k, draws = str(tmp_path / "r.db"), 4, 200, 20, 300
    create(db, "r", {"name": "tiny", "layer": "pool", "dim": dim})
    c = MilvusCollection(db, "r")
    rng = np.random.default_rng(0)
    c.client.insert("r", [{"path": f"/p/{i}", "id": file_id(f"/p/{i}"), "vector": rng.random(dim).tolist(),
                           "size": 1, "mtime_ns": 1, "hash": "0", "width": 1, "height": 1} for i in range(n)])
    c.client.flush("r")
    monkeypatch.setattr(collection_search, "SMALL", 10)  # the range sampler, not the listed ids
    monkeypatch.setattr(collection_search, "PER_RANGE", 8)
    monkeypatch.setattr(collection_search, "RANGE_CAP", 64)
    monkeypatch.setattr(MilvusCollection, "pages", lambda *a: pytest.fail("the sampler listed the ids"))
    drawn = [collection_search.sample_ids(c, k, np.random.default_rng(seed)) for seed in range(draws)]
    assert all(len(set(d.tolist())) == k for d in drawn)
    counts = np.unique(np.concatenate(drawn), return_counts=True)[1]
    assert len(counts) == n  # every file is drawn at some point
    expected = draws * k / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < n - 1 + 4.5 * np.sqrt(2 * (n - 1))  # about p > 1e-5 for 199 degrees of freedom
    same = collection_search.sample_ids(c, 6, np.random.default_rng(7))
    assert np.array_equal(same, collection_search.sample_ids(c, 6, np.random.default_rng(7)))
    c.close()


def test_a_served_query_by_id_reads_four_times_none_waiting_for_a_time_tick(shards, folder_index, tmp_path):
    from fastapi.testclient import TestClient

    from lookalike.server import create_app

    photos, location = shards
    db = str(tmp_path / "c.db")
    ingest(location, db, "photos")
    with open_index(db, "photos") as idx, TestClient(create_app(idx)) as http:
        client, reads = idx.collection.client, []
        for name in ("query", "search"):
            def recorded(*args, call=getattr(client, name), name=name, **options):
                reads.append((name, options.get("consistency_level")))
                return call(*args, **options)
            setattr(client, name, recorded)
        some = folder_index.query(str(photos / "coffee.jpg"), k=2).results[1]
        got = http.get("/api/query", params={"id": file_id(some.path), "k": 3}).json()
        want = folder_index.query_vector(folder_index.stored(some.id)[0], 3)
        assert [(r["name"], r["distance"]) for r in got["results"]] == \
            [(m.path.rsplit("/", 1)[1], round(m.distance, 6)) for m in want.results]
        # the row, the vector of its bytes, the search (candidates with their vectors), the names;
        # Bounded: none waits for the server's next time tick as Strong reads do
        assert reads == [("query", "Bounded"), ("query", "Bounded"), ("search", "Bounded"), ("query", "Bounded")]


def test_refusals_are_one_line(shards, tmp_path):
    _, location = shards
    db = str(tmp_path / "x.db")
    with pytest.raises(StoreError, match=r"^no collection photos at .*x\.db \(fill one with: lookalike ingest"):
        open_index(db, "photos")
    create(db, "other", {"name": "tiny", "layer": "pool", "dim": 8})
    with pytest.raises(StoreError, match=r"^collection other at .* holds tiny \(layer pool, 8-d\) vectors, not "
                       r"efficientnet-lite0"):
        ingest(location, db, "other")
    with pytest.raises(StoreError, match="one process: ingest into it with --engine local"):
        ingest(location, db, "photos", engine="ray")
    ident = {**model_spec().identity(), "dim": 999}
    create(db, "mismatch", ident)
    with pytest.raises(StoreError, match="holds vectors of efficientnet-lite0 .*999-d.*but the model found here is"):
        open_index(db, "mismatch")
