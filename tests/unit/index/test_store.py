import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from lookalike.index.sqlite import SCHEMA_VERSION, CatalogError
from lookalike.index.store import Entry, Store, StoreError

MODEL = {"name": "m", "layer": "pool", "dim": 3, "preprocessing": {"size": 8}}


def _entry(path: str, value: float) -> Entry:
    return Entry(path, 10, 1, f"h{path}", 4, 4, np.full(3, value, np.float32))


def test_schema_is_versioned_and_model_is_fixed(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.model == MODEL and s.model_ref == "m"
    with pytest.raises(StoreError, match="built with model m"):
        Store.create(tmp_path, {**MODEL, "name": "other"}, ref="other")


def test_a_catalog_that_could_not_be_created_on_a_full_disk_is_not_left_behind(small_disk):
    root = small_disk(0) / "ix"
    with pytest.raises(StoreError) as caught:
        Store.create(root, MODEL, ref="m")
    assert "full" in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(p.name for p in root.iterdir()) == []  # not an empty catalog that only --rebuild would clear


def test_open_missing_and_newer_schema(tmp_path):
    with pytest.raises(StoreError, match="no index"):
        Store.open(tmp_path / "nope")
    Store.create(tmp_path, MODEL, ref="m").close()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path)


def test_put_remove_and_vector_cache_follow_generations(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_entry("/a", 1.0), _entry("/b", 2.0)], [("/bad", 1, 1, "broken")])
        ids, vec = s.vectors()
        assert s.count() == 2 and vec.shape == (2, 3)
        assert s.records()["/bad"].error == "broken"
        s.put([_entry("/a", 5.0)])  # replace keeps one row per path
        ids, vec = s.vectors()
        assert sorted(vec[:, 0].tolist()) == [2.0, 5.0]
        assert s.remove(["/b", "/bad"]) == 1
        ids, vec = s.vectors()
        assert s.paths(ids) == ["/a"] and vec[0, 0] == 5.0
        assert len(list(tmp_path.glob("vectors-*.npy"))) == 1
        same, v = s.by_hash("h/a")
        assert same == [int(ids[0])] and v[0] == 5.0


def _v1_catalog(folder) -> None:
    """A schema v1 catalog in ``folder`` with one embedded image, id 7."""
    from lookalike.index.sqlite import MIGRATIONS

    conn = sqlite3.connect(folder / "index.sqlite")
    conn.executescript(MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO meta VALUES ('model', ?)", ('{"name": "m", "dim": 3}',))
    conn.execute("INSERT INTO images (id, path, size, mtime_ns, hash, status, vector) VALUES (7, '/a', 1, 1, 'h', 'ok', ?)",
                 (np.ones(3, np.float32).tobytes(),))
    conn.commit()
    conn.close()


def test_v1_catalog_is_migrated_keeping_rows(tmp_path):
    _v1_catalog(tmp_path)
    with Store.open(tmp_path) as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        ids, vec = s.vectors()
        assert ids.tolist() == [7] and vec[0].tolist() == [1.0, 1.0, 1.0]


def test_a_migration_that_fails_midway_changes_nothing(tmp_path, monkeypatch):
    from lookalike.index import sqlite

    _v1_catalog(tmp_path)
    # the last statement fails, as a full disk or a kill would stop it, after the old table was dropped
    monkeypatch.setattr(sqlite, "MIGRATIONS", [sqlite.MIGRATIONS[0], sqlite.MIGRATIONS[1] + "; SELECT no_such_function()"])
    with pytest.raises(StoreError, match="cannot upgrade the catalog to schema v2 .* nothing was changed"):
        Store.open(tmp_path)
    monkeypatch.undo()
    conn = sqlite3.connect(tmp_path / "index.sqlite")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall() == [
        ("images",), ("meta",)]
    conn.close()
    with Store.open(tmp_path) as s:  # the real migration then runs from the start
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.vectors()[0].tolist() == [7]


def test_ids_are_never_reused_and_a_changed_file_gets_a_new_id(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_entry("/a", 1.0), _entry("/b", 2.0)])
        first = dict(zip(s.paths(s.vectors()[0]), s.vectors()[0].tolist()))
        s.remove(["/b"])
        s.put([_entry("/a", 3.0), _entry("/c", 4.0)])
        now = dict(zip(s.paths(s.vectors()[0]), s.vectors()[0].tolist()))
        assert now["/a"] != first["/a"] and now["/c"] not in first.values()


