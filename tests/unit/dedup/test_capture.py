"""The picture-against-picture check after a fit, on hand-made gray pictures with known answers."""

import cv2
import numpy as np
import pytest
from lookalike.dedup import capture

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def texture(seed: int, size=(200, 256), sigma=2.0) -> np.ndarray:
    """A gray picture with structure everywhere: smoothed noise stretched over 20..235."""
    noise = cv2.GaussianBlur(np.random.default_rng(seed).normal(size=size).astype(np.float32), (0, 0), sigma)
    return (20 + 215 * (noise - noise.min()) / (noise.max() - noise.min())).astype(np.uint8)


def size(picture: np.ndarray) -> tuple[int, int]:
    return picture.shape[1], picture.shape[0]


def agree(a: np.ndarray, b: np.ndarray, matrix=IDENTITY) -> capture.Agreement:
    """:func:`capture.agreement` of two full-size pictures, through their small copies as the verifier uses them."""
    return capture.agreement(capture.small(a), capture.small(b), matrix, size(a), size(b))


def test_small_is_the_long_side_at_SIDE_and_never_enlarged():
    assert capture.small(texture(0, (200, 256))).shape == (100, capture.SIDE)
    assert capture.small(texture(0, (256, 64))).shape == (capture.SIDE, 32)
    assert capture.small(texture(0, (40, 90))).shape == (40, 90)


def test_small_is_blurred_by_a_gaussian_of_one_pixel_both_ways():
    # sigma 1 over 7 taps: 0.004, 0.054, 0.242, 0.399 of a line's 255 on and beside it
    across, down = np.zeros((100, 100), np.uint8), np.zeros((100, 100), np.uint8)
    across[50], down[:, 50] = 255, 255
    spread = [1, 14, 62, 102, 62, 14, 1]
    assert capture.small(across)[47:54, 50].tolist() == capture.small(down)[50, 47:54].tolist() == spread


def test_small_averages_the_pixels_it_shrinks_and_keeps_a_strip_a_pixel_thin():
    noise = np.random.default_rng(0).integers(0, 256, (384, 384)).astype(np.uint8)  # sd 74
    # each pixel the mean of 3 x 3 (sd 25), then blurred (sd 7); picking one pixel of 9 would keep 21
    assert capture.small(noise).std() < 10
    assert capture.small(np.zeros((3, 1000), np.uint8)).shape == (1, 128)
    assert capture.small(np.zeros((1000, 3), np.uint8)).shape == (128, 1)


def test_the_fit_between_the_small_pictures_maps_pixel_centres():
    # a 256 x 200 frame (its small picture: half) onto a 64 x 50 one (kept whole) at a quarter: pixel x of
    # the small one is pixel 2x + 0.5 of its frame, 0.5x - 0.25 of the other frame and of its small picture
    quarter = np.array([[0.25, 0.0, -0.375], [0.0, 0.25, -0.375]])
    found = capture._small_matrix(np.zeros((100, 128)), np.zeros((50, 64)), quarter, (256, 200), (64, 50))
    assert found == pytest.approx(np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25], [0.0, 0.0, 1.0]]))


def test_a_picture_agrees_with_itself_and_with_its_brightness_and_contrast_edit():
    a = texture(1)
    assert agree(a, a) == capture.Agreement(1.0, 1.0)
    edited = np.clip(0.6 * a.astype(np.float32) + 70, 0, 255).astype(np.uint8)  # darker contrast, brighter
    assert agree(a, edited).share == 1.0
    inverted = 255 - a  # a negative is not the same picture: the correlation is -1 everywhere
    assert agree(a, inverted).share == 0.0


def test_another_picture_does_not_agree():
    found = agree(texture(1), texture(2))
    assert found.share < 0.05 and found.compared == 1.0


def test_a_replaced_part_disagrees_by_its_share_of_the_picture():
    a, b = texture(3), texture(3).copy()
    b[:, :64] = texture(4)[:, :64]  # a quarter of the width: another picture there
    found = agree(a, b)
    # windows straddling the seam (half a window, 4 px at 128, each side) may go either way
    assert 0.75 - 0.04 <= found.share <= 0.75 + 0.04


