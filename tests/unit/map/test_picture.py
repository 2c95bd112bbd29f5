"""The map as a picture (map/picture.py): the group colours the pages share, the legend of the largest
groups with their sizes, the central image of the largest clusters placed beside the map, and names
that hold matplotlib's math markup drawn as text."""

from __future__ import annotations

import colorsys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

from lookalike.map import picture
from lookalike.map.cache import Map

matplotlib.use("Agg")


def test_the_first_colours_are_tab10_then_tab20s_light_tones():
    # matplotlib's documented tab10 and tab20 hex values, typed from its colour tables
    assert matplotlib.colors.to_hex(picture.colour(0)) == "#1f77b4"
    assert matplotlib.colors.to_hex(picture.colour(9)) == "#17becf"
    assert matplotlib.colors.to_hex(picture.colour(10)) == "#aec7e8"  # tab20's second: blue's light tone
    assert matplotlib.colors.to_hex(picture.colour(19)) == "#9edae5"


def test_colours_past_the_palette_are_distinct_mid_lightness_hues():
    far = [picture.colour(g) for g in range(20, 60)]
    hls = [colorsys.rgb_to_hls(*c) for c in far]
    assert all(h[1] == pytest.approx(0.5) and h[2] == pytest.approx(0.65) for h in hls)
    hues = sorted(h[0] for h in hls)
    assert min(b - a for a, b in zip(hues, hues[1:])) > 0.005  # 40 hues, none repeated
    assert picture.colour(20) != picture.colour(21)


def small_map(n_clusters: int, per: int, tmp_path, readable=True) -> tuple[Map, list[str]]:
    n = n_clusters * per
    rng = np.random.default_rng(0)
    xy = rng.random((n, 2)).astype(np.float32)
    clusters = np.repeat(np.arange(n_clusters, dtype=np.int32), per)
    central = np.full((n_clusters, 8), -1, np.int64)
    central[:, 0] = np.arange(n_clusters) * per  # each cluster's first image is its most central
    paths = []
    for i in range(n):
        path = tmp_path / f"{i}.png"
        if readable:
            Image.new("RGB", (40, 30), (10 * (i % 25), 0, 0)).save(path)
        paths.append(str(path))
    return Map(np.arange(n, dtype=np.int64), xy, clusters, np.eye(n_clusters, 4, dtype=np.float32), central, 1,
               "by hand", n, 0), paths


def figure(m, paths, labels, names, title="t"):
    import matplotlib.pyplot as plt

    fig = picture._figure(plt, m, paths, labels, names, title)
    ax = fig.axes[0]
    thumbs = [a for a in ax.artists if isinstance(a, matplotlib.offsetbox.AnnotationBbox)]
    plt.close(fig)
    return ax, thumbs


def test_the_legend_names_the_largest_groups_first_with_their_sizes(tmp_path):
    m, paths = small_map(1, 30, tmp_path)
    labels = np.array([0] * 3 + [1] * 5 + [2] * 1 + [3] * 21)  # 21 groups counted, the last ones of size 0
    names = ["a", "b", "c", "d"] + [f"g{i}" for i in range(4, 25)]
    ax, _ = figure(m, paths, labels, names)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:4] == ["d (21)", "b (5)", "a (3)", "c (1)"] and len(legend) == 20  # at most 20 named
    assert legend[4:] == [f"g{i} (0)" for i in range(4, 20)]  # equal sizes keep their order


def test_the_central_image_of_the_eight_largest_clusters_is_placed(tmp_path):
    m, paths = small_map(10, 2, tmp_path)
    _, thumbs = figure(m, paths, m.clusters, [f"c{i}" for i in range(10)])
    assert len(thumbs) == 8
    placed = sorted(tuple(np.round(t.xy, 5)) for t in thumbs)
    firsts = sorted(tuple(np.round(m.xy[c * 2], 5)) for c in range(8))  # clusters are equal: the first eight
    assert placed == firsts
    for t in thumbs:  # beside its image, away from the map's centre, and framed in its cluster's colour
        away = np.asarray(t.xybox) - np.asarray(t.xy)
        assert np.linalg.norm(away) == pytest.approx(0.16, rel=1e-4)
        assert np.dot(away, np.asarray(t.xy) - m.xy.mean(axis=0)) > 0


