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
