"""The vector cache files on their own: written once per generation, loaded by the next process,
checked again when changed under a reader."""

import json
import os
import zlib
from pathlib import Path

import numpy as np
import pytest

from lookalike.index.vector_cache import VectorCache

IDS = np.array([3, 5, 9], np.int64)
VECTORS = np.arange(12, dtype=np.float32).reshape(3, 4)


class Catalog:
    """A ``fill`` that counts its calls, as the catalog behind the cache."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ids, vectors):
        self.calls += 1
        ids[:], vectors[:] = IDS, VECTORS
        return ids, vectors


def test_a_generation_is_written_once_then_loaded_and_older_ones_dropped(tmp_path):
    catalog = Catalog()
    ids, vectors = VectorCache(tmp_path).get(1, 3, 4, catalog)
    assert catalog.calls == 1 and isinstance(ids, np.memmap) and isinstance(vectors, np.memmap)
    assert np.array_equal(ids, IDS) and np.array_equal(vectors, VECTORS)
    again = VectorCache(tmp_path).get(1, 3, 4, catalog)  # another process: the files, checked, not the catalog
    assert catalog.calls == 1 and np.array_equal(again[1], VECTORS)
    assert isinstance(again[0], np.memmap) and isinstance(again[1], np.memmap)
    assert VectorCache(tmp_path).get(2, 3, 4, catalog) and catalog.calls == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids-2.npy", "vectors-2.json", "vectors-2.npy"]


def test_a_file_changed_under_a_reader_is_checked_again_and_rebuilt(tmp_path):
    catalog = Catalog()
    cache = VectorCache(tmp_path)
    cache.get(1, 3, 4, catalog)
    assert not cache.changed()
    path = tmp_path / "vectors-1.npy"
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(16)  # same size, damaged data
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(0, 10**9))
    assert cache.changed()
    ids, vectors = cache.get(1, 3, 4, catalog)  # the CRC no longer matches: rebuilt from the catalog
    assert catalog.calls == 2 and np.array_equal(vectors, VECTORS)
    assert not cache.changed()


def test_the_stamp_holds_the_shape_and_the_crc32_of_ids_then_vectors(tmp_path):
    VectorCache(tmp_path).get(7, 3, 4, Catalog())
    stamp = json.loads((tmp_path / "vectors-7.json").read_text())
    crc = zlib.crc32(VECTORS.tobytes(), zlib.crc32(IDS.tobytes()))  # the bytes as written, one piece
    assert stamp == {"generation": 7, "n": 3, "dim": 4, "crc32": crc}
    assert np.load(tmp_path / "ids-7.npy").dtype == np.int64 and np.load(tmp_path / "vectors-7.npy").dtype == np.float32


def test_a_crc32_over_16_mb_is_computed_in_pieces_that_chain(tmp_path):
    dim = (1 << 22) + 5  # 2 rows of float32: 32 MB and 40 bytes, three 16 MB pieces
    big = np.random.default_rng(0).standard_normal((2, dim)).astype(np.float32)

    def fill(ids, vectors):
        ids[:], vectors[:] = [4, 2], big
        return ids, vectors

    VectorCache(tmp_path).get(1, 2, dim, fill)
    expected = zlib.crc32(big.tobytes(), zlib.crc32(np.array([4, 2], np.int64).tobytes()))
    assert json.loads((tmp_path / "vectors-1.json").read_text())["crc32"] == expected


@pytest.mark.parametrize("n, dim", [(2, 4), (3, 5)])
def test_files_of_another_shape_are_rebuilt(tmp_path, n, dim):
    VectorCache(tmp_path).get(1, 3, 4, Catalog())
    catalog = Catalog()

    def fill(ids, vectors):  # the catalog now holds other rows for the same generation
        catalog.calls += 1
        ids[:], vectors[:] = np.arange(n), np.ones((n, dim))
        return ids, vectors

    ids, vectors = VectorCache(tmp_path).get(1, n, dim, fill)
    assert catalog.calls == 1 and vectors.shape == (n, dim) and ids.tolist() == list(range(n))


@pytest.mark.parametrize("stamp", ["[1, 2]", '{"crc32": 0}', "{", ""])
def test_a_stamp_that_does_not_vouch_for_the_files_makes_them_rebuilt(tmp_path, stamp):
    VectorCache(tmp_path).get(1, 3, 4, Catalog())
    (tmp_path / "vectors-1.json").write_text(stamp)
    catalog = Catalog()
    ids, vectors = VectorCache(tmp_path).get(1, 3, 4, catalog)
    assert catalog.calls == 1 and np.array_equal(vectors, VECTORS)
    assert json.loads((tmp_path / "vectors-1.json").read_text())["generation"] == 1  # written anew


@pytest.mark.parametrize("written_here", [True, False])
def test_a_generation_checked_in_this_process_is_not_read_again_whole(tmp_path, written_here):
    catalog = Catalog()
    if written_here:
        cache = VectorCache(tmp_path)
        cache.get(1, 3, 4, catalog)
    else:  # written by another process, then loaded and checked here
        VectorCache(tmp_path).get(1, 3, 4, catalog)
        cache = VectorCache(tmp_path)
        cache.get(1, 3, 4, catalog)
    (tmp_path / "vectors-1.json").write_text('{"crc32": 0}')  # only a first load checks the CRC
    assert np.array_equal(cache.get(1, 3, 4, catalog)[1], VECTORS) and catalog.calls == 1
    assert VectorCache(tmp_path).get(1, 3, 4, catalog) and catalog.calls == 2  # another process checks


def test_a_generation_is_written_in_a_hidden_folder_of_the_index_then_moved_into_place(tmp_path):
    seen = []

    def fill(ids, vectors):
        seen.append((Path(ids.filename).parent, Path(vectors.filename).parent, sorted(tmp_path.iterdir())))
        return Catalog()(ids, vectors)

    VectorCache(tmp_path).get(1, 3, 4, fill)
    (ids_dir, vectors_dir, listed), = seen
    assert ids_dir == vectors_dir and ids_dir.parent == tmp_path and ids_dir.name.startswith(".cache-")
    assert listed == [ids_dir]  # nothing in place while it is written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids-1.npy", "vectors-1.json", "vectors-1.npy"]


def test_an_empty_generation_has_empty_files_and_the_crc32_of_nothing(tmp_path):
    ids, vectors = VectorCache(tmp_path).get(3, 0, 4, lambda ids, vectors: (ids, vectors))
    assert ids.shape == (0,) and vectors.shape == (0, 4)
    assert json.loads((tmp_path / "vectors-3.json").read_text())["crc32"] == 0  # zlib.crc32(b"")


def test_older_and_foreign_cache_files_are_dropped_newer_ones_kept(tmp_path):
    for name in ["ids-1.npy", "vectors-1.npy", "vectors-1.json", "vectors-x.npy", "vectors.json", "ids-old-9.npy", "ids-9.npy",
                 "vectors-9.npy", "vectors-9.json", "index.sqlite", "ids-1.txt"]:
        (tmp_path / name).write_bytes(b"x")
    VectorCache(tmp_path).get(2, 3, 4, Catalog())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ids-1.txt", "ids-2.npy", "ids-9.npy", "index.sqlite", "vectors-2.json", "vectors-2.npy", "vectors-9.json",
        "vectors-9.npy"]


def test_a_folder_that_cannot_be_written_gives_arrays_in_memory(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "mkdtemp", lambda **kw: (_ for _ in ()).throw(PermissionError(13, "read-only")))
    cache, catalog = VectorCache(tmp_path), Catalog()
    ids, vectors = cache.get(1, 3, 4, catalog)
    assert catalog.calls == 1 and not isinstance(vectors, np.memmap) and np.array_equal(vectors, VECTORS)
    assert ids.dtype == np.int64 and vectors.dtype == np.float32 and not list(tmp_path.iterdir())
    assert not cache.changed()  # nothing mapped to watch
    monkeypatch.undo()
    VectorCache(tmp_path).get(1, 3, 4, catalog)  # another process writes the files
    assert not cache.changed()  # still none of the files were returned here


@pytest.mark.parametrize("change", ["remove", "replace", "grow", "mtime"])
def test_any_change_to_a_mapped_file_is_seen(tmp_path, change):
    cache = VectorCache(tmp_path)
    assert not cache.changed()  # nothing returned yet
    cache.get(1, 3, 4, Catalog())
    path = tmp_path / ("ids-1.npy" if change in ("remove", "grow") else "vectors-1.json")
    stat = path.stat()
    if change == "remove":
        path.unlink()
    elif change == "replace":  # the same bytes and times in a new file (a new inode)
        (tmp_path / "new").write_bytes(path.read_bytes())  # made while the old one exists: another inode
        os.utime(tmp_path / "new", ns=(stat.st_atime_ns, stat.st_mtime_ns))
        os.replace(tmp_path / "new", path)
    elif change == "grow":
        with open(path, "ab") as f:
            f.write(b"\0")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    else:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert cache.changed()
    catalog = Catalog()
    assert np.array_equal(cache.get(1, 3, 4, catalog)[1], VECTORS)  # checked anew: rebuilt only when gone
    assert catalog.calls == (change == "remove") and not cache.changed()
