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
