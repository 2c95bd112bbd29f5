"""Whether two pictures that one similarity transform fits are one capture, not two shots of one thing.

ORB + RANSAC (:mod:`lookalike.dedup.geometry`) finds corners that one rotation, scale and shift map
from one picture onto the other; another shot of the same scene moments later (a moved part,
parallax, a change of pose) and another object of the same shape in the same pose can have many
such corners too. So the pictures themselves are compared after the fit: the second is warped onto
the first (small gray pictures, :data:`SIDE` pixels, blurred a little so that re-encoding,
resampling and a fit off by a pixel do not count, and the sharper one blurred to the other's detail)
and their local normalised cross-correlation is measured in every :data:`WINDOW`-pixel window of the
overlap where either picture has structure. A copy agrees almost everywhere: brightness, contrast
and colour edits leave the correlation unchanged, a watermark or a caption disagrees in its own
place. Another shot disagrees wherever something moved or lies at another depth, and much of that
is the same thing a few pixels away (*shifted*), which an overlay never is. A displacement below
about a pixel still correlates, so in the windows that agree the displacement itself is measured
(*displaced*): a copy's is one smooth field (the fit's own error), another shot's varies with depth
and motion. Plain areas are not compared, nor the outline of what stands on a plain background
replaced by another.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Long side, in pixels, of the gray pictures compared (half the feature size: small and cheap).
SIDE = 128
#: Gaussian blur (sigma, pixels at :data:`SIDE`) of both pictures before comparing.
BLUR = 1.0
#: Side of the square window, in pixels, over which the correlation is measured.
WINDOW = 9
#: A window has structure when either picture's gray level varies there by this variance (sigma 5).
STRUCTURE = 25.0
#: A window agrees when the two pictures' correlation in it is at least this.
AGREE = 0.8
#: Fewer structured windows than this (a flat overlap): nothing to compare, so nothing disagrees.
MIN_WINDOWS = 50
#: A window that disagrees but correlates by SHIFTED once moved by up to SHIFT pixels (at SIDE) shows
#: the same thing displaced: parallax, or something that moved a little between two shots.
SHIFT, SHIFTED = 3, 0.9
#: A window that agrees is *displaced* when what it shows lies this many pixels (of the detail both
#: pictures have) from where the fit puts it, once the fit's own error (the affine field of
#: displacements that best explains them) is taken out; measured only where the window has a corner
#: (its smaller gradient eigenvalue at least CORNER, gray levels squared per pixel squared), since
#: along a plain edge a displacement cannot be told.
DISPLACED, CORNER = 0.3, 10.0
#: The displacement is measured in every STRIDE-th window across and down (they overlap).
STRIDE = 2
#: Borders around a picture: this share of their pixels within this many gray levels of their median.
PLAIN_SHARE, PLAIN_LEVELS = 0.98, 6
#: A pixel is plain where its 5 x 5 neighbourhood's gray level varies by less than this (sigma 2).
PLAIN_VARIANCE = 4.0


@dataclass(frozen=True)
class Agreement:
    """``share`` of the structured windows of the overlap where the aligned pictures agree (1.0 when
    there are fewer than :data:`MIN_WINDOWS`: nothing to compare), ``compared`` the share of the
    overlap (in the first picture) that has structure, and ``shifted`` the share of the structured
    windows that disagree but show the same thing a few pixels away (:data:`SHIFT`): an overlay
    (a watermark, a caption) differs without that, another shot from a step aside (parallax) or
    moments later (a leaf in the wind) with it. ``displaced`` is the share of the structured windows
    that agree but show their content :data:`DISPLACED` or more from where the fit puts it
    (:func:`_displaced`): parallax or motion under a pixel or two, which leaves the correlation high."""

    share: float
    compared: float
    shifted: float = 0.0
    displaced: float = 0.0


def small(gray: np.ndarray) -> np.ndarray:
    """The picture compared: ``gray`` resized to :data:`SIDE` pixels on its long side (never
    enlarged) and blurred by :data:`BLUR`, once per image."""
    import cv2

    h, w = gray.shape
    f = min(1.0, SIDE / max(h, w))
    if f < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.GaussianBlur(gray, (0, 0), BLUR)


def agreement(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, size_a: tuple[int, int], size_b: tuple[int, int],
              detail: tuple[float, float] = (1.0, 1.0)) -> Agreement:
    """How far picture ``b`` agrees with picture ``a`` (both :func:`small` gray pictures) where the
    similarity ``matrix`` (2x3) maps ``a``'s frame of ``size_a`` (width, height) onto ``b``'s of
    ``size_b``. ``detail`` is each picture's own pixels per pixel of it (below 1: enlarged to its
    size). The sharper picture is blurred to the other's detail first, so that a copy kept smaller
    or enlarged agrees with its original."""
    import cv2

    m = _small_matrix(a, b, matrix, size_a, size_b)
    onto_a = cv2.invertAffineTransform(m[:2])  # b's small frame -> a's
    ratio = math.hypot(m[0, 0], m[1, 0])  # b's pixels per pixel of a
    detail_a, detail_b = min(1.0, detail[0]), min(1.0, detail[1])
    target = min(detail_a, ratio * detail_b)  # the detail both have, in a's pixels
    a, b = _soften(a, detail_a, target), _soften(b, detail_b, target / ratio)
    h, w = a.shape
    warped = cv2.warpAffine(b, onto_a, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    overlap = _within(cv2.warpAffine(np.full(b.shape, 255, np.uint8), onto_a, (w, h), flags=cv2.INTER_NEAREST))
    x, y = a.astype(np.float32), warped.astype(np.float32)
    mx, my = _mean(x), _mean(y)
    vx, vy = _mean(x * x) - mx * mx, _mean(y * y) - my * my
    structured = overlap & ((vx >= STRUCTURE) | (vy >= STRUCTURE)) & _within(255 * (~_replaced(x, y)).astype(np.uint8))
    n = int(structured.sum())
    compared = n / max(int(overlap.sum()), 1)
    if n < MIN_WINDOWS:
        return Agreement(1.0, compared)
    ncc = (_mean(x * y) - mx * my) / np.sqrt(np.maximum(vx, 1.0) * np.maximum(vy, 1.0))
    apart = structured & (ncc < AGREE)
    differ = int(apart.sum())
    grid = np.zeros_like(structured)
    grid[::STRIDE, ::STRIDE] = True  # neighbouring windows overlap: every other one in each direction
    return Agreement(1.0 - differ / n, compared, _shifted(x, y, apart) / n if differ else 0.0,
                     _displaced(x, y, structured & ~apart & grid, target) / max(int((structured & grid).sum()), 1))


def _displaced(x: np.ndarray, y: np.ndarray, agree: np.ndarray, detail: float) -> int:
    """How many of the ``agree`` windows show ``y``'s content displaced from ``x``'s by :data:`DISPLACED`
    or more pixels of the detail both pictures have (``detail`` of them per pixel of ``x``).

    Per window, ``y`` is regressed on ``x`` and on the gradient and Laplacian of the two pictures'
    mean (``y ~ a x + b + a (d . grad x) + c lap``: a contrast change, a displacement ``d`` of under
    a pixel or two, a difference in blur; the mean's gradient is (1 + a) / 2 of x's, so that ``d``
    reads the same whatever the contrast). The windows' displacements are then fitted by one affine
    field, refitted on its best 70 % (a fit off by a fraction of a pixel, or a scale off by a
    fraction of a percent), and what remains is the window's own displacement."""
    import cv2

    rows, cols = np.nonzero(agree)
    if len(rows) < MIN_WINDOWS:
        return 0
    mean = 0.5 * (x + y)
    regressors = [x, cv2.Sobel(mean, cv2.CV_32F, 1, 0, ksize=3, scale=0.125),
                  cv2.Sobel(mean, cv2.CV_32F, 0, 1, ksize=3, scale=0.125), cv2.Laplacian(mean, cv2.CV_32F, ksize=1)]
    means = [_mean(r)[rows, cols] for r in regressors]
    my = _mean(y)[rows, cols]
    k = len(regressors)
    cov = np.empty((len(rows), k, k), np.float64)
    rhs = np.empty((len(rows), k), np.float64)
    for i in range(k):
        for j in range(i, k):
            cov[:, i, j] = cov[:, j, i] = _mean(regressors[i] * regressors[j])[rows, cols] - means[i] * means[j]
        rhs[:, i] = _mean(regressors[i] * y)[rows, cols] - means[i] * my
    # the gradient's covariance once x is accounted for: its smaller eigenvalue says whether a corner is there
    g = cov[:, 1:3, 1:3] - cov[:, 1:3, :1] @ cov[:, :1, 1:3] / np.maximum(cov[:, :1, :1], 1e-6)
    half, det = 0.5 * (g[:, 0, 0] + g[:, 1, 1]), g[:, 0, 0] * g[:, 1, 1] - g[:, 0, 1] ** 2
    corner = half - np.sqrt(np.maximum(half * half - det, 0.0)) >= CORNER * detail * detail
    solved = np.linalg.solve(cov[corner] + 1e-3 * np.eye(k), rhs[corner][:, :, None])[:, :, 0]
    gain = solved[:, 0]
    ok = gain > 0.2  # y follows x (a negative or a flat answer says nothing about displacement)
    if ok.sum() < MIN_WINDOWS:
        return 0
    shift = solved[ok, 1:3] * ((1.0 + gain[ok]) / (2.0 * gain[ok]))[:, None]
    where = np.column_stack([cols[corner][ok], rows[corner][ok], np.ones(int(ok.sum()))]).astype(np.float64)
    field = np.linalg.lstsq(where, shift, rcond=None)[0]
    left = np.linalg.norm(shift - where @ field, axis=1)
    best = left <= np.percentile(left, 70)
    field = np.linalg.lstsq(where[best], shift[best], rcond=None)[0]
    return int(np.count_nonzero(np.linalg.norm(shift - where @ field, axis=1) * detail >= DISPLACED))


