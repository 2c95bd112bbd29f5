"""Duplicate rules: when a verification confirms a pair (each limit exactly at its edge), the rule as
a user reads it (the one line and the JSON), and presets and numbers given as ``--threshold``."""

import pytest

from lookalike.dedup import rules
from lookalike.dedup.geometry import Evidence
from lookalike.dedup.rules import Rule, presets, resolve_threshold

MODEL = {"name": "efficientnet-lite0", "layer": "pool"}
OTHER = {"name": "my-model", "layer": "output"}
STRICT = Rule(0.3, 20, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25)


def _evidence(inliers=20, agreement=0.9, shifted=0.025, displaced=0.25):
    return Evidence(inliers, inliers + 5, agreement=agreement, shifted=shifted, displaced=displaced)


def test_a_verification_exactly_at_every_limit_is_accepted():
    assert STRICT.accepts(_evidence())
    assert Rule(0.3, 1).accepts(_evidence(inliers=1))


@pytest.mark.parametrize("past", [{"inliers": 19}, {"agreement": 0.899}, {"shifted": 0.026},
                                  {"displaced": 0.251}])
def test_a_verification_one_step_past_any_limit_is_refused(past):
    assert not STRICT.accepts(_evidence(**past))


def test_a_rule_without_capture_limits_accepts_on_inliers_alone():
    fit_only = Rule(0.3, 12)
    assert fit_only.accepts(_evidence(inliers=12, agreement=0.0, shifted=1.0, displaced=1.0))
    assert not fit_only.accepts(_evidence(inliers=11, agreement=1.0, shifted=0.0, displaced=0.0))
    assert fit_only.hash_radius == 8 and fit_only.nearest == 0  # hashes within 8 bits; every candidate


SHOTS = Rule(0.3, 20, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25, shots=0.025)


@pytest.mark.parametrize("found", [{}, {"displaced": 1.0}, {"shifted": 0.3}, {"agreement": 0.2, "shifted": 0.025},
                                   {"agreement": 0.0, "shifted": 1.0, "displaced": 1.0},
                                   {"agreement": 0.9, "shifted": 0.0}])  # alike on exactly the minimum, nothing shifted
def test_shots_accept_a_copy_or_another_shot_alike_or_showing_the_same_thing_displaced(found):
    assert SHOTS.accepts(_evidence(**found))


@pytest.mark.parametrize("found", [{"inliers": 19, "shifted": 0.3}, {"agreement": 0.899, "shifted": 0.024},
                                   {"agreement": 0.7, "shifted": 0.0}])
def test_shots_refuse_too_few_inliers_and_a_difference_that_is_not_the_same_thing_displaced(found):
    # another object in the place of one, or a drawing of the picture: the aligned pictures differ,
    # but not by the same thing a few pixels away
    assert not SHOTS.accepts(_evidence(**found))


def test_one_capture_is_the_capture_check_whether_or_not_other_shots_are_accepted():
    assert SHOTS.one_capture(_evidence()) and STRICT.one_capture(_evidence())
    for past in ({"agreement": 0.899}, {"shifted": 0.026}, {"displaced": 0.251}):
        assert not SHOTS.one_capture(_evidence(**past)) and not STRICT.one_capture(_evidence(**past))
    # a sub-pixel parallax and a thing moved a few pixels: other shots, which only the shots rule takes
    for shot in ({"displaced": 0.251}, {"shifted": 0.026, "agreement": 0.5}):
        assert SHOTS.accepts(_evidence(**shot)) and not STRICT.accepts(_evidence(**shot))


def test_the_shots_rule_as_a_user_reads_it():
    assert presets(MODEL)["shots"].describe() == (
        "cosine distance <= 0.3 (among either file's 32 nearest, or <= 0.025) or a rotated/flipped hash "
        "within 8 bits, then >= 20 ORB inliers, the aligned pictures alike on >= 90% or shifted on >= 2.5% "
        "(other shots too; the best shot kept)")
    assert presets(MODEL)["shots"].to_dict()["shots"] == 0.025


def test_one_stage_and_two_stage_rules():
    assert not Rule(0.05).verified and Rule(0.05, 1).verified


