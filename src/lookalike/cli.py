"""The ``lookalike`` command line: a thin Typer shell over :mod:`lookalike.api`.

Exit codes: 0 success (skipped files are not failures), 1 user error with a one-line message,
2 usage error.
"""

from __future__ import annotations

import errno
import json
import socket
import sqlite3
import sys
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from lookalike import __version__, ann_store, present
from lookalike.api import Index, fresh_seed
from lookalike.images import DEFAULT_MAX_PIXELS, ImageError, list_images
from lookalike.indexer import BATCH
from lookalike.vectors import MetricName, Mode
from lookalike.models.registry import ModelError
from lookalike.store import StoreError
from lookalike.train.config import TrainConfig

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Content-based image similarity search: nearest, random and farthest images.")
err = Console(stderr=True, markup=False)  # paths and messages print exactly as they are
USER_ERRORS = (ImageError, ModelError, StoreError, ValueError, OSError)


def _print_version(value: bool) -> None:
    if value:
        print(f"lookalike {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                   help="Print the version and exit.")] = False) -> None:
    """Options given before the command."""


AnnSetting = Enum("AnnSetting", {name: name for name in ann_store.SETTINGS}, type=str)


IndexOpt = Annotated[Optional[Path], typer.Option("--index", envvar="LOOKALIKE_INDEX", show_default=False,
                                                   help="Index directory [default: per-user data dir]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Registry name, trained model dir or .onnx file.")]
LayerOpt = Annotated[Optional[str], typer.Option("--layer", help="Feature layer of the model.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime threads [default: all cores]")]
FollowLinksOpt = Annotated[bool, typer.Option("--follow-links", help="Also index what symbolic links lead to "
                                              "outside the folder [default: such links are left out, with a reason]")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
TorchThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="Torch threads [default: all cores]")]
WeightsOpt = Annotated[Optional[Path], typer.Option("--weights", help="Weights file of a model that takes one "
                                                    "(inception-v3-fid) [default: $LOOKALIKE_INCEPTION_WEIGHTS or the cache]")]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


DeviceOpt = Annotated[Device, typer.Option("--device", help="auto: ONNX Runtime's CUDA provider when onnxruntime-gpu "
                                           "and a GPU are present, else CPU.")]


def say(label: str, style: str, message: str) -> None:
    """Print ``label: message`` on stderr, the label styled, the message exactly as it is."""
    err.print(Text.assemble((f"{label}:", style), " ", message), soft_wrap=True)


def fail(message: str) -> None:
    """Print a one-line error and exit 1."""
    say("error", "bold red", message)
    raise typer.Exit(1)


def _no_bar(quiet: bool) -> bool:
    """Progress bars only on a terminal: a log file or pipe gets no bar remnants."""
    return quiet or not err.is_terminal


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("[bold]embedding"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err, disable=_no_bar(quiet))


class Format(str, Enum):
    table = "table"
    tsv = "tsv"
    paths = "paths"


FormatOpt = Annotated[Optional[Format], typer.Option(
    "--format", help="table, tsv (a header, then rank, distance, path; a query column first for several "
    "queries) or paths (one per line) [default: table on a terminal, else tsv]", show_default=False)]
ModeOpt = Annotated[Mode, typer.Option("--mode", help="nearest first, farthest first, or a uniform random sample.")]
MetricOpt = Annotated[MetricName, typer.Option("--metric", help="cosine (1 - cosine similarity) or l2 (Euclidean "
                                               "distance) on the raw features.")]


def _output_format(fmt: Format | None) -> str:
    return fmt.value if fmt is not None else ("table" if sys.stdout.isatty() else "tsv")


def _seed(seed: int | None, announce: bool = True) -> int:
    """The seed of a random draw: the one given, else a fresh one; ``announce`` prints it on stderr so
    the draw can be repeated."""
    if seed is None:
        seed = fresh_seed()
    if announce:
        say("seed", "bold", f"{seed} (repeat this random draw with --seed {seed})")
    return seed


