"""Montage layout: every thumbnail drawn, row titles clear of the row's images; line-format output."""

import io
import re

import matplotlib.pyplot as plt
import pytest
from PIL import Image

from lookalike.api import Match, QueryResult
from lookalike.cli.present import montage_figure, print_dedup, print_results

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


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


# found by mutation testing: the table's words, the TSV of several queries, the dedup listing and montages

def console_text(render, width=200) -> str:
    from rich.console import Console

    out = io.StringIO()
    render(Console(file=out, width=width, color_system=None, markup=False, highlight=False))
    return out.getvalue()


def cells(lines: list[str], bar: str) -> list[list[str]]:
    """The cells of a rich table's rows drawn with ``bar`` (┃ the header, │ the body)."""
    return [[cell.strip() for cell in line.split(bar)[1:-1]] for line in lines if line.startswith(bar)]


def test_the_table_titles_the_query_and_gives_ranks_and_distances_to_four_places():
    from lookalike.cli.present import table

    text = console_text(lambda c: c.print(table(_result("/q [b].jpg", "/a.jpg", "/[red]x[/red].jpg"))))
    lines = text.splitlines()
    assert lines[0].strip() == "nearest to /q [b].jpg (cosine)"
    assert cells(lines, "┃") == [["rank", "distance", "path"]]
    assert cells(lines, "│") == [["1", "0.0000", "/a.jpg"], ["2", "0.1000", "/[red]x[/red].jpg"]]


def test_several_queries_in_tsv_lead_with_a_query_column_and_unknown_formats_are_refused():
    out = io.StringIO()
    print_results([_result("/q1.jpg", "/a.jpg", "/b.jpg"), _result("/q2.jpg", "/c.jpg")], "tsv", out=out)
    assert out.getvalue() == ("query\trank\tdistance\tpath\n/q1.jpg\t1\t0.000000\t/a.jpg\n"
                              "/q1.jpg\t2\t0.100000\t/b.jpg\n/q2.jpg\t1\t0.000000\t/c.jpg\n")
    out = io.StringIO()
    print_results([_result("/q1.jpg", "/a.jpg"), _result("/q2.jpg", "/c.jpg")], "paths", out=out)
    assert out.getvalue() == "/a.jpg\n/c.jpg\n"
    with pytest.raises(ValueError) as e:
        print_results([_result("/q.jpg", "/a.jpg")], "xml", out=io.StringIO())
    assert str(e.value) == "unknown format 'xml'; choose from: table, tsv, paths"
    with pytest.raises(ValueError, match="a line break"):  # paths: a tab is fine, a carriage return is not
        print_results([_result("/q.jpg", "/a\r.jpg")], "paths", out=io.StringIO())


def dedup_report(groups, n_images=10, preset=None):
    from lookalike.dedup.report import DedupReport
    from lookalike.dedup.rules import Rule

    return DedupReport(Rule(radius=0.05), preset, n_images, groups=groups)


def test_no_duplicates_says_among_how_many_images_and_by_which_rule():
    one = console_text(lambda c: print_dedup(dedup_report([], n_images=1), console=c))
    assert one.strip() == "no duplicates among 1 image (cosine distance <= 0.05)"
    many = console_text(lambda c: print_dedup(dedup_report([], n_images=7, preset="near"), console=c))
    assert many.strip() == "no duplicates among 7 images (preset near: cosine distance <= 0.05)"


def test_the_dedup_listing_shows_each_group_its_kept_file_and_why_each_duplicate_is_one():
    from lookalike.dedup.report import Duplicate, Group

    groups = [Group("exact", "/p/keep.jpg", [Duplicate("/p/copy [1].jpg", 0.0, "exact")]),
              Group("near", "/p/rose.jpg", [Duplicate("/p/rose small.jpg", 0.03125),
                                            Duplicate("/q/rose small copy.jpg", 0.03125, copy_of="/p/rose small.jpg")])]
    text = console_text(lambda c: print_dedup(dedup_report(groups, n_images=12, preset="near"), console=c))
    lines = text.splitlines()
    assert lines[0].strip() == "duplicate groups (preset near: cosine distance <= 0.05)"
    assert cells(lines, "┃") == [["group", "kind", "distance", "path", "evidence"]]
    assert cells(lines, "│") == [["1", "exact", "keep", "/p/keep.jpg", ""], ["", "", "0.0000", "/p/copy [1].jpg", "same bytes"],
                                   ["2", "near", "keep", "/p/rose.jpg", ""], ["", "", "0.0312", "/p/rose small.jpg", ""],
                                   ["", "", "0.0312", "/q/rose small copy.jpg", "same bytes as rose small.jpg"]]
    assert lines[-1] == ("1 exact group (2 files), 1 near group (3 files) among 12 images; 3 files could go "
                         "(--to-remove)")