def test_the_rule_as_a_user_reads_it():
    assert Rule(0.05).describe() == "cosine distance <= 0.05"
    assert Rule(0.3, 12, hash_radius=6).describe() == (
        "cosine distance <= 0.3 or a rotated/flipped hash within 6 bits, then >= 12 ORB inliers")
    assert presets(MODEL)["near"].describe() == (
        "cosine distance <= 0.3 (among either file's 32 nearest, or <= 0.025) or a rotated/flipped hash "
        "within 8 bits, then >= 20 ORB inliers, the aligned pictures alike on >= 90%, shifted on <= 2.5% "
        "and displaced on <= 25%")


def test_the_rule_in_json_leaves_out_what_its_stages_do_not_use():
    assert Rule(0.05, nearest=4, close=0.01).to_dict() == {
        "radius": 0.05, "min_inliers": 0, "min_agreement": None, "max_shifted": None, "max_displaced": None,
        "hash_radius": None, "nearest": 4, "close": 0.01}
    assert Rule(0.3, 20, hash_radius=6).to_dict() == {
        "radius": 0.3, "min_inliers": 20, "min_agreement": 0.0, "max_shifted": 1.0, "max_displaced": 1.0,
        "hash_radius": 6, "nearest": None, "close": None}
    assert presets(MODEL)["similar"].to_dict() == {
        "radius": 0.3, "min_inliers": 12, "min_agreement": 0.9, "max_shifted": 0.025, "max_displaced": 0.25,
        "hash_radius": 8, "nearest": 32, "close": 0.025}


def test_the_presets_are_those_docs_dedup_md_calibrates():
    table = presets(MODEL)
    assert list(table) == ["exact", "near", "similar", "shots"] == list(rules.PRESET_NAMES)
    assert table["exact"] == Rule(0.025)
    assert table["near"] == Rule(0.3, 20, nearest=32, close=0.025, min_agreement=0.9, max_shifted=0.025,
                                 max_displaced=0.25)
    assert table["similar"] == Rule(0.3, 12, nearest=32, close=0.025, min_agreement=0.9, max_shifted=0.025,
                                    max_displaced=0.25)
    assert table["shots"] == Rule(0.3, 20, nearest=32, close=0.025, min_agreement=0.9, max_shifted=0.025,
                                  max_displaced=0.25, shots=0.025)
    assert presets(OTHER) == {} and presets({}) == {}


def test_threshold_presets_and_numbers():
    table = presets(MODEL)
    assert resolve_threshold(None, MODEL) == (table["near"], "near")
    assert resolve_threshold("similar", MODEL) == (table["similar"], "similar")
    assert resolve_threshold("exact", MODEL) == (table["exact"], "exact")
    assert resolve_threshold("shots", MODEL) == (table["shots"], "shots")
    assert resolve_threshold("0.25", MODEL) == (Rule(0.25), None)
    assert resolve_threshold(0.3, OTHER) == (Rule(0.3), None)


@pytest.mark.parametrize("edge", [0, "0", 2, "2.0"])
def test_a_threshold_exactly_at_either_end_of_the_cosine_range_is_taken(edge):
    assert resolve_threshold(edge, OTHER) == (Rule(float(edge)), None)


def test_each_refusal_says_what_to_give_instead():
    with pytest.raises(ValueError) as e:
        resolve_threshold("loose", MODEL)
    assert str(e.value) == "unknown preset 'loose'; choose from: exact, near, similar, shots or a cosine distance"
    for outside, shown in [(-0.1, "-0.1"), ("2.001", "2.001")]:
        with pytest.raises(ValueError) as e:
            resolve_threshold(outside, MODEL)
        assert str(e.value) == f"threshold must be a cosine distance in [0, 2], not {shown}"
    with pytest.raises(ValueError) as e:
        resolve_threshold("near", OTHER)
    assert str(e.value) == ("presets are calibrated for efficientnet-lite0 (pool), not my-model (output); "
                            "give --threshold as a cosine distance")
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_threshold("loose", OTHER)  # an unknown name is named as such on any model


def test_the_refusal_for_an_uncalibrated_model_lists_every_calibrated_one(monkeypatch):
    monkeypatch.setitem(rules.PRESETS, ("resnet50", "avgpool"), rules.PRESETS[("efficientnet-lite0", "pool")])
    with pytest.raises(ValueError) as e:
        resolve_threshold("near", OTHER)
    assert str(e.value) == ("presets are calibrated for efficientnet-lite0 (pool), resnet50 (avgpool), not my-model "
                            "(output); give --threshold as a cosine distance")
