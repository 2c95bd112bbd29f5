"""``dedup``: groups of duplicate images, with the file to keep; never deletes anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lookalike.cli import present
from lookalike.cli.common import (CollectionOpt, Device, DeviceOpt, FollowLinksOpt, IndexOpt, JsonOpt, LayerOpt,
                                  ModelOpt, QuietOpt, ThreadsOpt, UriOpt, WeightsOpt, check_images, fail,
                                  open_index, print_json, print_skipped, progress_bar)


def dedup(
    folder: Annotated[Optional[Path], typer.Argument(metavar="[FOLDER]", help="Index (or update) this folder first and look only in it; "
                                                     "without it, the whole index.", show_default=False)] = None,
    index_path: IndexOpt = None,
    uri: UriOpt = None,
    collection: CollectionOpt = None,
    threshold: Annotated[str, typer.Option("--threshold", "-t", help="A preset: near (two stages: embedding or "
                                           "rotated/flipped-hash candidates, each verified by local features and "
                                           "by comparing the aligned pictures: copies, not other shots), "
                                           "similar (the same, looser), shots (copies and other shots of one "
                                           "scene: series, bursts, a step aside; the sharpest, best-exposed shot "
                                           "kept), exact (near-identical re-saves); or a "
                                           "cosine distance to the kept file (embedding alone).")] = "near",
    montage: Annotated[Optional[Path], typer.Option("--montage", help="Write one PNG per group into this folder.")] = None,
    to_remove: Annotated[Optional[Path], typer.Option("--to-remove", help="Write every grouped file but the kept "
                                                      "one to this file, one path per line (refused for a name "
                                                      "with a line break: use -0 or --json).")] = None,
    review: Annotated[Optional[Path], typer.Option("--review", help="Write an HTML page showing each group side by "
                                                   "side (kept file marked, evidence) to choose what to remove.")] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="With --to-remove: end each path with a NUL byte "
                                       "instead of a newline (for xargs -0).")] = False,
    model: ModelOpt = None,
    layer: LayerOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
    follow_links: FollowLinksOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Group exact (same bytes) and near-duplicate images; never deletes anything.

    Each group keeps the file that is not an edit of the others: most pixels, then lossless over
    higher JPEG quality, then one with an EXIF capture time (earliest), then a file over a symbolic
    link to it, then the shorter name, then the older file (with -t shots: the best exposed, then the
    sharpest shot, the keep rule between shots alike in quality). Every grouped file is checked against the
    disk first: one changed since it was indexed is an error, and nothing is listed. A FOLDER
    without images is an error when it would create a new index, and a warning otherwise.
    """
    from lookalike import dedup as dd
    if folder is not None:
        check_images(folder, index_path)
    if folder is not None and uri is not None:
        fail("a FOLDER is indexed into --index; a --uri collection is filled by `lookalike ingest`")
    options = {"model": model, "layer": layer, "create": folder is not None} if uri is None else {"model": model}
    with open_index(index_path, uri, collection, threads=threads, device=device.value, weights=weights,
                    **options) as idx:
        rule, preset = dd.resolve_threshold(threshold, idx.model)
        indexed = None
        if folder is not None:
            with progress_bar(quiet or as_json) as bar:
                task = bar.add_task("embed", total=None, rate="")
                indexed = idx.index(folder, on_plan=lambda n: bar.update(task, total=n),
                                  on_progress=lambda n: bar.advance(task, n), follow_links=follow_links)
        report = dd.find_duplicates(idx, rule, preset, under=str(folder) if folder is not None else None)
    if indexed is not None:
        report.skipped = sorted(dict(report.skipped + indexed.skipped).items())
    listed = report.to_remove()  # before any output: every grouped file checked against the disk
    if to_remove is not None:
        dd.write_paths(listed, to_remove, null)
    if montage is not None:
        present.dedup_montages(report, montage)
    if review is not None:
        from lookalike.dedup import review as review_page

        review_page.write(report, review)
    if as_json:
        out = report.to_dict()
        if indexed is not None:
            out["index"] = indexed.to_dict()
        print_json(out)
        return
    print_skipped(report.skipped)
    present.print_dedup(report)