def test_a_group_of_shots_shows_why_its_file_is_kept_and_what_a_member_was_compared_with():
    from lookalike.dedup.report import BestShot, Duplicate, Group, Shot

    best = BestShot("/p/sharp.jpg", "the sharpest of 3 shots (sharpness 2.00)",
                    {"/p/sharp.jpg": Shot(2.0, 0.0), "/p/first.jpg": Shot(0.2, 0.0), "/p/other.jpg": Shot(0.3, 0.0)})
    groups = [Group("shots", "/p/sharp.jpg", [Duplicate("/p/first.jpg", 0.02),
                                              Duplicate("/p/other.jpg", 0.03, compared_with="/p/first.jpg")], best)]
    text = console_text(lambda c: print_dedup(dedup_report(groups, n_images=5, preset="shots"), console=c))
    lines = text.splitlines()
    assert cells(lines, "│") == [["1", "shots", "keep", "/p/sharp.jpg", "the sharpest of 3 shots (sharpness 2.00)"],
                                   ["", "", "0.0200", "/p/first.jpg", ""],
                                   ["", "", "0.0300", "/p/other.jpg", "(against first.jpg)"]]
    assert lines[-1] == ("0 exact groups (0 files), 0 near groups (0 files), 1 shots group (3 files) among 5 images; "
                         "2 files could go (--to-remove)")


def test_one_montage_per_group_with_its_duplicates_in_rows(tmp_path, monkeypatch):
    from lookalike.cli import present
    from lookalike.dedup.report import Duplicate, Group

    drawn = []
    monkeypatch.setattr(present, "montage", lambda query, rows, out, query_title: drawn.append(
        (query, [[(m.rank, m.path, m.distance) for m in r.results] for r in rows], out, query_title)))
    dups = [Duplicate(f"/d{i}.jpg", i / 10) for i in range(1, 4)]
    groups = [Group("exact", "/k0.jpg", dups[:1]), Group("near", "/k1.jpg", dups)]
    written = present.dedup_montages(dedup_report(groups), tmp_path / "new", per_row=2)
    assert written == [str(tmp_path / "new" / "group-0001-exact.png"), str(tmp_path / "new" / "group-0002-near.png")]
    assert (tmp_path / "new").is_dir()
    assert drawn[0] == ("/k0.jpg", [[(1, "/d1.jpg", 0.1)]], written[0], "keep")
    assert drawn[1][1] == [[(1, "/d1.jpg", 0.1), (2, "/d2.jpg", 0.2)], [(3, "/d3.jpg", 0.3)]]


def test_a_montage_is_written_in_the_format_its_name_gives_and_an_unreadable_image_shows_gray(tmp_path):
    from lookalike.cli.present import THUMB, montage

    Image.new("RGB", (60, 40), (250, 0, 0)).save(tmp_path / "q.png")
    rows = [QueryResult(str(tmp_path / "q.png"), "farthest", "l2", [Match(1, 0, str(tmp_path / "gone.png"), 1.5)])]
    for name, kind in (("m.JPG", "JPEG"), ("m.png", "PNG"), ("m", "PNG")):
        montage(tmp_path / "q.png", rows, tmp_path / name)
        assert Image.open(tmp_path / name).format == kind
    fig = montage_figure(tmp_path / "q.png", rows)
    try:
        gone = fig.axes[1].get_images()[0].get_array()
        assert gone.shape == (THUMB, THUMB, 3) and (gone == 200).all()  # a gray square, 192 a side
        query = fig.axes[0].get_images()[0].get_array()
        assert query.shape == (40, 60, 3) and tuple(query[20, 30]) == (250, 0, 0)  # small images not enlarged
        assert [t.get_text() for t in fig.texts] == ["farthest (descending) — l2"]
        assert fig.axes[0].get_title() == "query"
    finally:
        plt.close(fig)