def test_images_that_cannot_be_read_are_left_out_and_a_cluster_without_images_too(tmp_path):
    m, paths = small_map(3, 2, tmp_path, readable=False)
    Image.new("RGB", (40, 30)).save(paths[2])  # only cluster 1's central image is readable
    central = m.central.copy()
    central[0, 0] = -1
    m = Map(m.ids, m.xy, m.clusters, m.centres, central, 1, "by hand", 6, 0)
    _, thumbs = figure(m, paths, m.clusters, ["a", "b", "c"])
    assert [tuple(t.xy) for t in thumbs] == [tuple(m.xy[2])]


def test_the_png_is_written_with_markup_in_names_drawn_as_text(tmp_path):
    m, paths = small_map(2, 3, tmp_path)
    out = tmp_path / "map.png"
    picture.write_png(out, m, paths, m.clusters, ["$x^2$ {a}", "$$"], "6 images $not math$")
    img = Image.open(out)
    assert img.format == "PNG" and img.size[0] > 500
    with pytest.raises(OSError):  # nothing written where the file cannot be
        picture.write_png(tmp_path / "none" / "map.png", m, paths, m.clusters, ["a", "b"], "t")
    assert not (tmp_path / "none").exists()


# found by mutation testing: what each dot, legend entry and thumbnail is drawn with

@pytest.mark.parametrize("n, size", [(30, 30.0), (134, 4000 / 134), (1000, 4.0), (13_334, 0.3), (20_000, 0.3)])
def test_each_image_is_a_dot_at_its_place_in_its_groups_colour_smaller_as_there_are_more(tmp_path, n, size):
    rng = np.random.default_rng(n)
    xy = rng.random((n, 2)).astype(np.float32)
    labels = np.minimum(np.arange(n) % 4, 2)  # group 2 the largest: the legend lists 2, 0, 1
    m = Map(np.arange(n, dtype=np.int64), xy, np.zeros(n, np.int32), np.eye(1, 4, dtype=np.float32),
            np.full((1, 8), -1, np.int64), 1, "by hand", n, 0)
    ax, _ = figure(m, [""] * n, labels, ["a", "b", "c"], title="n images, coloured by folder")
    dots = ax.collections[0]
    assert np.allclose(dots.get_offsets(), xy)  # x across, y down (the axis is turned)
    assert np.allclose(dots.get_facecolors()[:, :3], [picture.colour(int(g)) for g in labels])
    assert dots.get_sizes().tolist() == pytest.approx([size], abs=1e-9)  # 4000 / n points², within 0.3 and 30
    assert ax.get_title(loc="left") == "n images, coloured by folder"
    handles = ax.get_legend().legend_handles
    assert np.allclose([h.get_facecolor()[0][:3] for h in handles], [picture.colour(g) for g in (2, 0, 1)])


def test_thumbnails_of_the_largest_clusters_at_most_72_pixels_past_an_unreadable_one(tmp_path):
    # 10 clusters of 1..10 images (cluster c has c + 1): the eight largest are 9..2; 9's image is unreadable
    sizes = np.arange(1, 11)
    n = int(sizes.sum())
    clusters = np.repeat(np.arange(10, dtype=np.int32), sizes)
    central = np.full((10, 8), -1, np.int64)
    central[:, 0] = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # each cluster's first image
    paths = [str(tmp_path / f"{i}.png") for i in range(n)]
    for i in central[:, 0]:
        Image.new("RGB", (200, 100), (int(i), 0, 0)).save(paths[i])
    Path(paths[central[9, 0]]).write_bytes(b"not an image")
    xy = np.random.default_rng(1).random((n, 2)).astype(np.float32)
    m = Map(np.arange(n, dtype=np.int64), xy, clusters, np.eye(10, 4, dtype=np.float32), central, 1, "by hand", n, 0)
    _, thumbs = figure(m, paths, clusters, [f"c{i}" for i in range(10)])
    assert [tuple(t.xy) for t in thumbs] == [tuple(xy[central[c, 0]]) for c in (8, 7, 6, 5, 4, 3, 2)]
    assert all(t.offsetbox.get_data().shape[:2] == (36, 72) for t in thumbs)  # 200 x 100 fitted into 72 x 72


