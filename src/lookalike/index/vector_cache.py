"""The vector cache of an index folder: ``ids-N.npy``, ``vectors-N.npy`` and the stamp
``vectors-N.json`` of catalog generation N, derived from the catalog (see :mod:`lookalike.index.store`)
and memory-mapped for fast loading.

A generation's files are written in a temporary folder and moved into place, stamped with their
shape and a CRC-32 that is checked on their first load in a process; older generations' files are
then deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

Arrays = tuple[np.ndarray, np.ndarray]


class VectorCache:
    """The cache files of one index folder, and which of them this process has checked and mapped."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._checked: set[int] = set()  # generations whose cache files passed the CRC check here
        self._mapped: tuple | None = None  # (generation, names, identity) of the files last returned mapped

    def get(self, generation: int, n: int, dim: int, fill: Callable[[np.ndarray, np.ndarray], Arrays]) -> Arrays:
        """The (ids (n,), vectors (n, dim)) of ``generation``: loaded, else written by ``fill(ids,
        vectors)`` (which fills both preallocated arrays from the catalog and returns them), else,
        where the folder cannot be written, filled in memory."""
        arrays = self._load(generation, n, dim) or self.write(generation, n, dim, fill)
        if arrays is None:
            arrays = fill(np.empty(n, np.int64), np.empty((n, dim), np.float32))
        names = self._names(generation)
        self._mapped = (generation, names, _identity(names)) if isinstance(arrays[1], np.memmap) else None
        return arrays

    def changed(self) -> bool:
        """True when the files last returned by :meth:`get` were changed, replaced or removed since
        (size, modification time or inode); they are then checked anew by the next :meth:`get`."""
        if self._mapped is None:
            return False
        generation, names, seen = self._mapped  # names built once: this runs before every server search
        if _identity(names) == seen:
            return False
        self._checked.discard(generation)
        return True

    def _names(self, generation: int) -> tuple[Path, Path, Path]:
        return (self.root / f"ids-{generation}.npy", self.root / f"vectors-{generation}.npy",
                self.root / f"vectors-{generation}.json")

    def _load(self, generation: int, n: int, dim: int) -> Arrays | None:
        """The cached arrays of ``generation`` when they are whole and match the catalog, else None."""
        ids_path, vectors_path, stamp_path = self._names(generation)
        try:
            stamp = json.loads(stamp_path.read_text())
            ids = np.load(ids_path, mmap_mode="r")
            vectors = np.load(vectors_path, mmap_mode="r")
        except (OSError, ValueError, EOFError):  # missing, torn or foreign files
            return None
        if (ids.shape, ids.dtype, vectors.shape, vectors.dtype) != ((n,), np.int64, (n, dim), np.float32):
            return None
        if generation not in self._checked:
            if not isinstance(stamp, dict) or stamp.get("crc32") != _crc32(ids, vectors):
                return None
            self._checked.add(generation)
        return ids, vectors

    def write(self, generation: int, n: int, dim: int, fill: Callable[[np.ndarray, np.ndarray], Arrays]) -> Arrays | None:
        """Write the cache of ``generation``, its arrays filled by ``fill``, and return it
        memory-mapped; None where the folder cannot be written."""
        try:
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".cache-"))
        except OSError:  # a read-only folder
            return None
        try:
            names = self._names(generation)
            ids = np.lib.format.open_memmap(tmp / names[0].name, "w+", np.int64, (n,))
            vectors = np.lib.format.open_memmap(tmp / names[1].name, "w+", np.float32, (n, dim))
            fill(ids, vectors)
            ids.flush(), vectors.flush()
            (tmp / names[2].name).write_text(json.dumps({"generation": generation, "n": n, "dim": dim,
                                                          "crc32": _crc32(ids, vectors)}))
            del ids, vectors
            # open before moving into place: a concurrent cleaner cannot take the arrays away
            loaded = (np.load(tmp / names[0].name, mmap_mode="r"), np.load(tmp / names[1].name, mmap_mode="r"))
            for name in names:
                os.replace(tmp / name.name, name)
        except OSError:
            return None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._checked.add(generation)
        self._drop_older(generation)
        return loaded

    def _drop_older(self, generation: int) -> None:
        """Delete cache files of generations before ``generation`` (a newer one may be being written)."""
        for old in [*self.root.glob("ids-*.npy"), *self.root.glob("vectors-*.npy"), *self.root.glob("vectors*.json")]:
            number = old.stem.partition("-")[2]
            if not number.isdigit() or int(number) < generation:
                old.unlink(missing_ok=True)


def _identity(paths: tuple[Path, ...]) -> tuple:
    """(inode, size, mtime) of each file, None for a missing one."""
    found = []
    for path in paths:
        try:
            st = os.stat(path)
            found.append((st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            found.append(None)
    return tuple(found)


def _crc32(ids: np.ndarray, vectors: np.ndarray) -> int:
    """CRC-32 of the cache's data (ids, then vectors), read in 16 MB pieces."""
    crc = 0
    for array in (ids, vectors):
        flat = array.reshape(-1).view(np.uint8)
        for at in range(0, flat.size, 1 << 24):
            crc = zlib.crc32(flat[at:at + (1 << 24)], crc)
    return crc
