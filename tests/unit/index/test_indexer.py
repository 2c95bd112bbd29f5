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
from lookalike.index.indexer import bounded_map, index_folder, prepare
from lookalike.models.registry import resolve
from lookalike.index.store import Store, StoreError


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
    report = index_folder(store, embedder, photos, batch_size=2, workers=2, on_plan=plan.append,
                          on_progress=progress.append)
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
    index_folder(store, embedder, photos)
    ids_before = {r.path: r.id for r in store.records().values()}
    os.utime(photos / "a.png", ns=(time.time_ns(), time.time_ns() + 10**9))  # same bytes, new mtime
    save(photos / "b.png", (255, 255, 255))  # new bytes
    (photos / "c.png").unlink()
    embedder.batches.clear()
    report = index_folder(store, embedder, photos)
    assert (report.indexed, report.unchanged, report.removed, report.total) == (1, 1, 1, 2)
    assert report.changed == [str(photos / "b.png")] and report.removed_paths == [str(photos / "c.png")]
    assert embedder.batches == [1]  # only the changed file went through the model
    records = store.records()
    assert records[str(photos / "a.png")].id == ids_before[str(photos / "a.png")]
    assert records[str(photos / "b.png")].id != ids_before[str(photos / "b.png")]
    assert vectors_by_path(store)[str(photos / "b.png")] == (1.0, 1.0, 1.0)
    again = index_folder(store, embedder, photos)
    assert (again.indexed, again.unchanged, again.removed) == (0, 2, 0)


def test_prepare_keeps_the_files_size_not_the_reduced_decode(tmp_path):
    Image.new("RGB", (1000, 600), (90, 120, 30)).save(tmp_path / "big.jpg", quality=90)
    pre = Preprocess()
    pre.decode_size = 224  # a JPEG is decoded at 1/2 scale, 500 x 300
    item = prepare(str(tmp_path / "big.jpg"), 1, 2, pre, max_pixels=10**6)
    assert (item.width, item.height, item.error) == (1000, 600, None)


def test_load_hashes_decodes_and_gives_a_reason(tmp_path):
    save(tmp_path / "x.png", (10, 20, 30), size=(7, 5))
    item = prepare(str(tmp_path / "x.png"), 1, 2, Preprocess(), max_pixels=100)
    assert (item.width, item.height, item.error) == (7, 5, None)
    assert item.hash == content_hash((tmp_path / "x.png").read_bytes())
    np.testing.assert_allclose(item.pixels, [10, 20, 30])
    too_big = prepare(str(tmp_path / "x.png"), 1, 2, Preprocess(), max_pixels=20)
    assert too_big.pixels is None and "too large" in too_big.error
    missing = prepare(str(tmp_path / "gone.png"), 1, 2, Preprocess(), max_pixels=100)
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


@pytest.fixture
def photos(tmp_path):
    """Five pictures of one size and five colours, as BMP (so equal sizes mean equal file sizes)."""
    root = tmp_path / "photos"
    root.mkdir()
    for i, c in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (0, 200, 200)]):
        save(root / f"{i}.bmp", c)
    return root


def run(store, photos, **options):
    """One update with batches of 2; the report, the embedder, and the plan and progress calls."""
    embedder, calls = MeanColourEmbedder(), {"plan": [], "progress": []}
    report = index_folder(store, embedder, photos, batch_size=2, workers=2, on_plan=calls["plan"].append,
                    on_progress=calls["progress"].append, **options)
    return report, embedder, calls


def test_catalog_rows_describe_the_files(store, photos):
    (photos / "notes.txt").write_text("not a picture")
    report, _, _ = run(store, photos)
    assert 0 < report.seconds < 60 and report.images_per_second == pytest.approx(5 / report.seconds)
    assert report.ignored == {".txt": 1}
    for path, record in store.records().items():
        st = os.stat(path)
        assert (record.size, record.mtime_ns, record.status, record.error) == (st.st_size, st.st_mtime_ns, "ok", None)
        assert record.hash == content_hash(open(path, "rb").read())
    ids, _ = store.vectors()
    assert {(i["width"], i["height"]) for i in map(store.info, ids.tolist())} == {(12, 8)}