def test_a_refused_name_is_said_whole_with_what_would_break_the_format():
    with pytest.raises(ValueError) as e:
        print_results([_result("/q.jpg", "/a\tb.jpg")], "tsv", out=io.StringIO())
    assert str(e.value) == ("a file name holds a tab or line break ('/a\\tb.jpg'): tsv output would be ambiguous; "
                            "use --json")
    with pytest.raises(ValueError) as e:
        print_results([_result("/q.jpg", "/a\nb.jpg")], "paths", out=io.StringIO())
    assert str(e.value) == "a file name holds a line break ('/a\\nb.jpg'): paths output would be ambiguous; use --json"
    out = io.StringIO()
    print_results([_result("/q.jpg", "/a\tXb.jpg")], "paths", out=out)  # a tab breaks no line of paths
    assert out.getvalue() == "/a\tXb.jpg\n"
    out = io.StringIO()
    print_results([_result("/q.jpg", "/X.jpg")], "tsv", out=out)  # nor does any other character
    assert out.getvalue() == "rank\tdistance\tpath\n1\t0.000000\t/X.jpg\n"


def test_results_print_as_one_table_per_query_by_default():
    from lookalike.cli.present import table

    results = [_result("/q1.jpg", "/a.jpg", "/b.jpg"), _result("/q2.jpg", "/c.jpg")]
    got = console_text(lambda c: print_results(results, console=c))
    assert got == console_text(lambda c: [c.print(table(r)) for r in results])
    assert got.count("nearest to /q1.jpg (cosine)") == 1 and got.count("nearest to /q2.jpg (cosine)") == 1


# the tables' layout as a reader sees it: numbers right-aligned, titles at the left, one line a row,
# groups apart; the console of data on stdout

def raw_lines(render, width) -> list[str]:
    return console_text(render, width).splitlines()


def test_ranks_and_distances_are_right_aligned_and_never_wrapped_and_the_title_starts_at_the_left():
    from lookalike.cli.present import table

    paths = [f"/photos/{'long folder name ' * 3}/{i}.jpg" for i in range(10)]
    result = QueryResult("/q.jpg", "nearest", "cosine", [Match(i + 1, i, p, 0.123456 + i) for i, p in enumerate(paths)])
    wide = raw_lines(lambda c: c.print(table(result)), 200)
    assert wide[0].rstrip() == "nearest to /q.jpg (cosine)"  # at the left, not centred over the wider table
    rows = [line.split("│") for line in wide if line.startswith("│")]
    assert [r[1] for r in rows[:2]] == ["    1 ", "    2 "] and rows[9][1] == "   10 "
    assert rows[0][2] == "   0.1235 " and rows[9][2] == "   9.1235 "
    narrow = raw_lines(lambda c: c.print(table(result)), 40)
    body = [line for line in narrow if line.startswith("│")]
    assert len(body) == 10  # one line a result: no rank, distance or path broken over two
    assert [line.split("│")[2].strip() for line in body[:2]] == ["0.1235", "1.1235"]
    assert all(line.split("│")[3].strip().endswith(f"{i}.jpg") for i, line in enumerate(body))


def test_a_path_too_long_for_its_cell_is_shortened_on_one_line_never_wrapped():
    from rich.console import Console

    from lookalike.cli.present import PathCell

    path = "/photos/" + "x" * 60 + "/name.jpg"
    out = io.StringIO()
    Console(file=out, width=30, color_system=None).print(PathCell(path))
    assert out.getvalue().count("\n") == 1 and out.getvalue().rstrip().endswith("name.jpg") and "…" in out.getvalue()


