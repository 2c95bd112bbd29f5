"""``lookalike.cluster.collection`` over a stand-in Milvus (milvus_standin.py: rows in memory, no server):
the collection made for a model and its skipped files, what it refuses, and every read: counts, rows
by id in any number, paths, catalog rows, a content hash's files, members below a folder beside a
sibling whose name extends it, every vector in id order, each read at the consistency asked for.
(The real milvus-lite and the default model: test_collection.py, slow.)"""

from __future__ import annotations

import contextlib
import json
import os

import numpy as np
import pytest

pymilvus = pytest.importorskip("pymilvus")

from milvus_standin import Milvus, MilvusError  # noqa: E402
from pymilvus import DataType  # noqa: E402
from pymilvus.exceptions import MilvusException  # noqa: E402

from lookalike.cluster import collection as col  # noqa: E402
from lookalike.cluster.collection import MilvusCollection, create, file_id, open_index, stored_name  # noqa: E402
from lookalike.images import ImageError  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402

MODEL = {"name": "tiny", "layer": "pool", "dim": 4}
SERVER = "http://milvus.example:19530"


def _row(path: str, vector, mtime: int = 1, content: str = "ab", size: int = 10) -> dict:
    return {"id": file_id(path), "path": path, "vector": list(vector), "size": size, "mtime_ns": mtime,
            "hash": content, "width": 3, "height": 2}


def _filled(milvus: Milvus, uri: str, rows: list[dict], skipped: list[tuple[str, str]] = ()) -> str:
    """``uri`` (a milvus-lite path, made absolute as connect makes it) with collection ``c`` of ``rows``."""
    create(uri, "c", MODEL)
    uri = os.path.abspath(uri) if "://" not in uri else uri
    client = milvus.client(uri)
    if rows:
        client.upsert("c", rows)
    if skipped:
        client.upsert("c_skipped", [{"id": file_id(p), "path": p, "vector": [0.0, 0.0], "size": 1, "mtime_ns": 1,
                                     "error": e} for p, e in skipped])
    client.close()
    milvus.calls.clear()
    return uri


def test_file_ids_stay_the_63_bit_digests_that_stored_collections_hold():
    # the ids already written to collections: an id that changed would never find its row again
    assert file_id("/p/a.jpg") == 2794184464894742922
    assert file_id("s3://bucket/x.png") == 9057318816311488152
    assert file_id(os.fsdecode(b"/p/\xff.jpg")) == 6864196865361964481  # a name's bytes, UTF-8 or not
    assert file_id("") == 8238016292129134938
    assert all(0 <= file_id(f"/p/{i}.jpg") < 2**63 for i in range(200))


def test_a_name_that_is_not_utf8_is_stored_with_its_bytes_escaped():
    assert stored_name(os.fsdecode(b"/p/caf\xe9 \xff.jpg")) == "/p/caf\\xe9 \\xff.jpg"
    assert stored_name("/p/café.jpg") == "/p/café.jpg"
    assert col.skipped_name("photos") == "photos_skipped"


def test_create_makes_the_collection_and_its_skipped_files_for_the_model(milvus, tmp_path):
    create(str(tmp_path / "c.db"), "c", MODEL)
    (uri,) = milvus.servers
    assert uri == str(tmp_path / "c.db")
    made = milvus.at(uri)
    assert sorted(made) == ["c", "c_skipped"]
    c, s = made["c"], made["c_skipped"]
    assert c.schema.options == s.schema.options == {"auto_id": False, "enable_dynamic_field": False}
    assert c.schema.fields == {
        "id": (DataType.INT64, {"is_primary": True}), "path": (DataType.VARCHAR, {"max_length": 65_535}),
        "vector": (DataType.FLOAT_VECTOR, {"dim": 4}), "size": (DataType.INT64, {}),
        "mtime_ns": (DataType.INT64, {}), "hash": (DataType.VARCHAR, {"max_length": 64}),
        "width": (DataType.INT64, {}), "height": (DataType.INT64, {})}
    assert s.schema.fields == {
        "id": (DataType.INT64, {"is_primary": True}), "path": (DataType.VARCHAR, {"max_length": 65_535}),
        "vector": (DataType.FLOAT_VECTOR, {"dim": 2}), "size": (DataType.INT64, {}),
        "mtime_ns": (DataType.INT64, {}), "error": (DataType.VARCHAR, {"max_length": 65_535})}
    assert c.indexes == {"vector": {"field": "vector", "index_type": "FLAT", "metric_type": "COSINE", "params": {}},
                         "hash": {"field": "hash", "index_type": "INVERTED"}}
    assert s.indexes == {"vector": {"field": "vector", "index_type": "FLAT", "metric_type": "L2"}}
    assert (c.consistency, s.consistency) == ("Strong", "Strong")
    assert c.properties == {"lookalike.model": '{"dim": 4, "layer": "pool", "name": "tiny"}'}
    assert s.properties == {"lookalike.skipped_of": "c"}
    assert c.loaded and s.loaded
    assert milvus.opened == milvus.closed == 1