@app.command()
def index(
    folder: Annotated[Optional[Path], typer.Argument(metavar="FOLDER", help="Folder of images to index (recursively).",
                                                     show_default=False)] = None,
    shards: Annotated[Optional[str], typer.Option("--from", metavar="SHARDS", help="Instead of FOLDER: add the "
                                                  "Parquet shards of `lookalike embed` (folder or URI).")] = None,
    index_path: IndexOpt = None,
    model: ModelOpt = None,
    layer: LayerOpt = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per model run and per commit.")] = BATCH,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Decoding threads.")] = 2,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Skip larger images (bomb guard).")] = DEFAULT_MAX_PIXELS,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete the index and start again.")] = False,
    follow_links: FollowLinksOpt = False,
    ann: Annotated[Optional[AnnSetting], typer.Option("--ann", help="Approximate search: auto (exact for small "
                                                      "collections), none, hnsw or ivfpq [default: keep, or auto]")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List the added, changed and removed paths.")] = False,
) -> None:
    """Make the index match FOLDER: embed new and changed images, drop deleted ones.

    A folder without images is an error when it would create a new index, and a warning otherwise.
    """
    if (folder is None) == (shards is None):
        fail("give a FOLDER or --from SHARDS (one of them)")
    if shards is not None:
        _need_cluster("pyarrow")
        from lookalike.cluster.shards import Shards

        model, layer = _shards_model(Shards(shards), model, layer)
    elif not folder.is_dir():
        fail(f"not a directory: {folder}")
    ignored: Counter = Counter()
    if folder is not None and next(list_images(folder, ignored), None) is None:  # the whole folder was listed: nothing in it
        nothing = f"no images under {folder}{_ignored_text(ignored, ': ignored ')}"
        if rebuild or not Index.exists(index_path):
            fail(f"{nothing}; no index created")
        say("warning", "bold yellow", nothing)
    with Index.open(index_path, model, layer, create=True, rebuild=rebuild, threads=threads, device=device.value,
                    weights=weights) as idx:
        if ann is not None:
            idx.set_ann(ann.value)
        with _progress(quiet or as_json) as bar:
            task = bar.add_task("embed", total=None, rate="")

            def advance(n: int) -> None:
                bar.advance(task, n)
                t = bar.tasks[0]
                bar.update(task, rate=f"{t.completed / t.elapsed:.1f} img/s" if t.elapsed else "")

            if shards is not None:
                report = idx.add_shards(shards, on_plan=lambda n: bar.update(task, total=n), on_progress=advance)
            else:
                report = idx.add(folder, batch, workers, max_pixels,
                                 on_plan=lambda n: bar.update(task, total=n), on_progress=advance,
                                 follow_links=follow_links)
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}", soft_wrap=True)
    if verbose:
        for what, paths in (("added", report.added), ("changed", report.changed), ("removed", report.removed_paths)):
            print("".join(f"{what} {p}\n" for p in paths), end="")
    print(f"indexed {report.indexed}, removed {report.removed}, unchanged {report.unchanged}, "
          f"skipped {len(report.skipped)}{_ignored_text(report.ignored, ', ignored ')}; {report.total} images in "
          f"{idx.root} ({report.seconds:.1f} s, {report.images_per_second:.1f} img/s)")


def _shards_model(shards, model: str | None, layer: str | None) -> tuple[str | None, str | None]:
    """The model and layer to create an index for shards with: the shards' own unless given."""
    held = shards.model()
    if held is None:
        fail(f"no shards in {shards.location}")
    return model or held["name"], layer or (None if model else held["layer"])


def _ignored_text(ignored: Counter, prefix: str) -> str:
    """``prefix`` and the count of files that are not images by extension
    (``3 other files (2 .txt, 1 without extension)``), or "" when there are none."""
    if not ignored:
        return ""
    kinds = ", ".join(f"{n} {ext or 'without extension'}"
                      for ext, n in sorted(ignored.items(), key=lambda kv: (-kv[1], not kv[0], kv[0])))
    return f"{prefix}{sum(ignored.values())} other files ({kinds})"


