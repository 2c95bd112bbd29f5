"""Presenting results: terminal tables and montage pictures (query at the left, one row per mode)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image
from rich.console import Console
from rich.table import Table

from lookalike.api import QueryResult
from lookalike.images import ImageError, decode

THUMB = 192
ROW_TITLES = {"nearest": "nearest (ascending)", "random": "random", "farthest": "farthest (descending)"}


def table(result: QueryResult) -> Table:
    """A rich table of one query's results."""
    t = Table(title=f"{result.mode} to {result.query} ({result.metric})", title_justify="left")
    t.add_column("rank", justify="right")
    t.add_column("distance", justify="right")
    t.add_column("path", overflow="fold")
    for m in result.results:
        t.add_row(str(m.rank), f"{m.distance:.4f}", m.path)
    return t


def print_tables(results: Sequence[QueryResult], console: Console | None = None) -> None:
    """Print one table per query to stdout."""
    console = console or Console()
    for r in results:
        console.print(table(r))


def _thumb(source) -> Image.Image:
    try:
        img = decode(source, THUMB)
    except ImageError:
        return Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    img.thumbnail((THUMB, THUMB))
    return img


def montage(query, rows: Sequence[QueryResult], out: str | os.PathLike) -> None:
    """Write one PNG: the query image at the left, then one labelled row per result, each
    thumbnail captioned with its distance and file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max((len(r.results) for r in rows), default=0)
    fig = plt.figure(figsize=(1.9 * (n + 1.3), 2.3 * len(rows) + 0.2), dpi=100)
    grid = fig.add_gridspec(len(rows), n + 1, width_ratios=[1.3] + [1] * n, wspace=0.08, hspace=0.45)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(_thumb(query))
    ax.set_title("query", fontsize=11, fontweight="bold")
    ax.set_xlabel(_short(rows[0].query if rows else ""), fontsize=7)
    _bare(ax)
    for r, result in enumerate(rows):
        for c, match in enumerate(result.results):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.imshow(_thumb(match.path))
            ax.set_xlabel(f"{match.distance:.4f}\n{_short(match.path)}", fontsize=7)
            _bare(ax)
            if c == 0:
                ax.set_title(f"{ROW_TITLES.get(result.mode, result.mode)} — {result.metric}", loc="left",
                             fontsize=10, fontweight="bold")
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def _short(path: str, width: int = 24) -> str:
    name = os.path.basename(path)
    return name if len(name) <= width else name[: width - 1] + "…"