def test_a_path_that_is_not_utf8_round_trips(tmp_path):
    odd = "/photos/" + os.fsdecode(b"x\xff.jpg")
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([Entry(odd, 10, 1, "h1", 4, 4, np.ones(3, np.float32)), _entry("/photos/ok.jpg", 2.0)], [("/photos/" + os.fsdecode(b"\xfe.png"), 1, 1, "bad")])
        s.touch(odd, 11, 2)
    with Store.open(tmp_path) as s:
        records = s.records(under="/photos")
        assert records[odd].size == 11 and len(records) == 3
        ids, _ = s.vectors()
        assert odd in s.paths(ids)
        assert s.remove([odd, "/photos/" + os.fsdecode(b"\xfe.png")]) == 1
        assert list(s.records()) == ["/photos/ok.jpg"]


def test_vectors_are_one_generation_while_another_connection_commits(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as writer, Store.open(tmp_path) as reader:
        writer.put([_entry("/a", 1.0), _entry("/b", 2.0)])
        read_rows = reader.iter_vectors

        def racing(*args, **kwargs):  # a commit lands between the count and the rows
            writer.put([_entry("/c", 3.0), _entry("/d", 4.0)])
            yield from read_rows(*args, **kwargs)

        reader.iter_vectors = racing
        ids, vectors = reader.vectors()
        assert reader.paths(ids) == ["/a", "/b"] and vectors[:, 0].tolist() == [1.0, 2.0]
        writer.remove(["/a"])
        assert reader.paths(ids, missing_ok=True) == [None, "/b"]
        with pytest.raises(KeyError):
            reader.paths(ids)
        reader.iter_vectors = read_rows
        ids, vectors = reader.vectors()
        assert vectors[:, 0].tolist() == [2.0, 3.0, 4.0]


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def _damage_zero_data(path):
    data = bytearray(path.read_bytes())
    data[-12:] = bytes(12)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("target, damage", [
    ("vectors-{g}.npy", _damage_truncate),
    ("vectors-{g}.npy", lambda p: p.write_bytes(b"")),
    ("vectors-{g}.npy", _damage_zero_data),
    ("ids-{g}.npy", _damage_zero_data),
    ("ids-{g}.npy", lambda p: p.unlink()),
    ("vectors-{g}.json", lambda p: p.write_text("{")),
])
def test_a_damaged_vector_cache_is_rebuilt_from_the_catalog(tmp_path, target, damage):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_entry(f"/{i}", float(i + 1)) for i in range(5)])
        expected = [np.asarray(a).copy() for a in s.vectors()]
        generation = s.generation
    damage(tmp_path / target.format(g=generation))
    with Store.open(tmp_path) as s:
        ids, vectors = s.vectors()
        assert np.array_equal(ids, expected[0]) and np.array_equal(vectors, expected[1])
    with Store.open(tmp_path) as s:  # repaired on disk: the next process loads it as it is
        s._cache.write = None
        assert np.array_equal(s.vectors()[1], expected[1])


def test_a_read_only_folder_gives_vectors_in_memory(tmp_path, monkeypatch):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_entry("/a", 1.0)])
    for old in tmp_path.glob("*.np[y]"):
        old.unlink()
    monkeypatch.setattr("tempfile.mkdtemp", lambda **kw: (_ for _ in ()).throw(PermissionError(13, "read-only")))
    with Store.open(tmp_path) as s:
        ids, vectors = s.vectors()
        assert s.paths(ids) == ["/a"] and vectors[0, 0] == 1.0
    assert not list(tmp_path.glob("*.npy"))



