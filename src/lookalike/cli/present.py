"""Presenting results: terminal tables and montage pictures (query at the left, one row per mode)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from PIL import Image
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from lookalike import atomic
from lookalike.api import Match, QueryResult
from lookalike.images import ImageError, decode
from lookalike.text import plural, short_path

THUMB = 192
CAPTION = 24  # characters of a caption (the parent folder and file name) that fit under a thumbnail
ROW_TITLES = {"nearest": "nearest (ascending)", "random": "random", "farthest": "farthest (descending)"}
FORMATS = ("table", "tsv", "paths")


def stdout_console() -> Console:
    """A console for data on stdout: no markup or highlighting (paths print exactly as they are),
    and no line width in a pipe, so long paths are never wrapped."""
    return Console(markup=False, highlight=False, **({} if sys.stdout.isatty() else {"width": 1 << 20}))


class PathCell:
    """A path in a table cell, always on one line: shortened in the middle to the column's width where
    the terminal is too narrow for it (:func:`lookalike.text.short_path`: the file name kept whole
    while it fits), never broken across lines. Plain text, never markup."""

    MIN_WIDTH = 24

    def __init__(self, path: str) -> None:
        self.path = path

    def __rich_measure__(self, console, options) -> Measurement:
        width = cell_len(self.path)
        return Measurement(min(width, self.MIN_WIDTH), width)

    def __rich_console__(self, console, options):
        yield Text(short_path(self.path, options.max_width), no_wrap=True, overflow="ignore")


def table(result: QueryResult) -> Table:
    """A rich table of one query's results; paths and the query are plain text, never markup."""
    t = Table(title=Text(f"{result.mode} to {result.query} ({result.metric})"), title_justify="left")
    t.add_column("rank", justify="right", no_wrap=True)
    t.add_column("distance", justify="right", no_wrap=True)
    t.add_column("path")
    for m in result.results:
        t.add_row(str(m.rank), f"{m.distance:.4f}", PathCell(m.path))
    return t


def print_results(results: Sequence[QueryResult], fmt: str = "table", console: Console | None = None,
                  out: TextIO | None = None) -> None:
    """Print query results to stdout: ``table`` (one rich table per query), ``tsv`` (a header, then
    rank, distance and path; with several queries a leading query column) or ``paths`` (one per line).

    ValueError, printing nothing, when a name holds a line break (or, in TSV, a tab): such output
    could not be read back unambiguously.
    """
    out = out or sys.stdout
    if fmt in ("tsv", "paths"):
        _refuse_breaks(fmt, [m.path for r in results for m in r.results]
                       + ([r.query for r in results] if fmt == "tsv" and len(results) > 1 else []))
    if fmt == "table":
        console = console or stdout_console()
        for r in results:
            console.print(table(r))
    elif fmt == "tsv":
        several = len(results) > 1
        out.write(("query\t" if several else "") + "rank\tdistance\tpath\n")
        for r in results:
            for m in r.results:
                out.write((f"{r.query}\t" if several else "") + f"{m.rank}\t{m.distance:.6f}\t{m.path}\n")
    elif fmt == "paths":
        out.writelines(f"{m.path}\n" for r in results for m in r.results)
    else:
        raise ValueError(f"unknown format {fmt!r}; choose from: {', '.join(FORMATS)}")


def _refuse_breaks(fmt: str, names: list[str]) -> None:
    """ValueError naming the first of ``names`` that would break a line of ``fmt`` output."""
    breaks = "\n\r\t" if fmt == "tsv" else "\n\r"
    broken = next((name for name in names if any(c in name for c in breaks)), None)
    if broken is not None:
        what = "a tab or line break" if fmt == "tsv" else "a line break"
        raise ValueError(f"a file name holds {what} ({broken!r}): {fmt} output would be ambiguous; use --json")


def _thumb(source) -> Image.Image:
    try:
        img = decode(source, THUMB)
    except ImageError:
        return Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    img.thumbnail((THUMB, THUMB))
    return img


def montage(query, rows: Sequence[QueryResult], out: str | os.PathLike, query_title: str = "query") -> None:
    """Write one PNG: the query image at the left (titled ``query_title``), then one labelled row
    per result, each thumbnail captioned with its distance and file name."""
    import matplotlib.pyplot as plt

    fig = montage_figure(query, rows, query_title)
    with atomic.replacing(out) as f:  # the format from the name's extension, as matplotlib would
        fig.savefig(f, format=os.path.splitext(os.fspath(out))[1][1:].lower() or "png", bbox_inches="tight")
    plt.close(fig)


