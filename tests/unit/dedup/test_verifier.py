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
