"""The web page's map (server/mapview.py) over a stand-in index (no model, no UMAP): one layout per
generation, kept in each encoding; 501 and 503 said once per generation and tried again for the
next; a map of removed files made again; the typed arrays read from and kept in map.bin."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from fastapi import HTTPException

from helpers import read_binary_map
from lookalike.index.store import StoreError
from lookalike.map.cache import MAP_FILE, Map, save
from lookalike.map.layout import LayoutError
from lookalike.map.packed import PACKED_FILE
from lookalike.server.mapview import MapView


class StandIn:
    """What MapView asks of an index: a lock, the map's generation, the layout and the paths of ids."""

    def __init__(self, root: Path, readonly: bool = False) -> None:
        self.root, self.lock = root, threading.RLock()
        self.generation, self.layouts, self.removed = 1, 0, set()
        self.fail: Exception | None = None
        self.collection = type("Collection", (), {"readonly": readonly})()
        self.paths_by_id = {0: "/p/cats/a <b>.jpg", 5: "/p/dogs/caf\udce9.jpg", 9: "/q/cats/c.jpg"}

    def map_generation(self) -> int:
        if self.generation is None:
            raise StoreError("a Milvus collection has no map")
        return self.generation

    def layout(self) -> Map:
        self.layouts += 1
        if self.fail is not None:
            raise self.fail
        m = Map(ids=np.array([0, 5, 9], np.int64), xy=np.array([[0, 0], [0.5, 1], [1, 0.25]], np.float32),
                clusters=np.array([0, 0, 1], np.int32), centres=np.eye(2, 4, dtype=np.float32),
                central=np.array([[5, 0, -1], [9, -1, -1]], np.int64), generation=self.generation,
                method="by hand", laid_out=3, placed=0)
        save(self.root / MAP_FILE, m)  # as Index.layout leaves it
        return m

    def paths(self, ids, missing_ok=False):
        assert missing_ok
        return [None if int(i) in self.removed else self.paths_by_id[int(i)] for i in ids]


def answer(view: MapView, encoding: str = "json"):
    got = view.get(encoding)
    assert got is not None
    return got


def test_the_json_names_each_image_by_its_base_name_and_is_made_once_per_generation(tmp_path):
    idx = StandIn(tmp_path)
    view = MapView(idx, wait=30)
    generation, body = answer(view)
    data = json.loads(body)
    assert generation == 1 and data["generation"] == 1 and data["ids"] == [0, 5, 9]
    assert data["names"] == ["a <b>.jpg", "caf\ufffd.jpg", "c.jpg"]  # no folders; a byte not UTF-8 shown as U+FFFD
    assert data["folders"] == [{"name": "cats", "size": 1}, {"name": "dogs", "size": 1}, {"name": "cats (2)", "size": 1}]
    assert b", " not in body and b": " not in body  # compact: the page fetches it whole
    assert answer(view) == (1, body) and idx.layouts == 1
    assert view.get() == (1, body)  # JSON unless asked otherwise
    idx.generation = 2  # the index changed: laid out again
    assert answer(view)[0] == 2 and idx.layouts == 2 and json.loads(answer(view)[1])["generation"] == 2


def test_a_missing_map_library_is_501_once_per_generation_then_tried_again(tmp_path):
    idx = StandIn(tmp_path)
    idx.fail = LayoutError("the map needs the map extra: pip install 'lookalike[map]'")
    view = MapView(idx, wait=30)
    for _ in range(2):
        with pytest.raises(HTTPException) as e:
            view.get()
        assert (e.value.status_code, e.value.detail) == (501, "the map needs the map extra: pip install 'lookalike[map]'")
    assert idx.layouts == 1  # said again without laying out again
    idx.fail, idx.generation = None, 2
    assert answer(view)[0] == 2 and idx.layouts == 2


