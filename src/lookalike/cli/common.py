"""What the commands share: the options they take alike, one-line messages and errors, progress bars."""

from __future__ import annotations

import json
import re
from collections import Counter
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from lookalike.index import approximate
from lookalike.api import Index
from lookalike import images
from lookalike.images import left_out_summary, list_images
from lookalike.text import plural
from lookalike.vectors import MetricName

err = Console(stderr=True, markup=False)  # paths and messages print exactly as they are

AnnSetting = Enum("AnnSetting", {name: name for name in approximate.SETTINGS}, type=str)
IndexOpt = Annotated[Optional[Path], typer.Option("--index", show_default=False,
                                                   help="Index folder [default: $LOOKALIKE_INDEX, else per-user data dir]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Registry name, trained model dir or .onnx file.")]
LayerOpt = Annotated[Optional[str], typer.Option("--layer", help="Feature layer of the model.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", min=1, help="ONNX Runtime threads [default: all cores]")]
FollowLinksOpt = Annotated[bool, typer.Option("--follow-links", help="Also include what symbolic links lead to "
                                              "outside the folder [default: such links are left out, with a reason]")]
VerboseLeftOutOpt = Annotated[bool, typer.Option("--verbose", "-v", help="List what was left out of the folder, "
                                                 "each with its reason.")]
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


UriOpt = Annotated[Optional[str], typer.Option("--uri", help="Instead of --index: the Milvus server "
                                               "(http://host:19530) or milvus-lite .db file holding the collection "
                                               "(filled by `lookalike ingest`; the cluster extra).", show_default=False)]
CollectionOpt = Annotated[Optional[str], typer.Option("--collection", help="With --uri: the collection "
                                                      "[default: lookalike]", show_default=False)]


def open_index(index_path: Path | None, uri: str | None, collection: str | None, **options) -> Index:
    """The index folder ``--index`` (:meth:`Index.open` with ``options``), or with ``--uri`` the Milvus
    collection ``--collection`` instead (no index folder; ``--index`` and ``$LOOKALIKE_INDEX`` unused)."""
    if uri is None:
        if collection is not None:
            fail("--collection goes with --uri")
        return Index.open(index_path, **options)
    try:
        from lookalike.cluster.collection import open_index as open_collection
    except ImportError:
        fail("--uri needs the cluster extra: pip install 'lookalike[cluster]'")
    return open_collection(uri, collection, **options)


MetricOpt = Annotated[MetricName, typer.Option("--metric", help="cosine (1 - cosine similarity) or l2 (Euclidean "
                                               "distance) on the raw features.")]


_SURROGATE = re.compile("[\ud800-\udfff]")


def print_json(value) -> None:
    """Print ``value`` as one line of JSON that is valid UTF-8 whatever the file names in it: the bytes
    of a name that are not UTF-8 (lone surrogates to Python) are written as ``\\udcXX`` escapes, which
    ``json.loads`` reads back as the same name (``os.fsencode`` gives its bytes); other text stays as is."""
    print(_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(value, ensure_ascii=False)))


def print_skipped(skipped) -> None:
    """Each skipped file, ``(path, reason)``, on a line of stderr."""
    for path, reason in skipped:
        err.print(f"skipped {path}: {reason}", highlight=False, soft_wrap=True)


def say(label: str, style: str, message: str) -> None:
    """Print ``label: message`` on stderr, the label styled, the message exactly as it is."""
    err.print(Text.assemble((f"{label}:", style), " ", message), soft_wrap=True)


def fail(message: str) -> None:
    """Print a one-line error and exit 1."""
    say("error", "bold red", message)
    raise typer.Exit(1)


def no_bar(quiet: bool) -> bool:
    """Progress bars only on a terminal: a log file or pipe gets no bar remnants."""
    return quiet or not err.is_terminal


def progress_bar(quiet: bool, what: str = "embedding") -> Progress:
    """The progress bar (``what``, count, rate, time left) on stderr."""
    return Progress(TextColumn(f"[bold]{what}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=err, disable=no_bar(quiet))


def check_folder(folder: Path, follow_links: bool = False, verbose: bool = False,
                 note: bool = True) -> tuple[str | None, list[tuple[str, str]]]:
    """List FOLDER as indexing will and say on stderr what the listing leaves out (symbolic links to
    outside it, ...): a count by reason and how to include them, and with ``verbose`` each path and
    reason; without ``note``, only when FOLDER holds no image (the caller lists them otherwise).
    Returns the message that FOLDER holds no image (None when it holds one) and the (path, reason)
    of every entry left out."""
    images.folder(folder)
    ignored: Counter = Counter()
    left_out: list[tuple[str, str]] = []
    found = False
    for _ in list_images(folder, ignored, left_out, follow_links):
        found = True
    if found and not note:
        return None, left_out
    if verbose:
        for path, reason in left_out:
            err.print(f"left out {path}: {reason}", soft_wrap=True)
    summary = left_out_summary(left_out)
    if found:
        if summary:
            say("note", "bold", f"left out under {folder}: {summary}")
        return None, left_out
    return (f"no images under {folder}{ignored_text(ignored, ': ignored ')}"
            + (f"; left out: {summary}" if summary else "")), left_out


def check_images(folder: Path, index_path: Path | None, rebuild: bool = False, follow_links: bool = False,
                 verbose: bool = False) -> None:
    """``index``'s check of FOLDER (:func:`check_folder`, whose paths it lists as skipped itself): no
    images is an error where it would create a new index (also anew, with ``rebuild``), else a warning."""
    nothing, _ = check_folder(folder, follow_links, verbose, note=False)
    if nothing is None:
        return
    if rebuild or not Index.exists(index_path):
        fail(f"{nothing}; no index created")
    say("warning", "bold yellow", nothing)


def timing(seconds: float, images: int) -> str:
    """How long a run took, with its rate when it embedded anything (``2.0 s, 50.0 img/s``; ``0.1 s``)."""
    return f"{seconds:.1f} s" + (f", {images / seconds:.1f} img/s" if images and seconds > 0 else "")


def ignored_text(ignored: Counter, prefix: str) -> str:
    """``prefix`` and the count of files that are not images by extension
    (``3 other files (2 .txt, 1 without extension)``), or "" when there are none."""
    if not ignored:
        return ""
    kinds = ", ".join(f"{n} {ext or 'without extension'}"
                      for ext, n in sorted(ignored.items(), key=lambda kv: (-kv[1], not kv[0], kv[0])))
    return f"{prefix}{plural(sum(ignored.values()), 'other file')} ({kinds})"