def test_rebuild_makes_a_milvus_lite_database_where_a_file_was(milvus, tmp_path):
    (tmp_path / "c.db").write_bytes(b"x" * 1234)
    with pytest.raises(StoreError) as e:
        create(str(tmp_path / "c.db"), "c", MODEL)
    assert str(e.value).startswith(f"{tmp_path / 'c.db'} is not a milvus-lite database (a file of 1,234 bytes; ")
    create(str(tmp_path / "c.db"), "c", MODEL, rebuild=True)
    assert not (tmp_path / "c.db").is_file() and sorted(milvus.at(str(tmp_path / "c.db"))) == ["c", "c_skipped"]


def test_a_server_gets_hnsw_and_an_index_type_asked_for_is_used(milvus):
    create(SERVER, "c", MODEL)
    assert milvus.at(SERVER)["c"].index == {"field": "vector", "index_type": "HNSW", "metric_type": "COSINE",
                                            "params": {"M": 16, "efConstruction": 200}}
    assert milvus.at(SERVER)["c"].indexes["hash"] == {"field": "hash", "index_type": ""}  # the server's choice
    create(SERVER, "d", MODEL, index_type="IVF_FLAT")
    assert milvus.at(SERVER)["d"].index["index_type"] == "IVF_FLAT"
    assert milvus.at(SERVER)["d"].index["params"] == {}


@pytest.mark.parametrize("lite", [False, True])
def test_a_collection_made_without_a_hash_index_gets_one_when_created_again(milvus, tmp_path, lite):
    uri = str(tmp_path / "c.db") if lite else SERVER
    create(uri, "c", MODEL)
    del milvus.at(uri)["c"].indexes["hash"]
    create(uri, "c", MODEL)
    assert milvus.at(uri)["c"].indexes["hash"] == {"field": "hash", "index_type": "INVERTED" if lite else ""}
    made = [name for name, _, _ in milvus.calls].count("create_index")
    create(uri, "c", MODEL)
    assert [name for name, _, _ in milvus.calls].count("create_index") == made == 1


def test_create_again_keeps_the_rows_and_loads_them(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row("/p/a.jpg", [1, 0, 0, 0])])
    for c in milvus.at(uri).values():
        c.loaded = False
    create(uri, "c", dict(reversed(MODEL.items())))  # the same identity, keys in another order
    assert [r["path"] for r in milvus.at(uri)["c"].rows.values()] == ["/p/a.jpg"]
    assert all(c.loaded for c in milvus.at(uri).values())


def test_create_refuses_another_models_collection_and_ones_it_did_not_make(milvus, tmp_path):
    uri = str(tmp_path / "c.db")
    create(uri, "c", MODEL)
    with pytest.raises(StoreError) as e:
        create(uri, "c", {**MODEL, "dim": 8})
    assert str(e.value) == (f"collection c at {uri} holds tiny (layer pool, 4-d) vectors, not tiny (layer pool, "
                            "8-d); name another with --collection")
    client = milvus.client(uri)
    client.alter_collection_properties("c_skipped", {"lookalike.skipped_of": "d"})
    client.close()
    with pytest.raises(StoreError) as e:
        create(uri, "c", MODEL)
    assert str(e.value) == (f"collection c_skipped at {uri} is not the skipped files of c; name another with "
                            "--collection")
    milvus.at(uri)["c"].properties.clear()
    with pytest.raises(StoreError) as e:
        create(uri, "c", MODEL)
    assert str(e.value) == (f"collection c at {uri} was not made by lookalike (no model recorded); name another "
                            "with --collection")
    assert milvus.opened == milvus.closed


def test_an_older_collection_without_skipped_files_gets_them(milvus, tmp_path):
    uri = str(tmp_path / "c.db")
    create(uri, "c", MODEL)
    del milvus.at(uri)["c_skipped"]
    create(uri, "c", MODEL)
    assert milvus.at(uri)["c_skipped"].properties == {"lookalike.skipped_of": "c"}


