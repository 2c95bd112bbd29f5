"""Duplicate groups of an index and the duplicates of one image or vector (dedup/find.py), on a
catalog of hand-made vectors whose cosine distances are known (a stand-in for the model).

Two-stage rules run on real pictures (scikit-image's samples, small) whose perceptual hashes are
computed for real; the ORB verifier is replaced by :class:`TableVerifier`, which accepts the pairs
a table lists, so each test states which pairs verify."""

import math
import os
import shutil
import types

import numpy as np
import pytest
from PIL import Image

from helpers import sample_photo
from lookalike.index import approximate
from lookalike.dedup import phash
from lookalike.dedup import geometry
from lookalike.api import Index
from lookalike.index.embedded import EmbeddedCollection
from lookalike.dedup import candidates, find
from lookalike.dedup.find import duplicates_of, duplicates_of_vector, find_duplicates
from lookalike.dedup.keep import LOSSLESS, Traits
from lookalike.dedup.rules import Rule
from lookalike.images import content_hash
from lookalike.models.registry import resolve
from lookalike.index.store import Entry, Store
from lookalike.vectors import Searcher

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
    idx = Index(EmbeddedCollection(store), spec, embedder=None)
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
    records = idx.collection.store.records()
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
    with pytest.raises(ValueError, match="^a two-stage duplicate rule needs the query image, not only its vector$"):
        duplicates_of_vector(idx, _at(0), [], Rule(0.1, min_inliers=10))


# -- two-stage rules -----------------------------------------------------------------------------
#: ORB inliers per pair of file names (either way round; 0 when absent). "query" is an image given as pixels.
INLIERS = {frozenset(pair): n for pair, n in [
    (("cat.png", "cat_q50.jpg"), 120), (("cat.png", "cat_rot.jpg"), 90),
    (("cat.png", "coffee.png"), 8),  # a different photo close in the embedding: below any minimum used here
    (("coffee.png", "cat_q50.jpg"), 60),  # would verify, but cat.png takes cat_q50.jpg first
    (("query", "cat.png"), 150), (("query", "cat_copy.png"), 150), (("query", "cat_q50.jpg"), 110),
    (("query", "cat_rot.jpg"), 70), (("query", "coffee.png"), 5)]}


def _evidence(keeper: str, other: str) -> geometry.Evidence:
    """What :class:`TableVerifier` finds for a pair."""
    n = INLIERS.get(frozenset((keeper, other)), 0)
    return geometry.Evidence(n, n + 10, edits=[f"{other} onto {keeper}"], agreement=0.97)


class TableVerifier:
    """Stands in for :class:`lookalike.dedup.verifier.Verifier`: a pair verifies when :data:`INLIERS`
    gives it at least the rule's ``min_inliers``. Records what it is given and asked; appends itself to ``made``."""

    def __init__(self, paths, rule, made):
        self.paths, self.min_inliers = list(paths), rule.min_inliers
        self.checked, self.extracted, self.workers = 0, 0, 3
        self.results, self.calls, self.planned, self.traits, self.closed = {}, [], None, None, False
        made.append(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def name(self, row):
        path = self.paths[row]
        return os.path.basename(path) if isinstance(path, str) else "query"

    def plan(self, rows):
        self.planned = list(rows)

    def accept(self, keeper, others):
        others = [int(o) for o in others]
        self.calls.append((keeper, others))
        self.extracted = len({r for k, o in self.calls for r in (k, *o)})
        self.checked += len(others)
        for o in others:
            self.results[keeper, o] = _evidence(self.name(keeper), self.name(o))
        return np.array([self.results[keeper, o].inliers >= self.min_inliers for o in others])

    def evidence(self, keeper, other, traits):
        self.traits = list(traits)
        return self.results[keeper, other]


class FixedEmbedder:
    """Embeds every image as the same vector (at 2° in the plane of :func:`_at`)."""

    def embed_images(self, images):
        return np.stack([_at(2)] * len(images))


def _clock(monkeypatch, *times, module=find):
    """``module``'s clock (find.py's, or candidates.py's) reads ``times`` in turn."""
    ticks = iter(times)
    monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))


