"""``map``: every indexed image on a 2-D layout of its embedding, as a page, a picture or JSON."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lookalike.api import Index
from lookalike.cli.common import IndexOpt, JsonOpt, err, fail, print_json
from lookalike.map import groups
from lookalike.map.payload import default_colour


class Colour(str, Enum):
    folder = "folder"
    cluster = "cluster"


def map_command(
    index_path: IndexOpt = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Write the map: a self-contained page (.html: pan, "
                                                "zoom, hover, lasso selection) or a picture (.png).",
                                                show_default=False)] = None,
    colour: Annotated[Optional[Colour], typer.Option("--color", help="Colour by folder or by k-means cluster "
                                                     "[default: folder when the images lie in several folders]",
                                                     show_default=False)] = None,
    json_out: JsonOpt = False,
) -> None:
    """A map of the whole index: each image a point, similar images close together.

    Laid out once (PCA, then UMAP; the map extra) and kept beside the index; images indexed since
    are placed among their neighbours."""
    kind = out.suffix.lower() if out is not None else None
    if kind not in (None, ".html", ".htm", ".png"):
        fail(f"--out {out}: give a .html or a .png file")
    if out is None and not json_out:
        fail("say what to write: --out MAP.html, --out MAP.png, or --json")
    started = time.perf_counter()
    with Index.open(index_path) as idx:
        m = idx.layout()
        paths = idx.paths(m.ids)
    seconds = time.perf_counter() - started
    folders = groups.folders(paths)
    colour_by = colour.value if colour is not None else default_colour(len(folders.names))
    if kind == ".png":
        from lookalike.map.picture import write_png

        labels, names = ((folders.labels, folders.names) if colour_by == "folder" else
                         (m.clusters, [f"cluster {c + 1}" for c in range(len(m.centres))]))
        write_png(out, m, paths, labels, names, f"{len(paths)} images, coloured by {colour_by}")
    elif kind is not None:
        from lookalike.map.page import write_html

        write_html(out, m, paths, colour_by)
    if json_out:
        print_json(_as_json(m, paths, folders, colour_by, seconds, out))
    else:
        how = {"cached": "from the cache", "placed": f"{m.placed} placed since it was laid out",
               "laid out": "laid out"}[m.how]
        err.print(f"map of {len(paths)} images ({how}, {seconds:.1f} s){f' written to {out}' if out else ''}",
                  soft_wrap=True)


def _as_json(m, paths: list[str], folders, colour: str, seconds: float, out: Path | None) -> dict:
    """The map for scripts: how it was had, its folders and clusters (with their most central paths)
    and every point (id, path, place in [0, 1]² with y downwards, folder and cluster numbers)."""
    row = {int(i): r for r, i in enumerate(m.ids)}
    return {"count": len(paths), "generation": m.generation, "method": m.method, "how": m.how,
            "seconds": round(seconds, 3), "color": colour, "out": str(out) if out else None,
            "folders": [{"path": f, "size": int(s)} for f, s in zip(folders.names, folders.sizes())],
            "clusters": [{"size": int(s), "central": [paths[row[int(i)]] for i in central if i >= 0]}
                         for s, central in zip(m.cluster_sizes(), m.central)],
            "points": [{"id": int(i), "path": p, "x": round(float(x), 6), "y": round(float(y), 6), "folder": int(f),
                        "cluster": int(c)} for i, p, (x, y), f, c in zip(m.ids, paths, m.xy, folders.labels, m.clusters)]}
