"""The map as a page draws it: JSON-ready columns (:func:`payload`) for scripts and the standalone
page, and the same map packed into typed arrays (:func:`binary`) for the web page."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import numpy as np

from lookalike.map.cache import Map
from lookalike.map.groups import folders

#: Places are sent as integers: the place in [0, 1] times this.
SCALE = 1_000_000
#: The first bytes of :func:`binary`'s answer.
MAGIC = b"LKMAP1\0\0"
#: :func:`binary`'s columns are aligned to this many bytes (a typed array can view them in place).
ALIGN = 8


def payload(m: Map, paths: list[str], name: Callable[[str], str]) -> dict:
    """Per point (in id order): its id, place (``x``, ``y``: integers, the place in [0, 1] times
    :data:`SCALE`, y downwards), ``name(path)``, folder and cluster; the folders (``name`` of each
    folder's path, made unique with a number) and clusters (size and most central ids); and the
    colouring to start with (:func:`default_colour`)."""
    meta, folder = _groups(m, paths, name)
    xy = (m.xy.astype(np.float64) * SCALE).round().astype(np.int64)
    return {"generation": m.generation, "count": len(m.ids), "method": m.method, "scale": SCALE,
            "color": meta["color"],
            "ids": m.ids.tolist(), "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "names": [name(p) for p in paths],
            "folder": folder.tolist(), "folders": meta["folders"],
            "cluster": m.clusters.tolist(), "clusters": meta["clusters"]}


def binary(m: Map, paths: list[str], name: Callable[[str], str]) -> bytes:
    """The map of :func:`payload` in typed arrays: :data:`MAGIC`, the header's length (uint32, little
    endian) and the header (UTF-8 JSON: ``generation``, ``count``, ``method``, ``color``, ``folders``,
    ``clusters`` as in :func:`payload`, and ``columns``: ``[name, type, offset, bytes]`` each); then,
    from the first multiple of :data:`ALIGN` after the header, the columns, each at its ``offset``
    from there (a multiple of :data:`ALIGN`): ``ids`` (float64, exact for ids below 2⁵³), ``x`` and
    ``y`` (float32, the place in [0, 1], y downwards), ``folder`` and ``cluster`` (int32) and
    ``names`` (``name(path)`` of each point in UTF-8, each followed by a NUL byte: a file name holds none)."""
    meta, folder = _groups(m, paths, name)
    names = b"".join(name(p).encode("utf-8") + b"\0" for p in paths)
    columns = [("ids", "float64", m.ids.astype("<f8").tobytes()), ("x", "float32", m.xy[:, 0].astype("<f4").tobytes()),
               ("y", "float32", m.xy[:, 1].astype("<f4").tobytes()), ("folder", "int32", folder.astype("<i4").tobytes()),
               ("cluster", "int32", m.clusters.astype("<i4").tobytes()), ("names", "utf8", names)]
    placed, at = [], 0
    for column, kind, data in columns:
        placed.append([column, kind, at, len(data)])
        at = _aligned(at + len(data))
    head = json.dumps({"generation": m.generation, "count": len(m.ids), "method": m.method, **meta,
                       "columns": placed}, separators=(",", ":")).encode()
    start = _aligned(len(MAGIC) + 4 + len(head))
    out = bytearray(start + at)
    out[:len(MAGIC) + 4 + len(head)] = MAGIC + struct.pack("<I", len(head)) + head
    for (_, _, offset, size), (_, _, data) in zip(placed, columns):
        out[start + offset:start + offset + size] = data
    return bytes(out)


def _groups(m: Map, paths: list[str], name: Callable[[str], str]) -> tuple[dict, np.ndarray]:
    """The colouring to start with, the folders (named, made unique) and clusters; and each point's folder."""
    groups = folders(paths)
    names = [name(f) for f in groups.names]
    seen: dict[str, int] = {}
    for i, shown in enumerate(names):
        seen[shown] = seen.get(shown, 0) + 1
        if seen[shown] > 1:
            names[i] = f"{shown} ({seen[shown]})"
    return {"color": default_colour(len(names)),
            "folders": [{"name": n, "size": int(s)} for n, s in zip(names, groups.sizes())],
            "clusters": [{"size": int(s), "central": [int(i) for i in row if i >= 0]}
                         for s, row in zip(m.cluster_sizes(), m.central)]}, groups.labels


def _aligned(at: int) -> int:
    return -(-at // ALIGN) * ALIGN


def default_colour(folder_count: int) -> str:
    """``folder`` when the images lie in several folders, else ``cluster``."""
    return "folder" if folder_count > 1 else "cluster"