@pytest.fixture
def pictures(tmp_path):
    """Real pictures, 96 x 64: cat.png, its byte copy, a JPEG q50 re-save, a JPEG rotated 90° (far in
    the embedding: a candidate by its hash only), another photo close to the cat in the embedding
    (coffee.png) and one far from everything (other/astronaut.png); an unreadable file."""
    lib = tmp_path / "lib"
    (lib / "other").mkdir(parents=True)
    cat = sample_photo("chelsea").resize((96, 64), Image.LANCZOS)
    cat.save(lib / "cat.png")
    shutil.copyfile(lib / "cat.png", lib / "cat_copy.png")
    cat.save(lib / "cat_q50.jpg", quality=50)
    cat.transpose(Image.Transpose.ROTATE_90).save(lib / "cat_rot.jpg", quality=90)
    sample_photo("coffee").resize((96, 64), Image.LANCZOS).save(lib / "coffee.png")
    sample_photo("astronaut").resize((96, 64), Image.LANCZOS).save(lib / "other" / "astronaut.png")
    files = {  # name: (vector, mtime_ns, width, height)
        "cat.png": (_at(0), 5, 96, 64), "cat_copy.png": (_at(0), 9, 96, 64),
        "cat_q50.jpg": (_at(5, 2.0), 1, 96, 64),  # 1 - cos 5° = 0.0038 from the cat
        "cat_rot.jpg": (_at(70), 2, 64, 96),  # 1 - cos 70° = 0.658: beyond any radius used here
        "coffee.png": (_at(15, 0.5), 1, 96, 64),  # 0.0341 from the cat, 0.0152 from cat_q50.jpg
        "other/astronaut.png": (_at(-90), 1, 96, 64)}
    spec = resolve()
    store = Store.create(tmp_path / "index", {**spec.identity(), "dim": DIM}, ref=spec.name)
    store.put([Entry(str(lib / name), 10, mtime, content_hash((lib / name).read_bytes()), w, h, v)
               for name, (v, mtime, w, h) in files.items()], [(str(lib / "broken.jpg"), 3, 1, None)])
    idx = Index(EmbeddedCollection(store), spec, embedder=FixedEmbedder())
    ids = {os.path.basename(p): r.id for p, r in store.records().items()}
    yield idx, lib, ids
    idx.close()


def test_two_stage_groups_hold_verified_candidates_of_the_keeper_including_hash_only_rotations(pictures, monkeypatch):
    idx, lib, _ = pictures
    _clock(monkeypatch, 100.0, 101.0, 101.1234567, 103.5)  # start, verification start and end, end
    _clock(monkeypatch, 50.0, 50.0123456, 60.0, 60.2345678, module=candidates)  # embedding, then hash stage
    made = []
    report = find_duplicates(idx, Rule(0.3, 20), "near", verifier=lambda paths, m: TableVerifier(paths, m, made))
    (check,) = made
    # One file per content, in keep order (same pixels; the shorter name, then the older file): 0 cat,
    # 1 coffee, 2 cat_q50, 3 cat_rot, 4 astronaut.
    assert check.paths == [str(lib / n) for n in ("cat.png", "coffee.png", "cat_q50.jpg", "cat_rot.jpg",
                                                   "other/astronaut.png")]
    assert check.min_inliers == 20 and check.closed
    # Candidates: cat~coffee, cat~cat_q50, coffee~cat_q50 in the embedding (within 0.3), cat~cat_rot and
    # cat_q50~cat_rot by their hashes (cat~cat_q50 too). The headers of the four paired files were read;
    # visited by quality: the PNGs (cat, coffee), cat_rot (q90), then cat_q50 (q50); astronaut has no pair.
    assert check.traits == [Traits(LOSSLESS, "", "PNG"), Traits(LOSSLESS, "", "PNG"), Traits(50, "", "JPEG"),
                            Traits(90, "", "JPEG"), Traits()]
    assert check.planned == [0, 1, 2, 3, 1, 0, 2, 3, 0, 2, 2, 0, 1, 3]
    # cat verifies cat_q50 and cat_rot, not coffee; coffee's candidates are then all taken, so its
    # verified match cat_q50 does not pull it into the cat's group (no chain coffee~cat_q50~cat).
    assert check.calls == [(0, [1, 2, 3])]
    assert [(g.kind, g.keep, [(d.path, d.match, d.copy_of, d.evidence) for d in g.duplicates])
            for g in report.groups] == [("near", str(lib / "cat.png"), [
                (str(lib / "cat_copy.png"), "exact", None, None),
                (str(lib / "cat_q50.jpg"), "near", None, _evidence("cat.png", "cat_q50.jpg")),
                (str(lib / "cat_rot.jpg"), "near", None, _evidence("cat.png", "cat_rot.jpg"))])]
    assert [d.distance for d in report.groups[0].duplicates] == pytest.approx(
        [0.0, 1 - math.cos(math.radians(5)), 1 - math.cos(math.radians(70))], abs=1e-6)
    assert report.stages.keys() == {"embedding_pairs", "embedding_seconds", "hash_pairs", "hash_seconds",
                                    "candidate_pairs", "pairs_verified", "verify_seconds", "ms_per_pair",
                                    "features_extracted", "verify_workers"}
    assert report.stages == {"embedding_pairs": 3, "embedding_seconds": 0.012, "hash_pairs": 3, "hash_seconds": 0.235,
                             "candidate_pairs": 5, "pairs_verified": 3, "verify_seconds": 0.123,
                             "ms_per_pair": 41.15,  # 123.4567 ms over 3 pairs
                             "features_extracted": 4, "verify_workers": 3}
    assert all(type(report.stages[k]) is int for k in ("embedding_pairs", "hash_pairs", "candidate_pairs"))  # JSON "5"
    # the hashes made on the way are kept beside the index
    contents = {content_hash((lib / n).read_bytes()) for n in ("cat.png", "cat_q50.jpg", "cat_rot.jpg", "coffee.png",
                                                              "other/astronaut.png")}
    assert phash.HashStore(idx.collection.store.root).table.load(contents).keys() == contents
    assert report.seconds == 3.5 and report.search == "exact"
    assert (report.rule, report.preset, report.n_images) == (Rule(0.3, 20), "near", 6)
    assert report.skipped == [(str(lib / "broken.jpg"), "unreadable")]  # stored without a reason