def _need_cluster(*modules: str) -> None:
    """A one-line error when the ``cluster`` extra is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"this needs {', '.join(sorted(set(missing)))}: pip install 'lookalike[cluster]'")


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def embed(
    source: Annotated[str, typer.Argument(help="Folder or URI (s3://…, gs://…, file://…) of images.")],
    out: Annotated[str, typer.Option("--out", help="Folder or URI of the Parquet shards (created; a re-run adds "
                                     "only what they lack).")],
    engine: Annotated[Engine, typer.Option("--engine", help="local: this process; ray: a Ray cluster.")] = Engine.local,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto, ray://HOST:10001 "
                                                   "[default: $RAY_ADDRESS, else start one here]")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Embedding actors (ray) or decoding "
                                                   "threads (local) [default: CPUs, or GPUs / --gpus-per-worker]")] = None,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0.0, help="GPUs per embedding actor "
                                                   "(ONNX Runtime's CUDA provider).")] = 0.0,
    model: ModelOpt = None,
    layer: LayerOpt = None,
    weights: WeightsOpt = None,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Images per model run.")] = BATCH,
    device: DeviceOpt = Device.cpu,
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Skip larger images (bomb guard).")] = DEFAULT_MAX_PIXELS,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Embed SOURCE into Parquet shards, here or on a Ray cluster (needs lookalike[cluster])."""
    _need_cluster("pyarrow", *(["ray"] if engine == Engine.ray else []))
    from lookalike.cluster.embed import embed as run_embed, model_spec
    from lookalike.cluster.sources import is_uri

    if not is_uri(source) and not Path(source).exists():
        fail(f"no such file or folder: {source}")
    spec = model_spec(model, layer, weights)
    with _progress(quiet or as_json) as bar:
        task = bar.add_task("embed", total=None, rate="")
        report = run_embed(source, out, spec, engine.value, address, workers, gpus_per_worker, batch,
                           max_pixels=max_pixels, device=device.value, on_plan=lambda n: bar.update(task, total=n),
                           on_progress=lambda n: bar.advance(task, n))
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}", highlight=False, soft_wrap=True)
    d = report.to_dict()
    print(f"embedded {d['embedded']}, unchanged {d['unchanged']}, skipped {len(d['skipped'])}; {d['shards']} shards "
          f"written to {out} ({d['seconds']:.1f} s, {d['images_per_second']:.1f} img/s, {engine.value})")


@app.command()
def query(
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="Query image file(s).", show_default=False)],
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
    random_seed = _seed(seed, not as_json) if mode is Mode.random and not duplicates else None
    answers: list[tuple[Path, object]] = []  # (query, QueryResult or error message) in argument order
    with Index.open(index_path, threads=threads, device=device.value, weights=weights) as idx:
        if duplicates:
            from lookalike import dedup

            rule, _ = dedup.resolve_threshold(dedup.DEFAULT_PRESET, idx.model)

        def answer(img: Path):
            if duplicates:
                found = dedup.duplicates_of(idx, str(img), rule)
                if not found.results:
                    err.print(f"no duplicate of {found.query} in the index (none by {rule.describe()})",
                              soft_wrap=True)
                return found
            return idx.query(str(img), k, mode.value, metric.value, random_seed, exclude_self, exact=exact,
                             ef_search=ef_search, nprobe=nprobe)

        for img in images:
            try:
                answers.append((img, answer(img)))
            except ImageError as e:
                say("error", "bold red", f"{img}: {e}")
                answers.append((img, str(e)))
    results = [r for _, r in answers if not isinstance(r, str)]
    if montage is not None and results:
        present.montage(results[0].query, results[:1], montage)
    if as_json:
        dicts = [{"query": str(img), "error": r} if isinstance(r, str) else r.to_dict() for img, r in answers]
        print(json.dumps(dicts[0] if len(dicts) == 1 else dicts, ensure_ascii=False))
    else:
        present.print_results(results, _output_format(fmt))
    failed = len(answers) - len(results)
    if failed:
        if len(answers) > 1:
            say("error", "bold red", f"{failed} of {len(answers)} queries failed")
        raise typer.Exit(1)


