"""The scan -> decode -> embed -> store pipeline that makes an index match a folder.

Files are read, hashed, decoded and preprocessed in a thread pool (Pillow and NumPy release the
GIL) while ONNX Runtime embeds the previous batch; each batch is committed on its own, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from lookalike.images import (DEFAULT_MAX_PIXELS, TOO_LARGE, ImageError, content_hash, decode_sized, list_images,
                              read_file)
from lookalike.models.embedder import Embedder
from lookalike.index.store import Entry, Store, StoreError

# Images per model run and per commit. On an idle 2-core machine, with the batch split across
# one-thread sessions and contiguous preprocessing, EfficientNet-Lite0 indexed 96-107 img/s at
# batch 16 against 93-101 at 8 and 88-96 at 4 (600 JPEGs, three alternating rounds); batch 32
# was slower on a shared machine (90 against 115-129 img/s at 4-8).
BATCH = 16


@dataclass
class IndexReport:
    """What one ``index`` run did; :meth:`to_dict` is the ``index --json`` shape.

    ``added`` and ``changed`` list the paths embedded (new files, and files whose content changed),
    ``removed_paths`` those dropped; ``ignored`` counts the files that are not images by extension.
    """

    indexed: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total: int = 0
    seconds: float = 0.0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)

    @property
    def images_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"indexed": self.indexed, "removed": self.removed, "unchanged": self.unchanged,
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "total": self.total,
                "seconds": round(self.seconds, 3), "images_per_second": round(self.images_per_second, 2),
                "paths": {"added": self.added, "changed": self.changed, "removed": self.removed_paths},
                "ignored": dict(sorted(self.ignored.items()))}


class Sidecar(Protocol):
    """Data kept per content beside the index, made from each new file's bytes in the decode threads
    (:class:`lookalike.dedup.phash.HashStore`: the dihedral hashes dedup's candidates need)."""

    def make(self, data: bytes) -> object | None:
        """What to keep for these bytes (None: nothing), in a decode thread."""

    def save(self, made: dict[str, object]) -> object:
        """Keep what :meth:`make` gave, by content hash, once its batch is committed."""


@dataclass
class Decoded:
    """One file read, hashed, decoded and preprocessed (``pixels``), or the reason it could not be."""

    path: str
    size: int
    mtime_ns: int
    hash: str | None = None
    width: int = 0
    height: int = 0
    pixels: np.ndarray | None = None
    error: str | None = None
    extra: object | None = None


def prepare(path: str, size: int, mtime_ns: int, preprocess, max_pixels: int,
            read: Callable[[str, int], bytes] = read_file, sidecar: Sidecar | None = None) -> Decoded:
    """Read ``path`` with ``read`` (given ``max_pixels``: :func:`~lookalike.images.read_file`), hash
    it, decode and preprocess it (and make its ``sidecar`` data): the one path from file to model
    input that every indexing engine uses."""
    item = Decoded(path, size, mtime_ns)
    try:
        data = read(path, max_pixels)
        item.hash = content_hash(data)
        img, (item.width, item.height) = decode_sized(data, preprocess.decode_size, max_pixels)
        item.pixels = preprocess(img)
        item.extra = sidecar.make(data) if sidecar is not None else None
    except ImageError as e:
        item.error = str(e)
    return item


def bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``pool.map`` that keeps at most ``window`` tasks in flight, yielding results in order."""
    pending: deque[Future] = deque()
    for item in items:
        pending.append(pool.submit(fn, *item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def index_folder(store: Store, embedder: Embedder, root: str | os.PathLike, batch_size: int = BATCH,
                 workers: int = 2, max_pixels: int = DEFAULT_MAX_PIXELS, on_plan: Callable[[int], None] | None = None,
                 on_progress: Callable[[int], None] | None = None, follow_links: bool = False,
                 sidecar: Sidecar | None = None) -> IndexReport:
    """Make the part of ``store`` under ``root`` match the image files there.

    New and changed files are embedded, files gone from disk are removed, unchanged ones are left
    alone; an unchanged file that could not be read is skipped again unread, unless it was refused
    for its size (the limit may have been raised since). ``on_plan(n)`` is told how many files need
    decoding, ``on_progress(n)`` how many were done.
    Symbolic links leading outside ``root`` are left out (with a reason) unless ``follow_links``.
    ``sidecar`` data is made for each embedded file and saved after its batch is committed.
    """
    started = time.perf_counter()
    root = os.path.abspath(os.fspath(root))
    report = IndexReport()
    known = store.records(under=root)
    todo: list[tuple[str, int, int]] = []
    seen: set[str] = set()
    for path in list_images(root, report.ignored, report.skipped, follow_links):
        seen.add(path)
        try:
            st = os.stat(path)
        except OSError as e:
            report.skipped.append((path, f"cannot read file: {e.strerror or e}"))
            continue
        record = known.get(path)
        if record is not None and record.size == st.st_size and record.mtime_ns == st.st_mtime_ns:
            if record.status == "ok":
                report.unchanged += 1
                continue
            if not (record.error or "").startswith(TOO_LARGE):  # a size limit is this run's: checked again
                report.skipped.append((path, record.error or "unreadable"))
                continue
        todo.append((path, st.st_size, st.st_mtime_ns))
    gone = [p for p in known if p not in seen]
    if store.readonly and (todo or gone):
        raise StoreError(f"index {store.root} is read-only: cannot add {len(todo)} new or changed files "
                         f"and remove {len(gone)}")
    if gone:
        report.removed = store.remove(gone)
        report.removed_paths = gone
    if on_plan:
        on_plan(len(todo))

    entries: list[Entry] = []
    pending: list[Decoded] = []
    errors: list[tuple[str, int, int, str]] = []

    def flush() -> None:
        if pending:
            vectors = embedder.embed(np.stack([d.pixels for d in pending]))
            entries.extend(Entry(d.path, d.size, d.mtime_ns, d.hash, d.width, d.height, v)
                           for d, v in zip(pending, vectors))
        if entries or errors:
            store.put(entries, errors)
        if sidecar is not None and pending:
            sidecar.save({d.hash: d.extra for d in pending if d.extra is not None})
        for d in pending:
            record = known.get(d.path)
            (report.changed if record is not None and record.status == "ok" else report.added).append(d.path)
        report.indexed += len(entries)
        report.skipped.extend((path, reason) for path, _, _, reason in errors)
        if on_progress:
            on_progress(len(entries) + len(errors))
        pending.clear(), entries.clear(), errors.clear()

    preprocess = embedder.preprocess
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = ((path, size, mtime, preprocess, max_pixels, read_file, sidecar) for path, size, mtime in todo)
        for item in bounded_map(pool, prepare, jobs, window=2 * batch_size):
            record = known.get(item.path)
            if item.error is not None:
                errors.append((item.path, item.size, item.mtime_ns, item.error))
            elif record is not None and record.status == "ok" and record.hash == item.hash:
                store.touch(item.path, item.size, item.mtime_ns)
                report.unchanged += 1
                if on_progress:
                    on_progress(1)
            else:
                pending.append(item)
            if len(pending) >= batch_size or len(errors) >= batch_size:
                flush()
        flush()
    report.total = store.count()
    store.vectors()  # checks the vector cache, and repairs it when it is damaged
    report.seconds = time.perf_counter() - started
    return report