def test_the_dedup_table_aligns_numbers_right_keeps_kinds_whole_folds_long_evidence_and_parts_groups():
    from lookalike.dedup.report import Duplicate, Group

    groups = [Group("exact", f"/p/keep{g}.jpg", [Duplicate(f"/p/copy{g}-{i}.jpg", 0.0, "exact") for i in range(2)])
              for g in range(10)]
    report = dedup_report(groups, n_images=30)
    lines = raw_lines(lambda c: print_dedup(report, console=c), 200)
    assert lines[0].rstrip() == "duplicate groups (cosine distance <= 0.05)"
    rows = [line.split("│") for line in lines if line.startswith("│")]
    assert rows[0][1] == "     1 " and rows[27][1] == "    10 "  # 1 and 10, right-aligned
    assert rows[1][3] == "   0.0000 " and rows[0][3] == "     keep "
    separators = [i for i, line in enumerate(lines) if line.startswith("├")]
    body = [i for i, line in enumerate(lines) if line.startswith("│")]
    assert len(separators) == 9  # between groups, none within one
    assert all(body[3 * g + 2] + 1 == separators[g] for g in range(9))
    narrow = raw_lines(lambda c: print_dedup(report, console=c), 50)
    kinds = [line.split("│")[2].strip() for line in narrow if line.startswith("│")]
    assert kinds.count("exact") == 10 and set(kinds) == {"exact", ""}  # never broken as "exa" / "ct"
    long_why = "x" * 80
    report = dedup_report([Group("near", "/p/k.jpg", [Duplicate("/p/d.jpg", 0.01, copy_of="/p/" + long_why)])])
    shown = " ".join(line.split("│")[5].strip() for line in raw_lines(lambda c: print_dedup(report, console=c), 70)
                    if line.startswith("│"))
    assert shown.replace(" ", "") == f"samebytesas{long_why}" and "…" not in shown  # folded, not cut short


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stdout_console_prints_names_as_they_are_and_is_unbounded_in_a_pipe(monkeypatch):
    from lookalike.cli.present import stdout_console

    monkeypatch.setattr("sys.stdout", io.StringIO())
    pipe = stdout_console()
    assert pipe.width == 1 << 20 and not pipe.is_terminal
    pipe.print("[bold]a[/bold] 'x' 1.5 " + "y" * 300)
    assert pipe.file.getvalue() == "[bold]a[/bold] 'x' 1.5 " + "y" * 300 + "\n"
    monkeypatch.setenv("COLUMNS", "50")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr("sys.stdout", Terminal())
    term = stdout_console()
    assert term.width == 50 and term.is_terminal
    term.print("[bold]a[/bold] 'x' 1.5 /p/q.jpg")
    assert term.file.getvalue() == "[bold]a[/bold] 'x' 1.5 /p/q.jpg\n"  # no markup read, nothing highlighted


def test_a_montage_titles_its_query_query_by_default_and_is_cropped_to_what_it_draws(tmp_path, monkeypatch):
    from lookalike.cli import present

    Image.new("RGB", (60, 40), (0, 120, 0)).save(tmp_path / "q.png")
    rows = [QueryResult(str(tmp_path / "q.png"), "nearest", "cosine", [Match(1, 0, str(tmp_path / "q.png"), 0.0)])]
    made = []
    real = present.montage_figure
    monkeypatch.setattr(present, "montage_figure", lambda *args: made.append(args) or real(*args))
    present.montage(tmp_path / "q.png", rows, tmp_path / "m.png")
    assert made == [(tmp_path / "q.png", rows, "query")]
    fig = real(tmp_path / "q.png", rows)
    full = fig.get_size_inches() * fig.dpi
    plt.close(fig)
    width, height = Image.open(tmp_path / "m.png").size
    assert (width, height) != tuple(round(x) for x in full)  # fitted to what it draws ("tight"), not the page
    assert plt.get_fignums() == []  # every figure closed


def test_every_thumbnail_is_drawn_at_one_size_whatever_the_number_of_images_and_rows(tmp_path):
    from lookalike.cli.present import THUMB

    Image.new("RGB", (60, 40), (0, 120, 0)).save(tmp_path / "q.png")
    sizes = set()
    for n, modes in ((2, ["nearest"]), (5, ["nearest"]), (3, ["nearest", "random", "farthest"])):
        rows = [QueryResult("q", m, "cosine", [Match(i + 1, i, str(tmp_path / "q.png"), 0.1) for i in range(n)])
                for m in modes]
        fig = montage_figure(tmp_path / "q.png", rows)
        try:
            px = fig.get_size_inches() * fig.dpi
            sizes |= {(round(ax.get_position().width * px[0]), round(ax.get_position().height * px[1]))
                      for ax in fig.axes[1:]}
        finally:
            plt.close(fig)
    widths, heights = {w for w, _ in sizes}, {h for _, h in sizes}
    assert max(widths) - min(widths) <= 2 and max(heights) - min(heights) <= 2
    assert 0.6 * THUMB < min(widths) <= THUMB  # near the thumbnail's own size: not squeezed into a fixed figure


