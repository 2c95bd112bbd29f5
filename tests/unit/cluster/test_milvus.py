"""``lookalike.cluster.milvus`` over a stand-in ``MilvusClient`` (milvus_standin.py): which URIs are
milvus-lite files, the index each gets, every way a database cannot be opened said in one line (a
file in a folder's place, a lite file another process holds, a damaged one, a server that does not
answer), Milvus' own logging kept quiet and restored, a cosine radius as Milvus' range, and every row
read a page at a time."""

from __future__ import annotations

import fcntl
import logging
import os

import pytest

pymilvus = pytest.importorskip("pymilvus")

from pymilvus.exceptions import MilvusException  # noqa: E402

from lookalike.cluster import milvus as mv  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402

SERVER = "http://milvus.example:19530"


def test_a_uri_without_a_scheme_is_a_milvus_lite_file_with_an_exact_index():
    for uri in ("c.db", "/data/c.db", "~/c.db", "s3:/x"):  # milvus-lite has one scalar index: INVERTED
        assert (mv.is_lite(uri), mv.default_index_type(uri), mv.hash_index_type(uri)) == (True, "FLAT", "INVERTED")
    for uri in (SERVER, "https://zilliz.example", "tcp://h:1"):  # a server picks its own for text
        assert (mv.is_lite(uri), mv.default_index_type(uri), mv.hash_index_type(uri)) == (False, "HNSW", "")