@app.command()
def show(
    image: Annotated[Path, typer.Argument(metavar="IMAGE", help="Query image file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG to write.")] = Path("lookalike.png"),
    n: Annotated[int, typer.Option("-n", min=1, help="Images per row.")] = 5,
    metric: MetricOpt = MetricName.cosine,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for the random row [default: a fresh one, "
                                                "printed so the figure can be repeated]", show_default=False)] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="Leave out indexed files with the query's "
                                               "exact bytes (the query itself).")] = False,
    index_path: IndexOpt = None,
    threads: ThreadsOpt = None,
    device: DeviceOpt = Device.auto,
    weights: WeightsOpt = None,
) -> None:
    """Write one figure: the query, then N nearest, N random and N farthest images."""
    seed = _seed(seed)
    with Index.open(index_path, threads=threads, device=device.value, weights=weights) as idx:
        try:
            vector, same = idx.embed(str(image))
        except ImageError as e:
            fail(f"{image}: {e}")
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
        err.print(f"{download} weights: {registry.download_weights(download)}", soft_wrap=True)
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

    sock = _listen(host, port)  # a busy port fails before the model loads
    with sock, Index.open(index_path, threads=threads) as idx:
        web = create_app(idx, int(max_upload_mb * 1024 * 1024), max_pixels)
        if host not in ("127.0.0.1", "localhost", "::1"):
            say("warning", "bold yellow", f"listening on {host}: anyone who can reach this machine can search "
                "and view the indexed images")
        address = f"[{host}]" if ":" in host else host
        err.print(f"serving {len(idx)} images from {idx.root} at http://{address}:{sock.getsockname()[1]}/ "
                  "(Ctrl+C stops)", soft_wrap=True)
        uvicorn.Server(uvicorn.Config(web, log_level="warning")).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: a free one), or a one-line error and exit 1 when the
    port is taken or the address is not this machine's."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as e:
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: no wait after a restart
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        hint = "; another program is using it, choose another with --port" if e.errno == errno.EADDRINUSE else ""
        fail(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}")
    return sock


