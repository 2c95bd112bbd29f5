"""Verifying that two images show the same picture: ORB features matched under a similarity transform.

The second stage of near-duplicate detection (:mod:`lookalike.dedup`): a candidate pair from the
embedding or the dihedral hashes is a duplicate when many local features of one image map onto
the other by one rotation + uniform scale + translation, with or without a mirror flip (OpenCV
ORB, ratio-tested brute-force Hamming matches, RANSAC :func:`cv2.estimateAffinePartial2D`). That
signal is specific to the instance: another photo of the same kind of flower shares its category
but almost no geometrically consistent corners. The fitted transform is the readable evidence:
rotation, flip, scale, the share of one picture shown in the other (crop, borders) and brightness.
Another shot of the same scene or another object in the same pose can fit one transform too, so a
fit is then checked picture against picture (:mod:`lookalike.dedup.capture`): the share of the
overlap where the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lookalike.dedup import capture
from lookalike.images import decode_sized
from lookalike.vectors import hamming

#: Long side, in pixels, at which features are extracted (both images are brought to it).
SIDE = 256
#: ORB features per image (the same corners are described again on its mirror image).
N_FEATURES = 300
#: ORB pyramid: levels and the scale between them.
LEVELS = 5
SCALE_FACTOR = 1.3
#: FAST corner threshold (gray levels).
FAST_THRESHOLD = 10
#: ORB finds no corner within this many pixels (at :data:`SIDE`) of the picture's edges.
EDGE = 15
#: Lowe's ratio test for a descriptor match.
RATIO = 0.8
#: RANSAC inlier distance, in pixels at :data:`SIDE`.
REPROJECTION = 4.0
#: RANSAC samples drawn at most; with an inlier minimum, no more than it takes to draw two of that
#: many inliers at least once but with probability :data:`MISSED`, and never fewer than
#: :data:`RANSAC_FEWEST` (:func:`ransac_iterations`).
RANSAC_ITERATIONS, RANSAC_FEWEST = 2000, 50
MISSED = 1e-6
#: Angles within this many degrees of a multiple of 90 are reported as that multiple.
RIGHT_ANGLE_SLACK = 8.0


@dataclass(frozen=True)
class Features:
    """ORB keypoints (x, y at :data:`SIDE` scale), descriptors and the gray level under each keypoint,
    for the image and for its mirror image (in the mirror image's coordinates); ``size`` is (width, height) at that scale,
    ``scale`` the factor from the file's own pixels to it, and ``small`` the gray picture compared
    after a fit (:func:`lookalike.dedup.capture.small`)."""

    points: np.ndarray
    descriptors: np.ndarray
    levels: np.ndarray
    mirror_points: np.ndarray
    mirror_descriptors: np.ndarray
    mirror_levels: np.ndarray
    size: tuple[int, int]
    scale: float
    small: np.ndarray


@dataclass(frozen=True)
class Evidence:
    """How image B (a duplicate) maps onto image A (the kept file): geometric inliers and the fitted
    transform. ``shown`` is the share of A visible in B (below 1: B is cropped), ``filled`` the share
    of B that A's content fills (below 1: borders, or more around it: A may be a crop of B),
    ``scale`` B's pixels per A pixel (the files' own pixels), ``brightness`` the median ratio of B's
    to A's gray level at the inliers, ``agreement`` the share of the overlap where the aligned
    pictures agree, ``shifted`` the share where they differ but show the same thing a few pixels
    away and ``displaced`` the share where they agree but what they show lies a fraction of a pixel
    or more away from where the fit puts it (parallax, a little motion: another shot), and
    ``compared`` the share of the overlap that has structure to compare
    (:func:`lookalike.dedup.capture.agreement`). ``borders`` is ``"added"`` when B is A on plain
    bars or padding, ``"removed"`` when B is A without A's own plain borders
    (:func:`lookalike.dedup.capture.plain_around`)."""

    inliers: int
    matches: int
    rotation: int = 0
    flipped: bool = False
    scale: float = 1.0
    shown: float = 1.0
    filled: float = 1.0
    brightness: float = 1.0
    edits: list[str] = field(default_factory=list)
    agreement: float = 0.0
    compared: float = 0.0
    shifted: float = 0.0
    borders: str = ""
    displaced: float = 0.0

    def to_dict(self) -> dict:
        return {"inliers": self.inliers, "matches": self.matches, "agreement": round(self.agreement, 3),
                "shifted": round(self.shifted, 3), "displaced": round(self.displaced, 3), "compared": round(self.compared, 3),
                "rotation": self.rotation, "flipped": self.flipped,
                "scale": round(self.scale, 3), "shown": round(self.shown, 3), "filled": round(self.filled, 3),
                "brightness": round(self.brightness, 3), "borders": self.borders or None, "edits": list(self.edits)}

    def describe(self) -> str:
        """One line for people: ``"212 inliers, 98% alike: rotated 90°, flipped, cropped (shows 81%)"``."""
        return (f"{self.inliers} inliers, {self.agreement:.0%} alike" +
                (f": {', '.join(self.edits)}" if self.edits else ": same framing"))


NO_MATCH = Evidence(0, 0)


def gray_picture(image) -> tuple[np.ndarray, tuple[int, int]]:
    """An image's gray picture with :data:`SIDE` pixels on its long side (uint8, H x W) and the file's
    own (width, height); ImageError when unreadable."""
    import cv2

    img, full = decode_sized(image, size=SIDE, gray=True)
    resize = SIDE / max(img.size)
    size = max(1, round(img.width * resize)), max(1, round(img.height * resize))
    return cv2.resize(np.asarray(img), size, interpolation=cv2.INTER_AREA if resize < 1 else cv2.INTER_LINEAR), full


def features(image) -> Features:
    """:class:`Features` of an image (path, bytes, PIL image or array); ImageError when unreadable."""
    import cv2

    gray, full = gray_picture(image)
    h, w = gray.shape
    scale = SIDE / max(full)  # a JPEG is decoded smaller than its file: scale from the file's pixels
    orb = cv2.ORB_create(nfeatures=N_FEATURES, scaleFactor=SCALE_FACTOR, nlevels=LEVELS, fastThreshold=FAST_THRESHOLD,
                         edgeThreshold=EDGE, patchSize=15)
    # a strip too thin for a corner: none is looked for (ORB's pyramid fails on one a pixel thin)
    keypoints, descriptors = ([], None) if min(h, w) <= 2 * EDGE else orb.detectAndCompute(gray, None)
    if descriptors is None:
        empty = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), np.zeros(0, np.float32)
        return Features(*empty, *empty, (w, h), scale, capture.small(gray))
    blurred = cv2.GaussianBlur(gray, (5, 5), 0)

    def located(found: list, picture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        points = cv2.KeyPoint_convert(found).reshape(-1, 2) if found else np.zeros((0, 2), np.float32)
        xy = np.clip(np.rint(points).astype(int), 0, [w - 1, h - 1])
        return points, picture[xy[:, 1], xy[:, 0]].astype(np.float32)

    # The mirror image has the same corners, mirrored: only their descriptors are computed there
    # (with the mirrored orientation), not detected again.
    mirrored = [cv2.KeyPoint(w - 1 - k.pt[0], k.pt[1], k.size, (180.0 - k.angle) % 360.0, k.response, k.octave)
                for k in keypoints]
    mirrored, mirror_descriptors = orb.compute(np.ascontiguousarray(gray[:, ::-1]), mirrored)
    if mirror_descriptors is None:
        mirrored, mirror_descriptors = [], np.zeros((0, 32), np.uint8)
    points, levels = located(keypoints, blurred)
    mirror_points, mirror_levels = located(mirrored, blurred[:, ::-1])
    return Features(points, descriptors, levels, mirror_points, mirror_descriptors, mirror_levels, (w, h), scale,
                     capture.small(gray))


def compare(a: Features, b: Features, min_inliers: int = 0, min_agreement: float = 0.0) -> Evidence:
    """The best similarity transform from A onto B, or onto B's mirror image (a flip), as :class:`Evidence`:
    one with at least ``min_inliers`` inliers and ``min_agreement`` first, then the most inliers.

    The mirror is tried only when the direct fit falls short of those (with ``min_inliers`` 0: always).
    """
    best = _fit(a, b, flipped=False, min_inliers=min_inliers)
    passes = lambda e: e.inliers >= min_inliers and e.agreement >= min_agreement  # noqa: E731
    if not min_inliers or not passes(best):
        mirror = _fit(a, b, flipped=True, min_inliers=min_inliers)
        if (passes(mirror), mirror.inliers) > (passes(best), best.inliers):
            best = mirror
    return best


def matches(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of ``a``, rows of ``b``): each ORB descriptor of ``a`` with its nearest in ``b`` by Hamming
    distance, where that passes Lowe's ratio test (:data:`RATIO`) against the second nearest. The same
    matches as OpenCV's brute-force ``knnMatch``, as arrays (a FAISS binary flat index: no Python object
    per match, and several times faster). Call it from threads made
    :func:`lookalike.vectors.hamming.single_threaded`."""
    distance, nearest = hamming.two_nearest(b, a)
    good = np.flatnonzero((nearest[:, 1] >= 0) & (distance[:, 0] < RATIO * distance[:, 1]))
    return good, nearest[good, 0].astype(np.int64)