def test_the_fit_maps_the_second_picture_onto_the_first():
    a = texture(5, (256, 256))
    shift = np.array([[1.0, 0.0, 30.0], [0.0, 1.0, -20.0]])  # b shows a moved 30 px right, 20 px up
    b = cv2.warpAffine(a, shift, (256, 256), borderValue=128)
    assert agree(a, b, shift).share > 0.99
    assert agree(a, b).share < 0.2  # the same pictures, not aligned
    half = cv2.resize(a, (128, 128), interpolation=cv2.INTER_AREA)  # a half-size copy
    assert agree(a, half, np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25]])).share > 0.99


def test_a_quarter_turn():
    a = texture(6)
    turned = np.ascontiguousarray(np.rot90(a))  # counter-clockwise: (x, y) -> (y, w - 1 - x)
    w = a.shape[1]
    assert agree(a, turned, np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w - 1.0]])).share > 0.99
    assert agree(a, np.ascontiguousarray(a[:, ::-1])).share < 0.2  # a mirror image, not aligned


def test_flat_areas_are_not_compared():
    a = np.full((200, 256), 255, np.uint8)
    b = np.full((200, 256), 200, np.uint8)  # a white background replaced by a light gray one
    assert agree(a, b) == capture.Agreement(1.0, 0.0)  # nothing to compare, so nothing disagrees
    a[50:150, 60:200] = b[50:150, 60:200] = texture(7, (100, 140))  # the same object on both
    found = agree(a, b)
    # the object's inside is compared (at 128 px it is 70 x 50 of the 116 x 88 windows: 0.34, less a few
    # pixels each side), not the windows on its outline, where the background shows (with them: 0.47)
    assert found.share == 1.0 and 0.25 < found.compared < 0.34
    for level, compared in ((255, 0.47), (249, 0.47), (248, 0.29)):  # the same background up to 6 levels apart
        b = np.full((200, 256), level, np.uint8)
        b[50:150, 60:200] = a[50:150, 60:200]
        assert agree(a, b) == capture.Agreement(1.0, pytest.approx(compared, abs=0.01), 0.0, 0.0)
    b = np.full((200, 256), 160, np.uint8)
    b[50:150, 60:200] = a[50:150, 60:200]
    # a darker one crosses the object's own gray levels: a few windows on its outline still disagree
    assert 0.9 < agree(a, b).share < 1.0
    b[50:150, 60:200] = texture(8, (100, 140))  # another object in the same place
    assert agree(a, b).share < 0.3


def test_plain_around_tells_borders_from_more_picture():
    photo = texture(8, (300, 400))
    inner = photo[50:250, 60:340]  # a crop: the rest of the photo lies around it
    place = np.array([[1.0, 0.0, 60.0], [0.0, 1.0, 50.0]])  # inner's frame onto the outer one's

    def plain(outer, matrix=place, picture=inner):
        return capture.plain_around(capture.small(picture), capture.small(outer), matrix, size(picture), size(outer))

    assert not plain(photo)
    for colour in (0, 255, 117):
        framed = np.full((300, 400), colour, np.uint8)  # the same picture on plain bars
        framed[50:250, 60:340] = inner
        assert plain(framed)
    window = np.full((300, 400), 236, np.uint8)
    window[:30] = 60  # a title bar above light margins: not one plain colour
    window[50:250, 60:340] = inner
    assert not plain(window)
    sky = np.tile(np.linspace(90, 200, 300, dtype=np.float32)[:, None], (1, 400)).astype(np.uint8)
    sky[50:250, 60:340] = inner  # a smooth gradient around it: more picture, not borders
    assert not plain(sky)
    assert not plain(photo, IDENTITY, photo)  # nothing lies around