def test_with_nearest_a_candidate_must_be_among_either_files_nearest(pictures):
    idx, lib, _ = pictures
    made = []
    # each file's 1 nearest: the cat's and coffee's is cat_q50, cat_q50's the cat: cat~coffee is dropped
    # before verification; the hash pairs stay
    report = find_duplicates(idx, Rule(0.3, 20, nearest=1), verifier=lambda paths, m: TableVerifier(paths, m, made))
    assert {k: report.stages[k] for k in ("embedding_pairs", "embedding_pairs_nearest", "hash_pairs",
                                          "candidate_pairs")} == {
        "embedding_pairs": 3, "embedding_pairs_nearest": 2, "hash_pairs": 3, "candidate_pairs": 4}
    assert type(report.stages["embedding_pairs_nearest"]) is int
    # then coffee, a candidate of cat_q50 (which the cat claimed) but not of the cat, is offered to the
    # cat itself, and refused (8 inliers)
    assert made[0].calls == [(0, [2, 3]), (0, [1])]
    assert [(g.keep, [d.path for d in g.duplicates]) for g in report.groups] == [
        (str(lib / "cat.png"), [str(lib / n) for n in ("cat_copy.png", "cat_q50.jpg", "cat_rot.jpg")])]


def test_a_file_reached_through_a_member_is_checked_against_the_keeper_at_its_own_distance(pictures):
    idx, lib, _ = pictures
    made = []
    # each file's 1 nearest drops cat~coffee from the candidates, but coffee is cat_q50's candidate:
    # offered to the cat once it claims cat_q50, and at 5 inliers the cat~coffee pair (8) verifies
    report = find_duplicates(idx, Rule(0.3, 5, nearest=1), verifier=lambda paths, m: TableVerifier(paths, m, made))
    assert made[0].calls == [(0, [2, 3]), (0, [1])]
    (group,) = report.groups
    assert group.keep == str(lib / "cat.png")
    coffee = next(d for d in group.duplicates if d.path == str(lib / "coffee.png"))
    # its distance to the kept file itself, computed though the pair was no candidate (1 - cos 15°)
    assert coffee.distance == pytest.approx(1 - math.cos(math.radians(15)), abs=1e-6)
    assert coffee.evidence == _evidence("cat.png", "coffee.png")


def test_a_members_candidate_farther_than_onward_and_without_a_hash_match_is_not_offered(pictures, monkeypatch):
    idx, lib, _ = pictures
    made = []
    # coffee is 0.0152 from cat_q50, its second nearest (after the cat), and their hashes do not match:
    # with a nearer limit and only the nearest counted, it is not a likely copy of cat_q50, so it is not
    # offered to the cat (and forms no group)
    for onward, nearest, calls in ((0.015, 1, [(0, [2, 3])]), (0.016, 1, [(0, [2, 3]), (0, [1])]),
                                   (0.015, 2, [(0, [2, 3]), (0, [1])])):
        monkeypatch.setattr(find, "ONWARD", onward)
        monkeypatch.setattr(find, "ONWARD_NEAREST", nearest)
        made.clear()
        report = find_duplicates(idx, Rule(0.3, 5, nearest=1), verifier=lambda paths, m: TableVerifier(paths, m, made))
        assert made[0].calls == calls, (onward, nearest)
        grouped = {d.path for g in report.groups for d in g.duplicates}
        assert (str(lib / "coffee.png") in grouped) == (len(calls) == 2)


