"""The vector cache files on their own: written once per generation, loaded by the next process,
checked again when changed under a reader."""

import os

import numpy as np

from lookalike.vector_cache import VectorCache

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
    assert catalog.calls == 1 and isinstance(vectors, np.memmap)
    assert np.array_equal(ids, IDS) and np.array_equal(vectors, VECTORS)
    again = VectorCache(tmp_path).get(1, 3, 4, catalog)  # another process: the files, checked, not the catalog
    assert catalog.calls == 1 and np.array_equal(again[1], VECTORS)
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