def montage_figure(query, rows: Sequence[QueryResult], query_title: str = "query"):
    """The matplotlib figure that :func:`montage` writes (close it with ``plt.close``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max((len(r.results) for r in rows), default=0)
    fig = plt.figure(figsize=(1.9 * (n + 1.3), 2.3 * len(rows) + 0.2), dpi=100)
    grid = fig.add_gridspec(len(rows), n + 1, width_ratios=[1.3] + [1] * n, wspace=0.08, hspace=0.45)
    ax = fig.add_subplot(grid[:, 0])
    ax.imshow(_thumb(query))
    ax.set_title(query_title, fontsize=11, fontweight="bold")
    ax.set_xlabel(short_path(rows[0].query, CAPTION, parts=2) if rows else "", fontsize=7,
                  parse_math=False)  # "$" in a name is text
    _bare(ax)
    for r, result in enumerate(rows):
        for c, match in enumerate(result.results):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.imshow(_thumb(match.path))
            ax.set_xlabel(f"{match.distance:.4f}\n{short_path(match.path, CAPTION, parts=2)}", fontsize=7,
                          parse_math=False)
            _bare(ax)
        # Above the row's grid cells, not its first image: each image shrinks its axes to its own
        # aspect, so a taller neighbour would reach above a title placed on the first one.
        cells = grid[r, 1:].get_position(fig)
        fig.text(cells.x0, cells.y1 + 0.01, f"{ROW_TITLES.get(result.mode, result.mode)} — {result.metric}",
                 fontsize=10, fontweight="bold", ha="left", va="bottom")
    return fig


def print_dedup(report, console: Console | None = None) -> None:
    """Print a :class:`lookalike.dedup.DedupReport`: each group's kept file, then its duplicates."""
    console = console or stdout_console()
    where = (f"preset {report.preset}: " if report.preset else "") + report.rule.describe()
    if not report.groups:
        console.print(f"no duplicates among {plural(report.n_images, 'image')} ({where})", highlight=False)
        return
    t = Table(title=Text(f"duplicate groups ({where})"), title_justify="left")
    t.add_column("group", justify="right", no_wrap=True)
    t.add_column("kind", no_wrap=True)
    t.add_column("distance", justify="right", no_wrap=True)
    t.add_column("path")
    t.add_column("evidence", overflow="fold")
    for n, g in enumerate(report.groups, start=1):
        t.add_row(str(n), g.kind, "keep", PathCell(g.keep), Text(g.best.reason if g.best is not None else ""),
                  end_section=False)
        for i, d in enumerate(g.duplicates):
            t.add_row("", "", f"{d.distance:.4f}", PathCell(d.path), Text(report.why(d)),
                      end_section=i == len(g.duplicates) - 1)
    console.print(t)
    kinds = {k: [g for g in report.groups if g.kind == k] for k in ("exact", "near", "shots")
             if k != "shots" or any(g.kind == k for g in report.groups)}
    console.print(", ".join(f"{plural(len(gs), k + ' group')} ({plural(sum(len(g.duplicates) + 1 for g in gs), 'file')})"
                            for k, gs in kinds.items())
                  + f" among {plural(report.n_images, 'image')}; {plural(len(report.to_remove()), 'file')} could go "
                    "(--to-remove)", highlight=False)


def dedup_montages(report, folder: str | os.PathLike, per_row: int = 8) -> list[str]:
    """One PNG per group of a :class:`lookalike.dedup.DedupReport` in ``folder``: the kept file at
    the left, its duplicates in rows of ``per_row``. Returns the paths written."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for n, g in enumerate(report.groups, start=1):
        matches = [Match(i, 0, d.path, d.distance) for i, d in enumerate(g.duplicates, start=1)]
        rows = [QueryResult(g.keep, f"{g.kind} duplicates", "cosine", matches[i:i + per_row])
                for i in range(0, len(matches), per_row)]
        out = os.path.join(folder, f"group-{n:04d}-{g.kind}.png")
        montage(g.keep, rows, out, query_title="keep")
        written.append(out)
    return written


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
