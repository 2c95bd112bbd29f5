"""The map as the web page reads it (:func:`lookalike.map.payload.binary`, names as base names), kept
beside the index in ``map.bin`` so that a server answers it without reading vectors, map or paths.

The file is the answer after one line of JSON, its stamp: the index generation it was packed at and
the ``map.npz`` it was packed from (its size and CRC-32). It is answered only while both are the
same, so it goes stale with the index and with the map file; written whole or not at all
(:mod:`lookalike.atomic`).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from lookalike import atomic
from lookalike.map.cache import MAP_FILE, Map
from lookalike.map.payload import binary
from lookalike.text import display_name

PACKED_FILE = "map.bin"


def pack(m: Map, paths: list[str]) -> bytes:
    """``m`` (its images at ``paths``) in typed arrays, named by base name (:func:`display_name`)."""
    return binary(m, paths, display_name)


def keep(root: Path, m: Map, paths: list[str], writable: bool = True) -> bytes:
    """:func:`pack`, stored in ``root`` (:func:`store`) when ``writable``."""
    data = pack(m, paths)
    if writable:
        store(root, m.generation, data)
    return data


def stored(root: Path, generation: int) -> bytes | None:
    """The answer kept in ``root``, or None when there is none, or it is stale (another generation or
    another ``map.npz``) or torn."""
    stamp = _stamp(root, generation)
    try:
        with open(root / PACKED_FILE, "rb") as f:
            kept = json.loads(f.readline())
            data = f.read()
    except (OSError, ValueError):
        return None
    return data if stamp is not None and kept == stamp else None


def store(root: Path, generation: int, data: bytes) -> bool:
    """Keep ``data``, packed at ``generation`` from the ``map.npz`` now in ``root``; False (nothing
    written) where there is no such file or ``root`` cannot be written."""
    stamp = _stamp(root, generation)
    if stamp is None:
        return False
    try:
        atomic.write(root / PACKED_FILE, json.dumps(stamp).encode() + b"\n" + data)
    except OSError:
        return False
    return True


def _stamp(root: Path, generation: int) -> dict | None:
    try:
        kept = (root / MAP_FILE).read_bytes()
    except OSError:
        return None
    return {"generation": generation, "map": [len(kept), zlib.crc32(kept)]}