@app.command()
def dedup(
    folder: Annotated[Optional[Path], typer.Argument(metavar="[FOLDER]", help="Index (or update) this folder first and look only in it; "
                                                     "without it, the whole index.", show_default=False)] = None,
    index_path: IndexOpt = None,
    threshold: Annotated[str, typer.Option("--threshold", "-t", help="A preset: near (two stages: embedding or "
                                           "rotated/flipped-hash candidates, each verified by local features), "
                                           "similar (the same, looser), exact (near-identical re-saves); or a "
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
    higher JPEG quality, then one with an EXIF capture time (earliest), then the shorter name, then
    the older file.
    """
    from lookalike import dedup as dd
    if folder is not None and not folder.is_dir():
        fail(f"not a directory: {folder}")
    with Index.open(index_path, model, layer, create=folder is not None, threads=threads, device=device.value,
                    weights=weights) as idx:
        rule, preset = dd.resolve_threshold(threshold, idx.model)
        indexed = None
        if folder is not None:
            with _progress(quiet or as_json) as bar:
                task = bar.add_task("embed", total=None, rate="")
                indexed = idx.add(folder, on_plan=lambda n: bar.update(task, total=n),
                                  on_progress=lambda n: bar.advance(task, n), follow_links=follow_links)
        report = dd.find_duplicates(idx, rule, preset, under=str(folder) if folder is not None else None)
    if indexed is not None:
        report.skipped = sorted(dict(report.skipped + indexed.skipped).items())
    if to_remove is not None:
        dd.write_paths(report.to_remove(), to_remove, null)
    if montage is not None:
        present.dedup_montages(report, montage)
    if review is not None:
        from lookalike import review as review_page

        review_page.write(report, review)
    if as_json:
        out = report.to_dict()
        if indexed is not None:
            out["index"] = indexed.to_dict()
        print(json.dumps(out, ensure_ascii=False))
        return
    for path, reason in report.skipped:
        err.print(f"skipped {path}: {reason}", soft_wrap=True)
    present.print_dedup(report)


_TRAIN = TrainConfig()


class Augment(str, Enum):
    pixels = "pixels"
    features = "features"


class ValSplit(str, Enum):
    classes = "classes"
    images = "images"
    none = "none"


def _print_metrics(summary: dict, title: str) -> None:
    from rich.table import Table

    t = Table("metric", "value", title=title, title_justify="left")
    for key, value in summary.items():
        if isinstance(value, dict):
            for k, v in value.items():
                t.add_row(f"{key} {k}", f"{v:.4f}" if isinstance(v, float) else str(v))
        else:
            t.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    present.stdout_console().print(t)


@app.command()
def evaluate(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Folder with one sub-folder of images per class.",
                                         show_default=False)],
    model: ModelOpt = None,
    layer: LayerOpt = None,
    metric: MetricOpt = MetricName.cosine,
    rerank: Annotated[bool, typer.Option("--rerank", help="Also score k-reciprocal re-ranking of the top 100.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write an HTML report with PNGs and metrics.json "
                                                   "into this folder.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the comparative sets.")] = 0,
    index_path: Annotated[Optional[Path], typer.Option("--index", show_default=False, help="Embed through this "
                                                       "index (brought up to date with DATA, as dedup DATA does), "
                                                       "reusing the vectors it holds [default: a cache per folder "
                                                       "and model]")] = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Leave-one-out retrieval quality on labelled folders: recall@k, mAP, MAP@R, median rank.

    Embeddings are cached per folder and model, so a second run (another metric) is instant;
    with --index, an index that already holds DATA is used without embedding it again.
    """
    from lookalike import evaluate as ev

    if not data.is_dir():
        fail(f"not a directory: {data}")
    with _progress(quiet or as_json) as bar:
        task = bar.add_task("embed", total=None, rate="")
        result = ev.evaluate_folder(data, model, layer, metric.value, rerank, seed, threads,
                                    on_plan=lambda n: bar.update(task, total=n),
                                    on_progress=lambda n: bar.advance(task, n), index=index_path)
    summary = result.to_dict()
    if report is not None:
        page = ev.write_report(result, report)
        err.print(f"report: {page}", soft_wrap=True)
    if as_json:
        print(json.dumps(summary, ensure_ascii=False))
        return
    for path, reason in result.index.skipped:
        err.print(f"skipped {path}: {reason}", soft_wrap=True)
    _print_metrics(summary, f"{result.model} on {data} ({metric.value})")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Folder with one sub-folder of images per class.",
                                         show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write (use it as --model).")],
    model: Annotated[str, typer.Option("--model", help="Base model: efficientnet-lite0/1/2.")] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training images.")] = _TRAIN.epochs,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Backbone learning rate (the head uses 10x).")] = _TRAIN.lr,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Softmax temperature of the "
                                               "NormSoftmax loss (lower: sharper classes).")] = _TRAIN.temperature,
    dim: Annotated[int, typer.Option("--dim", min=1, help="Embedding dimension.")] = _TRAIN.dim,
    unfreeze: Annotated[int, typer.Option("--unfreeze", min=0, help="Train the last N blocks (0: head only; "
                                          "16 or more: the whole network, slowest).")] = _TRAIN.unfreeze,
    train_size: Annotated[int, typer.Option("--train-size", min=32, help="Training resolution in pixels.")] = _TRAIN.train_size,
    augment: Annotated[Augment, typer.Option("--augment", help="Crop and flip the pixels every step, or crop cached "
                                             "feature maps of each image and its mirror (faster, "
                                             "weaker).")] = Augment(_TRAIN.augment),
    batch: Annotated[int, typer.Option("--batch", min=2, help="Images per step.")] = _TRAIN.batch_size,
    val_split: Annotated[ValSplit, typer.Option("--val-split", help="Hold out whole classes (open set), images of "
                                                "every class (closed set), or nothing.")] = ValSplit.classes,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.9, help="Share held out for validation.")] = _TRAIN.val_fraction,
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="Validate on this labelled folder "
                                                     "instead of splitting DATA.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, initialisation and batches.")] = 0,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name [default: the folder name].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Torch device; auto: CUDA when available.")] = Device.cpu,
    threads: TorchThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune an embedding on labelled folders (NormSoftmax) and write a model directory."""
    from lookalike.train.run import train as run_training

    if not data.is_dir():
        fail(f"not a directory: {data}")
    if val_data is not None and not val_data.is_dir():
        fail(f"not a directory: {val_data}")
    config = TrainConfig(model=model, dim=dim, temperature=temperature, epochs=epochs, lr=lr, unfreeze=unfreeze,
                         batch_size=batch, train_size=train_size, augment=augment.value, val_split=val_split.value,
                         val_fraction=val_fraction, seed=seed)
    with _training_progress(quiet or as_json) as progress:
        result, onnx_path, seconds = run_training(data, out, config, val_data, resume, name, device.value, threads,
                                                  progress=progress)
    summary = {"model_dir": str(out), "onnx": str(onnx_path), "seconds": round(seconds, 1),
               "epochs": result.history[-1].epoch, "validation": result.val,
               "untrained_validation": result.history[0].val if result.history[0].epoch == 0 else None}
    if as_json:
        print(json.dumps(summary))
        return
    print(f"wrote {out} ({seconds:.0f} s); use it with --model {out}")


def _validation_text(epoch) -> str:
    """An epoch's validation scores as a progress-line suffix ("" when it was not validated)."""
    return f"  val recall@1 {epoch.val['recall@1']:.3f}  mAP {epoch.val['map']:.3f}" if epoch.val else ""