def test_a_map_that_cannot_be_made_is_503_with_why(tmp_path):
    idx = StandIn(tmp_path)
    idx.fail = MemoryError("out of memory")
    view = MapView(idx, wait=30)
    for encoding in ("json", "binary", "json"):
        with pytest.raises(HTTPException) as e:
            view.get(encoding)
        assert (e.value.status_code, e.value.detail) == (503, "the map cannot be made: out of memory")
    assert idx.layouts == 1


def test_a_collection_without_a_map_is_501(tmp_path):
    idx = StandIn(tmp_path)
    idx.generation = None
    with pytest.raises(HTTPException) as e:
        MapView(idx, wait=30).get()
    assert (e.value.status_code, e.value.detail) == (501, "a Milvus collection has no map") and idx.layouts == 0


def test_a_map_of_files_removed_meanwhile_is_not_answered_and_made_again(tmp_path):
    idx = StandIn(tmp_path)
    idx.removed = {5}
    view = MapView(idx, wait=30)
    assert view.get() is None and idx.layouts == 1
    idx.removed = set()
    assert answer(view)[0] == 1 and idx.layouts == 2


def test_none_while_laying_out_then_the_map(tmp_path):
    idx = StandIn(tmp_path)
    release = threading.Event()
    layout = idx.layout
    idx.layout = lambda: (release.wait(30), layout())[1]
    view = MapView(idx, wait=0.05)
    assert view.get() is None and view.get("binary") is None  # one layout under way, not two
    release.set()
    view._thread.join(30)
    assert answer(view)[0] == 1 and idx.layouts == 1


@pytest.mark.parametrize("readonly", [False, True])
def test_the_typed_arrays_are_kept_in_map_bin_unless_read_only_and_read_from_it_later(tmp_path, readonly):
    idx = StandIn(tmp_path, readonly=readonly)
    generation, body = answer(MapView(idx, wait=30), "binary")
    head, columns = read_binary_map(body)
    assert generation == head["generation"] == 1 and columns["names"] == ["a <b>.jpg", "caf\ufffd.jpg", "c.jpg"]
    assert (tmp_path / PACKED_FILE).exists() != readonly
    later = MapView(idx, wait=30)  # a server started later
    if readonly:
        assert answer(later, "binary") == (1, body) and idx.layouts == 2  # made again: nothing was kept
    else:
        assert answer(later, "binary") == (1, body) and idx.layouts == 1  # read from map.bin, not made
        idx.generation = 2  # map.bin is of generation 1: made again
        assert read_binary_map(answer(later, "binary")[1])[0]["generation"] == 2 and idx.layouts == 2


def test_map_bin_is_read_once_per_generation(tmp_path, monkeypatch):
    from lookalike.map import packed

    idx = StandIn(tmp_path)
    answer(MapView(idx, wait=30), "binary")
    reads = []
    stored = packed.stored
    monkeypatch.setattr(packed, "stored", lambda root, generation: reads.append(generation) or stored(root, generation))
    later = MapView(idx, wait=30)
    first = answer(later, "binary")
    assert answer(later, "binary") == answer(later, "binary") == first and reads == [1]


def test_the_layout_runs_in_a_daemon_thread_so_a_server_stopped_meanwhile_exits_at_once(tmp_path):
    # Python's exit waits for every thread that is not a daemon: a server stopped during a layout of
    # minutes would wait for it
    idx = StandIn(tmp_path)
    started, release, seen = threading.Event(), threading.Event(), []
    layout = idx.layout

    def slow_layout():
        seen.append((threading.current_thread(), threading.current_thread().daemon))
        started.set()
        release.wait(30)
        return layout()

    idx.layout = slow_layout
    view = MapView(idx, wait=0.05)
    assert view.get() is None and started.wait(30)
    release.set()
    seen[0][0].join(30)
    assert [(t is threading.main_thread(), daemon) for t, daemon in seen] == [(False, True)]
    assert answer(view)[0] == 1
