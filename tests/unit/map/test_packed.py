"""The map packed for the page, kept beside the index in map.bin: read back as the map it was packed
from, and answered only while the index generation and map.npz are those it was packed at."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np

from helpers import read_binary_map
from lookalike.map.cache import MAP_FILE, Map, save
from lookalike.map.packed import PACKED_FILE, keep, pack, stored, store

PATHS = ["/photos/cats/a.jpg", "/photos/dogs/b.jpg", "/photos/dogs/c.jpg"]


def small_map(generation=4) -> Map:
    xy = np.array([[0.5, 0.0], [0.25, 1.0], [1.0, 0.75]], np.float32)
    return Map(ids=np.array([3, 8, 11], np.int64), xy=xy, clusters=np.array([1, 0, 0], np.int32),
               centres=np.eye(2, 4, dtype=np.float32), central=np.array([[8, 11] + [-1] * 6, [3] + [-1] * 7]),
               generation=generation, method="by hand", laid_out=3, placed=0)


def test_kept_answer_decodes_to_the_map_it_was_packed_from(tmp_path):
    m = small_map()
    save(tmp_path / MAP_FILE, m)
    data = keep(tmp_path, m, PATHS)
    assert stored(tmp_path, 4) == data == pack(m, PATHS)
    head, col = read_binary_map(stored(tmp_path, 4))
    assert col["ids"].tolist() == [3, 8, 11]
    assert col["x"].tolist() == [0.5, 0.25, 1.0] and col["y"].tolist() == [0.0, 1.0, 0.75]
    assert col["names"] == ["a.jpg", "b.jpg", "c.jpg"]  # base names only: the server never sends paths
    assert col["folder"].tolist() == [0, 1, 1] and col["cluster"].tolist() == [1, 0, 0]
    assert head["folders"] == [{"name": "cats", "size": 1}, {"name": "dogs", "size": 2}]
    assert head["clusters"] == [{"size": 2, "central": [8, 11]}, {"size": 1, "central": [3]}]
    assert head["generation"] == 4
    assert sorted(os.listdir(tmp_path)) == sorted([MAP_FILE, PACKED_FILE])  # no temporary file left


def test_stale_with_another_generation_or_another_map_file(tmp_path):
    m = small_map()
    save(tmp_path / MAP_FILE, m)
    assert store(tmp_path, 4, b"packed at 4")
    assert stored(tmp_path, 4) == b"packed at 4"
    assert stored(tmp_path, 5) is None  # the index changed since
    save(tmp_path / MAP_FILE, replace(m, xy=m.xy[::-1].copy()))  # laid out anew, same size
    assert stored(tmp_path, 4) is None
    assert store(tmp_path, 4, b"again") and stored(tmp_path, 4) == b"again"
    os.remove(tmp_path / MAP_FILE)
    assert stored(tmp_path, 4) is None  # its map is gone


def test_nothing_kept_without_a_map_file_or_from_a_torn_one(tmp_path):
    m = small_map()
    assert not store(tmp_path, 4, b"x") and not os.path.exists(tmp_path / PACKED_FILE)
    assert keep(tmp_path, m, PATHS) == pack(m, PATHS)  # answered all the same
    assert stored(tmp_path, 4) is None
    save(tmp_path / MAP_FILE, m)
    keep(tmp_path, m, PATHS, writable=False)  # a read-only index: nothing written
    assert not os.path.exists(tmp_path / PACKED_FILE)
    (tmp_path / PACKED_FILE).write_bytes(b"\x00not a stamp\n...")
    assert stored(tmp_path, 4) is None
    (tmp_path / PACKED_FILE).write_bytes(b"")
    assert stored(tmp_path, 4) is None


def test_the_stamp_is_one_line_of_json_naming_the_generation_and_the_map_files_size_and_crc(tmp_path):
    import json
    import zlib

    m = small_map()
    save(tmp_path / MAP_FILE, m)
    assert store(tmp_path, 4, b"packed\nbytes")
    npz = (tmp_path / MAP_FILE).read_bytes()
    first, rest = (tmp_path / PACKED_FILE).read_bytes().split(b"\n", 1)
    assert json.loads(first) == {"generation": 4, "map": [len(npz), zlib.crc32(npz)]}  # as the module says
    assert rest == b"packed\nbytes"


def test_a_store_that_cannot_be_written_says_so(tmp_path):
    save(tmp_path / MAP_FILE, small_map())
    (tmp_path / PACKED_FILE).mkdir()  # something in the way: the file cannot be replaced
    assert store(tmp_path, 4, b"x") is False and stored(tmp_path, 4) is None