def test_rebuild_drops_both_collections_and_makes_them_for_the_model_given(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row("/p/a.jpg", [1, 0, 0, 0])], [("/p/b.jpg", "broken")])
    milvus.at(uri)["c_skipped"].properties["lookalike.skipped_of"] = "d"
    create(uri, "c", {**MODEL, "dim": 8}, rebuild=True)
    c, s = milvus.at(uri)["c"], milvus.at(uri)["c_skipped"]
    assert (c.rows, s.rows, c.schema.fields["vector"][1]["dim"]) == ({}, {}, 8)
    assert s.properties == {"lookalike.skipped_of": "c"}


def test_milvus_refusing_a_call_is_one_line_naming_the_collection(milvus, tmp_path):
    uri = str(tmp_path / "c.db")
    milvus.fail["create_collection"] = MilvusException(message="disk\nfull")
    with pytest.raises(StoreError) as e:
        create(uri, "c", MODEL)
    assert str(e.value) == (f"the Milvus data at {uri} (collection c) cannot be read (disk full); make it again "
                            "from the shards with `lookalike ingest SHARDS --uri URI --rebuild`, or restore it from "
                            "a backup")
    assert milvus.opened == milvus.closed == 1


def test_opening_refuses_a_missing_or_foreign_collection_and_closes_its_client(milvus, tmp_path):
    uri = str(tmp_path / "c.db")
    with pytest.raises(StoreError) as e:
        MilvusCollection(uri, "photos")
    assert str(e.value) == (f"no collection photos at {uri} (fill one with: lookalike ingest SHARDS --uri {uri} "
                            "--collection photos)")
    create(uri, "c", MODEL)
    milvus.at(uri)["c"].properties.clear()
    with pytest.raises(StoreError) as e:
        MilvusCollection(uri, "c")
    assert str(e.value) == (f"collection c at {uri} was not made by lookalike (no model recorded); name another "
                            "with --collection")
    create(uri, "d", MODEL)
    milvus.fail["describe_index"] = MilvusException(message="segment lost")
    with pytest.raises(StoreError) as e:
        MilvusCollection(uri, "d")
    assert str(e.value).startswith(f"the Milvus data at {uri} (collection d) cannot be read (segment lost); ")
    milvus.fail["describe_index"] = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        MilvusCollection(uri, "d")
    assert milvus.opened == milvus.closed


def test_an_opened_collection_says_what_it_is(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [])
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        assert (str(c), c.location) == (f"collection c at {uri}",) * 2
        assert (c.index_type, c.dim, c.lite, c.readonly, c.local) == ("milvus-flat", 4, True, True, False)
        assert (c.model, c.model_ref, c.skipped) == (MODEL, "tiny", "c_skipped")
        assert c.hashes.table is None and c.hashes.memory == {}
        assert type(c.dim) is int
    create(SERVER, "photos", {**MODEL, "dim": "6"})
    with contextlib.closing(MilvusCollection(SERVER, "photos")) as c:
        assert (c.index_type, c.dim, c.lite, c.skipped) == ("milvus-hnsw", 6, False, "photos_skipped")
    assert milvus.opened == milvus.closed


def test_the_collection_is_loaded_with_its_skipped_files_and_an_older_one_lists_none(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row("/p/a.jpg", [1, 0, 0, 0])], [("/p/b.jpg", "broken")])
    for c in milvus.at(uri).values():
        c.loaded = False
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        assert c.members() == ([file_id("/p/a.jpg")], [("/p/b.jpg", "broken")])
    del milvus.at(uri)["c_skipped"]
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        assert c.skipped is None
        assert c.members() == ([file_id("/p/a.jpg")], [])


def test_rows_by_id_in_any_number_and_in_the_order_asked(milvus, tmp_path):
    rng = np.random.default_rng(0)
    names = [f"/p/{i}.jpg" for i in range(1100)]
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row(n, rng.random(4), mtime=i) for i, n in enumerate(names)])
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        assert c.count() == 1100
        ids = [file_id(n) for n in names]
        found = c.rows(ids + [ids[0], 12345], ["path", "mtime_ns"])
        assert sorted(found) == sorted(ids)
        assert all(found[file_id(n)] == {"id": file_id(n), "path": n, "mtime_ns": i} for i, n in enumerate(names))
        order = [ids[7], ids[1099], ids[0], ids[7]]
        assert c.paths(order) == [names[7], names[1099], names[0], names[7]]
        assert c.paths([ids[3], 12345, ids[2]], missing_ok=True) == [names[3], None, names[2]]
        with pytest.raises(KeyError):
            c.paths([ids[3], 12345])
        assert c.rows([], ["path"]) == {}