def _replaced(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where both pictures are plain but of other gray levels: a background replaced by another
    (white by gray, bars by a window's margin). A window touching it is not compared: there the
    outline of what stands on it changes with the background, not with the picture."""
    import cv2

    def plain(z: np.ndarray) -> np.ndarray:
        m = cv2.boxFilter(z, -1, (5, 5), borderType=cv2.BORDER_REFLECT)
        return cv2.boxFilter(z * z, -1, (5, 5), borderType=cv2.BORDER_REFLECT) - m * m < PLAIN_VARIANCE

    return plain(x) & plain(y) & (np.abs(x - y) > PLAIN_LEVELS)


def _shifted(x: np.ndarray, y: np.ndarray, apart: np.ndarray) -> int:
    """How many of the ``apart`` windows of ``x`` and ``y`` correlate by :data:`SHIFTED` once ``y`` is
    moved by up to :data:`SHIFT` pixels (in the bounding box of them: often one small place)."""
    rows, cols = np.flatnonzero(apart.any(axis=1)), np.flatnonzero(apart.any(axis=0))
    pad = WINDOW // 2 + SHIFT + 1
    box = (slice(max(0, rows[0] - pad), rows[-1] + pad + 1), slice(max(0, cols[0] - pad), cols[-1] + pad + 1))
    x, y, apart = x[box], y[box], apart[box]
    mx, vx = _mean(x), _mean(x * x)
    vx -= mx * mx
    best = np.full(x.shape, -1.0, np.float32)
    for dy in range(-SHIFT, SHIFT + 1):
        for dx in range(-SHIFT, SHIFT + 1):
            if dx or dy:
                moved = np.roll(y, (dy, dx), axis=(0, 1))
                my = _mean(moved)
                vy = _mean(moved * moved) - my * my
                best = np.maximum(best, (_mean(x * moved) - mx * my) / np.sqrt(np.maximum(vx, 1.0) * np.maximum(vy, 1.0)))
    return int(np.count_nonzero(apart & (best >= SHIFTED)))


def plain_around(inner: np.ndarray, outer: np.ndarray, matrix: np.ndarray, size_inner: tuple[int, int],
                 size_outer: tuple[int, int]) -> bool:
    """Whether ``outer``'s frame outside ``inner``'s picture (``matrix`` maps ``inner``'s frame onto
    ``outer``'s, as in :func:`agreement`) is borders: one plain colour, :data:`PLAIN_SHARE` of it
    within :data:`PLAIN_LEVELS` gray levels of its median. Letterbox bars and padding are; more of a
    photo, a window's frame or a caption strip are not (nor is a sliver too thin to tell)."""
    import cv2

    footprint = cv2.warpAffine(np.full(inner.shape, 255, np.uint8),
                               _small_matrix(inner, outer, matrix, size_inner, size_outer)[:2],
                               (outer.shape[1], outer.shape[0]), flags=cv2.INTER_NEAREST)
    # away from the picture's edge (resampling and re-encoding blur it) and inside the frame
    levels = outer[_within(255 - footprint)].astype(np.int16)
    if len(levels) < MIN_WINDOWS:
        return False
    return bool(np.mean(np.abs(levels - np.median(levels)) <= PLAIN_LEVELS) >= PLAIN_SHARE)


def _soften(picture: np.ndarray, detail: float, target: float) -> np.ndarray:
    """``picture`` (``detail`` of its own pixels per pixel) blurred to ``target`` (Gaussian, matching
    the two sampling widths) when it is sharper than that."""
    import cv2

    if target >= detail * 0.95:
        return picture
    return cv2.GaussianBlur(picture, (0, 0), 0.5 * math.sqrt(1.0 / target ** 2 - 1.0 / detail ** 2))


def _small_matrix(a: np.ndarray, b: np.ndarray, matrix: np.ndarray, size_a: tuple[int, int],
                  size_b: tuple[int, int]) -> np.ndarray:
    """``matrix`` (a's frame of ``size_a`` -> b's of ``size_b``) between the small pictures, 3x3."""
    return _to_small(b, size_b) @ np.vstack([matrix, [0.0, 0.0, 1.0]]) @ np.linalg.inv(_to_small(a, size_a))


def _to_small(picture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """3x3 map from pixel coordinates in a frame of ``size`` (width, height) to those of ``picture``,
    its resized copy (OpenCV's pixel centres: ``x' + 0.5 = f (x + 0.5)``)."""
    fx, fy = picture.shape[1] / size[0], picture.shape[0] / size[1]
    return np.array([[fx, 0.0, 0.5 * (fx - 1.0)], [0.0, fy, 0.5 * (fy - 1.0)], [0.0, 0.0, 1.0]])


def _within(mask: np.ndarray) -> np.ndarray:
    """Where a :data:`WINDOW` window lies wholly inside ``mask`` (nonzero) and the frame, with room
    for the blur (2 pixels) to its edge."""
    import cv2

    side = WINDOW + 4
    return cv2.erode(mask, np.ones((side, side), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def _mean(x: np.ndarray) -> np.ndarray:
    """The mean of ``x`` over the :data:`WINDOW` window around each pixel."""
    import cv2

    return cv2.boxFilter(x, -1, (WINDOW, WINDOW), borderType=cv2.BORDER_REFLECT)