def test_group_montages_hold_eight_duplicates_a_row_under_the_kept_file_and_go_into_an_existing_folder(tmp_path,
                                                                                                   monkeypatch):
    from lookalike.cli import present
    from lookalike.dedup.report import Duplicate, Group

    drawn = []
    monkeypatch.setattr(present, "montage", lambda query, rows, out, query_title: drawn.append(rows))
    dups = [Duplicate(f"/d{i}.jpg", i / 100) for i in range(1, 10)]
    (tmp_path / "out").mkdir()
    present.dedup_montages(dedup_report([Group("near", "/k.jpg", dups)]), tmp_path / "out")
    [rows] = drawn
    assert [len(r.results) for r in rows] == [8, 1]
    assert {(r.query, r.mode, r.metric) for r in rows} == {("/k.jpg", "near duplicates", "cosine")}
    assert [m.rank for r in rows for m in r.results] == list(range(1, 10))


def test_tables_and_the_dedup_summary_go_to_stdout_by_default_with_no_number_highlighted(monkeypatch):
    from lookalike.dedup.report import Duplicate, Group

    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.delenv("NO_COLOR", raising=False)
    term = Terminal()
    monkeypatch.setattr("sys.stdout", term)
    print_results([_result("/q.jpg", "/a 2.jpg")])
    rows = [ANSI.sub("", line) for line in term.getvalue().splitlines() if "/a 2.jpg" in line]
    assert [[c.strip() for c in row.split("│")[1:-1]] for row in rows] == [["1", "0.0000", "/a 2.jpg"]]
    term.seek(0), term.truncate()
    print_dedup(dedup_report([], n_images=7))
    assert term.getvalue() == "no duplicates among 7 images (cosine distance <= 0.05)\n"  # plain: numbers uncoloured
    term.seek(0), term.truncate()
    print_dedup(dedup_report([Group("exact", "/k.jpg", [Duplicate("/d.jpg", 0.0, "exact")])], n_images=12))
    assert term.getvalue().splitlines()[-1] == ("1 exact group (2 files), 0 near groups (0 files) among 12 images; 1 file could go "
                                               "(--to-remove)")


def test_the_dedup_summary_is_plain_even_on_a_console_that_highlights():
    from rich.console import Console

    from lookalike.dedup.report import Duplicate, Group

    out = Terminal()
    console = Console(file=out, force_terminal=True, color_system="standard", width=120)  # highlights by default
    print_dedup(dedup_report([], n_images=7), console=console)
    assert out.getvalue() == "no duplicates among 7 images (cosine distance <= 0.05)\n"
    out.seek(0), out.truncate()
    print_dedup(dedup_report([Group("near", "/k.jpg", [Duplicate("/d.jpg", 0.01)])], n_images=3), console=console)
    assert out.getvalue().splitlines()[-1] == ("0 exact groups (0 files), 1 near group (2 files) among 3 images; "
                                                "1 file could go (--to-remove)")


def test_a_large_jpeg_thumbnail_is_decoded_at_a_reduced_scale_then_fitted_into_the_thumbnail(tmp_path, monkeypatch):
    from lookalike.cli import present

    Image.new("RGB", (1600, 1200), (30, 90, 200)).save(tmp_path / "big.jpg")
    decoded = []
    real = present.decode

    def recording(*args, **kw):
        img = real(*args, **kw)
        decoded.append(img.size)  # before the thumbnail shrinks it in place
        return img

    monkeypatch.setattr(present, "decode", recording)
    thumb = present._thumb(tmp_path / "big.jpg")
    # the smallest DCT scale still 192 pixels on each side: 1/4 (1/8 would be 200 x 150)
    assert decoded == [(400, 300)] and thumb.size == (192, 144)