def test_catalog_rows_and_columns_of_files(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row("/p/a.jpg", [1, 0, 0, 0], mtime=5, content="0f", size=7),
                                                   _row("/p/b.jpg", [0, 1, 0, 0], mtime=6, content="1e", size=8)])
    a, b = file_id("/p/a.jpg"), file_id("/p/b.jpg")
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        assert c.info(a) == {"path": "/p/a.jpg", "size": 7, "mtime_ns": 5, "hash": "0f", "width": 3, "height": 2}
        assert c.info(np.int64(b))["path"] == "/p/b.jpg"
        assert c.info(99) is None
        assert c.columns([b, a]) == {"path": ["/p/b.jpg", "/p/a.jpg"], "size": [8, 7], "mtime_ns": [6, 5],
                                     "hash": ["1e", "0f"], "width": [3, 3], "height": [2, 2]}


def test_the_files_of_a_content_hash_and_their_vector(milvus, tmp_path):
    same = [0.5, 0.5, 0.5, 0.5]
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row("/p/a.jpg", same, content="ab12"),
                                                   _row("/p/b.jpg", same, content="ab12"),
                                                   _row("/p/c.jpg", [1, 0, 0, 0], content="ab1")])
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        ids, vector = c.by_hash("ab12")
        assert ids == sorted([file_id("/p/a.jpg"), file_id("/p/b.jpg")])
        assert vector.dtype == np.float32 and vector.tolist() == same
        assert c.by_hash("ab") == ([], None)
        calls = len(milvus.calls)
        # not a hash: never put in a filter (quotes would break out of it)
        for bad in ('ab1" or hash != "', "AB12", "ab12\n", "", "a" * 129, "ab1g"):
            assert c.by_hash(bad) == ([], None)
        assert len(milvus.calls) == calls
        assert c.by_hash("a" * 128) == ([], None) and len(milvus.calls) == calls + 1


def test_members_below_a_folder_leave_out_a_sibling_whose_name_extends_it(milvus, tmp_path):
    names = ["/p/set/a.jpg", "/p/set/sub/b.jpg", "/p/set2/c.jpg", "/p/set", "/p/se.jpg", "/q/set/d.jpg",
             "/p/boX/e.jpg", "/p/bo/f.jpg"]
    skipped = [("/p/set2/x.jpg", "broken"), ("/p/set/z.jpg", "no"), ("/p/set/y.jpg", "empty")]
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row(n, [1, 0, 0, 0]) for n in names], skipped)
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        for under in ("/p/set", "/p/set/"):
            ids, bad = c.members(under)
            assert sorted(c.paths(ids)) == (["/p/set"] if under == "/p/set" else []) + ["/p/set/a.jpg",
                                                                                        "/p/set/sub/b.jpg"]
            assert bad == [("/p/set/y.jpg", "empty"), ("/p/set/z.jpg", "no")]
        assert c.paths(c.members("/p/boX")[0]) == ["/p/boX/e.jpg"]  # a name ending in X, as any other
        ids, bad = c.members()
        assert sorted(c.paths(ids)) == sorted(names)
        assert bad == sorted(skipped)


def test_every_vector_in_id_order_and_by_id(milvus, tmp_path):
    rng = np.random.default_rng(1)
    rows = [_row(f"/p/{i}.jpg", rng.random(4)) for i in range(9)]
    uri = _filled(milvus, str(tmp_path / "c.db"), rows)
    want = sorted((r["id"], np.float32(r["vector"]).tolist()) for r in rows)
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        ids, vectors = c.vectors()
        assert (ids.dtype, vectors.dtype, vectors.shape) == (np.int64, np.float32, (9, 4))
        assert list(zip(ids.tolist(), vectors.tolist())) == want
        asked = [want[4][0], 77, want[0][0]]
        got, known = c.vectors_of(asked)
        assert (got.dtype, known.dtype, known.tolist()) == (np.float32, np.bool_, [True, False, True])
        assert got.tolist() == [want[4][1], [0.0] * 4, want[0][1]]
    empty = _filled(milvus, str(tmp_path / "e.db"), [])
    with contextlib.closing(MilvusCollection(empty, "c")) as c:
        ids, vectors = c.vectors()
        assert (ids.dtype, ids.shape, vectors.dtype, vectors.shape) == (np.int64, (0,), np.float32, (0, 4))
        got, known = c.vectors_of([])
        assert (got.shape, known.shape) == ((0, 4), (0,))