def test_the_axes_hold_the_unit_square_and_the_thumbnails_reach_with_y_downwards(tmp_path):
    m, paths = small_map(10, 2, tmp_path)
    ax, thumbs = figure(m, paths, m.clusters, [f"c{i}" for i in range(10)])
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert y0 > y1  # y grows downwards, as on the pages
    for x, y in [tuple(t.xybox) for t in thumbs] + [(0, 0), (1, 1)]:  # each thumbnail 0.16 beyond its dot
        assert x0 < x < x1 and y1 < y < y0
    assert (x0, x1, y0, y1) == pytest.approx((-0.2, 1.2, 1.2, -0.2))  # 0.16 of reach, and a margin


def test_hues_past_the_palette_turn_by_137_508_degrees():
    # group 20: 20 x 137.508 = 2750.16 = 7 turns and 230.16 degrees; group 21: 7.668 degrees
    assert colorsys.rgb_to_hls(*picture.colour(20))[0] * 360 == pytest.approx(230.16, abs=1e-6)
    assert colorsys.rgb_to_hls(*picture.colour(21))[0] * 360 == pytest.approx(7.668, abs=1e-6)


def test_among_many_equal_groups_and_clusters_the_legend_and_thumbnails_keep_their_order(tmp_path):
    # 33 clusters: 12 of one image, then 21 of three (their first image central); NumPy's default sort,
    # unstable above 16 elements, would mix up equal ones
    sizes = np.array([1] * 12 + [3] * 21)
    n = int(sizes.sum())
    clusters = np.repeat(np.arange(33, dtype=np.int32), sizes)
    central = np.full((33, 8), -1, np.int64)
    central[:, 0] = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    paths = [str(tmp_path / f"{i}.png") for i in range(n)]
    for i in central[:, 0]:
        Image.new("RGB", (8, 8)).save(paths[i])
    xy = np.random.default_rng(2).random((n, 2)).astype(np.float32)
    m = Map(np.arange(n, dtype=np.int64), xy, clusters, np.eye(33, 4, dtype=np.float32), central, 1, "by hand", n, 0)
    labels = np.repeat(np.arange(33), [0, 10, 5] + [2] * 30)  # groups 1 and 2 of 10 and 5 images, 3..32 of 2
    ax, thumbs = figure(m, paths, labels, [f"g{i}" for i in range(33)])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["g1 (10)", "g2 (5)"] + [f"g{i} (2)" for i in range(3, 21)]
    assert [tuple(t.xy) for t in thumbs] == [tuple(xy[central[c, 0]]) for c in range(12, 20)]


def rendered(tmp_path, m, paths, labels, names, title) -> np.ndarray:
    """The PNG ``write_png`` writes, as a float (H, W, 3) array of 0..255."""
    picture.write_png(tmp_path / "map.png", m, paths, labels, names, title)
    return np.asarray(Image.open(tmp_path / "map.png").convert("RGB"), dtype=float)


def coverage(img: np.ndarray, rgb) -> np.ndarray:
    """How much of each pixel is ``rgb`` (0..255) over white: 0 to 1, 0 where the pixel is another colour."""
    ink = 255 - np.asarray(rgb, dtype=float)
    cover = ((255 - img) @ ink) / (ink @ ink)
    off = np.abs((255 - img) - cover[..., None] * ink).sum(-1)
    return np.where(off < 25, cover, 0.0)


