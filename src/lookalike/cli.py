"""The ``lookalike`` command line: a thin Typer shell over :mod:`lookalike.api`.

Exit codes: 0 success (skipped files are not failures), 1 user error with a one-line message,
2 usage error.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lookalike.api import Index
from lookalike.images import DEFAULT_MAX_PIXELS, ImageError
from lookalike.models.registry import ModelError
from lookalike.store import StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Content-based image similarity search: nearest, random and farthest images.")
err = Console(stderr=True)
USER_ERRORS = (ImageError, ModelError, StoreError, ValueError, OSError)


class Mode(str, Enum):
    nearest = "nearest"
    farthest = "farthest"
    random = "random"


class Metric(str, Enum):
    cosine = "cosine"
    l2 = "l2"


IndexOpt = Annotated[Optional[Path], typer.Option("--index", envvar="LOOKALIKE_INDEX", show_default=False,
                                                   help="Index directory [default: per-user data dir]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Registry name, trained model dir or .onnx file.")]
LayerOpt = Annotated[Optional[str], typer.Option("--layer", help="Feature layer of the model.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime threads [default: all cores]")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Weights file of a model that takes one "
                                                    "(inception-v3-fid) [default: $LOOKALIKE_INCEPTION_WEIGHTS or the cache]")]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DeviceOpt = Annotated[Device, typer.Option("--device", help="auto: ONNX Runtime's CUDA provider when onnxruntime-gpu "
                                           "and a GPU are present, else CPU.")]


def fail(message: str) -> None:
    """Print a one-line error and exit 1."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err, disable=quiet)


@app.command()
def index(
    folder: Annotated[Path, typer.Argument(help="Folder of images to index (recursively).")],
    index_path: IndexOpt = None,
    model: ModelOpt = None,
    layer: LayerOpt = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per model run.")] = 32,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Decoding threads.")] = 2,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Skip larger images (bomb guard).")] = DEFAULT_MAX_PIXELS,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete the index and start again.")] = False,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Make the index match FOLDER: embed new and changed images, drop deleted ones."""
    if not folder.is_dir():
        fail(f"not a directory: {folder}")
    with Index.open(index_path, model, layer, create=True, rebuild=rebuild, threads=threads, device=device.value,
                    weights=weights) as idx:
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("embed", total=None, rate="")

            def advance(n: int) -> None:
                bar.advance(task, n)
                t = bar.tasks[0]
                bar.update(task, rate=f"{t.completed / t.elapsed:.1f} img/s" if t.elapsed else "")

            report = idx.add(folder, batch, workers, max_pixels,
                             on_plan=lambda n: bar.update(task, total=n), on_progress=advance)
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}", highlight=False, soft_wrap=True)
    print(f"indexed {report.indexed}, removed {report.removed}, unchanged {report.unchanged}, "
          f"skipped {len(report.skipped)}; {report.total} images in {idx.store.root} "
          f"({report.seconds:.1f} s, {report.images_per_second:.1f} img/s)")


@app.command()
def query(
    images: Annotated[list[Path], typer.Argument(help="Query image file(s).")],
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="Number of results.")] = 10,
    mode: Annotated[Mode, typer.Option("--mode")] = Mode.nearest,
    metric: Annotated[Metric, typer.Option("--metric")] = Metric.cosine,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for --mode random.")] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="Leave out indexed copies of the query.")] = False,
    montage: Annotated[Optional[Path], typer.Option("--montage", help="Also write a montage PNG (first query).")] = None,
    duplicates: Annotated[bool, typer.Option("--duplicates", help="Instead: every indexed image within the 'near' "
                                             "dedup preset (is this image already indexed?).")] = False,
    index_path: IndexOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print the K nearest, farthest or random indexed images for each query image."""
    from lookalike import present

    with Index.open(index_path, threads=threads, device=device.value, weights=weights) as idx:
        if duplicates:
            from lookalike import dedup

            limit, _ = dedup.resolve_threshold(dedup.DEFAULT_PRESET, idx.store.model)
            results = [dedup.duplicates_of(idx, str(img), limit) for img in images]
            for r in results:
                if not r.results:
                    err.print(f"no duplicate of {r.query} in the index (none within cosine distance {limit})",
                              highlight=False, soft_wrap=True)
        else:
            results = [idx.query(str(img), k, mode.value, metric.value, seed, exclude_self) for img in images]
    if montage is not None:
        present.montage(str(images[0]), results[:1], montage)
    if as_json:
        dicts = [r.to_dict() for r in results]
        print(json.dumps(dicts[0] if len(dicts) == 1 else dicts, ensure_ascii=False))
    else:
        present.print_tables(results)


