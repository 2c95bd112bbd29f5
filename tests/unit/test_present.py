"""Montage layout: every thumbnail drawn, row titles clear of the row's images."""

import matplotlib.pyplot as plt
from PIL import Image

from lookalike.api import Match, QueryResult
from lookalike.present import montage_figure


def test_row_titles_sit_above_every_image_of_their_row(tmp_path):
    # A wide first image and a tall second one: each shrinks its axes to its own aspect.
    sizes = {"wide.png": (300, 100), "tall.png": (100, 300), "square.png": (200, 200)}
    for name, size in sizes.items():
        Image.new("RGB", size, (90, 140, 200)).save(tmp_path / name)
    matches = [Match(i + 1, i, str(tmp_path / name), 0.1 * i) for i, name in enumerate(sizes)]
    rows = [QueryResult("q.png", mode, "cosine", matches) for mode in ("nearest", "random", "farthest")]
    fig = montage_figure(tmp_path / "square.png", rows)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        titles = [t for t in fig.texts if "cosine" in t.get_text()]
        image_axes = fig.axes[1:]
        assert len(titles) == 3 and len(image_axes) == 9
        for r, title in enumerate(titles):
            bottom = title.get_window_extent(renderer).y0
            row_top = max(ax.get_window_extent(renderer).y1 for ax in image_axes[3 * r:3 * r + 3])
            assert bottom >= row_top, (title.get_text(), bottom, row_top)
    finally:
        plt.close(fig)