def test_a_members_likely_copies_are_its_hash_matches_those_within_0_2_and_its_16_nearest():
    # row 0 has 18 candidates, all 0.25 away (beyond the distance limit), ranked by column on the tie: the
    # first 16 are likely copies, the last two only where their hashes match (column 18)
    # row 1: 0.19 (within 0.2) and 0.21 (not), each its row's 17th or 18th nearest, behind 16 at 0.05
    far = [0.25] * 18
    near_ones = [0.05] * 16 + [0.19, 0.21]
    offsets = np.array([0, 18, 36])
    columns = np.concatenate([np.arange(1, 19), np.arange(2, 20)])
    distances = np.array(far + near_ones)
    hashed = np.zeros(36, bool)
    hashed[17] = True
    likely = find._likely_copies(offsets, columns, distances, hashed)
    assert likely[:18].tolist() == [True] * 16 + [False, True]
    assert likely[18:].tolist() == [True] * 16 + [True, False]


def test_the_rules_minimum_decides_which_pairs_verify(pictures):
    idx, lib, _ = pictures
    made = []
    # at 5 inliers, cat.png~coffee.png (8) verifies too: all four contents join the cat
    report = find_duplicates(idx, Rule(0.3, 5), verifier=lambda paths, m: TableVerifier(paths, m, made))
    assert made[0].min_inliers == 5 and made[0].calls == [(0, [1, 2, 3])]
    assert [(g.keep, [d.path for d in g.duplicates]) for g in report.groups] == [
        (str(lib / "cat.png"), [str(lib / n) for n in ("cat_copy.png", "cat_q50.jpg", "coffee.png", "cat_rot.jpg")])]
    assert report.groups[0].duplicates[2].evidence == _evidence("cat.png", "coffee.png")


def test_a_two_stage_rule_on_a_file_without_candidates_verifies_nothing(pictures, monkeypatch):
    idx, lib, _ = pictures
    _clock(monkeypatch, 10.0, 20.0, 20.0123, 21.0)
    made = []
    report = find_duplicates(idx, Rule(0.3, 20), under=str(lib / "other"),
                             verifier=lambda paths, m: TableVerifier(paths, m, made))
    assert made[0].paths == [str(lib / "other" / "astronaut.png")] and made[0].planned == [] and made[0].calls == []
    assert report.groups == [] and report.n_images == 1 and report.seconds == 11.0
    assert {k: report.stages[k] for k in ("candidate_pairs", "pairs_verified", "verify_seconds", "ms_per_pair",
                                          "features_extracted")} == {
        "candidate_pairs": 0, "pairs_verified": 0, "verify_seconds": 0.012, "ms_per_pair": 12.3,
        "features_extracted": 0}  # 12.3 ms over no pairs is not divided by zero


def test_a_one_stage_rule_makes_no_verifier_and_hashes_nothing(pictures):
    idx, lib, _ = pictures

    def refuse(paths, rule):
        raise AssertionError("a one-stage rule verifies nothing")

    for rule in (Rule(0.05), 0.05):
        report = find_duplicates(idx, rule, chunk=2, verifier=refuse)
        assert report.rule == Rule(0.05)
        # cat_rot.jpg is a rotation of the cat, but only a two-stage rule compares hashes
        assert [(g.keep, [(d.path, d.evidence) for d in g.duplicates]) for g in report.groups] == [
            (str(lib / "cat.png"), [(str(lib / n), None) for n in ("cat_copy.png", "cat_q50.jpg", "coffee.png")])]
        assert report.stages.keys() == {"embedding_pairs", "embedding_seconds", "candidate_pairs"}
        assert (report.stages["embedding_pairs"], report.stages["candidate_pairs"]) == (3, 3)


def test_a_relative_folder_is_taken_from_the_working_directory(pictures, monkeypatch):
    idx, lib, _ = pictures
    monkeypatch.chdir(lib.parent)
    assert find_duplicates(idx, 0.05, under="lib/other").n_images == 1
    report = find_duplicates(idx, 0.05, under="lib")
    assert report.n_images == 6 and report.skipped == [(str(lib / "broken.jpg"), "unreadable")]


