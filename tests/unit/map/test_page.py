"""The map as one standalone HTML page (map/page.py): file names that hold HTML metacharacters, bytes
that are not UTF-8 and URL delimiters are data, never markup; read back with an HTML parser."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest

from lookalike.map.cache import Map
from lookalike.map.page import MAP_JS, TEMPLATE, write_html

# a folder and file names a user may have: markup that would close the data's <script>, quotes and
# ampersands, characters that delimit URLs, and a byte that is not UTF-8 (as os.fsdecode gives it)
PATHS = ["/p/</script><script>alert(1)</script>.jpg", '/p/a&b "q" \'x\' <i>.jpg', "/p/<!--/x #1?%.png",
         "/p/caf\udce9.jpg"]
URLS = ["file:///p/%3C/script%3E%3Cscript%3Ealert%281%29%3C/script%3E.jpg",  # worked out by hand (RFC 3986)
        "file:///p/a%26b%20%22q%22%20%27x%27%20%3Ci%3E.jpg", "file:///p/%3C%21--/x%20%231%3F%25.png",
        "file:///p/caf%E9.jpg"]


class Scripts(HTMLParser):
    """Every element's tag and, for each <script>, its attributes and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.scripts: list[tuple[dict, str]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "script":
            self.scripts.append((dict(attrs), ""))

    def handle_data(self, data):
        if self.tags and self.tags[-1] == "script" and self.scripts:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def small_map(n: int) -> Map:
    xy = np.linspace(0, 1, 2 * n, dtype=np.float32).reshape(n, 2)
    central = np.array([[0, 1, -1], [2, -1, -1]], np.int64)
    return Map(ids=np.arange(n, dtype=np.int64), xy=xy, clusters=np.array([0, 0, 1, 0][:n], np.int32),
               centres=np.eye(2, 4, dtype=np.float32), central=central, generation=3, method="by hand",
               laid_out=n, placed=0)


def read_page(path) -> tuple[Scripts, str]:
    text = path.read_text(encoding="utf-8")
    parser = Scripts()
    parser.feed(text)
    parser.close()
    return parser, text


def test_file_names_with_markup_are_data_in_the_page_never_elements(tmp_path):
    out = tmp_path / "map.html"
    write_html(out, small_map(4), PATHS, "cluster")
    parser, text = read_page(out)
    # the page's own three scripts, and no element the file names would have made
    assert [attrs.get("id") for attrs, _ in parser.scripts] == ["map-data", None, None]
    assert "i" not in parser.tags and text.count("<script") == 3
    data = json.loads(parser.scripts[0][1])
    assert data["names"] == PATHS[:3] + ["/p/caf\ufffd.jpg"]  # full paths; a byte not UTF-8 shown as U+FFFD
    assert data["urls"] == URLS
    assert data["color"] == "cluster" and data["count"] == 4 and data["ids"] == [0, 1, 2, 3]
    assert data["folders"] == [{"name": "/p", "size": 2}, {"name": "/p/<!--", "size": 1},  # sorted by full path
                               {"name": "/p/</script><script>alert(1)<", "size": 1}]
    assert parser.scripts[1][1].strip() == MAP_JS.read_text(encoding="utf-8").strip()  # map.js inlined whole
    assert "/*DATA*/" not in text and "/*MAPJS*/" not in text


def test_the_colouring_asked_for_is_the_one_the_page_starts_with(tmp_path):
    out = tmp_path / "map.html"
    write_html(out, small_map(2), ["/a/x.jpg", "/b/y.jpg"], "folder")
    data = json.loads(read_page(out)[0].scripts[0][1])
    assert data["color"] == "folder" and data["urls"] == ["file:///a/x.jpg", "file:///b/y.jpg"]
    assert [f["name"] for f in data["folders"]] == ["/a", "/b"]


def test_a_page_that_cannot_be_written_leaves_nothing(tmp_path):
    (tmp_path / "map.html").mkdir()  # a folder in the way
    with pytest.raises(OSError):
        write_html(tmp_path / "map.html", small_map(2), ["/a/x.jpg", "/b/y.jpg"], "cluster")
    assert [p.name for p in tmp_path.iterdir()] == ["map.html"] and not any((tmp_path / "map.html").iterdir())


@pytest.fixture
def ascii_locale():
    """The C locale's ASCII as the locale's encoding (a server without a UTF-8 locale), restored after."""
    import locale

    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":  # UTF-8 mode: nothing to test
        locale.setlocale(locale.LC_CTYPE, before)
        pytest.skip("Python's UTF-8 mode reads every file as UTF-8")
    yield
    locale.setlocale(locale.LC_CTYPE, before)


def test_the_page_is_read_and_written_as_utf_8_whatever_the_locale(tmp_path, ascii_locale):
    out = tmp_path / "map.html"
    write_html(out, small_map(2), ["/a/café · 1.jpg", "/b/y.jpg"], "cluster")
    parser, text = read_page(out)
    template = TEMPLATE.read_bytes().decode("utf-8")
    assert "\u00b7" in template  # the template's own non-ASCII ("·" in the legend and title) is in the page as it is
    assert all(line in text for line in template.splitlines() if "/*" not in line)
    assert json.loads(parser.scripts[0][1])["names"] == ["/a/café · 1.jpg", "/b/y.jpg"]
    assert "/a/café · 1.jpg" in text  # a name as it is in the page's source, not escaped to ASCII
