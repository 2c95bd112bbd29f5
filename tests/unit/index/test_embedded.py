"""An index folder as a Collection (index/embedded.py), its images embedded by a stand-in
(helpers.stand_in_index: no model): indexing a folder with each option passed on, the files' hashes
stored and the approximate index brought up to date at once; catalog look-ups in the order asked;
the files left out, each with its reason; one searcher per catalog generation."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from helpers import stand_in_index
from lookalike.dedup.phash import HashStore
from lookalike.images import ImageError, content_hash
from lookalike.index.approximate import ANN_FILE
from lookalike.index.store import Entry


def pictures(folder, n: int, start: int = 0, size=(24, 16)) -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + n):
        paths.append(folder / f"p{i:02d}.png")
        Image.new("RGB", size, (30 * i % 256, 200 - 11 * i, 90)).save(paths[-1])
    return paths


def test_indexing_a_folder_passes_on_every_option_stores_hashes_and_brings_the_ann_up_to_date(tmp_path):
    folder = tmp_path / "photos"
    mine = pictures(folder, 5)
    Image.new("RGB", (80, 80), "red").save(folder / "big.png")  # 6,400 pixels
    outside = pictures(tmp_path / "elsewhere", 2, start=10)
    (folder / "linked").symlink_to(tmp_path / "elsewhere")
    with stand_in_index(tmp_path / "ix") as idx:
        idx.set_ann("hnsw")
        embedder = idx.embedder
        batches, plans, progress = [], [], []
        real = embedder.embed
        embedder.embed = lambda batch: batches.append(len(batch)) or real(batch)
        report = idx.index(folder, batch_size=2, workers=1, max_pixels=6399, on_plan=plans.append,
                           on_progress=progress.append, follow_links=True)
        assert (tmp_path / "ix" / ANN_FILE).exists()  # built by indexing, before any query
        assert idx.index_type == "hnsw"
        got = sorted(report.added)
        assert got == sorted(str(p) for p in mine + [folder / "linked" / p.name for p in outside])
        assert report.skipped == [(str(folder / "big.png"), "too large: 80x80 pixels exceeds the limit of 6399")]
        assert plans == [8] and sum(progress) == 8
        assert max(batches) == 2 and sum(batches) == 7
        contents = [content_hash(p.read_bytes()) for p in mine + outside]
        _, stored = HashStore(tmp_path / "ix").get(contents, [None] * len(contents))  # None: nothing recomputed
        assert stored.all()
    with stand_in_index(tmp_path / "ix2") as idx:
        idx.collection.index(folder, idx.embedder, 32, 2, 6400)  # links not followed unless asked
        ids, skipped = idx.members()
        assert sorted(idx.paths(ids)) == sorted(map(str, mine + [folder / "big.png"])) and skipped == []
        assert not (tmp_path / "ix2" / ANN_FILE).exists()  # exact search: no approximate index


def test_catalog_look_ups_answer_in_the_order_asked(tmp_path):
    folder = tmp_path / "photos"
    paths = pictures(folder, 3)
    with stand_in_index(tmp_path / "ix") as idx:
        idx.index(folder)
        ids, _ = idx.members()
        by_path = dict(zip(idx.paths(ids), ids))
        order = [by_path[str(paths[2])], by_path[str(paths[0])]]
        columns = idx.columns(order)
        assert columns["path"] == [str(paths[2]), str(paths[0])]
        assert columns["size"] == [os.path.getsize(paths[2]), os.path.getsize(paths[0])]
        assert columns["hash"] == [content_hash(paths[2].read_bytes()), content_hash(paths[0].read_bytes())]
        assert (columns["width"], columns["height"]) == ([24, 24], [16, 16])
        assert idx.paths([order[0], 10**6], missing_ok=True) == [str(paths[2]), None]
        with pytest.raises(KeyError):
            idx.paths([10**6])
        with pytest.raises(KeyError):
            idx.collection.paths([10**6])  # by default, an unknown id is an error
        assert idx.info(order[1])["path"] == str(paths[0]) and idx.info(10**6) is None
        assert idx.collection.by_hash(content_hash(paths[1].read_bytes()))[0] == [by_path[str(paths[1])]]
        assert idx.read(str(paths[1])) == paths[1].read_bytes()
        with pytest.raises(ImageError):
            idx.read(str(folder / "gone.png"))


def test_members_lists_the_files_left_out_sorted_with_their_reason_or_unreadable(tmp_path):
    with stand_in_index(tmp_path / "ix") as idx:
        store = idx.collection.store
        store.put([Entry("/a/x.png", 1, 1, "h", 4, 3, np.ones(8, np.float32))],
                  [("/a/z.png", 1, 1, "not an image"), ("/a/b.png", 1, 1, None), ("/ab/c.png", 1, 1, "too large")])
        ids, skipped = idx.members()
        assert idx.paths(ids) == ["/a/x.png"]
        assert skipped == [("/a/b.png", "unreadable"), ("/a/z.png", "not an image"), ("/ab/c.png", "too large")]
        assert idx.members("/a") == (ids, [("/a/b.png", "unreadable"), ("/a/z.png", "not an image")])


def test_one_searcher_per_generation_and_the_approximate_one_over_the_exact(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((6, 8)).astype(np.float32)
    with stand_in_index(tmp_path / "ix") as idx:
        coll = idx.collection
        store = coll.store
        store.put([Entry(f"/p/{i}.png", 1, 1, f"h{i}", 4, 3, v) for i, v in enumerate(vectors[:5])])
        exact = coll.searcher()
        assert coll.searcher() is exact and coll.searcher(approximate=False) is exact  # exact search: no ANN
        ids, stored = coll.vectors()
        assert ids.tolist() == exact.ids.tolist() and len(ids) == 5
        np.testing.assert_array_equal(stored, vectors[:5])
        idx.set_ann("hnsw")  # searched exactly until now: the setting counts from the next query on
        assert coll.index_type == "hnsw"
        coll.vectors()  # every vector, read without the approximate index
        ann_file = tmp_path / "ix" / ANN_FILE
        assert not ann_file.exists()
        ann = coll.ann()
        built = ann_file.stat()
        assert ann is not None and coll.ann() is ann
        assert (ann_file.stat().st_ino, ann_file.stat().st_mtime_ns) == (built.st_ino, built.st_mtime_ns)
        rebuilt = coll.ann(rebuild=True)
        assert rebuilt is not ann and (ann_file.stat().st_ino, ann_file.stat().st_mtime_ns) != (
            built.st_ino, built.st_mtime_ns)  # written again, though it was up to date
        ann = rebuilt
        approximate = coll.searcher()
        assert approximate is not exact and coll.searcher() is approximate
        assert coll.searcher(approximate=False) is exact
        store.put([Entry("/p/5.png", 1, 1, "h5", 4, 3, vectors[5])])  # a new generation
        newer = coll.searcher(approximate=False)
        assert newer is not exact and len(newer.ids) == 6 and len(coll.vectors()[0]) == 6
        assert coll.ann() is not ann and coll.searcher() is not approximate
        found = idx.query_vector(vectors[5], 1)
        assert found.results[0].path == "/p/5.png" and found.results[0].distance == pytest.approx(0, abs=1e-6)
        idx.set_ann("exact")  # and back: no approximate index from the next query on
        assert coll.ann() is None and coll.searcher() is newer
