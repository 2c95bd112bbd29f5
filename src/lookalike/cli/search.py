"""Searching an index: ``query`` (results as a table, TSV, paths or JSON) and ``show`` (one figure)."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lookalike.cli import present
from lookalike.api import QueryResult
from lookalike.cli.common import (CollectionOpt, Device, DeviceOpt, IndexOpt, JsonOpt, MetricOpt, ThreadsOpt, UriOpt,
                                  WeightsOpt, err, fail, open_index, print_json, say)
from lookalike.images import UPLOAD_MAX_BYTES, ImageError
from lookalike.vectors import MetricName, Mode


class Format(str, Enum):
    table = "table"
    tsv = "tsv"
    paths = "paths"


FormatOpt = Annotated[Optional[Format], typer.Option(
    "--format", help="table, tsv (a header, then rank, distance, path; a query column first for several "
    "queries) or paths (one per line) [default: table on a terminal, else tsv]", show_default=False)]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="nearest first, farthest first, or a uniform random sample.")]


def _output_format(fmt: Format | None) -> str:
    return fmt.value if fmt is not None else ("table" if sys.stdout.isatty() else "tsv")


def _source(image: str) -> str | bytes:
    """A query named on the command line: a file's path, or the bytes of an image fetched by its
    address (within the server's upload limits: :mod:`lookalike.fetch`)."""
    from lookalike.fetch import fetch, is_url

    if is_url(image):
        return fetch(image, UPLOAD_MAX_BYTES)[0]
    if Path(image).is_dir():
        raise ImageError(f"a folder, not an image: give image files (such as {Path(image) / '*.jpg'})")
    return image


def _announce(seed: int) -> None:
    """Print the seed of a random draw on stderr, so that the draw can be repeated."""
    say("seed", "bold", f"{seed} (repeat this random draw with --seed {seed})")


def query(
    images: Annotated[list[str], typer.Argument(metavar="IMAGE...", help="Query image files, or addresses "
                                                "(http:// or https://) of images to fetch.", show_default=False)],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of results.")] = 10,
    mode: ModeOpt = Mode.nearest,
    metric: MetricOpt = MetricName.cosine,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for --mode random [default: a fresh one, "
                                                "printed so the draw can be repeated]", show_default=False)] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="Leave out indexed files with the query's "
                                               "exact bytes (the query itself).")] = False,
    montage: Annotated[Optional[Path], typer.Option("--montage", help="Also write a montage PNG (first query).")] = None,
    duplicates: Annotated[bool, typer.Option("--duplicates", help="Instead: every indexed image that duplicates "
                                             "it by the 'near' dedup preset, with evidence (is this image already "
                                             "indexed?).")] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Exact search even when the index has an ANN structure.")] = False,
    ef_search: Annotated[Optional[int], typer.Option("--ef-search", min=1, help="HNSW search breadth (recall vs speed).")] = None,
    nprobe: Annotated[Optional[int], typer.Option("--nprobe", min=1, help="IVF-PQ lists probed (recall vs speed).")] = None,
    index_path: IndexOpt = None,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Print the K nearest, farthest or random indexed images for each query image.

    A query that cannot be read is reported by name and the others are still answered; the exit
    code is then 1 (and --json gives that query an "error" instead of "results").
    """
    answers: list[tuple[str, object]] = []  # (query, QueryResult or error message) in argument order
    with open_index(index_path, uri, collection, threads=threads, device=device.value, weights=weights) as idx:
        if duplicates:
            from lookalike import dedup

            rule, _ = dedup.resolve_threshold(dedup.DEFAULT_PRESET, idx.model)

        def answer(img: str):
            source = _source(img)
            if duplicates:
                found = dedup.duplicates_of(idx, source, rule, label=img)
                if not found.results:
                    err.print(f"no duplicate of {found.query} in the index (none by {rule.describe()})",
                              soft_wrap=True)
                return found
            return idx.query(source, k, mode, metric, seed, exclude_self, label=img, exact=exact,
                             ef_search=ef_search, nprobe=nprobe)

        for img in images:
            try:
                found = answer(img)
            except ImageError as e:
                say("error", "bold red", f"{img}: {e}")
                answers.append((img, str(e)))
                continue
            if found.seed is not None and not any(isinstance(r, QueryResult) for _, r in answers) and not as_json:
                _announce(found.seed)  # once, before the first results
            seed = found.seed if seed is None else seed  # one random draw's seed for every query image
            answers.append((img, found))
    results = [r for _, r in answers if not isinstance(r, str)]
    if montage is not None and results:
        present.montage(results[0].query, results[:1], montage)
    if as_json:
        dicts = [{"query": img, "error": r} if isinstance(r, str) else r.to_dict() for img, r in answers]
        print_json(dicts[0] if len(dicts) == 1 else dicts)
    elif results:  # not even a header when no query could be answered
        present.print_results(results, _output_format(fmt))
    failed = len(answers) - len(results)
    if failed:
        if len(answers) > 1:
            say("error", "bold red", f"{failed} of {len(answers)} queries failed")
        raise typer.Exit(1)


def show(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="Query image file, or the address of an image to "
                                         "fetch.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("lookalike.png"),
    n: Annotated[int, typer.Option("-n", min=1, help="Images per row.")] = 5,
    metric: MetricOpt = MetricName.cosine,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for the random row [default: a fresh one, "
                                                "printed so the figure can be repeated]", show_default=False)] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="Also leave out indexed copies with the "
                                               "query's exact bytes (the query file itself is always left out: "
                                               "it is drawn at the left).")] = False,
    index_path: IndexOpt = None,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
) -> None:
    """Write one figure: the query, then N nearest, N random and N farthest images (the query file
    itself, drawn at the left, is left out of the rows)."""
    with open_index(index_path, uri, collection, threads=threads, device=device.value, weights=weights) as idx:
        try:
            source = _source(image)
            vector, same = idx.embed(source)
        except ImageError as e:
            fail(f"{image}: {e}")
        own = os.path.abspath(source) if isinstance(source, str) else None  # as indexed: links not resolved
        exclude = same if exclude_self else [i for i, p in zip(same, idx.paths(same)) if p == own]
        rows = [idx.query_vector(vector, n, mode, metric, seed, exclude, image)
                for mode in (Mode.nearest, Mode.random, Mode.farthest)]
    _announce(rows[1].seed)
    present.montage(source, rows, out)
    print(out)
