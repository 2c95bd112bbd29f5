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
