"""The map as a picture (matplotlib): every image a dot in its group's colour, a legend of the
largest groups, and the most central image of the largest clusters placed around it."""

from __future__ import annotations

import colorsys
import os

import numpy as np

from lookalike import atomic
from lookalike.images import ImageError, decode
from lookalike.map.cache import Map

THUMBS = 8  # thumbnails placed on the picture
LEGEND = 20  # groups named in the legend


def colour(group: int) -> tuple[float, float, float]:
    """The colour of group ``group``, as the pages draw it: matplotlib's tab10, then tab20's light
    tones, then hues 137.5° apart."""
    import matplotlib

    palette = list(matplotlib.colormaps["tab10"].colors) + list(matplotlib.colormaps["tab20"].colors[1::2])
    if group < len(palette):
        return tuple(palette[group])
    return colorsys.hls_to_rgb((group * 137.508 % 360) / 360, 0.5, 0.65)


def write_png(out: str | os.PathLike, m: Map, paths: list[str], labels: np.ndarray, names: list[str],
              title: str) -> None:
    """Draw ``m`` (point ``i`` in group ``labels[i]``, named ``names[g]``) to the PNG ``out``, with
    ``title`` and the central image of each of the :data:`THUMBS` largest clusters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"text.parse_math": False}):  # "$" in a folder's name is text
        fig = _figure(plt, m, paths, labels, names, title)
    with atomic.replacing(out) as f:
        fig.savefig(f, format="png", bbox_inches="tight")
    plt.close(fig)


def _figure(plt, m: Map, paths: list[str], labels: np.ndarray, names: list[str], title: str):
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    fig, ax = plt.subplots(figsize=(11, 9), dpi=120)
    n = len(m.ids)
    sizes = np.bincount(labels, minlength=len(names)) if n else np.zeros(len(names), int)
    palette = np.array([colour(g) for g in range(len(names))]).reshape(-1, 3)
    ax.scatter(m.xy[:, 0], m.xy[:, 1], c=palette[labels], s=max(0.3, min(30.0, 4000 / max(n, 1))), linewidths=0,
               rasterized=True)
    for g in np.argsort(-sizes, kind="stable")[:LEGEND]:
        ax.scatter([], [], color=colour(int(g)), label=f"{names[g]} ({sizes[g]})")
    if names:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize=8, markerscale=1.5)
    row = {int(i): r for r, i in enumerate(m.ids)}
    centre = m.xy.mean(axis=0) if n else np.array([0.5, 0.5])
    for c in np.argsort(-m.cluster_sizes(), kind="stable")[:THUMBS]:
        image_id = int(m.central[c][0])
        if image_id < 0:
            continue
        r = row[image_id]
        try:
            thumb = decode(paths[r], 96)
        except (ImageError, OSError):  # changed or gone since indexing: left out
            continue
        thumb.thumbnail((72, 72))
        at = m.xy[r]
        away = at - centre
        away = away / (np.linalg.norm(away) or 1)
        ax.add_artist(AnnotationBbox(OffsetImage(np.asarray(thumb)), at, xybox=tuple(at + 0.16 * away),
                                     xycoords="data", boxcoords="data", pad=0.15, frameon=True,
                                     bboxprops={"edgecolor": colour(int(labels[r])), "linewidth": 2},
                                     arrowprops={"arrowstyle": "-", "color": "0.4", "linewidth": 0.8}))
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(1.2, -0.2)  # y downwards, as on the pages
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=11)
    return fig