def _file(path: str, n: int) -> Entry:
    """An embedded file whose catalog fields all differ from each other and from other files'."""
    return Entry(path, 100 + n, 1000 + n, f"hash{n}", 20 + n, 30 + n, np.full(3, n, np.float32))


def test_records_under_a_folder_are_the_files_below_it_only(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_file("/photos/a.jpg", 1), _file("/photos/sub/b.jpg", 2), _file("/photos2/c.jpg", 3),
               _file("/photo", 4), _file("/photos.jpg", 5)], [("/photos/bad.jpg", 7, 8, "broken")])
        below = ["/photos/a.jpg", "/photos/bad.jpg", "/photos/sub/b.jpg"]
        assert sorted(s.records(under="/photos")) == below
        assert sorted(s.records(under="/photos/")) == below
        assert list(s.records(under="/photo")) == ["/photo"]  # one indexed file is "under" itself
        assert len(s.records()) == 6
        ok, bad = s.records()["/photos/sub/b.jpg"], s.records(under="/photos")["/photos/bad.jpg"]
        assert (ok.path, ok.size, ok.mtime_ns, ok.hash, ok.status, ok.error) == (
            "/photos/sub/b.jpg", 102, 1002, "hash2", "ok", None)
        assert s.paths([ok.id]) == ["/photos/sub/b.jpg"]
        assert (bad.size, bad.mtime_ns, bad.hash, bad.status, bad.error) == (7, 8, None, "error", "broken")


def test_many_files_are_read_looked_up_and_removed_in_chunks(tmp_path):
    # more rows than one read batch (4,096) and more ids than one lookup query (500)
    n = 4203
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_file(f"/p/{i:04d}", i) for i in range(n)], [(f"/e/{i}", 1, 1, "bad") for i in range(3)])
        ids, vectors = s.vectors()
        assert vectors[:, 0].tolist() == list(range(n))
        ids = ids[::-1]  # the answers follow the order of the ids asked for
        assert s.paths(ids) == [f"/p/{i:04d}" for i in reversed(range(n))]
        columns = s.columns(ids)
        assert list(columns) == ["path", "size", "mtime_ns", "hash", "width", "height"]
        assert columns["path"] == s.paths(ids)
        assert columns["size"] == [100 + i for i in reversed(range(n))]
        assert columns["mtime_ns"] == [1000 + i for i in reversed(range(n))]
        assert columns["hash"] == [f"hash{i}" for i in reversed(range(n))]
        assert columns["width"] == [20 + i for i in reversed(range(n))]
        assert columns["height"] == [30 + i for i in reversed(range(n))]
        # 1,100 embedded files (every one below 1100) and 2 failed ones: only the embedded are counted
        gone = [f"/p/{i:04d}" for i in range(1100)] + ["/e/0", "/e/2"]
        assert s.remove(gone) == 1100
        assert s.count() == n - 1100
        assert sorted(s.records()) == ["/e/1"] + [f"/p/{i:04d}" for i in range(1100, n)]


def test_info_is_the_catalog_row_of_an_embedded_image_only(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_file("/a", 1), _file("/b", 2)], [("/bad", 5, 6, "broken")])
        records = s.records()
        assert s.info(records["/b"].id) == {"path": "/b", "size": 102, "mtime_ns": 1002, "hash": "hash2",
                                             "width": 22, "height": 32}
        assert s.info(records["/bad"].id) is None and s.info(10**6) is None


def test_vectors_are_read_in_batches_in_id_order(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_file(f"/{i}", i) for i in range(5)], [("/bad", 1, 1, "broken")])
        chunks = list(s.iter_vectors(batch=2))
        assert [len(ids) for ids, _ in chunks] == [2, 2, 1]
        assert all(ids.dtype == np.int64 and v.dtype == np.float32 and v.shape[1] == 3 for ids, v in chunks)
        ids = np.concatenate([ids for ids, _ in chunks])
        assert s.paths(ids) == ["/0", "/1", "/2", "/3", "/4"] and np.all(np.diff(ids) > 0)
        assert np.concatenate([v for _, v in chunks]).tolist() == [[i] * 3 for i in range(5)]