def test_connect_opens_a_lite_file_by_its_absolute_path_and_a_server_by_its_uri(milvus, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = mv.connect("c.db")
    assert client.uri == str(tmp_path / "c.db")
    assert [name for name, _, _ in milvus.calls] == ["list_collections"]  # every collection read once
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert mv.connect("~/d.db").uri == str(tmp_path / "home" / "d.db")
    milvus.calls.clear()
    assert mv.connect(SERVER).uri == SERVER and milvus.calls == []
    assert mv.connect("c.db", rebuild=True).uri == str(tmp_path / "c.db") and milvus.calls == []


def test_a_file_where_the_lite_folder_should_be_is_refused_or_removed_to_rebuild(milvus, tmp_path):
    path = tmp_path / "c.db"
    path.write_bytes(b"x" * 2048)
    with pytest.raises(StoreError) as e:
        mv.connect(str(path))
    assert str(e.value) == (f"{path} is not a milvus-lite database (a file of 2,048 bytes; milvus-lite keeps a "
                            "folder): move it away, or make it again with `lookalike ingest SHARDS --uri URI "
                            "--rebuild`")
    assert path.is_file() and milvus.opened == 0
    mv.connect(str(path), rebuild=True)
    assert not path.exists() and milvus.opened == 1


def test_a_server_that_does_not_answer_is_one_line(milvus):
    milvus.fail["client"] = MilvusException(message="Fail connecting to server on milvus.example:19530")
    with pytest.raises(StoreError) as e:
        mv.connect(SERVER)
    assert str(e.value) == f"cannot connect to Milvus at {SERVER}: Fail connecting to server on milvus.example:19530"


def test_a_lite_file_another_process_holds_is_said_so(milvus, tmp_path):
    path = tmp_path / "c.db"
    path.mkdir()
    milvus.fail["client"] = MilvusException(message="Open local milvus failed")
    fd = os.open(path / "LOCK", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert mv._held(str(path))
        with pytest.raises(StoreError) as e:
            mv.connect(str(path))
        assert str(e.value) == (f"cannot open milvus-lite database {path}: another process has it open (milvus-lite "
                                "allows one process per file: stop the other `lookalike serve` or `ingest`, or use a "
                                "Milvus server URI)")
    finally:
        os.close(fd)
    assert not mv._held(str(path))  # the lock let go
    with pytest.raises(StoreError) as e:  # nobody holds it: the database itself cannot be read
        mv.connect(str(path))
    assert str(e.value) == (f"the Milvus data at {path} cannot be read (Open local milvus failed); make it again "
                            "from the shards with `lookalike ingest SHARDS --uri URI --rebuild`, or restore it from "
                            "a backup")
    assert not mv._held(str(tmp_path / "none"))  # no LOCK file: nobody


def test_a_lock_shared_by_readers_is_not_a_holder(tmp_path):
    (tmp_path / "LOCK").write_bytes(b"")
    fd = os.open(tmp_path / "LOCK", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert not mv._held(str(tmp_path))
    finally:
        os.close(fd)


def test_a_damaged_lite_database_is_found_when_opened_and_its_client_closed(milvus, tmp_path):
    milvus.fail["list_collections"] = MilvusException(message="read manifest:\n  bad  checksum")
    with pytest.raises(StoreError) as e:
        mv.connect(str(tmp_path / "c.db"))
    assert str(e.value).startswith(f"the Milvus data at {tmp_path / 'c.db'} cannot be read (read manifest: bad "
                                   "checksum); ")
    assert milvus.opened == milvus.closed == 1
    assert mv.connect(str(tmp_path / "c.db"), rebuild=True) is not None  # left for create to drop
    assert mv.connect(SERVER) is not None  # a server's collections are not all read on connect


def test_the_reason_of_an_error_without_a_message_is_its_text():
    assert mv.damaged("/d/c.db", OSError("no\tspace  left")) == (
        "the Milvus data at /d/c.db cannot be read (no space left); make it again from the shards with "
        "`lookalike ingest SHARDS --uri URI --rebuild`, or restore it from a backup")


def test_connect_quiets_the_loggers_that_say_nothing_to_a_user(milvus, tmp_path):
    iterator = logging.getLogger("pymilvus.client.iterator.query_iterator")
    server = logging.getLogger("grpc._server")
    old = iterator.level, server.level
    try:
        iterator.setLevel(logging.NOTSET)
        server.setLevel(logging.NOTSET)
        mv.connect(SERVER)
        assert (iterator.level, server.level) == (logging.ERROR, logging.CRITICAL)
    finally:
        iterator.setLevel(old[0])
        server.setLevel(old[1])


def test_quiet_silences_milvus_lite_and_pymilvus_wrappers_and_restores_them(monkeypatch):
    lite, wrappers = logging.getLogger("milvus_lite"), logging.getLogger("pymilvus.decorators")
    lite.setLevel(logging.INFO)
    wrappers.setLevel(logging.WARNING)
    try:
        with pytest.raises(RuntimeError):
            with mv.quiet():
                assert (lite.level, wrappers.level) == (logging.CRITICAL, logging.CRITICAL)
                raise RuntimeError("inside")
        assert (lite.level, wrappers.level) == (logging.INFO, logging.WARNING)
        seen = []

        def refused(uri):
            seen.append((lite.level, wrappers.level))
            raise MilvusException(message="refused")

        monkeypatch.setattr(pymilvus, "MilvusClient", refused)
        with pytest.raises(StoreError):
            mv.connect(SERVER)
        assert seen == [(logging.CRITICAL, logging.CRITICAL)]  # while the client is made
        assert (lite.level, wrappers.level) == (logging.INFO, logging.WARNING)
    finally:
        lite.setLevel(logging.NOTSET)
        wrappers.setLevel(logging.NOTSET)


def test_a_cosine_radius_is_a_similarity_range_a_hair_wider():
    assert mv.cosine_range(0.25) == {"radius": 0.75 - 1e-5, "range_filter": 1.0 + 1e-5}
    assert mv.cosine_range(0.0) == {"radius": 1.0 - 1e-5, "range_filter": 1.0 + 1e-5}


def test_pages_read_every_row_a_page_at_a_time_and_close_the_iterator(milvus, monkeypatch):
    client = milvus.client(SERVER)
    from pymilvus import DataType

    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)
    params = client.prepare_index_params()
    params.add_index("vector", index_type="FLAT", metric_type="L2")
    client.create_collection("c", schema=schema, index_params=params, consistency_level="Strong")
    client.upsert("c", [{"id": i, "vector": [float(i), 0.0]} for i in range(4100)])
    iterators = []
    make = client.query_iterator
    client.query_iterator = lambda *a, **o: iterators.append(make(*a, **o)) or iterators[-1]
    pages = list(mv.pages(client, "c", ["id"], consistency_level="Bounded"))
    assert [len(p) for p in pages] == [4096, 4]
    assert sorted(r["id"] for p in pages for r in p) == list(range(4100))
    assert [o for name, _, o in milvus.calls if name == "query_iterator"] == [
        {"filter": "id >= 0", "batch_size": 4096, "consistency_level": "Bounded"}]
    assert iterators[0].closed
    stopped = mv.pages(client, "c", ["id"])
    next(stopped)
    stopped.close()  # a reader that stops early closes the iterator too
    assert iterators[1].closed
    assert list(mv.pages(client, "c", ["id", "vector"]))[0][1] == {"id": 1, "vector": [1.0, 0.0]}