def test_an_empty_selection_is_timed_too(pictures, monkeypatch):
    idx, lib, _ = pictures
    _clock(monkeypatch, 5.0, 5.25)
    report = find_duplicates(idx, Rule(0.3, 20), under=str(lib / "nothing"))
    assert report.seconds == 0.25 and report.groups == [] and report.stages == {}


def test_the_duplicates_of_an_indexed_file_by_a_two_stage_rule(pictures, monkeypatch):
    idx, lib, ids = pictures
    made = []
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, made))
    found = duplicates_of(idx, str(lib / "cat.png"), Rule(0.3, 20))
    assert (found.query, found.mode, found.metric) == (str(lib / "cat.png"), "duplicates", "cosine")
    # its byte copies (and itself) at 0 unverified; within 0.3: cat_q50 verifies, coffee does not;
    # cat_rot by its hash only, at its cosine distance
    assert [(m.rank, m.path) for m in found.results] == [
        (1, str(lib / "cat.png")), (2, str(lib / "cat_copy.png")), (3, str(lib / "cat_q50.jpg")),
        (4, str(lib / "cat_rot.jpg"))]
    assert [m.distance for m in found.results] == pytest.approx(
        [0.0, 0.0, 1 - math.cos(math.radians(5)), 1 - math.cos(math.radians(70))], abs=1e-6)
    (check,) = made
    assert check.paths[0] == str(lib / "cat.png") and check.min_inliers == 20 and check.closed
    assert sorted(check.paths[1:]) == [str(lib / n) for n in ("cat_q50.jpg", "cat_rot.jpg", "coffee.png")]
    assert check.calls == [(0, [1, 2, 3])]
    assert found.evidence == {ids["cat_q50.jpg"]: _evidence("cat.png", "cat_q50.jpg"),
                              ids["cat_rot.jpg"]: _evidence("cat.png", "cat_rot.jpg")}
    # the hashes computed on the way are kept beside the index for the next query
    contents = {content_hash((lib / n).read_bytes()) for n in ("cat.png", "cat_q50.jpg", "cat_rot.jpg", "coffee.png")}
    assert phash.HashStore(idx.collection.store.root).table.load(contents).keys() == contents
    rows = found.to_dict()["results"]
    assert ["evidence" in row for row in rows] == [False, False, True, True]
    assert rows[3]["evidence"] == {**_evidence("cat.png", "cat_rot.jpg").to_dict(),
                                   "summary": "90 inliers, 97% alike: cat_rot.jpg onto cat.png"}


def test_the_duplicates_of_pixels_are_all_verified(pictures, monkeypatch):
    idx, lib, ids = pictures
    made = []
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, made))
    query = Image.open(lib / "cat.png").transpose(Image.Transpose.ROTATE_270)  # embedded at 2° by FixedEmbedder
    found = duplicates_of(idx, query, Rule(0.3, 20))
    assert found.query == "<image>" and made[0].paths[0] is query
    # no file has its bytes: every candidate is verified, coffee.png (13° away) fails
    assert sorted(made[0].paths[1:]) == [str(lib / n) for n in ("cat.png", "cat_copy.png", "cat_q50.jpg",
                                                                 "cat_rot.jpg", "coffee.png")]
    assert [m.path for m in found.results] == [str(lib / n) for n in ("cat.png", "cat_copy.png", "cat_q50.jpg",
                                                                       "cat_rot.jpg")]
    assert [m.distance for m in found.results] == pytest.approx(
        [1 - math.cos(math.radians(a)) for a in (2, 2, 3, 68)], abs=1e-6)
    assert found.evidence == {ids[n]: _evidence("query", n) for n in ("cat.png", "cat_copy.png", "cat_q50.jpg",
                                                                      "cat_rot.jpg")}
    assert duplicates_of(idx, query, Rule(0.3, 20), label="mine").query == "mine"
    assert duplicates_of(idx, query, 0.02).evidence == {} and len(made) == 2  # one stage: no verifier