def test_every_read_has_the_consistency_asked_for(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [_row("/p/a.jpg", [1, 0, 0, 0])], [("/p/b.jpg", "broken")])
    a = file_id("/p/a.jpg")
    for level in ("Bounded", "Strong"):
        milvus.calls.clear()
        c = MilvusCollection(uri, "c") if level == "Bounded" else MilvusCollection(uri, "c", consistency=level)
        with contextlib.closing(c):
            c.count(), c.paths([a]), c.info(a), c.columns([a]), c.by_hash("ab"), c.members(), c.vectors()
            c.vectors_of([a])
        assert milvus.reads() == [("query", level)] * 5 + [("query_iterator", level)] * 3 + [("query", level)]


def test_a_file_is_read_by_its_stored_name_and_a_failure_is_an_image_error(milvus, tmp_path, monkeypatch):
    uri = _filled(milvus, str(tmp_path / "c.db"), [])
    from PIL import Image

    Image.new("RGB", (3, 2), "red").save(tmp_path / "a.png")
    with contextlib.closing(MilvusCollection(uri, "c")) as c:
        assert c.read(str(tmp_path / "a.png")) == (tmp_path / "a.png").read_bytes()
        with pytest.raises(ImageError, match="^cannot read file"):
            c.read(str(tmp_path / "gone.jpg"))
        with pytest.raises(ImageError) as e:
            c.read("nosuchscheme://bucket/a.jpg")
        assert str(e.value).startswith("cannot read file: ") and "nosuchscheme" in str(e.value)
        monkeypatch.setattr(col.sources, "read", lambda name: (_ for _ in ()).throw(ModuleNotFoundError("no gcsfs")))
        with pytest.raises(ImageError) as e:  # a filesystem package missing
            c.read("gs://bucket/a.jpg")
        assert str(e.value) == "cannot read file: no gcsfs"


def test_its_searcher_goes_through_the_vector_index_unless_told_or_flat(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [])
    create(SERVER, "c", MODEL)
    with contextlib.closing(MilvusCollection(uri, "c")) as flat, contextlib.closing(MilvusCollection(SERVER, "c")) as c:
        assert (c.searcher().collection, c.searcher().approximate, c.searcher(False).approximate) == (c, True, False)
        assert flat.searcher().approximate is False


def test_open_index_embeds_queries_with_the_collections_model_or_refuses_another(milvus, tmp_path):
    from helpers import tiny_model
    from lookalike.models.errors import ModelError
    from lookalike.models.registry import resolve

    model = tiny_model(tmp_path / "tiny")
    ident = resolve(str(model)).identity()
    uri = str(tmp_path / "c.db")
    create(uri, "lookalike", ident)
    create(uri, "photos", ident)
    with open_index(uri, model=str(model)) as idx:
        assert (idx.collection.name, idx.collection.reading, idx.model) == (
            "lookalike", {"consistency_level": "Bounded"}, ident)
        assert (idx._threads, idx._device) == (None, "cpu")  # what Index.open has by default
    with open_index(uri, model=str(model), threads=3, device="cuda") as idx:
        assert (idx._threads, idx._device) == (3, "cuda")
    with pytest.raises(ModelError, match="^--weights applies to"):  # weights reach the model's resolution
        open_index(uri, model=str(model), weights=str(tmp_path / "w.pth"))
    with open_index(uri, "photos", model=str(model), consistency="Strong") as idx:
        assert (idx.collection.name, idx.collection.reading) == ("photos", {"consistency_level": "Strong"})
    create(uri, "other", {**ident, "dim": 9})
    closed = milvus.closed
    with pytest.raises(StoreError, match=r"^collection other at .* holds vectors of tiny-0 .*9-d.*but the model found"):
        open_index(uri, "other", model=str(model))
    assert milvus.closed == closed + 1


def test_the_standin_refuses_what_milvus_refuses(milvus, tmp_path):
    uri = _filled(milvus, str(tmp_path / "c.db"), [])
    client = milvus.client(uri)
    with pytest.raises(MilvusError):
        client.upsert("c", [_row("/p/a.jpg", [1, 0, 0])])  # a 3-d vector in a 4-d field
    with pytest.raises(MilvusError):
        client.upsert("c", [{**_row("/p/a.jpg", [1, 0, 0, 0]), "extra": 1}])
    with pytest.raises(MilvusError):
        client.query("c", filter="", output_fields=["path"])
    assert json.loads(milvus.at(uri)["c"].properties["lookalike.model"]) == MODEL