def spots(img: np.ndarray, rgb) -> list[tuple[float, float, float]]:
    """Each connected patch of colour ``rgb`` larger than a pixel: (area in pixels, x, y of its centre)."""
    from scipy import ndimage

    cover = coverage(img, rgb)
    patches, count = ndimage.label(cover > 0.02)
    found = []
    for k in range(1, count + 1):
        w = np.where(patches == k, cover, 0)
        if w.sum() > 1:
            ys, xs = np.indices(w.shape)
            found.append((w.sum(), (w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()))
    return sorted(found, key=lambda s: s[1])


def ink_columns(dark: np.ndarray) -> tuple[int, int]:
    """The first and last columns holding dark pixels."""
    cols = np.flatnonzero(dark.any(axis=0))
    return int(cols[0]), int(cols[-1])


# At 120 dpi the 9-inch figure's axes are 9 x (0.88 - 0.11) = 6.93 inches tall (matplotlib's default
# subplot margins), 831.6 pixels for the 1.4 units from -0.2 to 1.2: 594 pixels a unit. A point is 120 / 72
# pixels. DejaVu Sans (matplotlib's font) draws an H 0.556 em wide and advances 0.752 em: ten H's are
# 7.32 em of ink.
UNIT = 594.0
PX = 120 / 72
TEN_H = 9 * 1540 / 2048 + (1339 - 201) / 2048


def test_the_png_shows_the_map_at_594_pixels_a_unit_its_dots_legend_and_title_at_their_sizes(tmp_path):
    m = Map(np.arange(2, dtype=np.int64), np.array([[0, 0], [1, 1]], np.float32), np.zeros(2, np.int32),
            np.eye(1, 4, dtype=np.float32), np.full((1, 8), -1, np.int64), 1, "by hand", 2, 0)
    img = rendered(tmp_path, m, ["", ""], np.array([0, 1]), ["H" * 10, "b"], "H" * 10)
    (a, *legend_a), (b, *legend_b) = spots(img, np.array(picture.colour(0)) * 255), spots(img, np.array(picture.colour(1)) * 255)
    # the dots: (1, 1) a unit right of and below (0, 0); 30 points² each (2 images): sqrt(30) points across
    assert b[1] - a[1] == pytest.approx(UNIT, abs=1) and b[2] - a[2] == pytest.approx(UNIT, abs=1)
    assert a[0] == pytest.approx(np.pi / 4 * 30 * PX**2, rel=0.06) and b[0] == pytest.approx(a[0], rel=0.02)
    left, top, right = a[1] - 0.2 * UNIT, a[2] - 0.2 * UNIT, b[1] + 0.2 * UNIT  # the axes' edges
    # the legend beside the map at its top, a above b: 6-point markers x 1.5 and a 1-point edge, 10 points
    # across, centred 0.01 of the axes, 0.5 em (8-point names), 0.4 em and 1 em (half a handle) right of it
    (la,), (lb,) = legend_a, legend_b
    assert la[0] == pytest.approx(np.pi / 4 * (10 * PX) ** 2, rel=0.06) and lb[0] == pytest.approx(la[0], rel=0.02)
    assert la[1] == pytest.approx(right + 0.01 * UNIT * 1.4 + (0.5 + 0.4 + 1) * 8 * PX, abs=1.5) == lb[1]
    assert top + (0.5 + 0.4) * 8 * PX < la[2] < lb[2] < top + 50
    dark = img.mean(axis=2) < 128
    name = dark[int(la[2]) - 6:int(la[2]) + 6, int(la[1]) + 20:]  # the name beside a's marker: 8-point H's
    cols = np.flatnonzero(name.any(axis=0))
    h_end = cols[np.flatnonzero(np.diff(cols) > 5)[0]]  # the H's end at the space before "(1)"
    assert h_end - cols[0] + 1 == pytest.approx(TEN_H * 8 * PX, abs=3)
    # the title above the map at its left edge, in 11 points; the picture cropped to 0.1 inch around
    first, last = ink_columns(dark[:int(top)])
    assert last - first + 1 == pytest.approx(TEN_H * 11 * PX, abs=3)
    assert first == pytest.approx(left + 201 / 2048 * 11 * PX, abs=2)
    assert np.flatnonzero(dark.any(axis=1))[0] == pytest.approx(0.1 * 120, abs=2)
    assert img.shape[1] - 1 - ink_columns(dark)[1] == pytest.approx(0.1 * 120 + 0.4 * 8 * PX, abs=3)
    # no frame around the legend (a frame is a light grey line)
    grey = (np.abs(img - img.mean(axis=2, keepdims=True)).max(axis=2) < 3) & (img[..., 0] > 150) & (img[..., 0] < 250)
    edges = [np.flatnonzero(np.diff(np.r_[0, row, 0])) for row in grey.astype(int)]
    assert max((e[1::2] - e[::2]).max(initial=0) for e in edges) < 20  # the longest run of grey in a row


def test_the_png_frames_a_thumbnail_in_its_groups_colour_0_16_units_out_and_joins_it_to_its_dot(tmp_path):
    # one thumbnail: image 0 (at 0.9, 0.5; group 3, red) of a map centred at (0.5, 0.6333), so it is placed
    # 0.16 units along (0.4, -0.1333), that is (3, -1) / sqrt(10); a 144 x 288 image is fitted into 36 x 72
    # pixels, drawn a point a pixel
    Image.new("RGB", (144, 288), (0, 255, 0)).save(tmp_path / "tall.png")
    central = np.full((2, 8), -1, np.int64)
    central[0, 0] = 0
    m = Map(np.arange(3, dtype=np.int64), np.array([[0.9, 0.5], [0.1, 0.5], [0.5, 0.9]], np.float32),
            np.array([0, 1, 1], np.int32), np.eye(2, 4, dtype=np.float32), central, 1, "by hand", 3, 0)
    img = rendered(tmp_path, m, [str(tmp_path / "tall.png"), "", ""], np.array([3, 0, 0]), ["a", "b", "c", "d"], "t")
    red = np.array(picture.colour(3)) * 255
    dot = next(s for s in spots(img, red) if s[0] < 100)  # the dot (the frame and the legend's marker are larger)
    ys, xs = np.nonzero(coverage(img, (0, 255, 0)) > 0.5)
    assert (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1) == (round(36 * PX), round(72 * PX))
    assert (xs.min() + xs.max()) / 2 - dot[1] == pytest.approx(0.16 * UNIT * 3 / np.sqrt(10), abs=1.5)
    assert (ys.min() + ys.max()) / 2 - dot[2] == pytest.approx(-0.16 * UNIT / np.sqrt(10), abs=1.5)
    # a 2-point frame around 0.15 of a 10-point font of padding: its centre line 2.5 pixels out
    frame = coverage(img, red)[ys.min() - 10:ys.max() + 11, xs.min() - 10:xs.max() + 11]
    inner_w, inner_h = xs.max() - xs.min() + 1 + 2 * 1.5 * PX, ys.max() - ys.min() + 1 + 2 * 1.5 * PX
    line = 2 * PX
    assert frame.sum() == pytest.approx((inner_w + line) * (inner_h + line) - (inner_w - line) * (inner_h - line), rel=0.05)
    middle = frame[frame.shape[0] // 2]
    assert middle[:10].sum() == pytest.approx(line, abs=0.4) and middle[-10:].sum() == pytest.approx(line, abs=0.4)
    # the dot joined to the frame by a 0.8-point line of 40 % grey (crossing this column at a slant of 1 in 3)
    between = coverage(img, (102, 102, 102))[int(dot[2]) - 15:int(dot[2]) + 5, int(dot[1]) + 15]
    assert between.sum() == pytest.approx(0.8 * PX * np.sqrt(10) / 3, abs=0.1)


def test_an_empty_map_is_drawn_without_warnings_and_a_png_whatever_matplotlibs_settings(tmp_path):
    import warnings

    m = Map(np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.int32), np.zeros((0, 4), np.float32),
            np.zeros((0, 8), np.int64), 1, "by hand", 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ax, thumbs = figure(m, [], np.zeros(0, np.int32), [])
        assert ax.get_legend() is None and thumbs == []
        ax, _ = figure(m, [], np.zeros(0, np.int32), ["cluster 1"])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["cluster 1 (0)"]
    with matplotlib.rc_context({"savefig.format": "svg"}):  # a user's matplotlibrc
        picture.write_png(tmp_path / "map.png", m, [], np.zeros(0, np.int32), [], "0 images")
    assert Image.open(tmp_path / "map.png").format == "PNG"