def test_a_file_removed_after_the_vectors_were_read_is_left_out(pictures, monkeypatch):
    idx, lib, ids = pictures
    made = []
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, made))
    stale = idx.searcher(approximate=False)  # vectors read, then cat_q50.jpg leaves the catalog
    idx.collection.store.remove([str(lib / "cat_q50.jpg")])
    monkeypatch.setattr(idx, "searcher", lambda approximate=True: stale)
    found = duplicates_of(idx, str(lib / "cat.png"), Rule(0.3, 20))
    assert [m.path for m in found.results] == [str(lib / n) for n in ("cat.png", "cat_copy.png", "cat_rot.jpg")]
    assert sorted(made[0].paths[1:]) == [str(lib / "cat_rot.jpg"), str(lib / "coffee.png")]
    assert found.evidence == {ids["cat_rot.jpg"]: _evidence("cat.png", "cat_rot.jpg")}


def test_read_catalog_gives_integer_arrays_in_the_order_asked(pictures):
    idx, lib, ids = pictures
    got = find.read_catalog(idx, [ids["cat_rot.jpg"], ids["cat.png"]])
    assert got["path"] == [str(lib / "cat_rot.jpg"), str(lib / "cat.png")]
    assert got["hash"] == [content_hash((lib / n).read_bytes()) for n in ("cat_rot.jpg", "cat.png")]
    for key, want in (("size", [10, 10]), ("mtime_ns", [2, 5]), ("width", [64, 96]), ("height", [96, 64])):
        assert isinstance(got[key], np.ndarray) and got[key].dtype == np.int64 and got[key].tolist() == want, key


def test_files_with_the_querys_bytes_are_at_distance_zero_whatever_the_vector(pictures, monkeypatch):
    idx, lib, ids = pictures
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, []))
    found = duplicates_of_vector(idx, _at(1), [ids["cat_copy.png"], ids["cat.png"]], Rule(0.3, 20), "q",
                                 str(lib / "cat.png"))
    assert [(m.path, m.distance) for m in found.results[:2]] == [(str(lib / "cat.png"), 0.0),
                                                                 (str(lib / "cat_copy.png"), 0.0)]
    assert [m.distance for m in found.results[2:]] == pytest.approx(
        [1 - math.cos(math.radians(4)), 1 - math.cos(math.radians(69))], abs=1e-6)


def test_only_the_querys_own_hash_matches_are_candidates(pictures, monkeypatch):
    idx, lib, _ = pictures
    made = []
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, made))
    # the astronaut is far from every file and its hashes match none (the cat's files match each other)
    found = duplicates_of(idx, str(lib / "other" / "astronaut.png"), Rule(0.3, 20))
    assert [m.path for m in found.results] == [str(lib / "other" / "astronaut.png")]
    assert made[0].paths == [str(lib / "other" / "astronaut.png")] and made[0].calls == [(0, [])]


def test_the_rules_hash_radius_bounds_the_hash_candidates(pictures, monkeypatch):
    from PIL import ImageEnhance

    idx, lib, _ = pictures
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, []))
    # the cat rotated and with more contrast: its hashes are 4 bits from the cat files' (measured)
    query = ImageEnhance.Contrast(Image.open(lib / "cat.png").transpose(Image.Transpose.ROTATE_270)).enhance(2.5)
    assert [m.path for m in duplicates_of(idx, query, Rule(0.3, 20, hash_radius=3)).results] == [
        str(lib / n) for n in ("cat.png", "cat_copy.png", "cat_q50.jpg")]  # within 0.3 of the query's 2°
    assert [m.path for m in duplicates_of(idx, query, Rule(0.3, 20, hash_radius=4)).results] == [
        str(lib / n) for n in ("cat.png", "cat_copy.png", "cat_q50.jpg", "cat_rot.jpg")]


def test_equal_distances_rank_by_id(pictures):
    idx, lib, ids = pictures
    cat = lib / "cat.png"
    idx.collection.store.put([Entry(str(cat), 10, 5, content_hash(cat.read_bytes()), 96, 64, _at(0))])  # indexed again: a new id
    new = idx.collection.store.records()[str(cat)].id
    assert new > ids["cat_copy.png"]
    found = duplicates_of(idx, str(cat), 0.01)
    assert [(m.id, m.distance) for m in found.results[:2]] == [(ids["cat_copy.png"], 0.0), (new, 0.0)]
    assert [m.path for m in found.results] == [str(lib / n) for n in ("cat_copy.png", "cat.png", "cat_q50.jpg")]
    assert duplicates_of_vector(idx, _at(0), [], 0.01).query == "<vector>"


