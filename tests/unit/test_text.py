"""``lookalike.text``: plurals, and names shortened in the middle within a width in terminal cells."""

import pytest
from rich.cells import cell_len

from lookalike.text import middle, plural, short_path


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
