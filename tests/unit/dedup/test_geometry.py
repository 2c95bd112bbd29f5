"""Second-stage verification: ORB + RANSAC on real photos, with the transform it reports."""

import io

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from helpers import sample_photo
from lookalike.dedup import geometry


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
], ids=["jpeg50", "rot90", "rot270", "flip", "crop70", "half", "brighter", "letterbox", "watermark"])
def test_edited_copies_verify_with_readable_evidence(chelsea, edit, check):
    img, original = chelsea
    found = geometry.compare(original, geometry.features(edit(img)))
    assert found.inliers >= 40, found
    assert check(found), found
    assert found.describe().startswith(f"{found.inliers} inliers")


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
