"""Montage layout: every thumbnail drawn, row titles clear of the row's images; line-format output."""

import io

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from lookalike.api import Match, QueryResult
from lookalike.cli.present import montage_figure, print_results


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


def _result(query: str, *paths: str) -> QueryResult:
    return QueryResult(query, "nearest", "cosine", [Match(i + 1, i, p, 0.1 * i) for i, p in enumerate(paths)])


@pytest.mark.parametrize("fmt, results, broken", [
    ("tsv", [_result("/q.jpg", "/a.jpg", "/a\tb.jpg")], "/a\tb.jpg"),
    ("tsv", [_result("/q.jpg", "/a.jpg"), _result("/q\r.jpg", "/b.jpg")], "/q\r.jpg"),  # the query column
    ("paths", [_result("/q.jpg", "/a.jpg"), _result("/r.jpg", "/b\nc.jpg")], "/b\nc.jpg"),
])
def test_line_formats_refuse_names_that_would_break_a_line_and_print_nothing(fmt, results, broken):
    out = io.StringIO()
    with pytest.raises(ValueError, match="file name holds") as e:
        print_results(results, fmt, out=out)
    assert repr(broken) in str(e.value) and out.getvalue() == ""


def test_line_formats_print_other_names_exactly():
    out = io.StringIO()
    print_results([_result("/q\t.jpg", "/a\tb [x].jpg")], "paths", out=out)
    assert out.getvalue() == "/a\tb [x].jpg\n"
    out = io.StringIO()
    print_results([_result("/q\t.jpg", "/ü [b].jpg")], "tsv", out=out)  # one query: no query column
    assert out.getvalue() == "rank\tdistance\tpath\n1\t0.000000\t/ü [b].jpg\n"


def test_at_80_columns_every_path_stays_on_one_line_with_its_file_name():
    from rich.cells import cell_len
    from rich.console import Console

    from lookalike.cli.present import table

    long_folder = "/photos/a very long folder name for photos/holiday 2024 in the mountains"
    paths = [f"{long_folder}/chelsea_brighter.jpg", "/photos/short.jpg", f"{long_folder}/写真フォルダの猫の写真.jpg"]
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(table(_result("/q.jpg", *paths)))
    lines = out.getvalue().splitlines()
    assert all(cell_len(line) <= 80 for line in lines)
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 3  # one line each: nothing folded onto a second line
    for row, path in zip(rows, paths):
        shown = row.split("│")[3].strip()
        assert shown.endswith(path.rsplit("/", 1)[1]) and (shown == path or "…" in shown)
    assert rows[1].split("│")[3].strip() == "/photos/short.jpg"  # what fits is left whole


def test_montage_captions_name_the_folder_and_file_and_shorten_long_ones_in_the_middle(tmp_path):
    (tmp_path / "roses").mkdir()
    Image.new("RGB", (40, 30), (200, 40, 60)).save(tmp_path / "roses" / "image_0001.jpg")
    long_name = "a_very_long_file_name_from_a_phone_camera_0001.jpg"
    Image.new("RGB", (40, 30), (20, 40, 160)).save(tmp_path / "roses" / long_name)
    matches = [Match(1, 0, str(tmp_path / "roses" / "image_0001.jpg"), 0.1),
               Match(2, 1, str(tmp_path / "roses" / long_name), 0.25)]
    fig = montage_figure(tmp_path / "roses" / "image_0001.jpg",
                         [QueryResult(str(tmp_path / "roses" / "image_0001.jpg"), "nearest", "cosine", matches)])
    try:
        labels = [ax.get_xlabel() for ax in fig.axes]
    finally:
        plt.close(fig)
    assert labels[0] == "roses/image_0001.jpg" and labels[1] == "0.1000\nroses/image_0001.jpg"
    distance, caption = labels[2].split("\n")
    assert distance == "0.2500" and "…" in caption and len(caption) <= 24
    head, tail = caption.split("…")
    assert long_name.startswith(head) and long_name.endswith(tail) and tail.endswith("0001.jpg")
