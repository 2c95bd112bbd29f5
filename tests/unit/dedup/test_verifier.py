"""The verification thread pool on real pictures: the rule's whole second stage decides, and a keeper's
features serve every call it makes."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from helpers import sample_photo
from lookalike.dedup.rules import Rule
from lookalike.dedup.verifier import Verifier


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """0 chelsea, 1 its mirror image, 2 a half-size copy, 3 chelsea with a third of it replaced
    (the same framing, another picture there), 4 coffee, 5 coffee re-encoded."""
    root = tmp_path_factory.mktemp("photos")
    cat, coffee = sample_photo("chelsea"), sample_photo("coffee")
    patched = cat.copy()
    patched.paste(sample_photo("rocket").resize((cat.width // 3, cat.height)), (0, 0))
    pictures = [cat, ImageOps.mirror(cat), cat.resize((cat.width // 2, cat.height // 2), Image.LANCZOS), patched,
                coffee, coffee]
    paths = []
    for i, img in enumerate(pictures):
        paths.append(str(root / f"{i}.jpg"))
        img.save(paths[-1], quality=90 if i != 5 else 60)
    return paths


def test_a_pair_is_accepted_by_inliers_and_agreement_both(photos):
    strict, fit_only = Rule(0.3, 20, min_agreement=0.9, max_shifted=0.025), Rule(0.3, 20)
    with Verifier(photos, strict, workers=2) as check:
        assert check.accept(0, np.array([1, 2, 3])).tolist() == [True, True, False]
        replaced = check.results[0, 3]
        assert replaced.inliers >= 20 and replaced.agreement < 0.8  # the fit holds, the pictures differ
    with Verifier(photos, fit_only, workers=2) as check:
        assert check.accept(0, np.array([1, 2, 3])).tolist() == [True, True, True]


def test_a_keepers_features_serve_all_its_calls_and_are_dropped_with_the_next_keeper(photos):
    with Verifier(photos, Rule(0.3, 20, min_agreement=0.9, max_shifted=0.025), workers=2) as check:
        check.accept(0, np.array([1]))
        check.accept(0, np.array([2, 4]))  # the same keeper, claiming further (reach)
        assert check.extracted == 4 and check.checked == 3
        assert 0 in check._cache and 1 not in check._cache  # an accepted member is done with
        check.accept(5, np.array([4]))
        assert 0 not in check._cache and check.extracted == 5  # 4 was kept: it had not been accepted
        assert check.results[5, 4].inliers >= 20 and check.results[5, 4].agreement > 0.97


def test_an_unreadable_image_verifies_nothing(tmp_path):
    from lookalike.dedup.geometry import NO_MATCH

    gone = [str(tmp_path / f"{i}.jpg") for i in range(3)]
    with Verifier(gone, Rule(0.3, 1), workers=1) as check:
        assert check.accept(0, np.array([1, 2])).tolist() == [False, False]
        assert check.results[0, 1] == check.results[0, 2] == NO_MATCH and check.checked == 2


def test_the_features_of_the_last_images_asked_for_are_kept(tmp_path, monkeypatch):
    from lookalike.dedup import verifier

    monkeypatch.setattr(verifier, "FEATURE_CACHE", 2)
    paths = [str(tmp_path / f"{i}.jpg") for i in range(5)]  # unreadable: nothing accepted, nothing dropped
    with Verifier(paths, Rule(0.3, 1), workers=1) as check:
        check.accept(0, np.array([1, 2, 3]))
        assert list(check._cache) == [2, 3] and check.extracted == 4  # the keeper's went first
        check.accept(0, np.array([4]))
        assert list(check._cache) == [0, 4] and check.extracted == 6
        check.accept(0, np.array([3]))  # the keeper's, asked for last, outlive 4's
        assert list(check._cache) == [0, 3] and check.extracted == 7


def test_the_evidence_names_a_re_encoding():
    from lookalike.dedup.geometry import Evidence
    from lookalike.dedup.keep import Traits

    traits = [Traits(90, format="JPEG"), Traits(60, format="JPEG"), Traits(90, format="JPEG"), Traits(100, format="PNG")]
    with Verifier([], Rule(0.3, 1)) as check:
        check.results.update({(0, k): Evidence(30, 40, edits=["cropped (shows 80%)"]) for k in (1, 2, 3)})
        assert check.evidence(0, 1, traits).edits == ["cropped (shows 80%)", "re-encoded (JPEG q60)"]
        assert check.evidence(0, 2, traits).edits == ["cropped (shows 80%)"]
        assert check.evidence(0, 3, traits).edits == ["cropped (shows 80%)", "re-encoded (PNG)"]
        assert check.results[0, 1].edits == ["cropped (shows 80%)"]  # the verification itself unchanged


# Found by mutation testing: the extraction ahead of need, the pool and the limits, with ORB stood in
# for (a path's features are its name; names with the same first letter match).

import os  # noqa: E402
import threading  # noqa: E402

from lookalike.dedup import geometry, verifier  # noqa: E402
from lookalike.images import ImageError  # noqa: E402


@pytest.fixture
def stand_in(monkeypatch):
    seen = {"started": [], "extracted": [], "compared": [], "threads": set()}
    gate = {}  # name -> threading.Event: that extraction waits for it

    def features(path):
        seen["started"].append(path)
        if path in gate:
            gate[path].wait(10)
        seen["extracted"].append(path)
        if path.startswith("bad"):
            raise ImageError("cannot read file: stood in")
        return path

    def compare(a, b, min_inliers=0, min_agreement=0.0):
        seen["compared"].append((a, b, min_inliers, min_agreement))
        seen["threads"].add(threading.get_ident())
        return geometry.Evidence(50, 60, agreement=1.0) if a[0] == b[0] else geometry.Evidence(3, 60)

    monkeypatch.setattr(geometry, "features", features)
    monkeypatch.setattr(geometry, "compare", compare)
    seen["gate"] = gate
    return seen


def test_planned_rows_are_extracted_ahead_once_each_and_never_a_row_done_with(stand_in):
    paths = ["a0", "a1", "b2", "b3", "c4", "c5", "c6"]
    with Verifier(paths, Rule(0.3, 20), workers=1) as check:
        check.plan([1, 2, 1, 3])
        accepted = check.accept(0, np.array([1, 2]))
        assert accepted.tolist() == [True, False] and accepted.dtype == np.bool_
        assert sorted(stand_in["extracted"]) == ["a0", "a1", "b2", "b3"] and check.extracted == 4  # 3 ahead of need
        check.plan([0, 1, 4, 2])  # 0 (its keeper gone below) and 1 (accepted) are done with; 2 is cached
        check.accept(3, np.array([2]))
        assert sorted(stand_in["extracted"]) == ["a0", "a1", "b2", "b3", "c4"] and check.extracted == 5
        assert check.accept(3, np.array([], int)).dtype == np.bool_  # nothing to check: an empty mask
    assert {c[:2] for c in stand_in["compared"]} == {("a0", "a1"), ("a0", "b2"), ("b3", "b2")}


def test_extraction_ahead_holds_at_most_eight_per_worker_and_the_rest_is_cancelled_on_exit(stand_in):
    paths = [f"p{i}" for i in range(40)]
    for p in paths:
        stand_in["gate"][p] = threading.Event()
    check = Verifier(paths, Rule(0.3, 20), workers=2)
    check.plan(range(40))
    check._top_up()  # none finishes while the gates are shut
    assert check.extracted == 16 == 2 * verifier.AHEAD
    for _ in range(500):  # until each of the two threads has taken one
        if len(stand_in["started"]) == 2:
            break
        threading.Event().wait(0.01)
    threading.Timer(0.3, lambda: [g.set() for g in stand_in["gate"].values()]).start()
    check.__exit__(None, None, None)  # the two running finish; the 14 waiting are cancelled
    assert sorted(stand_in["extracted"]) == ["p0", "p1"]


def test_a_pair_with_one_unreadable_image_is_no_match_and_the_rule_s_limits_are_passed_on(stand_in):
    with Verifier(["a0", "bad1", "a2"], Rule(0.3, 20, min_agreement=0.7), workers=2) as check:
        assert check.accept(0, np.array([1, 2])).tolist() == [False, True]
        assert check.results[0, 1] == geometry.NO_MATCH
    with Verifier(["bad0", "a1"], Rule(0.3, 20), workers=1) as check:
        assert check.accept(0, np.array([1])).tolist() == [False] and check.results[0, 1] == geometry.NO_MATCH
    assert stand_in["compared"] == [("a0", "a2", 20, 0.7)]  # only the readable pair compared, with the rule's limits


def test_comparisons_run_on_threads_made_single_threaded_and_the_default_is_one_worker_per_cpu(stand_in, monkeypatch):
    made = set()
    monkeypatch.setattr(verifier.hamming, "single_threaded", lambda: made.add(threading.get_ident()))
    with Verifier(["a0", "a1", "a2"], Rule(0.3, 20), workers=2) as check:
        check.accept(0, np.array([1, 2]))
    assert stand_in["threads"] and stand_in["threads"] <= made  # FAISS's OpenMP off in each (hamming's test)
    assert Verifier([], Rule(0.3, 20)).workers == (os.cpu_count() or 1) and Verifier([], Rule(0.3, 20), 3).workers == 3


def test_a_keeper_whose_features_were_already_let_go_is_dropped_quietly(stand_in, monkeypatch):
    monkeypatch.setattr(verifier, "FEATURE_CACHE", 1)
    with Verifier(["a0", "b1", "c2", "c3"], Rule(0.3, 20), workers=1) as check:
        check.accept(0, np.array([1]))  # 1's features push out 0's (a cache of one)
        assert check.accept(2, np.array([3])).tolist() == [True]  # 0 dropped as a keeper: not cached, no error