def test_a_same_size_edit_in_place_is_embedded_again(store, photos):
    run(store, photos)
    edited = photos / "2.bmp"
    before = edited.stat()
    save(edited, (10, 20, 30))  # new bytes, same size
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # whatever the clock's granularity
    assert edited.stat().st_size == before.st_size
    report, embedder, calls = run(store, photos)
    assert (report.indexed, report.unchanged, report.changed, calls["plan"]) == (1, 4, [str(edited)], [1])
    np.testing.assert_allclose(vectors_by_path(store)[str(edited)], np.array([10, 20, 30]) / 255, atol=1e-4)


def test_a_touched_file_is_read_once_and_its_new_mtime_remembered(store, photos):
    run(store, photos)
    touched = photos / "0.bmp"
    os.utime(touched, ns=(0, touched.stat().st_mtime_ns + 10**9))
    report, embedder, calls = run(store, photos)
    assert (report.indexed, report.unchanged, embedder.batches, calls["plan"]) == (0, 5, [], [1])
    assert sum(calls["progress"]) == 1  # read and hashed, not embedded
    assert store.records()[str(touched)].mtime_ns == touched.stat().st_mtime_ns
    report, _, calls = run(store, photos)
    assert (report.unchanged, calls["plan"]) == (5, [0])  # not read again


def test_broken_files_are_remembered_and_retried_once_changed(store, photos):
    broken = photos / "broken.jpg"
    broken.write_bytes(b"not a picture at all")
    report, _, _ = run(store, photos)
    [(path, reason)] = report.skipped
    assert path == str(broken) and "not an image" in reason
    record = store.records()[str(broken)]
    assert (record.status, record.error, record.hash) == ("error", reason, None)
    again, _, calls = run(store, photos)  # known broken: reported again without being read
    assert again.skipped == [(str(broken), reason)] and calls["plan"] == [0] and again.total == 5
    save(broken, (1, 2, 3))  # mended
    fixed, _, _ = run(store, photos)
    assert (fixed.indexed, fixed.skipped, fixed.added, fixed.total) == (1, [], [str(broken)], 6)
    assert store.records()[str(broken)].status == "ok"


def test_more_errors_than_a_batch_are_all_recorded(store, photos):
    for i in range(5):
        (photos / f"empty{i}.png").write_bytes(b"")
    report, embedder, calls = run(store, photos)
    assert (report.indexed, len(report.skipped), report.total, sum(calls["progress"])) == (5, 5, 5, 10)
    assert sorted(embedder.batches) == [1, 2, 2]
    assert sum(r.status == "error" for r in store.records().values()) == 5


def test_an_update_touches_only_its_own_folder(store, photos, tmp_path):
    sibling = tmp_path / "photos2"  # its path starts with the other folder's
    sibling.mkdir()
    save(sibling / "x.bmp", (9, 9, 9))
    run(store, sibling)
    report, _, _ = run(store, photos)
    assert (report.indexed, report.removed, report.total) == (5, 0, 6)
    (photos / "4.bmp").unlink()
    report, _, _ = run(store, photos / "0.bmp")  # a file is a root of its own: nothing else is gone
    assert (report.indexed, report.removed, report.unchanged) == (0, 0, 1)
    report, _, _ = run(store, photos)
    assert (report.removed, report.removed_paths, report.total) == (1, [str(photos / "4.bmp")], 5)
    assert str(sibling / "x.bmp") in store.records()


def test_pixel_limit_skips_big_pictures(store, photos):
    save(photos / "small.bmp", (1, 1, 1), size=(4, 4))
    report, _, _ = run(store, photos, max_pixels=12 * 8 - 1)
    assert report.added == [str(photos / "small.bmp")] and len(report.skipped) == 5
    assert all("too large" in reason for _, reason in report.skipped)