class _training_progress:
    """A rich progress display for training: caching, then one bar per epoch with loss and validation."""

    def __init__(self, quiet: bool) -> None:
        self.bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err, disable=_no_bar(quiet))
        self.tasks: dict[str, int] = {}
        self.quiet = quiet

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int, info: dict) -> None:
        if stage == "epoch":
            e = info["epoch"]
            loss = f"  loss {e.loss:.3f}" if e.loss is not None else "  (untrained)"
            if not self.quiet:
                err.print(f"epoch {e.epoch}/{total}{loss}{_validation_text(e)}  ({e.seconds:.0f} s)")
            return
        key = f"{stage} {info.get('name', '')} {info.get('epoch', '')}"
        if key not in self.tasks:
            label = f"epoch {info['epoch']}" if stage == "train" else f"caching {info.get('name', '')}"
            self.tasks[key] = self.bar.add_task(label, total=total, info="")
        text = f"loss {info['loss']:.3f}" if "loss" in info else ""
        self.bar.update(self.tasks[key], completed=done, info=text)


@app.command(context_settings={"allow_extra_args": True})
def tune(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Folder with one sub-folder of images per class.",
                                         show_default=False)],
    grid: Annotated[list[str], typer.Option("--grid", metavar="NAME=V1,V2,...", help="NAME=V1,V2,... entries, e.g. --grid lr=1e-3,1e-4 "
                                            "temperature=0.05,0.1 dim=256,512; a single value fixes a setting.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for tune.json, tune.csv and tune.png.")] = Path("tune"),
    model: Annotated[str, typer.Option("--model", help="Base model: efficientnet-lite0/1/2.")] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training images.")] = _TRAIN.epochs,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.05, max=0.9, help="Share of the classes held out for scoring.")] = _TRAIN.val_fraction,
    budget: Annotated[Optional[str], typer.Option("--budget", help="Cap on total time: 600, 600s, 10m, 1h.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, initialisation and batches.")] = 0,
    threads: TorchThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Grid search of training settings, scored on held-out classes; names the best configuration."""
    from rich.table import Table

    from lookalike.train import tune as tn

    if not data.is_dir():
        fail(f"not a directory: {data}")
    points = tn.parse_grid([*grid, *ctx.args])  # "--grid a=1,2 b=3" leaves "b=3" in ctx.args
    seconds = tn.parse_budget(budget)
    if threads:
        import torch

        torch.set_num_threads(threads)
    base = TrainConfig(model=model, epochs=epochs, val_fraction=val_fraction, seed=seed)

    def progress(i: int, n: int, stage: str, done: int, total: int, info: dict) -> None:
        if stage == "epoch" and not (quiet or as_json):
            e = info["epoch"]
            err.print(f"[{i + 1}/{n}] epoch {e.epoch}/{total}{_validation_text(e)}")

    result = tn.run_grid(data, points, out, base, seconds, progress=progress)
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    keys = list(points)
    t = Table(*keys, "val mAP", "val recall@1", "epochs", "seconds", "status", title=f"grid search ({out})",
              title_justify="left")
    best = result.best
    for trial in result.trials:
        style = "bold green" if trial is best else None
        t.add_row(*(str(trial.settings[k]) for k in keys), f"{trial.val['map']:.4f}" if trial.val else "-",
                  f"{trial.val['recall@1']:.4f}" if trial.val else "-", str(trial.epochs_done), f"{trial.seconds:.0f}",
                  trial.status, style=style)
    present.stdout_console().print(t)
    if best is not None:
        print("best: " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in best.settings.items())
              + f"  (val mAP {best.val['map']:.4f}, recall@1 {best.val['recall@1']:.4f})")


ann_app = typer.Typer(no_args_is_help=True, help="Build or check the approximate nearest-neighbour index.")
app.add_typer(ann_app, name="ann")


@ann_app.command("build")
def ann_build(
    kind: Annotated[Optional[AnnSetting], typer.Option("--kind", help="Change the setting first [default: keep]")] = None,
    index_path: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """(Re)build the approximate index of an existing index from its stored vectors."""
    with Index.open(index_path) as idx:
        if kind is not None:
            idx.set_ann(kind.value)
        built = idx.ann(rebuild=True)
        info = built.describe() if built is not None else {"kind": "exact", "ntotal": len(idx)}
    print(json.dumps(info) if as_json else f"{info['kind']} index over {info['ntotal']} images")


@ann_app.command("check")
def ann_check(
    queries: Annotated[int, typer.Option("--queries", min=1, help="Indexed images sampled as queries.")] = 100,
    k: Annotated[int, typer.Option("-k", min=1, help="Recall@k cut-off.")] = 10,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampled queries.")] = 0,
    index_path: IndexOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Recall@k of the approximate index against exact search, with query latency."""
    from lookalike.vectors.ann import check

    with Index.open(index_path) as idx:
        built = idx.ann()
        if built is None:
            fail(f"index {idx.root} uses exact search ({len(idx)} images); build one with: lookalike ann build --kind hnsw")
        ids, vectors = idx.vectors()
        report = check(built, np.asarray(vectors), np.asarray(ids), n_queries=queries, k=k, seed=seed)
    if as_json:
        print(json.dumps(report))
    else:
        print(f"{report['kind']} over {report['ntotal']} images: recall@{k} {report[f'recall@{k}']:.3f} on "
              f"{report['n_queries']} queries, p50 {report['p50_ms']:.2f} ms, p95 {report['p95_ms']:.2f} ms")