def test_the_report_names_the_indexs_search(pictures):
    idx, lib, _ = pictures
    approximate.configure(idx.collection.store, "hnsw")
    report = find_duplicates(idx, Rule(0.05))
    assert report.search == "hnsw"
    assert [(g.keep, [d.path for d in g.duplicates]) for g in report.groups] == [
        (str(lib / "cat.png"), [str(lib / n) for n in ("cat_copy.png", "cat_q50.jpg", "coffee.png")])]


def test_a_members_likely_copies_rank_by_distance_and_take_one_exactly_0_2_away():
    # row 0: 18 candidates beyond 0.2, farther the lower the column: columns 1 and 2 are its 17th and
    # 18th nearest; row 1: 16 at 0.05, then one exactly at the onward distance and one beyond it
    offsets = np.array([0, 18, 36])
    columns = np.concatenate([np.arange(1, 19), np.arange(2, 20)])
    distances = np.concatenate([0.25 + 0.01 * np.arange(18)[::-1], [0.05] * 16 + [0.2, 0.21]])
    likely = find._likely_copies(offsets, columns, distances, np.zeros(36, bool))
    assert likely[:18].tolist() == [False, False] + [True] * 16
    assert likely[18:].tolist() == [True] * 16 + [True, False]


class MilvusLike:
    """Stands in for a Milvus collection (``local`` False: no request reads every vector) over
    ``files`` {id: (path, vector)}, under the ids given (0 is an id like any other). ``gone`` files
    have left the catalog but are still in the vector index, as after a removal the search has not
    caught up with. Records the ``approximate`` of each searcher asked for."""

    local = False

    def __init__(self, files, gone=()):
        self.files, self.gone, self.asked = files, set(gone), []
        self.hashes = phash.HashStore(None)

    def searcher(self, approximate=True):
        self.asked.append(approximate)
        ids = np.array(sorted(self.files))
        return Searcher(ids, np.stack([self.files[i][1] for i in ids]))

    def paths(self, ids, missing_ok=False):
        held = {i: p for i, (p, _) in self.files.items() if i not in self.gone}
        return [held.get(int(i)) for i in ids] if missing_ok else [held[int(i)] for i in ids]

    def columns(self, ids):
        paths = self.paths(ids)
        return {"path": paths, "hash": [content_hash(open(p, "rb").read()) for p in paths]}

    def vectors(self):
        pytest.fail("every vector of a Milvus collection read for one query")


def test_on_a_milvus_collection_the_radius_goes_through_its_vector_index_and_the_nearest_files_hashes_are_compared(
        pictures, monkeypatch):
    _, lib, _ = pictures
    made = []
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, made))
    names = {4: "cat.png", 7: "cat_copy.png", 3: "cat_q50.jpg", 0: "cat_rot.jpg", 2: "coffee.png",
             9: "other/astronaut.png"}
    vectors = {"cat.png": _at(0), "cat_copy.png": _at(0), "cat_q50.jpg": _at(5, 2.0), "cat_rot.jpg": _at(70),
               "coffee.png": _at(15, 0.5), "other/astronaut.png": _at(-90)}
    collection = MilvusLike({i: (str(lib / n), vectors[n]) for i, n in names.items()}, gone=[2])
    idx = Index(collection, resolve(), embedder=None)
    found = duplicates_of_vector(idx, _at(0), [4, 7], Rule(0.3, 20), "q", str(lib / "cat.png"))
    assert collection.asked == [True, True]  # the radius and the nearest files, both through the vector index
    # coffee.png (2), within the radius, has left the catalog: neither verified nor listed; cat_rot.jpg
    # (id 0) is found by its hash among the nearest files, at the distance the search gave it
    assert [(m.id, m.path) for m in found.results] == [(4, str(lib / "cat.png")), (7, str(lib / "cat_copy.png")),
                                                       (3, str(lib / "cat_q50.jpg")), (0, str(lib / "cat_rot.jpg"))]
    assert [m.distance for m in found.results] == pytest.approx(
        [0.0, 0.0, 1 - math.cos(math.radians(5)), 1 - math.cos(math.radians(70))], abs=1e-6)
    assert sorted(made[0].paths[1:]) == [str(lib / n) for n in ("cat_q50.jpg", "cat_rot.jpg")]
    assert found.evidence == {3: _evidence("cat.png", "cat_q50.jpg"), 0: _evidence("cat.png", "cat_rot.jpg")}
    # only the nearest files' hashes are compared: with a pool of 4 (cat_rot.jpg is the 5th nearest) it is not found
    monkeypatch.setattr(find, "HASH_POOL", 4)
    found = duplicates_of_vector(idx, _at(0), [4, 7], Rule(0.3, 20), "q", str(lib / "cat.png"))
    assert [m.id for m in found.results] == [4, 7, 3]


