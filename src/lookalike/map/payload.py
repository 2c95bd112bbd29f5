"""The map as a page draws it: one JSON-ready dict of columns, for the web page and the standalone page."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lookalike.map.cache import Map
from lookalike.map.groups import folders

#: Places are sent as integers: the place in [0, 1] times this.
SCALE = 1_000_000


def payload(m: Map, paths: list[str], name: Callable[[str], str]) -> dict:
    """Per point (in id order): its id, place (``x``, ``y``: integers, the place in [0, 1] times
    :data:`SCALE`, y downwards), ``name(path)``, folder and cluster; the folders (``name`` of each
    folder's path, made unique with a number) and clusters (size and most central ids); and the
    colouring to start with (:func:`default_colour`)."""
    groups = folders(paths)
    names = [name(f) for f in groups.names]
    seen: dict[str, int] = {}
    for i, shown in enumerate(names):
        seen[shown] = seen.get(shown, 0) + 1
        if seen[shown] > 1:
            names[i] = f"{shown} ({seen[shown]})"
    xy = (m.xy.astype(np.float64) * SCALE).round().astype(np.int64)
    return {"generation": m.generation, "count": len(m.ids), "method": m.method, "scale": SCALE,
            "color": default_colour(len(names)),
            "ids": m.ids.tolist(), "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(), "names": [name(p) for p in paths],
            "folder": groups.labels.tolist(),
            "folders": [{"name": n, "size": int(s)} for n, s in zip(names, groups.sizes())],
            "cluster": m.clusters.tolist(),
            "clusters": [{"size": int(s), "central": [int(i) for i in row if i >= 0]}
                         for s, row in zip(m.cluster_sizes(), m.central)]}


def default_colour(folder_count: int) -> str:
    """``folder`` when the images lie in several folders, else ``cluster``."""
    return "folder" if folder_count > 1 else "cluster"