class _Command(typer.core.TyperCommand):
    """Help in the usual style: ``IMAGE...`` and ``[FOLDER]`` as their metavars say (not typer's
    ``{IMAGE...}...``) and no ``<list[Path]>`` type tags on arguments."""

    @staticmethod
    def _arguments(params) -> list:
        return [p for p in params if p.param_type_name == "argument" and not getattr(p, "hidden", False)]

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [self.options_metavar, *(p.metavar or p.name.upper() for p in self._arguments(self.get_params(ctx)))]

    def format_options(self, ctx, formatter) -> None:
        params = self.get_params(ctx)
        sections = (("Arguments", [(p.metavar or p.name.upper(), p.help or "") for p in self._arguments(params)]),
                    ("Options", [r for p in params if p.param_type_name == "option" and (r := p.get_help_record(ctx))]))
        for title, rows in sections:
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


for _info in (*app.registered_commands, *ann_app.registered_commands):
    if _info.cls is typer.core.TyperCommand:  # not one that asked for another class
        _info.cls = _Command


def main() -> None:
    """Console-script entry point: user errors become one line and exit code 1.

    Output keeps a file name's own bytes, also where they are not valid UTF-8.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(errors="surrogateescape")
    try:
        app()
    except USER_ERRORS as e:
        say("error", "bold red", str(e))
        sys.exit(1)
    except sqlite3.DatabaseError as e:
        say("error", "bold red", f"the index catalog (index.sqlite) cannot be read: {e}; restore it from a backup, "
            "or start again with --rebuild")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted; what was committed is kept")
        sys.exit(130)


