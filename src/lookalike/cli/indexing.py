"""Turning images into vectors: ``index`` (a folder or shards into an index), ``embed`` (into Parquet
shards, here or on a Ray cluster) and ``models`` (what can embed them)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from lookalike.api import Index
from lookalike.cli.common import (AnnSetting, CollectionOpt, Device, DeviceOpt, FollowLinksOpt, IndexOpt, JsonOpt,
                                  LayerOpt, ModelOpt, QuietOpt, ThreadsOpt, WeightsOpt, check_images, err, fail,
                                  ignored_text, print_json, print_skipped, progress_bar, say, timing)
from lookalike.text import plural
from lookalike.images import DEFAULT_MAX_PIXELS
from lookalike.index.indexer import BATCH
from lookalike.models.registry import REGISTRY


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
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Skip larger images (bomb guard), and "
                                            "files over 8 bytes a pixel of it plus 16 MiB, unread.")] = DEFAULT_MAX_PIXELS,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Delete the index and start again.")] = False,
    follow_links: FollowLinksOpt = False,
    ann: Annotated[Optional[AnnSetting], typer.Option("--ann", help="Approximate search: auto (exact for small "
                                                      "collections), exact, hnsw or ivfpq [default: keep, or auto]")] = None,
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

        model, layer = _shards_model(Shards(shards), model, layer, index_path, rebuild)
    else:
        check_images(folder, index_path, rebuild, follow_links, verbose)
    with Index.open(index_path, model, layer, create=True, rebuild=rebuild, threads=threads, device=device.value,
                    weights=weights) as idx:
        if ann is not None:
            idx.set_ann(ann.value)
        with progress_bar(quiet or as_json) as bar:
            task = bar.add_task("embed", total=None, rate="")

            def advance(n: int) -> None:
                bar.advance(task, n)
                t = bar.tasks[0]
                bar.update(task, rate=f"{t.completed / t.elapsed:.1f} img/s" if t.elapsed else "")

            if shards is not None:
                from lookalike.cluster.from_shards import index_shards

                report = index_shards(idx, shards, on_plan=lambda n: bar.update(task, total=n), on_progress=advance)
            else:
                report = idx.index(folder, batch, workers, max_pixels,
                                   on_plan=lambda n: bar.update(task, total=n), on_progress=advance,
                                   follow_links=follow_links)
    if as_json:
        print_json(report.to_dict())
        return
    print_skipped(report.skipped)
    if verbose:
        for what, paths in (("added", report.added), ("changed", report.changed), ("removed", report.removed_paths)):
            print("".join(f"{what} {p}\n" for p in paths), end="")
    print(f"indexed {report.indexed}, removed {report.removed}, unchanged {report.unchanged}, "
          f"skipped {len(report.skipped)}{ignored_text(report.ignored, ', ignored ')}; "
          f"{plural(report.total, 'image')} in {idx.location} ({timing(report.seconds, report.indexed)})")


def _shards_model(shards, model: str | None, layer: str | None, index_path: Path | None,
                  rebuild: bool) -> tuple[str | None, str | None]:
    """The model and layer to open the index for shards with: those given, else an existing index's own
    (None) unless it is rebuilt, else the shards' own when it is a registry model (a model directory
    must be given)."""
    held = shards.model()
    if held is None:
        fail(f"no shards in {shards.location}")
    if model is None and not rebuild and Index.exists(index_path):
        return None, layer
    if model is None and held["name"] not in REGISTRY:
        fail(f"the shards in {shards.location} hold vectors of {held['name']}, which is not a registry model: "
             "give its model directory or .onnx file with --model")
    return model or held["name"], layer or (None if model else held["layer"])


def _need_cluster(*modules: str) -> None:
    """A one-line error when the ``cluster`` extra is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        fail(f"this needs {', '.join(sorted(set(missing)))}: pip install 'lookalike[cluster]'")


