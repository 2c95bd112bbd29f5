"""Shard folders that hold something else: another model's shard, a shard of the wrong width, and
damaged, empty or foreign Parquet files are each refused in one line naming the file, before any
of their rows reaches an index (cluster/shards.py)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from lookalike.api import Index  # noqa: E402
from lookalike.cluster.embed import embed, model_spec  # noqa: E402
from lookalike.cluster.from_shards import index_shards  # noqa: E402
from lookalike.cluster.shards import MODEL_KEY, Shards, paths, schema, table  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402


@pytest.fixture(scope="module")
def shards(photo_dir, tmp_path_factory):
    """Real shards of six photos (three shards of two)."""
    root = tmp_path_factory.mktemp("six")
    for name in sorted(os.listdir(photo_dir))[:6]:
        shutil.copyfile(photo_dir / name, root / name)
    out = tmp_path_factory.mktemp("shards") / "shards"
    assert embed(str(root), str(out), model_spec(), "local", shard_rows=2).embedded == 6
    return out


def _folder_with(shards, tmp_path, name: str, data: bytes):
    folder = tmp_path / "shards"
    shutil.copytree(shards, folder)
    (folder / name).write_bytes(data)
    return folder


def _foreign_shard(identity: dict, width: int) -> bytes:
    """A shard of one file whose schema says ``identity`` and whose vectors are ``width``-d."""
    rows = {"path": ["/elsewhere/x.jpg"], "size": [1], "mtime_ns": [1], "hash": ["h"], "width": [4], "height": [4],
            "error": [None]}
    shard = table(rows, np.ones((1, width), np.float32), {**identity, "dim": width})
    shard = shard.replace_schema_metadata({MODEL_KEY: json.dumps(identity, sort_keys=True).encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(shard, sink)
    return sink.getvalue().to_pybytes()


def _refused(folder, name: str, tmp_path, why: str, embedding: bool = True) -> None:
    """Loading (and with ``embedding``, embedding into) ``folder`` stops with one line naming ``name``;
    nothing is loaded."""
    with Index.open(tmp_path / "ix", create=True) as idx:
        with pytest.raises(StoreError) as caught:
            index_shards(idx, str(folder))
        assert len(idx) == 0
    message = str(caught.value)
    assert name in message and why in message and "\n" not in message, message
    if embedding:
        with pytest.raises(StoreError, match=name):
            embed(str(folder), str(folder), model_spec(), "local")


@pytest.mark.parametrize("kind", ["other model", "other width"])
def test_a_shard_of_another_model_or_width_is_refused_by_name(shards, tmp_path, kind):
    real = Shards(str(shards)).model()
    if kind == "other model":
        identity, width, why = {"name": "other-net", "layer": "head", "dim": 16}, 16, "other-net"
    else:
        identity, width, why = real, 16, "16-d"
    folder = _folder_with(shards, tmp_path, "part-0000aaaa.parquet", _foreign_shard(identity, width))
    _refused(folder, "part-0000aaaa.parquet", tmp_path, why)
    os.remove(folder / "part-0000aaaa.parquet")  # the remedy: the folder loads, and answers
    with Index.open(tmp_path / "ix2", create=True) as idx:
        assert index_shards(idx, str(folder)).indexed == 6 and len(idx.query(idx.paths([1])[0], k=3).results) == 3


def _damaged(shards) -> bytes:
    data = bytearray((shards / Shards(str(shards)).names()[0]).read_bytes())
    data[len(data) // 3] ^= 0x55  # inside the column pages, footer intact
    return bytes(data)


@pytest.mark.parametrize("kind", ["empty", "garbage", "cut short", "damaged page", "plain parquet"])
def test_an_unreadable_or_foreign_parquet_file_is_named_in_one_line(shards, tmp_path, kind):
    first = (shards / Shards(str(shards)).names()[0]).read_bytes()
    plain = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2]}), plain)
    data = {"empty": b"", "garbage": b"not parquet " * 40, "cut short": first[: len(first) // 2],
            "damaged page": _damaged(shards), "plain parquet": plain.getvalue().to_pybytes()}[kind]
    name = Shards(str(shards)).names()[0] if kind == "damaged page" else "part-0000bbbb.parquet"
    folder = _folder_with(shards, tmp_path, name, data)
    # embed reads a shard's names, sizes and times, not its vectors: a damaged vector page is for loading to find
    _refused(folder, name, tmp_path, "not a lookalike shard" if kind == "plain parquet" else "cannot be read",
             embedding=kind != "damaged page")


def test_names_that_are_not_utf8_are_kept_byte_for_byte(tmp_path, photo_dir):
    odd = os.fsdecode(b"x\xff\xfe.jpg")
    (tmp_path / "photos").mkdir()
    shutil.copyfile(photo_dir / "chelsea.jpg", tmp_path / "photos" / odd)
    shutil.copyfile(photo_dir / "coffee.jpg", tmp_path / "photos" / "x\\xff\\xfe.jpg")  # what its escape reads as
    out = tmp_path / "shards"
    assert embed(str(tmp_path / "photos"), str(out), model_spec(), "local").embedded == 2
    shard = Shards(str(out)).read(Shards(str(out)).names()[0])
    assert sorted(paths(shard)) == sorted(str(tmp_path / "photos" / n) for n in (odd, "x\\xff\\xfe.jpg"))
    assert shard.schema.equals(schema(shard.schema.field("vector").type.list_size), check_metadata=False)
    assert embed(str(tmp_path / "photos"), str(out), model_spec(), "local").unchanged == 2
    with Index.open(tmp_path / "ix", create=True) as idx:
        assert index_shards(idx, str(out)).indexed == 2
        assert idx.query(str(tmp_path / "photos" / odd), k=1).results[0].path == str(tmp_path / "photos" / odd)


def test_a_shard_that_does_not_fit_on_the_disk_leaves_no_temporary(small_disk):
    rows = {"path": [f"/p/{i}.jpg" for i in range(200)], "size": [1] * 200, "mtime_ns": [1] * 200,
            "hash": ["h"] * 200, "width": [4] * 200, "height": [4] * 200, "error": [None] * 200}
    shard = table(rows, np.random.default_rng(0).random((200, 64), np.float32), {"name": "m", "layer": "l", "dim": 64})
    disk = small_disk(8192)
    with pytest.raises(OSError):
        Shards(str(disk / "shards")).write(shard)
    assert [p.name for p in (disk / "shards").iterdir()] == []


@pytest.mark.parametrize("shard_rows, sizes", [(2, [2, 2, 2]), (4, [4, 2]), (5, [5, 1]), (6, [6]), (7, [6])])
def test_an_embedding_run_writes_shards_of_at_most_shard_rows_files(tmp_path, shard_rows, sizes):
    """Six files (one of them broken: a row all the same) in shards of ``shard_rows`` rows, in listing
    order, the last one holding the rest; the report counts the shards written."""
    from helpers import sample_photo, tiny_model

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "camera", "chelsea", "coffee", "rocket"):
        sample_photo(name).resize((40, 32)).save(photos / f"{name}.png")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff cut short")
    out = tmp_path / "shards"
    report = embed(str(photos), str(out), model_spec(str(tiny_model(tmp_path / "model"))), "local",
                   shard_rows=shard_rows)
    assert (report.embedded, len(report.skipped), report.shards) == (5, 1, len(sizes))
    found = [paths(Shards(str(out)).read(name)) for name in Shards(str(out)).names()]
    assert sorted(len(rows) for rows in found) == sorted(sizes)
    listed = sorted(str(p) for p in photos.iterdir())
    assert sorted(found) == [listed[i:i + shard_rows] for i in range(0, 6, shard_rows)]  # consecutive files


def test_shards_of_another_model_are_refused_for_a_new_run_with_both_models_named(tmp_path):
    held = {"name": "hand-made", "layer": "out", "dim": 3}
    location = str(tmp_path / "shards") + "/"  # a trailing slash: the same folder
    Shards(location).check_model(held)  # no shards yet: any model may write
    cols = {"path": ["/p/a.jpg"], "size": [10], "mtime_ns": [5], "hash": ["ha"], "width": [4], "height": [4],
            "error": [None]}
    name = Shards(location).write(table(cols, np.eye(1, 3, dtype=np.float32), held))
    assert os.listdir(tmp_path / "shards") == [name]
    Shards(location).check_model(dict(held))  # the same model: more shards welcome
    with pytest.raises(StoreError) as refused:
        Shards(location).check_model({"name": "efficientnet-lite0", "layer": "pool", "dim": 1280})
    assert str(refused.value) == (f"shards in {location} hold hand-made (layer out, 3-d) vectors, not "
                                  "efficientnet-lite0 (layer pool, 1280-d); use another --out")


# Hand-made shards (no model): what a shard folder lists, names, reads and refuses.
HAND = {"name": "hand-made", "layer": "out", "dim": 3}


def _hand(paths_: list[str], mtimes: list[int], errors=None, identity=HAND, vectors=None):
    errors = errors or [None] * len(paths_)
    ok = sum(not e for e in errors)
    cols = {"path": paths_, "size": [10] * len(paths_), "mtime_ns": mtimes, "hash": ["ab"] * len(paths_),
            "width": [4] * len(paths_), "height": [3] * len(paths_), "error": errors}
    vectors = np.arange(ok * identity["dim"], dtype=np.float32).reshape(ok, identity["dim"]) if vectors is None \
        else vectors
    return table(cols, vectors, identity)


def test_the_shards_of_a_folder_are_its_part_files_sorted_without_unfinished_writes(tmp_path):
    assert Shards(str(tmp_path / "none")).names() == [] and Shards(str(tmp_path / "none")).model() is None
    folder = tmp_path / "shards"
    folder.mkdir()
    for name in ("part-b.parquet", "part-a.parquet", ".tmp-0f.parquet", "part-c.txt", "notes.parquet"):
        (folder / name).write_bytes(b"")
    assert Shards(str(folder)).names() == ["part-a.parquet", "part-b.parquet"]
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(StoreError) as e:
        Shards(str(tmp_path / "file")).names()
    assert str(e.value) == f"not a folder of shards: {tmp_path / 'file'}"


def test_a_shard_is_named_by_its_files_so_a_retried_write_replaces_it(tmp_path):
    s = Shards(str(tmp_path / "shards"))
    first = s.write(_hand(["/p/a.jpg", "/p/b.jpg"], [1, 2]))
    assert s.write(_hand(["/p/a.jpg", "/p/b.jpg"], [1, 2], vectors=np.ones((2, 3), np.float32))) == first
    assert len(first) == len("part-") + 24 + len(".parquet") and first.startswith("part-")
    assert first.endswith(".parquet") and all(c in "0123456789abcdef" for c in first[5:-8])
    others = {s.write(_hand(["/p/a.jpg", "/p/b.jpg"], [1, 3])), s.write(_hand(["/p/a.jpg"], [1])),
              s.write(_hand(["/p/a.jpg", "/p/c.jpg"], [1, 2]))}
    assert len(others | {first}) == 4 and sorted(os.listdir(tmp_path / "shards")) == sorted(others | {first})
    assert [r["vector"] for r in s.read(first).to_pylist()] == [[1.0] * 3] * 2  # the retry's rows


def test_a_shard_reads_back_its_rows_vectors_and_failures(tmp_path):
    s = Shards(str(tmp_path / "shards") + "/")
    name = s.write(_hand(["/p/a.jpg", "/p/bad.jpg", "/p/c.jpg"], [1, 2, 3], errors=[None, "broken", ""]))
    shard = s.read(name)
    assert paths(shard) == ["/p/a.jpg", "/p/bad.jpg", "/p/c.jpg"]
    assert shard.column("error").to_pylist() == [None, "broken", None]  # "" is no error
    assert shard.column("hash").to_pylist() == ["ab", None, "ab"]
    from lookalike.cluster.shards import shard_vectors

    vectors = shard_vectors(shard)
    assert vectors.dtype == np.float32 and vectors.tolist() == [[0, 1, 2], [0, 0, 0], [3, 4, 5]]
    assert s.read(name, ("path", "nothing")).column_names == ["path"]
    assert [n for n, _ in s] == [name] and s.model() == HAND
    older = pa.table({"path": ["/p/x.jpg"], "size": [1]})  # a shard written before path_bytes
    assert paths(older) == ["/p/x.jpg"]


def test_a_shard_of_another_model_or_width_or_none_is_named_with_the_remedy(tmp_path):
    folder = tmp_path / "shards"
    s = Shards(str(folder))
    os.rename(folder / s.write(_hand(["/p/a.jpg"], [1])), folder / "part-0.parquet")
    os.rename(folder / s.write(_hand(["/p/b.jpg"], [1])), folder / "part-1.parquet")
    assert s.model() == HAND
    other = {"name": "other", "layer": "pool", "dim": 3}
    os.rename(folder / s.write(_hand(["/p/c.jpg"], [1], identity=other)), folder / "part-2.parquet")
    remedy = f"move it out of {folder} (or embed again into a fresh --out)"
    with pytest.raises(StoreError) as e:
        s.model()
    assert str(e.value) == (f"{folder}/part-2.parquet holds other (layer pool, 3-d) vectors, not hand-made (layer out, "
                            f"3-d) like part-0.parquet; {remedy}")
    os.remove(folder / "part-2.parquet")
    wide = _hand(["/p/d.jpg"], [1], identity={**HAND, "dim": 4})
    pq.write_table(wide.replace_schema_metadata({MODEL_KEY: json.dumps(HAND).encode()}), folder / "part-3.parquet")
    with pytest.raises(StoreError) as e:
        s.model()
    assert str(e.value) == f"{folder}/part-3.parquet holds 4-d vectors, but its model hand-made makes 3-d ones; {remedy}"
    why = (f"is not a lookalike shard (no model metadata or columns path, size, mtime_ns, hash, width, height, vector, "
           f"error); {remedy}")
    good = _hand(["/p/e.jpg"], [1])
    for meta in (None, b"not json", b"[1, 2]", json.dumps({"name": "x", "layer": "y"}).encode()):
        t = good.replace_schema_metadata(None if meta is None else {MODEL_KEY: meta})
        pq.write_table(t, folder / "part-3.parquet")
        with pytest.raises(StoreError) as e:
            s.model()
        assert str(e.value) == f"{folder}/part-3.parquet {why}", meta
    pq.write_table(good.drop_columns(["height"]), folder / "part-3.parquet")
    with pytest.raises(StoreError) as e:
        s.model()
    assert str(e.value) == f"{folder}/part-3.parquet {why}"
    pq.write_table(good.drop_columns(["path_bytes"]), folder / "part-3.parquet")  # an older shard is one
    assert s.model() == HAND
    (folder / "part-4.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(StoreError) as e:
        s.model()
    assert str(e.value).startswith(f"{folder}/part-4.parquet cannot be read as a shard (")
    assert str(e.value).endswith(f"); {remedy}") and "\n" not in str(e.value)


def test_the_newest_row_of_a_file_equal_in_two_shards_is_the_later_shards(tmp_path):
    folder = tmp_path / "shards"
    s = Shards(str(folder))
    os.rename(folder / s.write(_hand(["/p/a.jpg", "/p/b.jpg"], [5, 5])), folder / "part-1.parquet")
    os.rename(folder / s.write(_hand(["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"], [5, 4, 5])), folder / "part-0.parquet")
    latest, superseded = s.newest()
    assert latest == {"/p/a.jpg": (10, 5, "part-1.parquet", None), "/p/b.jpg": (10, 5, "part-1.parquet", None),
                      "/p/c.jpg": (10, 5, "part-0.parquet", None)}
    assert superseded == {"part-0.parquet": ["/p/a.jpg", "/p/b.jpg"], "part-1.parquet": []}
    assert s.latest() == latest