def _fit(a: Features, b: Features, flipped: bool, min_inliers: int = 0) -> Evidence:
    """Evidence of the best RANSAC similarity transform from A's keypoints onto B's, or onto its mirror
    image's with ``flipped`` (no fit is tried with fewer than ``min_inliers`` matches)."""
    import cv2

    points, descriptors, levels = ((b.mirror_points, b.mirror_descriptors, b.mirror_levels) if flipped
                                   else (b.points, b.descriptors, b.levels))
    if len(a.descriptors) < 3 or len(descriptors) < 3:
        return NO_MATCH
    src_index, dst_index = matches(a.descriptors, descriptors)
    if len(src_index) < max(3, min_inliers):  # RANSAC cannot find more inliers than matches
        return Evidence(0, len(src_index))
    matrix, mask = cv2.estimateAffinePartial2D(a.points[src_index], points[dst_index], method=cv2.RANSAC,
                                               ransacReprojThreshold=REPROJECTION, confidence=0.995,
                                               maxIters=ransac_iterations(len(src_index), min_inliers))
    if matrix is None or mask is None:
        return Evidence(0, len(src_index))
    inlier = mask.ravel().astype(bool)
    s = math.hypot(matrix[0, 0], matrix[1, 0])
    if not 0.15 <= s <= 7.0:  # a degenerate fit, not an edit anyone makes
        return Evidence(0, len(src_index))
    if inlier.sum() < min_inliers:  # rejected: the transform is not worth describing
        return Evidence(int(inlier.sum()), len(src_index))
    rotation = (-math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))) % 360.0  # counter-clockwise, y down
    right = round(rotation / 90.0) % 4 * 90
    rotation_deg = right if abs(((rotation - right + 180.0) % 360.0) - 180.0) <= RIGHT_ANGLE_SLACK else round(rotation)
    shown, filled = _overlap(matrix, a.size, b.size)
    ratio = levels[dst_index[inlier]] / np.maximum(a.levels[src_index[inlier]], 1.0)
    brightness = float(np.median(ratio)) if len(ratio) else 1.0
    real_scale = s * a.scale / b.scale  # B's own pixels per A's own pixel
    theirs = np.ascontiguousarray(b.small[:, ::-1]) if flipped else b.small  # in the fit's frame
    alike = capture.agreement(a.small, theirs, matrix, a.size, b.size, (_detail(a), _detail(b)))
    # borders: B is A on plain bars or padding ("added"), or A without its own ("removed")
    added = filled < 0.95 and capture.plain_around(a.small, theirs, matrix, a.size, b.size)
    removed = shown < 0.95 and capture.plain_around(theirs, a.small, cv2.invertAffineTransform(matrix), b.size, a.size)
    edits = []
    if rotation_deg % 360:
        edits.append(f"rotated {rotation_deg}°")
    if flipped:
        edits.append("flipped")
    if abs(real_scale - 1.0) > 0.04:
        edits.append(f"resized ×{real_scale:.2f}")
    if shown < 0.95:
        edits.append(f"{'borders removed' if removed else 'cropped'} (shows {shown:.0%})")
    if filled < 0.95:
        edits.append(f"borders (picture fills {filled:.0%})" if added else
                     f"more around it (the kept picture fills {filled:.0%})")
    if abs(brightness - 1.0) > 0.08:
        edits.append(f"{'brighter' if brightness > 1 else 'darker'} ×{brightness:.2f}")
    return Evidence(int(inlier.sum()), len(src_index), int(rotation_deg) % 360, flipped, real_scale, shown, filled,
                    brightness, edits, alike.share, alike.compared, alike.shifted,
                    "added" if added else "removed" if removed else "", alike.displaced)