class Engine(str, Enum):
    local = "local"
    ray = "ray"


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
    max_pixels: Annotated[int, typer.Option("--max-pixels", min=1, help="Skip larger images (bomb guard), and "
                                            "files over 8 bytes a pixel of it plus 16 MiB, unread.")] = DEFAULT_MAX_PIXELS,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print the engine's own logs (Ray's).")] = False,
) -> None:
    """Embed SOURCE into Parquet shards, here or on a Ray cluster (needs lookalike[cluster])."""
    _need_cluster("pyarrow", *(["ray"] if engine == Engine.ray else []))
    from lookalike.cluster.embed import embed as run_embed, model_spec
    from lookalike.cluster.sources import is_uri

    if not is_uri(source) and not Path(source).exists():
        fail(f"no such file or folder: {source}")
    spec = model_spec(model, layer, weights)
    with progress_bar(quiet or as_json) as bar:
        task = bar.add_task("embed", total=None, rate="")
        report = run_embed(source, out, spec, engine.value, address, workers, gpus_per_worker, batch,
                           max_pixels=max_pixels, device=device.value, on_plan=lambda n: bar.update(task, total=n),
                           on_progress=lambda n: bar.advance(task, n), verbose=verbose)
    if as_json:
        print_json(report.to_dict())
        return
    print_skipped(report.skipped)
    if report.gone:
        say("note", "bold", f"{plural(len(report.gone), 'file')} the shards hold are no longer under {source} (shards only "
            "add: they stay until `lookalike index FOLDER`, or embed into a fresh --out; --json lists them)")
    d = report.to_dict()
    print(f"embedded {d['embedded']}, unchanged {d['unchanged']}, skipped {len(d['skipped'])}; "
          f"{plural(d['shards'], 'shard')} written to {out} ({timing(report.seconds, report.embedded)}, {engine.value})")


def ingest(
    shards: Annotated[str, typer.Argument(metavar="SHARDS", help="Folder or URI of the Parquet shards of "
                                          "`lookalike embed`.", show_default=False)],
    uri: Annotated[str, typer.Option("--uri", help="The Milvus server (http://host:19530), or a milvus-lite "
                                     ".db file (--engine local only).", show_default=False)],
    collection: CollectionOpt = None,
    engine: Annotated[Engine, typer.Option("--engine", help="local: this process, one shard at a time; ray: one "
                                           "Ray task per shard, --workers at a time.")] = Engine.local,
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto, ray://HOST:10001 "
                                                   "[default: $RAY_ADDRESS, else start one here]")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", min=1, help="Shards written at once with --engine "
                                                   "ray [default: the cluster's CPUs]")] = None,
    delete_gone: Annotated[Optional[str], typer.Option("--delete-gone", metavar="SOURCE", help="Also delete the "
                                                       "files the shards hold under SOURCE that SOURCE no longer "
                                                       "has.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Drop the collection (a damaged one too) and make it "
                                          "again from the shards.")] = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print Ray's own logs (--engine ray).")] = False,
) -> None:
    """Write Parquet shards into a Milvus collection (created for their model): no local index;
    query, show, dedup and serve it with --uri. A re-run writes only what changed."""
    _need_cluster("pyarrow", "pymilvus", *(["ray"] if engine == Engine.ray else []))
    from lookalike.cluster.collection import DEFAULT_COLLECTION
    from lookalike.cluster.ingest import ingest as run_ingest

    with progress_bar(quiet or as_json, "writing") as bar:
        task = bar.add_task("ingest", total=None, rate="")
        report = run_ingest(shards, uri, collection or DEFAULT_COLLECTION, engine.value, workers, address, delete_gone,
                            rebuild=rebuild, on_plan=lambda n: bar.update(task, total=n),
                            on_progress=lambda n: bar.advance(task, n), verbose=verbose)
    if as_json:
        print_json(report.to_dict())
        return
    print_skipped(report.skipped)
    gone = f", deleted {report.gone} gone from {delete_gone}" if delete_gone is not None else ""
    print(f"written {report.written}, unchanged {report.unchanged}, removed {report.removed}, skipped "
          f"{len(report.skipped)}{gone}; {plural(report.total, 'image')} in collection "
          f"{collection or DEFAULT_COLLECTION} at {uri} ({report.seconds:.1f} s, {plural(report.shards, 'shard')}, "
          f"{engine.value})")


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
        print_json(rows)
        return
    for r in rows:
        layers = ", ".join(f"{k} ({v}-d)" + (" default" if k == r["layer"] else "") for k, v in r["layers"].items())
        print(f"{r['name']}: {r['dim']}-d, {r['input_size']}px input; layers {layers}\n"
              f"    weights: {r['weights'] or 'missing'}\n    source: {r['source']}")