def test_on_a_very_narrow_terminal_ranks_distances_and_kinds_stay_whole_and_the_paths_give_way():
    from lookalike.cli.present import table

    result = QueryResult("/q.jpg", "nearest", "cosine",
                         [Match(i + 1, i, f"/photos/long folder/{i}.jpg", 0.123456 + i) for i in range(12)])
    lines = raw_lines(lambda c: c.print(table(result)), 24)
    assert [row[:2] for row in cells(lines, "┃")] == [["rank", "distance"]]
    body = cells(lines, "│")
    assert [row[:2] for row in body] == [[str(i + 1), f"{0.123456 + i:.4f}"] for i in range(12)]
    assert all("…" in row[2] for row in body)  # the path column shortened instead
    from lookalike.dedup.report import Duplicate, Group

    groups = [Group("exact", f"/p/keep{g}.jpg", [Duplicate(f"/p/copy{g}-{i}.jpg", 0.0, "exact") for i in range(2)])
              for g in range(10)]
    lines = raw_lines(lambda c: print_dedup(dedup_report(groups, n_images=30), console=c), 40)
    assert [row[:3] for row in cells(lines, "┃")][-1] == ["group", "kind", "distance"]
    body = [row for row in cells(lines, "│")]
    firsts = [row[:3] for row in body if row[2]]  # each file's first line
    assert firsts == [[str(g + 1), "exact", "keep"] if i == 0 else ["", "", "0.0000"] for g in range(10) for i in range(3)]
    assert all(row[:3] == ["", "", ""] for row in body if not row[2])  # only the evidence wraps
    assert not any("…" in row[4] for row in body)  # folded, never cut


def test_montage_text_reads_as_written_bold_titles_over_small_captions_the_query_left_and_rows_apart(tmp_path):
    (tmp_path / "f").mkdir()
    path = tmp_path / "f" / "cost $_$ x.png"  # as mathtext, "$_$" would fail to draw
    Image.new("RGB", (40, 60), (0, 120, 0)).save(path)
    rows = [QueryResult(str(path), mode, "cosine", [Match(i + 1, i, str(path), 0.1) for i in range(3)])
            for mode in ("nearest", "random", "farthest")]
    fig = montage_figure(path, rows)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        query, images = fig.axes[0], fig.axes[1:]
        captions = [ax.xaxis.label for ax in fig.axes]
        assert {c.get_text() for c in captions} == {"f/cost $_$ x.png", "0.1000\nf/cost $_$ x.png"}
        assert query.title.get_fontweight() == "bold" and {t.get_fontweight() for t in fig.texts} == {"bold"}
        assert max(c.get_fontsize() for c in captions) < min(t.get_fontsize() for t in fig.texts) \
            < query.title.get_fontsize()
        assert query.get_position().x1 < min(ax.get_position().x0 for ax in images)  # the query at the left
        for r, title in enumerate(fig.texts[1:], start=1):  # each row title clear of the captions above it
            above = images[3 * (r - 1):3 * r]
            assert title.get_window_extent(renderer).y1 < min(ax.xaxis.label.get_window_extent(renderer).y0
                                                              for ax in above)
    finally:
        plt.close(fig)


def test_a_row_of_another_mode_is_titled_by_its_name_and_no_thumbnail_is_framed(tmp_path):
    Image.new("RGB", (30, 30), (0, 0, 200)).save(tmp_path / "k.png")
    rows = [QueryResult(str(tmp_path / "k.png"), "near duplicates", "cosine", [Match(1, 0, str(tmp_path / "k.png"), 0.0)])]
    fig = montage_figure(tmp_path / "k.png", rows, "keep")
    try:
        assert [t.get_text() for t in fig.texts] == ["near duplicates — cosine"]
        assert fig.axes[0].get_title() == "keep"
        for ax in fig.axes:
            assert not any(spine.get_visible() for spine in ax.spines.values())
            assert list(ax.get_xticks()) == [] and list(ax.get_yticks()) == []
    finally:
        plt.close(fig)


