import os
import sqlite3

import numpy as np
import pytest

from lookalike.store import SCHEMA_VERSION, Entry, Store, StoreError

MODEL = {"name": "m", "layer": "pool", "dim": 3, "preprocessing": {"size": 8}}


def _entry(path: str, value: float) -> Entry:
    return Entry(path, 10, 1, f"h{path}", 4, 4, np.full(3, value, np.float32))


def test_schema_is_versioned_and_model_is_fixed(tmp_path):
    with Store.create(tmp_path, MODEL, ref="m") as s:
        assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.model == MODEL and s.model_ref == "m"
    with pytest.raises(StoreError, match="built with model m"):
        Store.create(tmp_path, {**MODEL, "name": "other"}, ref="other")


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
    from lookalike.store import MIGRATIONS

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
    from lookalike import store

    _v1_catalog(tmp_path)
    # the last statement fails, as a full disk or a kill would stop it, after the old table was dropped
    monkeypatch.setattr(store, "MIGRATIONS", [store.MIGRATIONS[0], store.MIGRATIONS[1] + "; SELECT no_such_function()"])
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