def test_metadata_and_the_generation_are_kept_across_opens(tmp_path):
    with Store.create(tmp_path, MODEL, ref="models/m.onnx") as s:
        assert s.generation == 0 and s.meta("ann") is None
        s.set_meta("ann", "hnsw")
        s.set_meta("ann", "ivf")  # replaced, not added
        s.put([_file("/a", 1), _file("/b", 2)])
        s.touch("/a", 5, 6)  # the same content: no new generation
        assert s.generation == 1 and s.records()["/a"].size == 5 and s.records()["/a"].mtime_ns == 6
        s.remove(["/a"])
    with Store.open(tmp_path) as s:
        assert s.meta("ann") == "ivf" and s.generation == 2 and s.model_ref == "models/m.onnx"


def test_another_model_is_refused_naming_both(tmp_path):
    built = {**MODEL, "weights_sha256": "0123456789abcdef"}
    Store.create(tmp_path, built, ref="m").close()
    with pytest.raises(StoreError) as refused:
        Store.create(tmp_path, {"name": "other", "layer": "fc", "dim": 5}, ref="other")
    assert str(refused.value) == (f"index {tmp_path} was built with model m (layer pool, 3-d, weights 01234567), "
                                  "not other (layer fc, 5-d); use another --index or --rebuild")


def test_the_catalog_is_written_ahead_and_usable_from_other_threads(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        s.put([_file("/a", 1)])
        counted = []
        worker = threading.Thread(target=lambda: counted.append(s.count()))  # the server's worker threads
        worker.start()
        worker.join()
        assert counted == [1]


def test_a_catalog_that_cannot_be_written_opens_read_only(tmp_path, monkeypatch):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        s.put([_file("/a", 1)])
    catalog = tmp_path / "index.sqlite"
    real_access = os.access
    # as root (CI) a file mode cannot deny writing: the folder and catalog are reported unwritable instead
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and real_access(path, mode))
    with Store.open(tmp_path) as s:
        assert s.readonly and s.paths(s.vectors()[0]) == ["/a"]
        counted = []
        worker = threading.Thread(target=lambda: counted.append(s.count()))  # the server's worker threads
        worker.start()
        worker.join()
        assert counted == [1]
        with pytest.raises(StoreError, match=f"^index {tmp_path} is read-only: cannot add files$"):
            s.put([_file("/b", 2)])
        with pytest.raises(StoreError, match="read-only: cannot set ann$"):
            s.set_meta("ann", "hnsw")
        with pytest.raises(CatalogError, match="readonly") as raised:  # the connection itself
            s.conn.execute("DELETE FROM images")
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        for write, what in [(lambda: s.touch("/a", 1, 1), "record a changed mtime"),
                            (lambda: s.remove(["/a"]), "remove files")]:
            with pytest.raises(StoreError, match=f"read-only: cannot {what}$"):
                write()
    monkeypatch.undo()
    with Store.open(tmp_path) as s:
        assert not s.readonly and s.count() == 1 and catalog.is_file()
        s.conn.execute("DELETE FROM meta WHERE key = 'model'")  # a catalog whose model was never recorded
        s.conn.commit()
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and real_access(path, mode))
    with pytest.raises(StoreError, match="read-only: cannot record its model$"):
        Store.create(tmp_path, MODEL, ref="m")


def test_an_index_is_created_with_its_parent_folders_or_refused_in_one_line(tmp_path):
    with Store.create(tmp_path / "a" / "b", MODEL, ref="m") as s:
        assert s.root == tmp_path / "a" / "b" and (tmp_path / "a" / "b" / "index.sqlite").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError) as refused:
        Store.create(tmp_path / "file" / "index", MODEL, ref="m")
    assert str(refused.value) == f"cannot create an index at {tmp_path / 'file' / 'index'}: Not a directory"


