"""Duplicate groups of an index and the duplicates of one vector (dedup/find.py), one-stage rules,
on a catalog of hand-made vectors whose cosine distances are known (a stand-in for the model)."""

import math

import numpy as np
import pytest
from PIL import Image

from lookalike.api import Index
from lookalike.dedup.find import duplicates_of_vector, find_duplicates
from lookalike.dedup.rules import Rule
from lookalike.models.registry import resolve
from lookalike.store import Entry, Store

DIM = 4


def _at(degrees: float, length: float = 1.0) -> np.ndarray:
    """A vector at ``degrees`` from the first axis in the plane of the first two: cosine distance
    to another is 1 - cos(angle between them), whatever the lengths."""
    a = math.radians(degrees)
    return np.array([math.cos(a), math.sin(a), 0, 0], np.float32) * length


@pytest.fixture
def library(tmp_path):
    """Real files (their headers are read to choose the file to keep) and their catalog rows."""
    lib = tmp_path / "lib"
    (lib / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    files = {  # path: (width, height, content hash, vector, mtime_ns)
        lib / "big.png": (200, 100, "A", _at(0), 5),
        lib / "sub" / "big_copy.png": (200, 100, "A", _at(0), 1),  # the same bytes: an exact duplicate
        lib / "small.jpg": (100, 50, "B", _at(10, 3.0), 1),  # 1 - cos 10° = 0.01519 from big
        lib / "b.jpg": (200, 100, "E", _at(1), 1),  # big's pixels, lossy, with a shorter name: big is kept
        lib / "far.png": (200, 100, "C", _at(90), 1),  # orthogonal to everything
        tmp_path / "elsewhere" / "near.png": (150, 200, "D", _at(-4, 0.5), 1),  # 0.00244 from big
    }
    for path, (w, h, *_) in files.items():
        Image.new("RGB", (w, h), (90, 120, 30)).save(path, quality=80)
    spec = resolve()
    store = Store.create(tmp_path / "index", {**spec.identity(), "dim": DIM}, ref=spec.name)
    store.put([Entry(str(p), 10, mtime, content, w, h, v) for p, (w, h, content, v, mtime) in files.items()],
              [(str(lib / "broken.jpg"), 3, 1, "cannot identify image file")])
    idx = Index(store, spec, embedder=None)
    yield idx, tmp_path
    idx.close()


def test_groups_below_a_folder_keep_the_largest_file_and_list_its_copies_then_near_ones(library):
    idx, root = library
    report = find_duplicates(idx, Rule(0.05), preset="mine", under=str(root / "lib"))
    assert report.rule == Rule(0.05) and report.preset == "mine" and 0 <= report.seconds < 60
    assert report.n_images == 5 and report.skipped == [(str(root / "lib" / "broken.jpg"), "cannot identify image file")]
    assert [(g.kind, g.keep) for g in report.groups] == [("near", str(root / "lib" / "big.png"))]
    assert [(d.path, d.match, d.copy_of) for d in report.groups[0].duplicates] == [
        (str(root / "lib" / "sub" / "big_copy.png"), "exact", None), (str(root / "lib" / "b.jpg"), "near", None),
        (str(root / "lib" / "small.jpg"), "near", None)]
    assert [d.distance for d in report.groups[0].duplicates] == pytest.approx(
        [0.0, 1 - math.cos(math.radians(1)), 1 - math.cos(math.radians(10))], abs=1e-6)


def test_the_whole_index_groups_around_the_file_with_most_pixels(library):
    idx, root = library
    report = find_duplicates(idx, 0.05)
    # near.png (150 x 200) outranks big.png (200 x 100) and is within 1 - cos 14° = 0.0297 of small.jpg
    assert [(g.kind, g.keep) for g in report.groups] == [("near", str(root / "elsewhere" / "near.png"))]
    got = [(d.path, round(d.distance, 5), d.match) for d in report.groups[0].duplicates]
    assert got == [(str(root / "lib" / "big.png"), round(1 - math.cos(math.radians(4)), 5), "near"),
                   (str(root / "lib" / "sub" / "big_copy.png"), round(1 - math.cos(math.radians(4)), 5), "near"),
                   (str(root / "lib" / "b.jpg"), round(1 - math.cos(math.radians(5)), 5), "near"),
                   (str(root / "lib" / "small.jpg"), round(1 - math.cos(math.radians(14)), 5), "near")]
    assert report.n_images == 6 and report.search == "exact"


def test_a_threshold_below_every_distance_leaves_only_byte_copies(library):
    idx, root = library
    report = find_duplicates(idx, 0.0001)
    assert [(g.kind, g.keep, [d.path for d in g.duplicates]) for g in report.groups] == [
        ("exact", str(root / "lib" / "big.png"), [str(root / "lib" / "sub" / "big_copy.png")])]


def test_of_two_files_with_the_same_pixels_the_lossless_one_is_kept(library):
    idx, root = library
    # only big.png ~ b.jpg (1 - cos 1° = 0.00015): each has one neighbour, so both headers are read
    report = find_duplicates(idx, 0.001)
    assert [(g.kind, g.keep, [d.path for d in g.duplicates]) for g in report.groups] == [
        ("near", str(root / "lib" / "big.png"), [str(root / "lib" / "sub" / "big_copy.png"), str(root / "lib" / "b.jpg")])]


def test_an_empty_selection_has_no_groups(library):
    idx, root = library
    report = find_duplicates(idx, 0.05, under=str(root / "nothing"))
    assert report.n_images == 0 and report.groups == [] and report.skipped == []


def test_the_duplicates_of_a_vector_are_byte_copies_first_then_nearest(library):
    idx, root = library
    records = idx.store.records()
    same = [records[str(root / "lib" / "big.png")].id, records[str(root / "lib" / "sub" / "big_copy.png")].id]
    found = duplicates_of_vector(idx, _at(0, 7.0), same, 0.02, label="query")
    assert (found.query, found.mode, found.metric) == ("query", "duplicates", "cosine")
    assert [(m.rank, m.path) for m in found.results] == [
        (1, str(root / "lib" / "big.png")), (2, str(root / "lib" / "sub" / "big_copy.png")),
        (3, str(root / "lib" / "b.jpg")), (4, str(root / "elsewhere" / "near.png")), (5, str(root / "lib" / "small.jpg"))]
    assert [m.distance for m in found.results] == pytest.approx(
        [0.0, 0.0, 1 - math.cos(math.radians(1)), 1 - math.cos(math.radians(4)), 1 - math.cos(math.radians(10))],
        abs=1e-6)
    assert found.evidence == {}


def test_a_two_stage_rule_needs_the_query_image(library):
    idx, _ = library
    with pytest.raises(ValueError, match="needs the query image, not only its vector"):
        duplicates_of_vector(idx, _at(0), [], Rule(0.1, min_inliers=10))