def layered(step: float, size=(200, 256), down: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Two shots of a textured thing (a disc, 40 % of the picture) before a textured backdrop, from
    a step aside: between them the thing moves ``step`` pixels right (and ``down`` down) against the backdrop."""
    back, thing = texture(9, size), texture(10, size)
    disc = np.zeros(size, np.uint8)
    cv2.circle(disc, (size[1] // 2, size[0] // 2), 80, 255, -1)
    shots = []
    for move in (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([[1.0, 0.0, step], [0.0, 1.0, down]])):
        moved = cv2.warpAffine(thing, move, size[::-1], borderMode=cv2.BORDER_REFLECT)
        shots.append(np.where(cv2.warpAffine(disc, move, size[::-1]) > 127, moved, back))
    return shots[0], shots[1]


def test_a_displacement_under_a_pixel_agrees_but_is_displaced():
    a, b = layered(1)  # 1 px here, half a pixel at the 128 px compared
    found = agree(a, b)
    # the correlation alone cannot tell: the blurred texture moved by half a pixel correlates above AGREE
    assert found.share == 1.0 and found.shifted == 0.0
    # the disc is 39 % of the picture: its windows are displaced, the backdrop's are not
    assert 0.3 <= found.displaced <= 0.45, found
    assert agree(*layered(2)).displaced > 0.5  # a pixel at 128
    assert agree(a, a).displaced == 0.0
    assert agree(*layered(6)).share < 0.8  # 3 px at 128: the correlation falls


def test_a_copy_is_not_displaced_by_a_fit_a_little_off_nor_by_contrast():
    a = texture(11)
    contrast = np.clip(0.7 * a.astype(np.float32) + 50, 0, 255).astype(np.uint8)
    # the fit off by 0.6 px and 0.5 % of scale (as RANSAC can be): one smooth field of displacements, taken out
    off = np.array([[1.005, 0.0, 0.6], [0.0, 1.005, -0.4]])
    found = agree(a, contrast, off)
    assert found.share > 0.95 and found.displaced < 0.02, found
    half = cv2.resize(a, (128, 100), interpolation=cv2.INTER_AREA)
    assert agree(a, half, np.array([[0.5, 0.0, -0.25], [0.0, 0.5, -0.25]])).displaced < 0.02


def test_a_plain_patch_over_the_picture_disagrees_either_way():
    a = texture(13)
    b = a.copy()
    b[:, :64] = 128  # a quarter painted over in one gray: structure in one picture only is compared
    assert 0.75 - 0.04 <= agree(a, b).share <= 0.75 + 0.04
    assert 0.75 - 0.04 <= agree(b, a).share <= 0.75 + 0.04


def test_a_faint_picture_agrees_with_its_contrast_stretched_copy_either_way():
    # gray levels 99..102 (a variance about 1.25 in a window) stretched 6 times: every window correlates fully
    faint = np.random.default_rng(0).integers(99, 103, (100, 128)).astype(np.uint8)
    stretched = (6 * (faint.astype(int) - 99) + 60).astype(np.uint8)
    assert capture.agreement(faint, stretched, IDENTITY, (128, 100), (128, 100)).share == 1.0
    assert capture.agreement(stretched, faint, IDENTITY, (128, 100), (128, 100)).share == 1.0


def test_a_moved_part_is_shifted_and_a_replaced_part_is_not():
    moved = agree(*layered(6))  # the disc moved 3 px at 128: it shows the same thing a few pixels away
    assert moved.share < 0.8 and 0.3 <= moved.shifted <= 1.0 - moved.share, moved
    a, b = texture(3), texture(3).copy()
    b[:, :64] = texture(4)[:, :64]
    assert agree(a, b).shifted < 0.01


def test_an_enlarged_thumbnail_agrees_once_the_sharper_picture_is_softened_to_its_detail():
    a = texture(12, sigma=1.0)  # 256 px: two of its pixels per pixel compared
    thumb = cv2.resize(a, (32, 25), interpolation=cv2.INTER_AREA)
    enlarged = cv2.resize(thumb, (256, 200), interpolation=cv2.INTER_LINEAR)  # a quarter of a pixel compared
    small_a, small_e = capture.small(a), capture.small(enlarged)
    assert capture.agreement(small_a, small_e, IDENTITY, size(a), size(enlarged)).share < 0.5  # as if both were sharp
    assert capture.agreement(small_a, small_e, IDENTITY, size(a), size(enlarged), (2.0, 0.25)).share > 0.97
    assert capture.agreement(small_e, small_a, IDENTITY, size(enlarged), size(a), (0.25, 2.0)).share > 0.97
    # the sharp picture at a quarter of the enlarged one's size (64 px, every pixel its own): softened to
    # half a pixel of its own
    quarter = cv2.resize(a, (64, 50), interpolation=cv2.INTER_AREA)
    onto_quarter = np.array([[0.25, 0.0, -0.375], [0.0, 0.25, -0.375]])
    found = capture.agreement(small_e, capture.small(quarter), onto_quarter, size(enlarged), size(quarter), (0.25, 1.0))
    assert found.share > 0.95, found


def test_a_picture_of_exactly_50_windows_is_compared_and_one_of_40_is_not():
    # the windows lie 6 px inside the frame: 10 x 5 of them in a 22 x 17 picture, 10 x 4 in a 22 x 16 one
    one, other = texture(14, (17, 22)), texture(15, (17, 22))
    found = capture.agreement(one, other, IDENTITY, (22, 17), (22, 17))
    assert found.compared == 1.0 and found.share < 0.5
    assert capture.agreement(one[:16], other[:16], IDENTITY, (22, 16), (22, 16)) == capture.Agreement(1.0, 1.0)


def _sliver(rows: int, odd: dict) -> bool:
    """Whether a band 13 px wide left of a picture (``rows`` tall) is plain: one gray (100) but for the
    ``odd`` {row: gray level} pixels in its middle column, the one column of it a window fits (so
    ``rows`` - 12 gray levels are looked at)."""
    inner = texture(16, (rows, 115))
    outer = np.full((rows, 128), 100, np.uint8)
    outer[:, 13:] = inner
    for row, level in odd.items():
        outer[row, 6] = level
    return capture.plain_around(inner, outer, np.array([[1.0, 0.0, 13.0], [0.0, 1.0, 0.0]]), (115, rows), (128, rows))


def test_borders_are_plain_with_98_percent_within_6_gray_levels_of_50_looked_at():
    assert _sliver(62, {}) and not _sliver(61, {})  # 50 gray levels are enough to tell, 49 not
    assert _sliver(62, {20: 180})  # 49 of 50 plain: 98 %
    assert not _sliver(62, {20: 180, 30: 20})  # 96 %
    assert _sliver(62, {r: 106 for r in range(10, 20)}) and _sliver(62, {r: 94 for r in range(10, 20)})
    assert not _sliver(62, {r: 107 for r in range(10, 20)})


@pytest.mark.parametrize("step, down, most", [(1, 0, 0.45), (0, 1, 0.45), (1, 1, 0.65)])
def test_a_displacement_under_a_pixel_is_found_in_any_direction(step, down, most):
    # the disc's windows (39 %), and diagonally, 0.7 px at 128, those on its outline too
    found = agree(*layered(step, down=down))
    assert found.share > 0.99 and 0.3 <= found.displaced <= most, found


@pytest.mark.parametrize("contrast", [0.5, 0.7, 1.5])
def test_a_displacement_is_measured_alike_whatever_either_pictures_contrast(contrast):
    a, b = layered(1)
    alike = agree(a, b).displaced

    def stretched(picture):
        return np.clip(contrast * (picture.astype(np.float32) - 128) + 128, 0, 255).astype(np.uint8)

    for one, other in ((a, stretched(b)), (stretched(a), b)):
        assert abs(agree(one, other).displaced - alike) < 0.05, (agree(one, other), alike)


def test_pictures_that_do_not_agree_have_nothing_displaced():
    assert agree(texture(1), texture(2)).displaced == 0.0  # under 50 windows agree: none measured


def _shifted_by_hand(x: np.ndarray, y: np.ndarray, apart: np.ndarray) -> int:
    """:func:`capture._shifted` window by window, in float64: each 9 x 9 window of ``x`` against that of
    ``y`` moved by every shift of up to 3 px but none."""
    windows_x = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), (9, 9))
    windows_y = np.lib.stride_tricks.sliding_window_view(y.astype(np.float64), (9, 9))
    rows, cols = np.nonzero(apart)
    mine = windows_x[rows - 4, cols - 4]
    best = np.full(len(rows), -1.0)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            if dx or dy:
                theirs = windows_y[rows - 4 - dy, cols - 4 - dx]
                cov = (mine * theirs).mean(axis=(1, 2)) - mine.mean(axis=(1, 2)) * theirs.mean(axis=(1, 2))
                spread = np.maximum(mine.var(axis=(1, 2)), 1.0) * np.maximum(theirs.var(axis=(1, 2)), 1.0)
                best = np.maximum(best, cov / np.sqrt(spread))
    return int(np.count_nonzero(best >= 0.9))


@pytest.mark.parametrize("step, down", [(6, 0), (-6, 0), (0, 6), (4, -4), (0, -8), (-8, 0)])
def test_shifted_counts_the_windows_that_correlate_once_moved_by_up_to_3_pixels(step, down):
    a, b = layered(step, down=down)  # 3 or 4 px at 128
    x, y = capture.small(a).astype(np.float32), capture.small(b).astype(np.float32)
    apart = np.zeros(x.shape, bool)
    apart[30:50, 20:44] = True  # across the disc's left edge
    by_hand = _shifted_by_hand(x, y, apart)
    assert 0 < by_hand < apart.sum() and capture._shifted(x, y, apart) == by_hand
    apart[:] = False
    apart[45, 30] = apart[60, 90] = True  # two windows far apart
    assert capture._shifted(x, y, apart) == _shifted_by_hand(x, y, apart)


def test_a_displacement_is_in_pixels_of_the_detail_both_pictures_have():
    a, b = layered(1)  # half a pixel at 128
    small_a, small_b = capture.small(a), capture.small(b)
    assert capture.agreement(small_a, small_b, IDENTITY, size(a), size(b)).displaced > 0.3
    # both enlarged to it from half their size: a quarter of a pixel of detail, under DISPLACED
    assert capture.agreement(small_a, small_b, IDENTITY, size(a), size(b), (0.5, 0.5)).displaced < 0.15


def test_a_fit_3_pixels_off_a_crop_is_the_same_thing_moved_up_to_the_overlaps_edges():
    a = texture(20)
    crop = a[:, 100:]
    off = np.array([[1.0, 0.0, -94.0], [0.0, 1.0, 0.0]])  # the crop lies 100 px in, the fit says 94: 3 px at 128
    found = capture.agreement(capture.small(a), capture.small(crop), off, size(a), size(crop))
    assert found.share < 0.01 and found.shifted == pytest.approx(1.0 - found.share), found


def test_stripes_have_no_corner_where_a_displacement_could_be_told():
    profile = texture(21, (1, 256))
    stripes, moved = np.tile(profile, (200, 1)), np.tile(np.roll(profile, 1, axis=1), (200, 1))
    assert agree(stripes, stripes).displaced == agree(stripes, moved).displaced == 0.0


# Limits met exactly. The lattice pictures below repeat nine gray levels along the diagonals
# (level ``vals[(row + 2 column) % 9]``): every 9 x 9 window holds each of them nine times, so its
# mean, variance and correlations are whole numbers, exact in float32, the same in every window.


def _lattice(vals, shape=(36, 45)) -> np.ndarray:
    rows, cols = np.indices(shape)
    return (100 + np.asarray(vals)[(rows + 2 * cols) % 9]).astype(np.uint8)


_F = [-12, -6, 0, 6, 6, 1, 4, 1, 0]  # variance 270 / 9 = 30 in every window


def test_a_window_correlating_by_exactly_0_8_agrees():
    g = [-12, 2, 1, 9, 5, -1, 1, -3, -2]  # variance 30, covariance with _F 216 / 9 = 24: 24 / 30 = 0.8
    found = capture.agreement(_lattice(_F), _lattice(g), IDENTITY, (45, 36), (45, 36))
    assert found.compared == 1.0 and found.share == 1.0, found


def test_a_window_correlating_by_exactly_0_9_once_moved_is_shifted():
    # variance 30; covariance with _F -51 / 9 unmoved (disagrees), 243 / 9 = 27 once moved so that
    # (row + 2 column) goes 4 back (1 down and 2 right): 27 / 30 = 0.9, and no move correlates more
    h = [0, 1, -1, 1, -10, -6, 1, 11, 3]
    found = capture.agreement(_lattice(_F), _lattice(h), IDENTITY, (45, 36), (45, 36))
    assert found.compared == 1.0 and found.share == 0.0 and found.shifted == 1.0, found


def test_a_pixel_whose_neighbourhood_varies_by_exactly_4_is_not_plain():
    # 5 of each 5 x 5 neighbourhood at 5, the rest at 0: mean 1, mean square 5, variance 4 exactly
    rows, cols = np.indices((30, 30))
    x = np.where((rows + 2 * cols) % 5 == 0, 5.0, 0.0).astype(np.float32)
    replaced = capture._replaced(x, x + 10)  # 10 levels apart everywhere, but neither is plain
    assert not replaced[2:-2, 2:-2].any()
    flat = np.zeros_like(x)
    assert capture._replaced(flat, flat + 7).all() and not capture._replaced(flat, flat + 6).any()


def test_a_picture_within_5_percent_of_the_target_detail_is_not_softened():
    picture = texture(22, (40, 40), sigma=0.5)
    # at a quarter of its own pixels, 95 % of that is near enough: unchanged (just 0.1 % less: blurred)
    assert np.array_equal(capture._soften(picture, 0.25, 0.25 * 0.95), picture)
    assert not np.array_equal(capture._soften(picture, 0.25, 0.25 * 0.949), picture)


def test_exactly_50_windows_that_agree_are_enough_to_measure_a_displacement():
    a, b = layered(1)  # the disc (radius 40 at 128, centred) moves half a pixel against the backdrop
    x, y = capture.small(a).astype(np.float32), capture.small(b).astype(np.float32)
    agree = np.zeros(x.shape, bool)
    agree[[8, 92], 8:121:11] = True  # 22 windows on the backdrop above and below the disc
    agree[20:81:7, [8, 120]] = True  # 18 left and right of it
    agree[[42, 46, 50, 54, 58], 56:61:4] = True  # 10 in the disc's middle
    assert agree.sum() == 50 and 10 <= capture._displaced(x, y, agree, 1.0) <= 12  # the disc's windows
    agree[58, 60] = False
    assert capture._displaced(x, y, agree, 1.0) == 0  # 49: too few to tell the fit's error from a displacement


@pytest.mark.parametrize("faint_first", [True, False])
def test_a_faint_window_is_shifted_when_moved_it_is_the_others_contrast_stretched_copy(faint_first):
    # one picture varies by 14 / 9 = 1.6 gray levels² (variance), the other is it 5 x stretched and moved by
    # 4 along the lattice: unmoved they correlate by 1 / 14, moved by 1 (the faint variance, over 1, is its own)
    faint = [1, -1, 1, -1, 1, -1, 2, -2, 0]
    strong = [-5, 10, -10, 0, 5, -5, 5, -5, 5]  # 5 x faint, rolled by 4
    one, other = (faint, strong) if faint_first else (strong, faint)
    found = capture.agreement(_lattice(one), _lattice(other), IDENTITY, (45, 36), (45, 36))
    assert found.compared == 1.0 and found.share == 0.0 and found.shifted == 1.0, found


@pytest.mark.parametrize("detail, target", [(0.5, 0.25), (0.8, 0.4)])
def test_softening_an_enlarged_picture_composes_gaussians_to_the_targets_width(detail, target):
    # a picture of some detail is modelled as a Gaussian of 0.5 / detail pixels: softened to the target, it
    # is the picture blurred by 0.5 / target at once (Gaussians' variances add)
    noise = np.random.default_rng(23).normal(0, 50, (80, 80)).astype(np.float32)
    softened = capture._soften(cv2.GaussianBlur(noise, (0, 0), 0.5 / detail), detail, target)
    at_once = cv2.GaussianBlur(noise, (0, 0), 0.5 / target)
    assert np.abs(softened - at_once)[15:-15, 15:-15].max() < 0.5  # of a spread of 7 to 12 gray levels
