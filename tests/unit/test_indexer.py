"""The scan -> decode -> embed -> store pipeline with a stand-in embedder (no model)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from lookalike.images import content_hash
from lookalike.indexer import bounded_map, load, update
from lookalike.models.registry import resolve
from lookalike.store import Store


class Preprocess:
    decode_size = None

    def __call__(self, img):
        return np.asarray(img, np.float32).mean((0, 1))  # the mean colour stands in for pixels


class MeanColourEmbedder:
    """Embeds the preprocessed mean colour as is; records every batch size."""

    preprocess = Preprocess()

    def __init__(self) -> None:
        self.batches = []

    def embed(self, batch):
        self.batches.append(len(batch))
        return batch / 255.0


def save(path, colour, size=(12, 8)):
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def store(tmp_path):
    spec = resolve()
    with Store.create(tmp_path / "index", {**spec.identity(), "dim": 3}, ref=spec.name) as s:
        yield s


def vectors_by_path(store):
    ids, vectors = store.vectors()
    return {p: tuple(np.round(v, 4)) for p, v in zip(store.paths(ids), np.asarray(vectors))}


def test_new_files_are_embedded_in_batches_and_broken_ones_skipped(store, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for i, c in enumerate(colours):
        save(photos / f"{i}.png", c)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    embedder, plan, progress = MeanColourEmbedder(), [], []
    report = update(store, embedder, photos, batch_size=2, workers=2, on_plan=plan.append, on_progress=progress.append)
    assert (report.indexed, report.unchanged, report.removed, report.total) == (5, 0, 0, 5)
    assert [p for p, _ in report.skipped] == [str(photos / "broken.jpg")] and report.skipped[0][1]
    assert sorted(embedder.batches) == [1, 2, 2] and plan == [6] and sum(progress) == 6
    assert sorted(report.added) == sorted(str(photos / f"{i}.png") for i in range(5)) and report.changed == []
    assert vectors_by_path(store)[str(photos / "3.png")] == (1.0, 1.0, 0.0)
    assert store.records()[str(photos / "broken.jpg")].status == "error"


def test_unchanged_touched_changed_and_removed_files(store, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, c in (("a", (255, 0, 0)), ("b", (0, 255, 0)), ("c", (0, 0, 255))):
        save(photos / f"{name}.png", c)
    embedder = MeanColourEmbedder()
    update(store, embedder, photos)
    ids_before = {r.path: r.id for r in store.records().values()}
    os.utime(photos / "a.png", ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    save(photos / "b.png", (255, 255, 255))  # new bytes
    (photos / "c.png").unlink()
    embedder.batches.clear()
    report = update(store, embedder, photos)
    assert (report.indexed, report.unchanged, report.removed, report.total) == (1, 1, 1, 2)
    assert report.changed == [str(photos / "b.png")] and report.removed_paths == [str(photos / "c.png")]
    assert embedder.batches == [1]  # only the changed file went through the model
    records = store.records()
    assert records[str(photos / "a.png")].id == ids_before[str(photos / "a.png")]
    assert records[str(photos / "b.png")].id != ids_before[str(photos / "b.png")]
    assert vectors_by_path(store)[str(photos / "b.png")] == (1.0, 1.0, 1.0)
    again = update(store, embedder, photos)
    assert (again.indexed, again.unchanged, again.removed) == (0, 2, 0)


def test_load_hashes_decodes_and_gives_a_reason(tmp_path):
    save(tmp_path / "x.png", (10, 20, 30), size=(7, 5))
    item = load(str(tmp_path / "x.png"), 1, 2, Preprocess(), max_pixels=100)
    assert (item.width, item.height, item.error) == (7, 5, None)
    assert item.hash == content_hash((tmp_path / "x.png").read_bytes())
    np.testing.assert_allclose(item.pixels, [10, 20, 30])
    too_big = load(str(tmp_path / "x.png"), 1, 2, Preprocess(), max_pixels=20)
    assert too_big.pixels is None and "too large" in too_big.error
    missing = load(str(tmp_path / "gone.png"), 1, 2, Preprocess(), max_pixels=100)
    assert missing.pixels is None and missing.error


def test_bounded_map_keeps_order_and_a_bounded_window():
    running, most, lock = 0, 0, threading.Lock()

    def work(i, delay):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(delay)
        with lock:
            running -= 1
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        out = list(bounded_map(pool, work, ((i, 0.01 * (i % 3)) for i in range(20)), window=3))
    assert out == list(range(20)) and most <= 3
