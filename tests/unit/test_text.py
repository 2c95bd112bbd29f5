"""``lookalike.text``: plurals, and names shortened in the middle within a width in terminal cells."""

import pytest
from rich.cells import cell_len

from lookalike.text import display_name, middle, plural, short_path


@pytest.mark.parametrize("n, expected", [(0, "0 files"), (1, "1 file"), (2, "2 files"), (21, "21 files")])
def test_plural_follows_the_count(n, expected):
    assert plural(n, "file") == expected


def test_plural_takes_an_irregular_form():
    assert (plural(1, "entry", "entries"), plural(3, "entry", "entries")) == ("1 entry", "3 entries")


def test_middle_keeps_what_fits_and_both_ends_of_what_does_not():
    assert middle("chelsea.jpg", 11) == "chelsea.jpg"
    assert middle("abcdefghij", 7) == "abc…hij"  # 3 + 1 + 3 cells
    assert middle("abcdefghij", 8) == "abc…ghij"  # the end gets the odd cell
    assert middle("abcdefghij", 1) == "…" and middle("abcdefghij", 0) == ""


def test_middle_counts_wide_characters_as_two_cells():
    text = "写真フォルダの猫の写真.jpg"
    for width in range(1, cell_len(text)):
        short = middle(text, width)
        assert cell_len(short) <= width and short.count("…") == 1
        head, tail = short.split("…")
        assert text.startswith(head) and text.endswith(tail)


@pytest.mark.parametrize("width, expected", [
    (40, "/data/photos/cats/tabby_on_the_sofa.jpg"),  # fits
    (34, "/data/…/cats/tabby_on_the_sofa.jpg"),       # whole folders give way, the name's own kept
    (28, "…/cats/tabby_on_the_sofa.jpg"),
    (23, "…/tabby_on_the_sofa.jpg"),
    (22, "tabby_on_the_sofa.jpg"),                    # no room for a sign of the folders
    (12, "tabby…fa.jpg"),                             # the name alone, in its middle
])
def test_short_path_keeps_the_file_name_whole_where_it_can(width, expected):
    short = short_path("/data/photos/cats/tabby_on_the_sofa.jpg", width)
    assert cell_len(short) <= width
    assert short == expected


def test_short_path_shortens_the_folders_text_when_no_folder_fits_whole():
    path = "/tmp/a very long folder name/holiday 2024 in the mountains/chelsea.jpg"
    assert short_path(path, 30) == "/tmp/a v…mountains/chelsea.jpg"


def test_short_path_keeps_the_last_parts_it_is_asked_for():
    assert short_path("/data/flowers/017/image_0042.jpg", 40, parts=2) == "017/image_0042.jpg"
    assert short_path("image_0042.jpg", 40, parts=2) == "image_0042.jpg"


def test_display_name_is_the_base_name_with_undecodable_bytes_shown_as_replacement_characters():
    assert display_name("/photos/café.jpg") == "café.jpg"
    assert display_name("/photos/\udcffraw\udcfe.jpg") == "\ufffdraw\ufffd.jpg"  # bytes 0xff, 0xfe on disk
    assert display_name("name.jpg") == "name.jpg" and display_name("/photos/") == ""


def test_short_path_exactly_at_the_width_is_whole():
    path = "/data/photos/cats/tabby_on_the_sofa.jpg"
    assert short_path(path, cell_len(path)) == path
    assert short_path(path, cell_len(path) - 1) == "/data/…/cats/tabby_on_the_sofa.jpg"


def test_short_path_keeps_one_folder_at_the_start_and_two_at_the_end():
    path = "/data/photos/2024/cats/tabby.jpg"  # 32 cells
    assert short_path(path, 30) == "/data/…/2024/cats/tabby.jpg"
    assert short_path("data/photos/2024/cats/tabby.jpg", 30) == "data/…/2024/cats/tabby.jpg"  # a relative path


def test_short_path_of_a_file_at_the_root_shortens_its_name():
    assert short_path("/tabby_on_the_sofa.jpg", 10) == "tabb…a.jpg"


def test_short_path_shows_the_folders_text_only_with_room_for_more_than_four_cells():
    path = "/tmp/a very long folder name/holiday/chelsea.jpg"  # chelsea.jpg: 11 cells
    assert short_path(path, 17) == "/t…ay/chelsea.jpg"  # 5 cells for the folders
    assert short_path(path, 16) == "…/chelsea.jpg"  # 4 cells: only the sign of them


def test_short_path_keeps_last_parts_of_a_folder_path_and_of_an_absolute_one():
    assert short_path("/data/flowers/017/", 40, parts=2) == "flowers/017"  # a trailing slash is no part
    assert short_path("/data/flowers/017/", 40) == "/data/flowers/017/"  # nothing asked: kept as given
    assert short_path("/data/image.jpg", 40, parts=3) == "/data/image.jpg"  # the root is a part
    assert short_path("/scans/FAX", 40, parts=1) == "FAX"


def test_middle_in_two_cells_is_the_ellipsis_and_the_last_character():
    # (2 - 1) // 2 = 0 cells for the start, the one left for the end (where a file name's end is)
    assert middle("abcdefghij", 2) == "…j"
    assert middle("写真.jpg", 2) == "…g" and middle("ab写", 2) == "…"  # a wide last character takes 2 cells
