"""Second-stage verification: ORB + RANSAC on real photos, with the transform it reports, and the
picture-against-picture check that tells an edited copy from another shot of the same thing."""

import io

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