def test_a_picture_refused_by_the_pixel_limit_is_indexed_once_the_limit_is_raised(store, photos):
    """The limit is the run's, not the file's: an unchanged file it refused is checked again (its header
    only, while still too large); a file that is no image is not read again until it changes."""
    (photos / "broken.bmp").write_bytes(b"not a picture")
    report, _, calls = run(store, photos, max_pixels=12 * 8 - 1)
    assert (report.indexed, len(report.skipped), calls["plan"]) == (0, 6, [6])
    again, embedder, calls = run(store, photos, max_pixels=12 * 8 - 1)
    assert (again.indexed, sorted(again.skipped), calls["plan"]) == (0, sorted(report.skipped), [5])
    assert embedder.batches == []
    raised, _, calls = run(store, photos)
    assert (raised.indexed, raised.added, calls["plan"]) == (5, [str(photos / f"{i}.bmp") for i in range(5)], [5])
    assert [p for p, _ in raised.skipped] == [str(photos / "broken.bmp")] and store.count() == 5


def test_report_dictionary():
    from collections import Counter

    from lookalike.index.indexer import IndexReport

    report = IndexReport(indexed=3, removed=1, unchanged=2, skipped=[("/a", "bad")], total=5, seconds=1.10049,
                         added=["/n"], changed=["/c"], removed_paths=["/r"], ignored=Counter({".txt": 2, ".json": 1}))
    assert report.to_dict() == {
        "indexed": 3, "removed": 1, "unchanged": 2, "skipped": [{"path": "/a", "reason": "bad"}], "total": 5,
        "seconds": 1.1, "images_per_second": 2.73, "paths": {"added": ["/n"], "changed": ["/c"], "removed": ["/r"]},
        "ignored": {".json": 1, ".txt": 2}}
    assert IndexReport().images_per_second == 0.0


def test_a_file_gone_between_listing_and_reading_is_skipped_with_a_reason(store, tmp_path, monkeypatch):
    from lookalike.index import indexer

    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(200, 0, 0), (0, 200, 0), (0, 0, 200)]):
        save(folder / f"p{i}.png", colour)
    listed = indexer.list_images

    def deleting_one(*args):  # p1.png is removed right after it is listed, before it is read
        for path in listed(*args):
            if path.endswith("p1.png"):
                os.remove(path)
            yield path

    monkeypatch.setattr(indexer, "list_images", deleting_one)
    report = index_folder(store, MeanColourEmbedder(), folder)
    gone = str(folder / "p1.png")
    assert report.skipped == [(gone, "cannot read file: No such file or directory")]
    assert report.indexed == 2 and sorted(vectors_by_path(store)) == [str(folder / "p0.png"), str(folder / "p2.png")]