def test_on_an_index_folder_the_radius_is_searched_exactly_and_every_files_hashes_are_compared(pictures, monkeypatch):
    idx, lib, ids = pictures
    monkeypatch.setattr(find, "Verifier", lambda paths, m: TableVerifier(paths, m, []))
    monkeypatch.setattr(find, "HASH_POOL", 1)  # a Milvus collection's pool: not an index folder's bound
    asked, searcher = [], idx.searcher
    monkeypatch.setattr(idx, "searcher", lambda approximate=True: asked.append(approximate) or searcher(approximate))
    found = duplicates_of(idx, str(lib / "cat.png"), Rule(0.3, 20))
    assert asked == [False]
    assert [m.path for m in found.results] == [str(lib / n) for n in ("cat.png", "cat_copy.png", "cat_q50.jpg",
                                                                       "cat_rot.jpg")]


def _index_of(tmp_path, files):
    """An index of ``files`` {path: (content hash, vector, mtime_ns)} (each 200 x 100 pixels)."""
    spec = resolve()
    store = Store.create(tmp_path / "index", {**spec.identity(), "dim": DIM}, ref=spec.name)
    store.put([Entry(str(p), 10, mtime, content, 200, 100, v) for p, (content, v, mtime) in files.items()])
    return Index(EmbeddedCollection(store), spec, embedder=None)


def test_a_file_is_kept_over_links_to_its_bytes_and_over_links_to_its_near_duplicates(tmp_path):
    # photo.png and z.png (outside the folder): the same picture, near duplicates; a.png links to
    # photo.png, b.png to z.png. The links have shorter names and are older, which alone would keep one.
    lib, elsewhere = tmp_path / "lib", tmp_path / "elsewhere"
    lib.mkdir()
    elsewhere.mkdir()
    Image.new("RGB", (200, 100), (90, 120, 30)).save(lib / "photo.png")
    Image.new("RGB", (200, 100), (91, 120, 30)).save(elsewhere / "z.png")
    (lib / "a.png").symlink_to(lib / "photo.png")
    (lib / "b.png").symlink_to(elsewhere / "z.png")
    idx = _index_of(tmp_path, {lib / "photo.png": ("A", _at(0), 5), lib / "a.png": ("A", _at(0), 1),
                               lib / "b.png": ("B", _at(1), 1), elsewhere / "z.png": ("B", _at(1), 1)})
    try:
        report = find_duplicates(idx, 0.01, under=str(lib))
    finally:
        idx.close()
    assert [(g.kind, g.keep, [(d.path, d.match) for d in g.duplicates]) for g in report.groups] == [
        ("near", str(lib / "photo.png"), [(str(lib / "a.png"), "exact"), (str(lib / "b.png"), "near")])]


def test_the_shots_rule_keeps_the_best_shot_first_by_the_keep_rule_with_the_encoding(tmp_path, monkeypatch):
    # cat.png and c.jpg (a JPEG at quality 95): alike in quality. c.jpg's shorter name ranks it first
    # among equal files, but the keep rule puts the lossless file first: cat.png is kept.
    cat = sample_photo("chelsea").resize((200, 100), Image.LANCZOS)
    cat.save(tmp_path / "cat.png")
    cat.save(tmp_path / "c.jpg", quality=95)
    monkeypatch.setitem(INLIERS, frozenset(("cat.png", "c.jpg")), 100)
    idx = _index_of(tmp_path, {tmp_path / "cat.png": ("A", _at(0), 1), tmp_path / "c.jpg": ("B", _at(1), 1)})
    made = []
    rule = Rule(0.3, 20, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25, shots=0.025)
    try:
        report = find_duplicates(idx, rule, "shots", verifier=lambda paths, m: TableVerifier(paths, m, made))
    finally:
        idx.close()
    (group,) = report.groups
    assert (group.kind, group.keep, [d.path for d in group.duplicates]) == (
        "near", str(tmp_path / "cat.png"), [str(tmp_path / "c.jpg")])  # copies of one capture: not "shots"
    assert group.best.keep == group.keep and sorted(group.best.shots) == [str(tmp_path / n) for n in ("c.jpg", "cat.png")]
    assert group.best.reason.startswith("as sharp and well exposed as any and first by the keep rule of 2 copies")
    assert report.stages["shots_measured"] == 2
