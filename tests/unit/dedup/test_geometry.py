"""Second-stage verification: ORB + RANSAC on real photos, with the transform it reports, and the
picture-against-picture check that tells an edited copy from another shot of the same thing."""

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from helpers import sample_photo
from lookalike.dedup import geometry
from lookalike.dedup.rules import PRESETS

NEAR = PRESETS["efficientnet-lite0", "pool"]["near"]


def _jpeg(img, quality):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _watermark(img):
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    draw.rectangle((w - w // 3, h - h // 8, w - 8, h - 8), fill=(255, 255, 255))
    draw.text((w - w // 3 + 6, h - h // 8 + 4), "(c) someone 2026", fill=(0, 0, 0))
    return out


def _colour(img):
    """Saturation x1.5 and a warm tint."""
    r, g, b = ImageEnhance.Color(img).enhance(1.5).split()
    return Image.merge("RGB", (r.point(lambda v: min(255, int(v * 1.08))), g, b.point(lambda v: int(v * 0.9))))


def _screenshot(img):
    """Shown at 90 % in a window (a dark title bar, light margins)."""
    inner = img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.BILINEAR)
    shot = Image.new("RGB", (inner.width + 24, inner.height + 52), (236, 236, 236))
    ImageDraw.Draw(shot).rectangle((0, 0, shot.width, 28), fill=(60, 63, 70))
    shot.paste(inner, (12, 40))
    return shot


def _cutout(img, box, width):
    """The ``box`` of ``img`` as an RGBA ellipse ``width`` wide with a soft edge: something to paste."""
    part = img.crop(box).resize((width, round(width * (box[3] - box[1]) / (box[2] - box[0]))), Image.LANCZOS)
    mask = Image.new("L", part.size, 0)
    ImageDraw.Draw(mask).ellipse((1, 1, part.width - 2, part.height - 2), fill=255)
    part.putalpha(mask.filter(ImageFilter.GaussianBlur(2)))
    return part


def _pasted(back, thing, xy):
    out = back.copy()
    out.paste(thing, xy, thing)
    return out


def _sign(back, scale):
    """A STOP sign (a red octagon, white lettering) pasted on ``back``, ``scale`` x 300 pixels wide."""
    sign = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sign)
    draw.regular_polygon((150, 150, 148), 8, rotation=22.5, fill=(200, 20, 30, 255))
    draw.text((150, 150), "STOP", font=ImageFont.load_default(size=90), fill="white", anchor="mm")
    sign = sign.resize((round(300 * scale), round(300 * scale)), Image.LANCZOS)
    return _pasted(back, sign, (100, 40))


def _pencil(img):
    """A pencil drawing of a photo: its gray colour-dodged by its blurred negative."""
    gray = np.asarray(ImageOps.grayscale(img), np.float32)
    blurred = np.asarray(Image.fromarray(255 - gray.astype(np.uint8)).filter(ImageFilter.GaussianBlur(6)), np.float32)
    sketch = np.clip(gray * 255.0 / np.maximum(255.0 - blurred, 1.0), 0, 255) ** 2 / 255.0
    return Image.fromarray(sketch.astype(np.uint8)).convert("RGB")


def _parallax():
    """One scene shot twice from a step aside: the far scene (coffee) moves by 6 px, a near face by 40."""
    scene = sample_photo("coffee").resize((560, 420))
    face = _cutout(sample_photo("astronaut"), (140, 20, 340, 220), 180)
    return (_pasted(scene.crop((20, 20, 420, 320)), face, (120, 60)),
            _pasted(scene.crop((26, 20, 426, 320)), face, (160, 60)))


def _moved_part():
    """One scene shot twice while a part of it moved (a piece of the rocket photo, before the cat)."""
    cat, part = sample_photo("chelsea"), _cutout(sample_photo("rocket"), (180, 40, 330, 400), 70)
    return _pasted(cat, part, (60, 80)), _pasted(cat, part, (160, 90))


def _other_sign():
    """Two STOP signs, each before its own scene, one a little nearer: the lettering matches."""
    cat = sample_photo("chelsea")
    return _sign(cat, 0.8), _sign(sample_photo("coffee").resize(cat.size), 0.84)


def _drawing():
    """A photo and a drawing of it."""
    cat = sample_photo("chelsea")
    return cat, _pencil(cat)


def _stereo(box=None):
    """A real stereo pair (scikit-image's motorcycle, two cameras a step apart): parallax throughout,
    whole or the same ``box`` of both."""
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    pair = Image.fromarray(left), Image.fromarray(right)
    return pair if box is None else tuple(img.crop(box) for img in pair)


def _moved_man():
    """The cameraman moved 12 px between two shots of one scene."""
    scene = sample_photo("camera")
    moved = scene.copy()
    moved.paste(scene.crop((150, 40, 350, 420)), (162, 40))
    return scene, moved


@pytest.mark.parametrize("make", [_parallax, _moved_part, _other_sign, _drawing, _stereo,
                                  lambda: _stereo((200, 100, 680, 400)), _moved_man],
                         ids=["parallax", "moved part", "another sign", "drawing of a photo", "stereo pair",
                              "stereo pair, one part", "moved man"])
def test_another_shot_of_the_same_thing_fits_one_transform_but_the_pictures_disagree(make):
    a, b = make()
    found = geometry.compare(geometry.features(a), geometry.features(b), NEAR.min_inliers)
    assert found.inliers >= NEAR.min_inliers, found  # the fit alone would call it a copy
    assert found.agreement < NEAR.min_agreement - 0.01 and not NEAR.accepts(found), found


def test_a_step_aside_of_under_a_pixel_agrees_but_is_displaced():
    """A face before the sky, shot twice from a step aside: the sky moves 1 px, the face 4 (in 480 px:
    under a pixel at the 128 px compared). The pictures still correlate everywhere; the face's
    content is displaced against the sky's."""
    sky = sample_photo("hubble_deep_field").resize((520, 400))
    face = _cutout(sample_photo("astronaut"), (140, 20, 340, 220), 200)
    a, b = (_pasted(sky.crop((20 + dx, 20, 500 + dx, 380)), face, (140 + step, 80)) for dx, step in ((0, 0), (1, 4)))
    found = geometry.compare(geometry.features(a), geometry.features(b), NEAR.min_inliers, NEAR.min_agreement)
    assert found.inliers >= 100 and found.agreement >= NEAR.min_agreement and found.shifted <= NEAR.max_shifted, found
    assert found.displaced > NEAR.max_displaced + 0.1 and not NEAR.accepts(found), found


def test_an_object_on_another_plain_background_is_one_picture():
    cat = sample_photo("chelsea")
    thing = _cutout(cat, (80, 20, 400, 300), 280)
    white, gray = (_pasted(Image.new("RGB", (400, 340), colour), thing, (60, 40)) for colour in ("white", (200,) * 3))
    found = geometry.compare(geometry.features(white), geometry.features(gray), NEAR.min_inliers)
    assert NEAR.accepts(found) and found.agreement > 0.97 and found.compared < 0.8, found  # the plain part is not compared


def test_the_mirror_is_tried_when_the_direct_fit_falls_short_of_the_agreement():
    # a symmetric picture fits its mirror image directly too, but only the flip makes the pictures agree
    img = sample_photo("chelsea")
    found = geometry.compare(geometry.features(img), geometry.features(ImageOps.mirror(img)), 20, 0.9)
    assert found.flipped and found.agreement > 0.97


def test_scale_and_crop_are_in_the_files_own_pixels_whichever_is_kept():
    # a 1024 px JPEG is decoded at 256 px (1/4) and its 768 px centre crop at 384 (1/2) for the features
    big = sample_photo("astronaut").resize((1024, 1024))
    crop = big.crop((128, 128, 896, 896))
    original, cropped = (geometry.features(_jpeg(img, 90)) for img in (big, crop))
    found = geometry.compare(original, cropped)
    assert abs(found.scale - 1.0) < 0.03 and abs(found.shown - 0.5625) < 0.03 and found.filled > 0.95
    assert found.edits == ["cropped (shows 56%)"], found
    back = geometry.compare(cropped, original)  # kept: the crop; the original has more around it
    assert abs(back.scale - 1.0) < 0.03 and back.shown > 0.95 and abs(back.filled - 0.5625) < 0.03
    assert back.edits == ["more around it (the kept picture fills 56%)"] and back.borders == "", back


def test_plain_borders_are_named_either_way():
    img = sample_photo("chelsea")
    framed = ImageOps.expand(img, border=(0, 80), fill="black")
    added = geometry.compare(geometry.features(img), geometry.features(framed))
    assert added.borders == "added" and "borders (picture fills 65%)" in added.edits
    removed = geometry.compare(geometry.features(framed), geometry.features(img))
    assert removed.borders == "removed" and "borders removed (shows 65%)" in removed.edits


@pytest.fixture(scope="module")
def chelsea():
    img = sample_photo("chelsea")
    return img, geometry.features(img)


@pytest.mark.parametrize("edit, check", [
    (lambda img: Image.open(io.BytesIO(_jpeg(img, 50))), lambda e: e.rotation == 0 and not e.flipped),
    (lambda img: img.transpose(Image.Transpose.ROTATE_90), lambda e: e.rotation == 90 and "rotated 90°" in e.edits),
    (lambda img: img.transpose(Image.Transpose.ROTATE_270), lambda e: e.rotation == 270),
    (ImageOps.mirror, lambda e: e.flipped and e.rotation == 0 and "flipped" in e.edits),
    (lambda img: img.crop((40, 30, 40 + img.width * 7 // 10, 30 + img.height * 7 // 10)),
     lambda e: 0.4 < e.shown < 0.6 and any(x.startswith("cropped") for x in e.edits)),
    (lambda img: img.resize((img.width // 2, img.height // 2)), lambda e: abs(e.scale - 0.5) < 0.05),
    (lambda img: ImageEnhance.Brightness(img).enhance(1.3), lambda e: 1.15 < e.brightness < 1.45),
    (lambda img: ImageOps.expand(img, border=(0, 80), fill="black"), lambda e: e.filled < 0.85),
    (_watermark, lambda e: e.rotation == 0),
    (lambda img: _colour(img), lambda e: e.rotation == 0 and not e.flipped),
    (_screenshot, lambda e: abs(e.scale - 0.9) < 0.03 and e.filled < 0.85 and e.borders == ""),
], ids=["jpeg50", "rot90", "rot270", "flip", "crop70", "half", "brighter", "letterbox", "watermark", "colour",
        "screenshot"])
def test_edited_copies_verify_with_readable_evidence(chelsea, edit, check):
    img, original = chelsea
    found = geometry.compare(original, geometry.features(edit(img)))
    assert found.inliers >= 40, found
    assert check(found), found
    # one capture: the pictures agree, but where a watermark covers them (an opaque box of 4 %)
    assert found.agreement >= (0.95 if edit is _watermark else 0.97) and NEAR.accepts(found), found
    assert found.displaced < NEAR.max_displaced / 2, found
    assert found.describe().startswith(f"{found.inliers} inliers, {found.agreement:.0%} alike")


def test_different_pictures_of_similar_content_do_not_verify():
    coins = sample_photo("coins")
    w, h = coins.size
    left, right = coins.crop((0, 0, w // 2, h)), coins.crop((w // 2, 0, w, h))  # the same object, no shared pixels
    assert geometry.compare(geometry.features(left), geometry.features(right)).inliers < 15
    cat, coffee = geometry.features(sample_photo("chelsea")), geometry.features(sample_photo("coffee"))
    assert geometry.compare(cat, coffee).inliers < 15


def test_a_flat_picture_has_no_features_and_matches_nothing(chelsea):
    flat = geometry.features(Image.new("RGB", (300, 200), (120, 130, 140)))
    assert len(flat.points) == 0
    assert geometry.compare(chelsea[1], flat) == geometry.NO_MATCH


def test_matches_are_opencv_brute_force_ratio_tested_matches(chelsea):
    import cv2

    img, original = chelsea
    others = [geometry.features(Image.open(io.BytesIO(_jpeg(img, 30)))), geometry.features(ImageOps.mirror(img)),
              geometry.features(sample_photo("coffee"))]
    for other in others:
        for theirs in (other.descriptors, other.mirror_descriptors):
            pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(original.descriptors, theirs, k=2)
            good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < geometry.RATIO * p[1].distance]
            rows, cols = geometry.matches(original.descriptors, theirs)
            assert rows.tolist() == [m.queryIdx for m in good] and cols.tolist() == [m.trainIdx for m in good]


def test_an_inlier_minimum_changes_no_decision(chelsea):
    img, original = chelsea
    coins = sample_photo("coins")
    pictures = [ImageOps.mirror(img), img.transpose(Image.Transpose.ROTATE_90), _watermark(img),
                img.crop((0, 0, img.width // 3, img.height // 3)), sample_photo("coffee"),
                coins.crop((0, 0, coins.width // 2, coins.height))]
    for picture in pictures:
        other = geometry.features(picture)
        full = geometry.compare(original, other)
        for minimum in (5, 20, 60, 400):
            found = geometry.compare(original, other, minimum)
            assert (found.inliers >= minimum) == (full.inliers >= minimum), (minimum, full, found)
            # the mirror is not tried once the direct fit reaches the minimum: at a minimum as low
            # as 5, a chance direct fit of a flipped copy may (same decision, other evidence)
            if found.inliers >= minimum >= 20:
                assert found.flipped == full.flipped and found.rotation == full.rotation


def test_the_evidence_a_report_shows_is_rounded_to_three_places_and_said_in_one_line():
    from lookalike.dedup.geometry import Evidence

    e = Evidence(212, 300, rotation=90, flipped=True, scale=0.50049, shown=0.81234, filled=0.99951,
                 brightness=1.23456, edits=["rotated 90°", "flipped", "cropped (shows 81%)"], agreement=0.98765,
                 compared=0.4321, shifted=0.01234, borders="added", displaced=0.04567)
    assert e.to_dict() == {"inliers": 212, "matches": 300, "agreement": 0.988, "shifted": 0.012, "displaced": 0.046,
                           "compared": 0.432,
                           "rotation": 90, "flipped": True, "scale": 0.5, "shown": 0.812, "filled": 1.0,
                           "brightness": 1.235, "borders": "added",
                           "edits": ["rotated 90°", "flipped", "cropped (shows 81%)"]}
    assert e.to_dict()["edits"] is not e.edits  # a copy: the caller may change it
    assert e.describe() == "212 inliers, 99% alike: rotated 90°, flipped, cropped (shows 81%)"
    assert Evidence(1, 1, filled=0.64951).to_dict()["filled"] == 0.65
    plain = Evidence(40, 41, agreement=0.5)
    assert plain.to_dict()["borders"] is None and plain.to_dict()["edits"] == []
    assert plain.describe() == "40 inliers, 50% alike: same framing"


def test_ransac_draws_enough_samples_to_find_the_inlier_minimum_and_no_more():
    from lookalike.dedup.geometry import MISSED, RANSAC_FEWEST, RANSAC_ITERATIONS, ransac_iterations

    assert ransac_iterations(40, 0) == ransac_iterations(40, 1) == RANSAC_ITERATIONS  # no minimum: the full budget
    assert ransac_iterations(1000, 20) == RANSAC_ITERATIONS
    for matches in (20, 25, 40, 60, 100, 150, 200):
        k = ransac_iterations(matches, 20)
        hit = 20 * 19 / (matches * (matches - 1))  # both of a sample among 20 inliers, hand-worked
        assert RANSAC_FEWEST <= k <= RANSAC_ITERATIONS
        assert (1 - hit) ** k <= MISSED or k == RANSAC_ITERATIONS  # enough
        assert k == RANSAC_FEWEST or (1 - hit) ** (k - 1) > MISSED  # and no more
    assert ransac_iterations(30, 20) < 100 < ransac_iterations(150, 20)
    # two inliers among 10 matches: a sample hits both with probability 1/45, (44/45)^615 < 1e-6 < (44/45)^614
    assert ransac_iterations(10, 2) == 615
    assert ransac_iterations(2, 2) == ransac_iterations(3, 3) == RANSAC_FEWEST  # every sample is the inliers
    assert ransac_iterations(1, 5) == RANSAC_ITERATIONS


def test_the_sample_budget_changes_no_decision_on_copies_and_other_pictures(chelsea):
    import cv2

    img, original = chelsea
    real = cv2.estimateAffinePartial2D
    budgets = []

    def spy(*args, **kwargs):
        budgets.append(kwargs["maxIters"])
        return real(*args, **kwargs)

    pictures = [_watermark(img), img.crop((0, 0, img.width * 3 // 4, img.height * 3 // 4)), sample_photo("coffee"),
                ImageOps.mirror(img), sample_photo("rocket")]
    others = [geometry.features(p) for p in pictures]
    capped = [geometry.compare(original, o, NEAR.min_inliers) for o in others]
    cv2.estimateAffinePartial2D = spy
    try:
        geometry.compare(original, others[2], NEAR.min_inliers)
    finally:
        cv2.estimateAffinePartial2D = real
    full = [geometry.compare(original, o) for o in others]
    assert [c.inliers >= NEAR.min_inliers for c in capped] == [f.inliers >= NEAR.min_inliers for f in full]
    assert all(b < geometry.RANSAC_ITERATIONS for b in budgets)  # another photo: a small budget



@pytest.mark.parametrize("size, thin", [((600, 1), (256, 1)), ((1, 600), (1, 256)), ((200, 1), (256, 1)),
                                        ((900, 3), (256, 1)), ((256, 30), (256, 30))])
def test_a_strip_too_thin_for_a_corner_has_no_features_and_matches_nothing(size, thin):
    # at 256 px on its long side no pixel of such a strip lies 15 px from both edges: no corner is found
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8))
    found = geometry.features(strip)
    assert found.size == thin and len(found.points) == len(found.mirror_points) == 0
    assert geometry.compare(found, found) == geometry.NO_MATCH


def test_a_strip_just_thick_enough_for_a_corner_has_features():
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 256, (36, 256), dtype=np.uint8))
    assert len(geometry.features(strip).points) > 10


# Hand-made features: A's keypoints, with random descriptors, mapped onto B's by a known transform
# (OpenCV's getRotationMatrix2D: counter-clockwise degrees, y down); what the fit reports is worked by hand.

RNG = np.random.default_rng(7)
N = 60
POINTS = RNG.uniform([20, 20], [236, 180], (N, 2)).astype(np.float32)
DESCRIPTORS = RNG.integers(0, 256, (N, 32), dtype=np.uint8)
LEVELS = RNG.uniform(40, 200, N).astype(np.float32)
OTHERS = RNG.integers(0, 256, (N, 32), dtype=np.uint8)  # descriptors that match none of A's
NONE = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros(0, np.float32)
_TEXTURE = np.random.default_rng(8).integers(0, 256, (100, 128), dtype=np.uint8)  # no plain borders anywhere


def _made(points=POINTS, descriptors=DESCRIPTORS, levels=LEVELS, mirror=NONE, size=(256, 200), scale=1.0,
          small=None):
    small = _TEXTURE[:size[1] // 2, :size[0] // 2] if small is None else small
    return geometry.Features(np.float32(points), descriptors, np.float32(levels), np.float32(mirror[0]), mirror[1],
                             np.float32(mirror[2]), size, scale, small)


def _moved(angle=0.0, scale=1.0, shift=(0.0, 0.0), points=POINTS):
    """``points`` turned by ``angle`` degrees and scaled about the frame's centre, then shifted."""
    import cv2

    m = cv2.getRotationMatrix2D((128.0, 100.0), angle, scale)
    return points @ m[:, :2].T + m[:, 2] + shift


A = _made()


@pytest.mark.parametrize("angle, rotation", [(0, 0), (30, 30), (81, 81), (83, 90), (97, 90), (99, 99), (180, 180),
                                             (268, 270), (300, 300), (-30, 330), (352.5, 0), (355, 0), (-3, 0)])
def test_the_rotation_is_counter_clockwise_and_within_8_degrees_of_a_right_angle_said_as_it(angle, rotation):
    found = geometry.compare(A, _made(_moved(angle)))
    assert found.inliers == N and found.rotation == rotation and not found.flipped, found
    assert [e for e in found.edits if e.startswith("rotated")] == ([f"rotated {rotation}°"] if rotation else [])


def test_the_same_picture_is_the_same_framing_with_nothing_to_say():
    found = geometry.compare(A, _made())
    assert (found.inliers, found.matches, found.rotation, found.flipped) == (N, N, 0, False)
    assert (found.scale, found.shown, found.filled, found.brightness) == pytest.approx((1.0, 1.0, 1.0, 1.0), abs=1e-6)
    assert found.edits == [] and found.borders == "" and found.describe().endswith(": same framing")


@pytest.mark.parametrize("fit, scales, resized", [
    (0.5, (1.0, 1.0), 0.5), (1.0, (0.5, 0.25), 2.0),  # a file twice as large, both brought to 256 px
    (2.0, (0.25, 0.5), None), (1.03, (1.0, 1.0), None), (0.97, (1.0, 1.0), None), (1.05, (1.0, 1.0), 1.05),
    (0.16, (1.0, 1.0), 0.16), (6.9, (1.0, 1.0), 6.9)])
def test_the_scale_is_in_the_files_own_pixels_and_said_from_4_percent(fit, scales, resized):
    found = geometry.compare(_made(scale=scales[0]), _made(_moved(scale=fit), scale=scales[1]))
    assert found.inliers == N and found.scale == pytest.approx(resized or fit * scales[0] / scales[1], rel=1e-4)
    assert [e for e in found.edits if e.startswith("resized")] == ([f"resized ×{resized:.2f}"] if resized else [])


@pytest.mark.parametrize("fit", [0.1, 0.149, 7.1, 20.0])
def test_a_fit_shrinking_below_0_15_or_growing_past_7_is_no_fit(fit):
    assert geometry.compare(A, _made(_moved(scale=fit))) == geometry.Evidence(0, N)


@pytest.mark.parametrize("shift, shown, edits", [
    ((128, 0), 0.5, ["cropped (shows 50%)", "more around it (the kept picture fills 50%)"]),
    ((0, -50), 0.75, ["cropped (shows 75%)", "more around it (the kept picture fills 75%)"]),
    ((15, 0), 241 / 256, ["cropped (shows 94%)", "more around it (the kept picture fills 94%)"]),
    ((10, 0), 246 / 256, [])])  # 96 %: not said
def test_a_shifted_frame_shows_and_fills_the_share_they_overlap_said_below_95_percent(shift, shown, edits):
    found = geometry.compare(A, _made(_moved(shift=shift)))
    assert found.shown == pytest.approx(shown, abs=1e-4) and found.filled == pytest.approx(shown, abs=1e-4)
    assert found.edits == edits and found.borders == ""


def test_a_smaller_or_larger_copy_shows_all_or_fills_all():
    smaller = geometry.compare(A, _made(_moved(scale=0.5)))  # A fits inside B, a quarter of it
    assert (smaller.shown, smaller.filled) == (1.0, pytest.approx(0.25, abs=1e-4))
    larger = geometry.compare(A, _made(_moved(scale=2.0)))  # B shows A's middle quarter
    assert (larger.shown, larger.filled) == (pytest.approx(0.25, abs=1e-4), 1.0)
    assert larger.edits == ["resized ×2.00", "cropped (shows 25%)"]


@pytest.mark.parametrize("gain, edit", [(1.2, "brighter ×1.20"), (0.8, "darker ×0.80"), (1.07, None), (0.93, None),
                                        (1.1, "brighter ×1.10"), (0.9, "darker ×0.90")])
def test_the_brightness_is_the_gray_levels_ratio_at_the_inliers_said_from_8_percent(gain, edit):
    found = geometry.compare(A, _made(levels=LEVELS * gain))
    assert found.brightness == pytest.approx(gain, rel=1e-5)
    assert [e for e in found.edits if "brighter" in e or "darker" in e] == ([edit] if edit else [])


def test_the_brightness_is_the_median_ratio_over_the_inliers_only():
    levels = LEVELS * 1.2
    levels[:10] *= 5  # a few bright spots (a reflection): the median ignores them
    assert geometry.compare(A, _made(levels=levels)).brightness == pytest.approx(1.2, rel=1e-5)
    # 36 of 60 matches land elsewhere on much brighter pixels: not inliers, not counted
    points, levels = _moved(), LEVELS * 1.2
    points[24:] = RNG.uniform(20, 180, (36, 2))
    levels[24:] *= 10
    found = geometry.compare(A, _made(points, levels=levels))
    assert found.inliers == 24 and found.brightness == pytest.approx(1.2, rel=1e-5)


def test_a_black_keypoint_counts_as_gray_level_1():
    found = geometry.compare(_made(levels=np.zeros(N)), _made(levels=np.full(N, 3.0)))
    assert found.brightness == 3.0 and "brighter ×3.00" in found.edits


def test_a_mirror_image_fits_through_its_mirror_features():
    b = _made(descriptors=OTHERS, mirror=(_moved(90), DESCRIPTORS, LEVELS))
    found = geometry.compare(A, b)
    assert found.flipped and found.inliers == N and found.edits[:2] == ["rotated 90°", "flipped"]


def _two_ways(direct: int, mirrored: int) -> geometry.Features:
    """B with ``direct`` of A's keypoints among its own features and ``mirrored`` among its mirror image's."""
    def some(k):
        return _moved(), np.concatenate([DESCRIPTORS[:k], OTHERS[k:]]), LEVELS

    return _made(*some(direct), mirror=some(mirrored))


@pytest.mark.parametrize("direct, mirrored, minimum, flipped, inliers", [
    (25, 40, 0, True, 40),  # no minimum: the most inliers
    (40, 40, 0, False, 40),  # as many: the direct fit
    (25, 40, 20, False, 25),  # the direct fit reaches the minimum: the mirror is not tried
    (20, 40, 20, False, 20),  # just
    (25, 40, 30, True, 40),  # it does not: the mirror is
    (40, 25, 30, False, 40)])
def test_the_mirror_is_chosen_when_it_fits_more_and_only_tried_when_needed(direct, mirrored, minimum, flipped, inliers):
    found = geometry.compare(A, _two_ways(direct, mirrored), minimum)
    assert (found.flipped, found.inliers) == (flipped, inliers), found


def test_neither_fit_reaching_the_minimum_is_the_direct_matches_without_a_fit():
    # fewer matches than the minimum either way: no fit tried, the direct matches counted
    assert geometry.compare(A, _two_ways(25, 28), 30) == geometry.Evidence(0, 25)
    assert geometry.compare(A, _two_ways(28, 25), 30) == geometry.Evidence(0, 28)


def test_the_mirror_is_chosen_for_its_agreement_before_more_inliers():
    picture = np.random.default_rng(3).integers(0, 256, (100, 128), dtype=np.uint8)
    a = _made(small=picture)
    b = _two_ways(40, 30)  # B is A's mirror image: only through the mirror do the pictures agree
    b = geometry.Features(*[getattr(b, f) for f in ("points", "descriptors", "levels", "mirror_points",
                                                    "mirror_descriptors", "mirror_levels", "size", "scale")],
                          np.ascontiguousarray(picture[:, ::-1]))
    assert geometry.compare(a, b).agreement < 0.2  # no agreement asked: the most inliers, direct
    assert not geometry.compare(A, _two_ways(40, 45), 20, 1.0).flipped  # the direct fit agrees fully: kept
    found = geometry.compare(a, b, 20, 0.9)
    assert found.flipped and found.inliers == 30 and found.agreement == 1.0, found


def test_a_photo_compared_with_itself_fits_every_keypoint_and_says_same_framing(chelsea):
    _, original = chelsea
    found = geometry.compare(original, original)
    assert found.inliers == found.matches == len(original.points), found
    assert (found.rotation, found.flipped, found.edits, found.borders) == (0, False, [], "")
    assert (found.agreement, found.shifted, found.displaced, found.brightness) == (1.0, 0.0, 0.0, 1.0)
    assert found.describe() == f"{len(original.points)} inliers, 100% alike: same framing"


@pytest.mark.parametrize("name, width", [("camera", 40), ("astronaut", 32)])
def test_a_thumbnail_is_a_duplicate_of_its_photo_whichever_is_kept(name, width):
    # a file under 128 px is enlarged to the pictures compared: the photo is softened to its detail
    photo = sample_photo(name)
    thumbnail = photo.resize((width, width), Image.LANCZOS)
    for a, b in ((photo, thumbnail), (thumbnail, photo)):
        found = geometry.compare(geometry.features(a), geometry.features(b), NEAR.min_inliers, NEAR.min_agreement)
        assert NEAR.accepts(found) and found.agreement > 0.97, found


def test_a_mirrored_copy_is_as_bright_where_its_own_side_is_shaded():
    # darker to the left: the mirror's gray levels must be read on the mirror image, not the picture
    cat = np.asarray(sample_photo("chelsea").convert("L"), np.float32)
    shaded = Image.fromarray((cat * np.linspace(0.3, 1.0, cat.shape[1])[None, :]).astype(np.uint8))
    found = geometry.compare(geometry.features(shaded), geometry.features(ImageOps.mirror(shaded)))
    assert found.flipped and abs(found.brightness - 1.0) < 0.03 and found.edits == ["flipped"], found


@pytest.mark.parametrize("size, picture", [((300, 200), (256, 171)), ((200, 300), (171, 256)), ((256, 256), (256, 256)),
                                           ((2, 1), (256, 128)), ((1000, 10), (256, 3))])
def test_the_gray_picture_has_256_pixels_on_its_long_side_and_the_file_keeps_its_size(size, picture):
    gray, full = geometry.gray_picture(Image.new("RGB", size, (200, 100, 50)))
    assert gray.dtype == np.uint8 and (gray.shape[1], gray.shape[0]) == picture and full == size


def test_the_gray_picture_averages_when_shrinking_and_interpolates_when_enlarging():
    checks = (np.indices((768, 768)).sum(axis=0) % 2 * 255).astype(np.uint8)  # 1 px squares, a third of a pixel at 256
    gray, _ = geometry.gray_picture(checks)
    assert set(np.unique(gray)) <= {113, 142}  # 4 or 5 white of each 3 x 3: averaged, not sampled
    corners, _ = geometry.gray_picture(np.array([[0, 255], [255, 0]], np.uint8))
    assert len(np.unique(corners)) > 100  # a smooth ramp between the four pixels, not four blocks


def test_features_are_at_256_px_with_the_scale_from_the_files_pixels():
    found = geometry.features(sample_photo("coffee").resize((400, 300)))
    assert found.size == (256, 192) and found.scale == 0.64 and found.small.shape == (96, 128)
    assert 200 <= len(found.points) <= geometry.N_FEATURES and found.descriptors.shape == (len(found.points), 32)
    assert found.points.dtype == found.levels.dtype == np.float32 and found.levels.shape == (len(found.points),)
    # the mirror image's keypoints are the same corners, mirrored: x -> 255 - x
    back = found.mirror_points * [-1, 1] + [255, 0]
    assert len(found.mirror_points) > 0.9 * len(found.points)
    assert np.abs(back[:, None] - found.points[None]).max(axis=2).min(axis=1).max() < 1e-3


def test_a_flat_picture_has_empty_features_of_the_right_shapes():
    flat = geometry.features(Image.new("L", (300, 200), 90))
    for points, descriptors, levels in ((flat.points, flat.descriptors, flat.levels),
                                        (flat.mirror_points, flat.mirror_descriptors, flat.mirror_levels)):
        assert (points.shape, points.dtype) == ((0, 2), np.float32)
        assert (descriptors.shape, descriptors.dtype) == ((0, 32), np.uint8)
        assert (levels.shape, levels.dtype) == ((0,), np.float32)
    assert flat.size == (256, 171) and flat.scale == 256 / 300 and flat.small.shape == (86, 128)


def test_fewer_than_3_features_or_matches_are_no_fit():
    assert geometry.compare(_made(POINTS[:2], DESCRIPTORS[:2], LEVELS[:2]), A) == geometry.NO_MATCH
    assert geometry.compare(A, _made(POINTS[:2], DESCRIPTORS[:2], LEVELS[:2])) == geometry.NO_MATCH
    three = _made(POINTS[:3], DESCRIPTORS[:3], LEVELS[:3])
    for found in (geometry.compare(A, three), geometry.compare(three, A)):
        assert (found.inliers, found.matches, found.rotation) == (3, 3, 0)
    # two of A's features among B's: two matches, too few to fit
    two = _made(descriptors=np.concatenate([DESCRIPTORS[:2], OTHERS[2:]]))
    assert geometry.compare(A, two) == geometry.Evidence(0, 2)


def test_an_inlier_minimum_stops_at_fewer_matches_and_at_fewer_inliers():
    some = _made(descriptors=np.concatenate([DESCRIPTORS[:20], OTHERS[20:]]))  # 20 matches, all consistent
    assert geometry.compare(A, some, 21) == geometry.Evidence(0, 20)  # not fitted
    just = geometry.compare(A, some, 20)  # fitted and described: as many inliers as asked
    assert just.inliers == 20 and just.agreement == 1.0 and just.compared > 0
    points = _moved()
    points[30:] = RNG.uniform(20, 180, (30, 2))  # 30 of the 60 matches land anywhere
    assert geometry.compare(A, _made(points), 40) == geometry.Evidence(30, N)  # fitted, not worth describing


def test_matches_that_no_transform_fits_are_no_fit():
    same = _made(np.full((N, 2), 50.0))  # every match from one point: no transform
    assert geometry.compare(same, _made(RNG.uniform(20, 180, (N, 2)))) == geometry.Evidence(0, N)


def test_a_match_is_the_nearest_descriptor_if_nearer_than_80_percent_of_the_second():
    def bits(*counts):
        """Descriptors with their first ``count`` bits set."""
        return np.packbits(np.arange(256)[None, :] < np.array(counts)[:, None], axis=1)

    zero = bits(0)
    # the nearest is row 1 (7 bits off) and the second row 0 (10 off): 7 < 8, a match; 8 < 8 is not
    assert [r.tolist() for r in geometry.matches(zero, bits(10, 7))] == [[0], [1]]
    assert [r.tolist() for r in geometry.matches(zero, bits(10, 8))] == [[], []]
    assert geometry.matches(zero, bits(0))[0].size == 0  # one descriptor: no second to compare with
    rows, cols = geometry.matches(bits(0, 200), bits(3, 250, 100))
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1] and cols.dtype == np.int64


def test_corners_of_12_gray_levels_are_found():
    # FAST's threshold is 10 gray levels: faint squares on a gray ground still have their corners
    faint = np.full((200, 256), 100, np.uint8)
    for y in range(20, 180, 32):
        for x in range(20, 236, 32):
            faint[y:y + 14, x:x + 14] = 112
    assert len(geometry.features(Image.fromarray(faint)).points) > 100


def test_the_mirror_images_descriptors_are_those_orb_computes_on_it():
    img = sample_photo("chelsea")
    found, mirrored = geometry.features(img), geometry.features(ImageOps.mirror(img))
    # the corners both keep (ORB keeps its 300 strongest of each picture: about a third are the same)
    same = np.abs(found.mirror_points[:, None] - mirrored.points[None]).max(axis=2) < 0.01
    mine, theirs = np.nonzero(same)
    assert len(mine) > 50
    assert np.array_equal(found.mirror_descriptors[mine], mirrored.descriptors[theirs])


# Limits met exactly.


def test_a_frame_showing_and_filled_exactly_95_percent_is_not_cropped_nor_more_around_it():
    found = geometry.compare(A, _made(_moved(shift=(0, -10))))  # 190 of 200 rows overlap
    assert (found.shown, found.filled) == (0.95, 0.95) and found.edits == [], found


def _fitted(monkeypatch, matrix) -> geometry.Evidence:
    """A against itself, RANSAC's answer being ``matrix`` with every match an inlier."""
    import cv2

    monkeypatch.setattr(cv2, "estimateAffinePartial2D",
                        lambda src, *_, **__: (np.array(matrix, np.float64), np.ones((len(src), 1), np.uint8)))
    return geometry.compare(A, _made())


@pytest.mark.parametrize("angle, rotation", [(82, 90), (98, 90), (352, 0), (8, 0)])
def test_a_rotation_exactly_8_degrees_from_a_right_angle_is_said_as_it(monkeypatch, angle, rotation):
    turn = math.radians(angle)
    cos, sin = math.cos(turn), math.sin(turn)  # counter-clockwise, y down: (cos, sin; -sin, cos)
    assert (-math.degrees(math.atan2(-sin, cos))) % 360 == angle % 360  # exactly, in floating point
    found = _fitted(monkeypatch, [[cos, sin, 0.0], [-sin, cos, 0.0]])
    assert found.inliers == N and found.rotation == rotation, found


@pytest.mark.parametrize("scale", [0.15, 7.0])
def test_a_fit_scaling_by_exactly_0_15_or_7_is_a_fit(monkeypatch, scale):
    found = _fitted(monkeypatch, [[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    assert found.inliers == N and found.scale == scale and f"resized ×{scale:.2f}" in found.edits, found


def test_the_gray_picture_interpolates_linearly_when_enlarging_by_under_2():
    row = (np.arange(200) % 10 * 25).astype(np.uint8)  # a sawtooth of 25 gray levels a pixel
    gray, _ = geometry.gray_picture(np.tile(row, (100, 1)))  # enlarged 1.28 x to 256 x 128
    at = np.clip((np.arange(256) + 0.5) * 200 / 256 - 0.5, 0, 199)  # pixel centres, in the file's pixels
    assert gray.shape == (128, 256) and np.abs(gray - np.interp(at, np.arange(200), row)).max() <= 1