def test_a_read_only_index_refuses_changes_in_one_line_but_not_an_unchanged_folder(store, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    save(folder / "a.png", (10, 20, 30))
    index_folder(store, MeanColourEmbedder(), folder)
    store.readonly = True  # as Store.open sets it for a catalog or folder it cannot write
    assert index_folder(store, MeanColourEmbedder(), folder).unchanged == 1  # nothing to change: answered
    save(folder / "b.png", (30, 20, 10))
    with pytest.raises(StoreError) as refused:  # a new file alone
        index_folder(store, MeanColourEmbedder(), folder)
    assert str(refused.value) == f"index {store.root} is read-only: cannot add 1 new or changed files and remove 0"
    os.remove(folder / "a.png")
    with pytest.raises(StoreError) as refused:
        index_folder(store, MeanColourEmbedder(), folder)
    assert str(refused.value) == f"index {store.root} is read-only: cannot add 1 new or changed files and remove 1"


def test_a_link_leading_out_of_the_folder_is_left_out_with_a_reason_unless_followed(store, tmp_path):
    folder, outside = tmp_path / "photos", tmp_path / "elsewhere"
    folder.mkdir(), outside.mkdir()
    save(folder / "a.png", (10, 20, 30))
    save(outside / "b.png", (30, 20, 10))
    os.symlink(outside / "b.png", folder / "b.png")
    report = index_folder(store, MeanColourEmbedder(), folder)
    assert report.indexed == 1 and [p for p, _ in report.skipped] == [str(folder / "b.png")]
    assert "outside" in report.skipped[0][1]
    assert index_folder(store, MeanColourEmbedder(), folder, follow_links=True).indexed == 1
    assert sorted(vectors_by_path(store)) == [str(folder / "a.png"), str(folder / "b.png")]


def test_the_sidecar_keeps_what_it_made_from_each_new_files_bytes_by_content(store, tmp_path):
    from lookalike.dedup.phash import HashStore, image_hashes

    folder = tmp_path / "photos"
    folder.mkdir()
    save(folder / "a.png", (200, 30, 30), size=(40, 24))
    Image.effect_mandelbrot((48, 32), (-2, -1, 1, 1), 50).convert("RGB").save(folder / "b.png")
    (folder / "broken.png").write_bytes(b"not a png")
    hashes = HashStore(tmp_path / "index")
    index_folder(store, MeanColourEmbedder(), folder, sidecar=hashes)
    contents = [content_hash((folder / n).read_bytes()) for n in ("a.png", "b.png")]
    stored, ok = HashStore(tmp_path / "index").get(contents, [None, None])  # read back, nothing computed
    assert ok.tolist() == [True, True]
    np.testing.assert_array_equal(stored, [image_hashes(str(folder / n)) for n in ("a.png", "b.png")])


def test_a_known_broken_file_listed_first_does_not_hide_the_files_after_it(store, tmp_path):
    folder = tmp_path / "listed"
    folder.mkdir()
    (folder / "a_broken.jpg").write_bytes(b"not a picture at all")  # sorted before the pictures
    save(folder / "b.png", (255, 0, 0))
    save(folder / "c.png", (0, 0, 255))
    first = index_folder(store, MeanColourEmbedder(), folder)
    assert (first.indexed, len(first.skipped)) == (2, 1)
    again = index_folder(store, MeanColourEmbedder(), folder)  # the broken file is skipped unread
    assert (again.indexed, again.unchanged, again.removed, again.removed_paths) == (0, 2, 0, [])
    assert [p for p, _ in again.skipped] == [str(folder / "a_broken.jpg")]
    assert sorted(store.records()) == [str(folder / n) for n in ("a_broken.jpg", "b.png", "c.png")]


def test_prepare_gives_its_reader_the_pixel_limit(tmp_path):
    save(tmp_path / "x.png", (10, 20, 30), size=(7, 5))
    asked = []

    def reader(path, max_pixels):
        asked.append((path, max_pixels))
        with open(path, "rb") as f:
            return f.read()

    item = prepare(str(tmp_path / "x.png"), 1, 2, Preprocess(), max_pixels=123, read=reader)
    assert asked == [(str(tmp_path / "x.png"), 123)] and item.error is None


def test_prepare_refuses_a_picture_over_the_limit_even_when_its_reader_lets_it_through(tmp_path):
    save(tmp_path / "x.png", (10, 20, 30), size=(7, 5))  # 35 pixels

    def careless(path, max_pixels):  # reads whatever it is given
        with open(path, "rb") as f:
            return f.read()

    item = prepare(str(tmp_path / "x.png"), 1, 2, Preprocess(), max_pixels=20, read=careless)
    assert item.pixels is None and item.error.startswith("too large: 7x5 pixels")


def test_prepare_hands_the_preprocessing_a_jpeg_decoded_at_its_draft_size(tmp_path):
    Image.new("RGB", (512, 512), (90, 120, 30)).save(tmp_path / "big.jpg", quality=90)
    seen = []

    class Drafted(Preprocess):
        decode_size = 64

        def __call__(self, img):
            seen.append(img.size)
            return super().__call__(img)

    item = prepare(str(tmp_path / "big.jpg"), 1, 2, Drafted(), max_pixels=10**6)
    # JPEG's DCT scaling goes down to 1/8: 512 / 8 = 64 is the smallest size of at least 64
    assert seen == [(64, 64)] and (item.width, item.height, item.error) == (512, 512, None)