def ransac_iterations(matches: int, min_inliers: int) -> int:
    """RANSAC samples (two matches each) to draw among ``matches`` matches: enough that, were
    ``min_inliers`` of them (at least 2) consistent with one transform, a sample of two of those is drawn
    but with probability :data:`MISSED`; between :data:`RANSAC_FEWEST` and :data:`RANSAC_ITERATIONS`.
    A pair of distinct photos has 20-40 chance matches: a few dozen samples settle that no 20 of them
    agree, where OpenCV's own stopping rule drew hundreds. With no minimum, :data:`RANSAC_ITERATIONS`."""
    if min_inliers < 2 or matches < 2:
        return RANSAC_ITERATIONS
    hit = min(1.0, min_inliers * (min_inliers - 1) / (matches * (matches - 1)))
    needed = 1 if hit >= 1.0 else math.ceil(math.log(MISSED) / math.log1p(-hit))
    return int(min(RANSAC_ITERATIONS, max(RANSAC_FEWEST, needed)))


def _detail(f: Features) -> float:
    """The file's own pixels per pixel of its small gray picture (below 1: enlarged to it)."""
    return (SIDE / f.scale) / max(f.small.shape)


def _overlap(matrix: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int]) -> tuple[float, float]:
    """(share of A's frame that lands inside B's, share of B's frame covered by A's) under ``matrix``."""
    import cv2

    wa, ha = size_a
    wb, hb = size_b
    corners = np.array([[0, 0], [wa, 0], [wa, ha], [0, ha]], np.float32)
    mapped = cv2.transform(corners[None], matrix)[0]
    frame_b = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float32)
    area, _ = cv2.intersectConvexConvex(mapped, frame_b)
    mapped_area = abs(cv2.contourArea(mapped))
    return (min(1.0, area / mapped_area) if mapped_area else 0.0), min(1.0, area / float(wb * hb))