@app.command()
def show(
    image: Annotated[Path, typer.Argument(help="Query image file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("lookalike.png"),
    n: Annotated[int, typer.Option("-n", min=1, help="Images per row.")] = 5,
    metric: Annotated[Metric, typer.Option("--metric")] = Metric.cosine,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for the random row.")] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self")] = False,
    index_path: IndexOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
) -> None:
    """Write one figure: the query, then N nearest, N random and N farthest images."""
    from lookalike import present

    with Index.open(index_path, threads=threads, device=device.value, weights=weights) as idx:
        vector, same = idx.embed(str(image))
        exclude = same if exclude_self else ()
        rows = [idx.query_vector(vector, n, mode, metric.value, seed, exclude, str(image))
                for mode in ("nearest", "random", "farthest")]
    present.montage(str(image), rows, out)
    print(out)


@app.command()
def models(
    download: Annotated[Optional[str], typer.Option("--download", metavar="MODEL", help="Download the weights of "
                                                    "MODEL (inception-v3-fid) into the cache first; needs internet.")] = None,
    weights: WeightsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the models lookalike knows: feature dims, input size, layers, and where their weights come from."""
    from lookalike.models import registry

    if download is not None:
        err.print(f"{download} weights: {registry.download_weights(download)}", highlight=False, soft_wrap=True)
    rows = registry.catalog(weights)
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        layers = ", ".join(f"{k} ({v}-d)" + (" default" if k == r["layer"] else "") for k, v in r["layers"].items())
        print(f"{r['name']}: {r['dim']}-d, {r['input_size']}px input; layers {layers}\n"
              f"    weights: {r['weights'] or 'missing'}\n    source: {r['source']}")


@app.command()
def serve(
    index_path: IndexOpt = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001, help="Largest accepted upload.")] = 20.0,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Largest accepted upload in pixels (bomb guard).")] = DEFAULT_MAX_PIXELS,
    threads: ThreadsOpt = None,
) -> None:
    """Serve the web page and HTTP API (docs at /docs) for an index."""
    import uvicorn

    from lookalike.server import create_app

    with Index.open(index_path, threads=threads) as idx:
        web = create_app(idx, int(max_upload_mb * 1024 * 1024), max_pixels)
        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[bold yellow]warning:[/] listening on {host}: anyone who can reach this machine can search "
                      "and view the indexed images", highlight=False, soft_wrap=True)
        err.print(f"serving {len(idx)} images from {idx.store.root} at http://{host}:{port}/ (Ctrl+C stops)",
                  highlight=False, soft_wrap=True)
        uvicorn.run(web, host=host, port=port, log_level="warning")


@app.command()
def dedup(
    folder: Annotated[Optional[Path], typer.Argument(help="Index (or update) this folder first and look only in it; "
                                                     "without it, the whole index.", show_default=False)] = None,
    index_path: IndexOpt = None,
    threshold: Annotated[str, typer.Option("--threshold", "-t", help="Cosine distance to the kept file, or a preset: "
                                           "exact, near, similar.")] = "near",
    montage: Annotated[Optional[Path], typer.Option("--montage", help="Write one PNG per group into this folder.")] = None,
    to_remove: Annotated[Optional[Path], typer.Option("--to-remove", help="Write every grouped file but the kept "
                                                      "one to this file, one path per line.")] = None,
    model: ModelOpt = None,
    layer: LayerOpt = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Group exact (same bytes) and near-duplicate images; keeps the largest, never deletes anything."""
    from lookalike import dedup as dd
    from lookalike import present

    if folder is not None and not folder.is_dir():
        fail(f"not a directory: {folder}")
    with Index.open(index_path, model, layer, create=folder is not None, threads=threads) as idx:
        limit, preset = dd.resolve_threshold(threshold, idx.store.model)
        indexed = None
        if folder is not None:
            with _progress(quiet or as_json) as bar:
                task = bar.add_task("embed", total=None, rate="")
                indexed = idx.add(folder, on_plan=lambda n: bar.update(task, total=n),
                                  on_progress=lambda n: bar.advance(task, n))
        report = dd.find_duplicates(idx, limit, preset, under=str(folder) if folder is not None else None)
    if indexed is not None:
        report.skipped = sorted(dict(report.skipped + indexed.skipped).items())
    if to_remove is not None:
        to_remove.write_text("".join(f"{p}\n" for p in report.to_remove()), encoding="utf-8")
    if montage is not None:
        present.dedup_montages(report, montage)
    if as_json:
        out = report.to_dict()
        if indexed is not None:
            out["index"] = indexed.to_dict()
        print(json.dumps(out, ensure_ascii=False))
        return
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}", highlight=False, soft_wrap=True)
    present.print_dedup(report)


def main() -> None:
    """Console-script entry point: user errors become one line and exit code 1."""
    try:
        app()
    except USER_ERRORS as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; what was committed is kept")
        sys.exit(130)