def test_an_empty_index_has_no_vectors_of_its_dimension(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        ids, vectors = s.vectors()
        assert (ids.shape, ids.dtype, vectors.shape, vectors.dtype) == ((0,), np.int64, (0, 3), np.float32)


def test_vectors_are_stored_as_float32_of_the_models_dimension(tmp_path):
    with Store.create(tmp_path, {**MODEL, "dim": 1}, ref="m") as s:
        s.put([Entry("/a", 1, 1, "h1", 1, 1, np.array([0.5], np.float64)),
               Entry("/b", 1, 1, "h2", 1, 1, np.array([-2.25], np.float64))])
        ids, vectors = s.vectors()
        assert vectors.dtype == np.float32 and vectors.tolist() == [[0.5], [-2.25]]
        assert s.by_hash("h2")[1].tolist() == [-2.25]


def test_a_blob_table_keeps_values_by_key_and_loses_nothing_when_unusable(tmp_path):
    from lookalike.index.store import BlobTable

    table = BlobTable(tmp_path / "hashes.sqlite", "dihedral", "content")
    assert table.load({"a"}) == {} and not table.path.exists()  # nothing stored yet: no file made
    assert table.save({"a": b"\x01\x02", "b": b"\x03"})
    assert table.save({"b": b"\x04", "c": b""})  # an equal key is replaced
    again = BlobTable(tmp_path / "hashes.sqlite", "dihedral", "content")
    assert again.load({"a", "b", "c", "x"}) == {"a": b"\x01\x02", "b": b"\x04", "c": b""}
    assert again.load({"b"}) == {"b": b"\x04"} and again.load(set()) == {}
    columns = sqlite3.connect(table.path).execute("SELECT name FROM pragma_table_info('dihedral')").fetchall()
    assert columns == [("content",), ("bits",)]
    (tmp_path / "broken.sqlite").write_bytes(b"not a database" * 100)
    broken = BlobTable(tmp_path / "broken.sqlite", "dihedral", "content")
    assert broken.load({"a"}) == {} and broken.save({"a": b"\x01"}) is False
    assert BlobTable(tmp_path / "no" / "such" / "h.sqlite", "dihedral", "content").save({"a": b"\x01"}) is False


def test_a_read_only_reader_sees_what_a_writer_commits_meanwhile(tmp_path, monkeypatch):
    real_access = os.access
    with Store.create(tmp_path, MODEL, ref="m") as writer:
        writer.put([_file("/a", 1)])
        monkeypatch.setattr(os, "access", lambda path, mode: mode != os.W_OK and real_access(path, mode))
        with Store.open(tmp_path) as reader:
            monkeypatch.undo()
            writer.put([_file("/b", 2)])  # in the write-ahead log, not yet in the catalog file
            assert reader.readonly and sorted(reader.records()) == ["/a", "/b"] and reader.generation == 2


def _deny_writing(monkeypatch, *denied):
    """Report ``denied`` paths unwritable (as root, file modes cannot deny it); others as they are."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not (mode == os.W_OK and Path(path) in denied)
                        and real_access(path, mode))


def test_a_catalog_in_a_folder_that_cannot_be_written_opens_read_only(tmp_path, monkeypatch):
    Store.create(tmp_path, MODEL, ref="m").close()
    _deny_writing(monkeypatch, tmp_path)  # the catalog file itself is writable: SQLite still needs the folder
    with Store.open(tmp_path) as s:
        assert s.readonly


def test_an_old_read_only_catalog_is_refused_until_upgraded_where_writable(tmp_path, monkeypatch):
    _v1_catalog(tmp_path)
    _deny_writing(monkeypatch, tmp_path, tmp_path / "index.sqlite")
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path)
    assert str(refused.value) == (f"index {tmp_path / 'index.sqlite'} is read-only and has schema v1: open it once "
                                  "where it can be written to upgrade it to v2")


def test_an_empty_or_foreign_catalog_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "index.sqlite").write_bytes(b"")
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path)
    assert str(refused.value) == (f"{tmp_path / 'index.sqlite'} is empty (0 bytes), not an index: restore it from "
                                  "a backup, or start again with --rebuild")
    (tmp_path / "index.sqlite").write_bytes(b"not an index " * 100)
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path)
    assert str(refused.value) == (f"cannot open index {tmp_path / 'index.sqlite'}: file is not a database (restore it "
                                  "from a backup, or start again with --rebuild)")


@pytest.mark.parametrize(("size", "reason"), [(1, "file is not a database"), (15, "file is not a database"),
                                              (99, "database disk image is malformed")])
def test_a_catalog_cut_short_of_its_header_is_refused_not_opened_as_a_new_index(tmp_path, size, reason):
    Store.create(tmp_path / "whole", MODEL, ref="m").close()
    whole = (tmp_path / "whole" / "index.sqlite").read_bytes()
    (tmp_path / "index.sqlite").write_bytes(whole[:size])
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path)
    assert str(refused.value) == (f"cannot open index {tmp_path / 'index.sqlite'}: {reason} (restore it from a backup, "
                                  "or start again with --rebuild)")
    assert (tmp_path / "index.sqlite").read_bytes() == whole[:size]  # left as found, for recovery
    with pytest.raises(StoreError, match=reason):
        Store.create(tmp_path, MODEL, ref="m")


def test_a_catalog_that_cannot_be_opened_is_not_called_damaged(tmp_path):
    (tmp_path / "index.sqlite").mkdir()  # SQLite's OperationalError: no advice to start again
    with pytest.raises(StoreError) as refused:
        Store.create(tmp_path, MODEL, ref="m")
    assert str(refused.value) == f"cannot open index {tmp_path / 'index.sqlite'}: unable to open database file"


def test_an_unreadable_catalog_is_refused_in_one_line(tmp_path, monkeypatch):
    Store.create(tmp_path, MODEL, ref="m").close()
    real_open = Path.open

    def denied(self, *args, **kwargs):
        if self.name == "index.sqlite":
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", denied)
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path)
    assert str(refused.value) == f"cannot open index {tmp_path / 'index.sqlite'}: Permission denied"


def test_a_catalog_whose_creation_fails_is_refused_in_one_line(tmp_path, monkeypatch):
    from lookalike.index import sqlite

    monkeypatch.setattr(sqlite, "MIGRATIONS", [sqlite.MIGRATIONS[0] + "; SELECT no_such_function()", sqlite.MIGRATIONS[1]])
    with pytest.raises(StoreError, match=r"^cannot create the catalog at .*index\.sqlite: no such function: "
                                         r"no_such_function \(is the disk full\?\); nothing was changed$"):
        Store.create(tmp_path, MODEL, ref="m")


def test_a_foreign_file_in_a_read_only_folder_is_not_an_index_to_open(tmp_path, monkeypatch):
    (tmp_path / "index.sqlite").write_bytes(b"not an index " * 100)
    _deny_writing(monkeypatch, tmp_path, tmp_path / "index.sqlite")
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path)
    assert str(refused.value) == (f"cannot open index {tmp_path / 'index.sqlite'}: file is not a database (restore it "
                                  "from a backup, or start again with --rebuild)")


def test_the_count_is_read_once_per_generation_and_follows_other_writers(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s, Store.open(tmp_path) as other:
        s.put([_entry("/a", 1.0), _entry("/b", 2.0)], errors=[("/broken", 1, 1, "not an image")])
        scans = []
        other.conn.set_trace_callback(lambda sql: scans.append(sql) if "COUNT(*) FROM images" in sql else None)
        assert [other.count(), other.count()] == [2, 2] and len(scans) == 1  # the table is scanned once
        s.put([_entry("/c", 3.0)])  # another writer (another process, to ``other``)
        assert other.count() == 3
        s.remove(["/a", "/broken"])
        assert other.count() == 2 and len(scans) == 3


def test_a_catalog_that_cannot_be_created_in_a_read_only_folder_says_so(tmp_path, monkeypatch):
    # What a user who is not root meets in a folder without write permission (root may write anywhere,
    # so the folder's permission and SQLite's refusal are stood in for).
    from lookalike.index import sqlite as catalog

    def refuse(*args, **kwargs):
        raise sqlite3.OperationalError("unable to open database file")

    real_access = os.access
    read_only = tmp_path / "ro"
    read_only.mkdir()
    monkeypatch.setattr(catalog.sqlite3, "connect", refuse)
    monkeypatch.setattr(catalog.os, "access", lambda p, mode: False if Path(p) == read_only else real_access(p, mode))
    with pytest.raises(StoreError) as refused:
        catalog.connect(read_only / "index.sqlite")
    assert str(refused.value) == f"cannot create an index in {read_only}: the folder is read-only"
    writable = tmp_path / "rw"  # a folder that can be written: SQLite's own reason, no guess
    writable.mkdir()
    with pytest.raises(StoreError) as refused:
        catalog.connect(writable / "index.sqlite")
    assert str(refused.value) == f"cannot open index {writable / 'index.sqlite'}: unable to open database file"


def test_an_sqlite_error_in_a_batch_on_an_open_catalog_is_a_catalog_error(tmp_path):
    from lookalike.index import sqlite as catalog

    conn, readonly = catalog.connect(tmp_path / "index.sqlite")
    try:
        assert not readonly
        with pytest.raises(CatalogError, match=r"^the index catalog \(index.sqlite\) cannot be read: no such table: gone;"):
            conn.executemany("INSERT INTO gone VALUES (?)", [(1,), (2,)])
        with pytest.raises(CatalogError, match="no such table: gone"):
            conn.execute("SELECT * FROM gone")
    finally:
        conn.close()


def test_a_catalog_where_not_even_a_lock_file_can_be_made_is_opened_immutable(tmp_path, monkeypatch):
    # A read-only disk (say, a mounted snapshot): SQLite's read-only open cannot make the WAL lock file
    # and fails on its first statement, so the catalog is opened immutable. Root can write anywhere:
    # the permissions and that failure are stood in for, the immutable open itself is SQLite's own.
    from lookalike.index import sqlite as catalog

    path = tmp_path / "index.sqlite"
    conn, _ = catalog.connect(path)
    conn.execute("INSERT INTO meta VALUES ('model', 'tiny')")
    conn.commit()
    conn.close()
    real_connect, real_access, opened = catalog.sqlite3.connect, os.access, []

    class NoLockFile:
        def execute(self, *args):
            raise sqlite3.OperationalError("unable to open database file")

        def close(self):
            pass

    def connect(database, *args, **kwargs):
        opened.append(database)
        return NoLockFile() if "mode=ro" in str(database) else real_connect(database, *args, **kwargs)

    monkeypatch.setattr(catalog.sqlite3, "connect", connect)
    monkeypatch.setattr(catalog.os, "access", lambda p, mode: False if Path(p) in (path, tmp_path) else real_access(p, mode))
    conn, readonly = catalog.connect(path)
    try:
        assert readonly and opened == [f"{path.as_uri()}?mode=ro", f"{path.as_uri()}?immutable=1"]
        answers = []
        reader = threading.Thread(target=lambda: answers.append(conn.execute("SELECT value FROM meta").fetchall()))
        reader.start()
        reader.join()
        assert answers == [[("tiny",)]]  # read, and from another thread (the server's)
        with pytest.raises(CatalogError, match="no such table: gone"):
            conn.execute("SELECT * FROM gone")
    finally:
        conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.sqlite"]  # nothing made beside it


def test_a_catalog_opened_for_writing_or_read_only_waits_30_s_for_another_writer_s_lock(tmp_path, monkeypatch):
    # SQLite's own default is 5 s: an indexing run's long transaction would fail a query at once
    from lookalike.index import sqlite as catalog

    path = tmp_path / "index.sqlite"
    conn, readonly = catalog.connect(path)
    assert not readonly and conn.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
    conn.close()
    real_access = os.access
    monkeypatch.setattr(catalog.os, "access", lambda p, mode: False if Path(p) == path else real_access(p, mode))
    conn, readonly = catalog.connect(path)
    assert readonly and conn.execute("PRAGMA busy_timeout").fetchone() == (30_000,)
    conn.close()