def test_a_portrait_thumbnail_in_a_one_row_montage_is_drawn_at_its_own_size(tmp_path):
    from lookalike.cli.present import THUMB

    Image.new("RGB", (400, 600), (0, 120, 0)).save(tmp_path / "p.png")  # thumbnail: 128 x 192
    for n in (1, 4):
        rows = [QueryResult("q", "nearest", "cosine", [Match(i + 1, i, str(tmp_path / "p.png"), 0.1) for i in range(n)])]
        fig = montage_figure(tmp_path / "p.png", rows)
        try:
            px = fig.get_size_inches() * fig.dpi
            for ax in fig.axes[1:]:  # neither enlarged nor shrunk: one thumbnail pixel, one picture pixel
                assert abs(ax.get_position().height * px[1] - THUMB) <= 1
                assert abs(ax.get_position().width * px[0] - THUMB * 2 / 3) <= 1
        finally:
            plt.close(fig)


# a montage's type sizes and where its rows and titles fall, worked out from matplotlib's defaults (a figure of
# 100 dpi; the grid between 11 % and 88 % of its height; hspace a fraction of the mean row height)

def test_a_montage_sets_its_query_title_in_11_points_row_titles_in_10_and_captions_in_7(tmp_path):
    Image.new("RGB", (30, 20), (0, 0, 200)).save(tmp_path / "k.png")
    rows = [QueryResult(str(tmp_path / "k.png"), mode, "cosine", [Match(i + 1, i, str(tmp_path / "k.png"), 0.1)
                                                                  for i in range(2)]) for mode in ("nearest", "random")]
    fig = montage_figure(tmp_path / "k.png", rows)
    try:
        sizes = {"query title": {fig.axes[0].title.get_fontsize()},
                 "row titles": {t.get_fontsize() for t in fig.texts},
                 "captions": {ax.xaxis.label.get_fontsize() for ax in fig.axes}}
    finally:
        plt.close(fig)
    assert sizes == {"query title": {11.0}, "row titles": {10.0}, "captions": {7.0}}


def test_in_a_three_row_montage_a_portrait_thumbnail_is_140_pixels_tall(tmp_path):
    # 2.3 * 3 + 0.2 = 7.1 inches, 710 px; the grid 0.77 of it, 546.7 px, holds 3 rows and 2 gaps of 0.45 of a
    # row: 546.7 / 3.9 = 140.2 px a row. The portrait thumbnail (128 x 192) is shrunk to the row's height; its
    # 93 px of width fit the result column (338.7 px over 1.3 + 1 columns and a gap of 0.08 of their mean: 141.6)
    Image.new("RGB", (400, 600), (0, 120, 0)).save(tmp_path / "p.png")
    rows = [QueryResult("q", mode, "cosine", [Match(1, 0, str(tmp_path / "p.png"), 0.1)])
            for mode in ("nearest", "random", "farthest")]
    fig = montage_figure(tmp_path / "p.png", rows)
    try:
        fig.canvas.draw()
        extents = [ax.get_window_extent() for ax in fig.axes[1:]]
    finally:
        plt.close(fig)
    assert all(abs(e.height - 140.2) < 0.5 and abs(e.width - 140.2 * 2 / 3) < 0.5 for e in extents), extents
    tops = sorted((e.y1 for e in extents), reverse=True)
    assert abs(tops[0] - 0.88 * 710) < 0.5 and all(abs(a - b - 1.45 * 140.2) < 0.5 for a, b in zip(tops, tops[1:]))


def test_a_row_title_stands_on_a_line_one_hundredth_of_the_figure_above_its_row(tmp_path):
    # one row: 2.5 inches, 250 px, the grid's top at 0.88 of it (220 px); the title's bottom, descenders
    # included ("(", "g"), at 0.89 (222.5 px)
    Image.new("RGB", (30, 20), (0, 0, 200)).save(tmp_path / "k.png")
    rows = [QueryResult("q", "nearest", "cosine", [Match(1, 0, str(tmp_path / "k.png"), 0.1)])]
    fig = montage_figure(tmp_path / "k.png", rows)
    try:
        fig.canvas.draw()
        [title] = fig.texts
        bottom = title.get_window_extent(fig.canvas.get_renderer()).y0
    finally:
        plt.close(fig)
    assert fig.get_size_inches()[1] * fig.dpi == 250 and abs(bottom - 222.5) < 0.5, bottom
