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
