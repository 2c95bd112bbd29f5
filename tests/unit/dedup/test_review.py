"""The review page of duplicate groups, read back with the standard library's HTML parser."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from PIL import Image

from lookalike.dedup import review
from lookalike.dedup.geometry import Evidence
from lookalike.dedup.report import DedupReport, Duplicate, Group
from lookalike.dedup.rules import Rule

HOSTILE = 'a <b>&amp; "quoted" \'x\' <script>.jpg'  # markup, an entity, both quotes


class Page(HTMLParser):
    """The title, the group headings and, per figure, its class, checkbox attributes and caption texts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title, self.headings, self.figures = "", [], []
        self._in: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figures.append({"class": attrs["class"], "texts": {}, "img": None})
        elif tag == "input" and self.figures:
            self.figures[-1]["box"] = attrs
        elif tag == "img" and self.figures:
            self.figures[-1]["img"] = attrs["src"]
        elif tag == "div" and attrs.get("class") == "missing":
            self.figures[-1]["img"] = "missing"
        key = attrs.get("class") if tag in ("span", "b") else tag
        self._in.append(key if tag != "b" else "b")

    def handle_endtag(self, tag):
        self._in.pop()

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        self._in.pop()

    def handle_data(self, data):
        where = self._in[-1] if self._in else None
        if where == "title":
            self.title += data
        elif where == "h2":
            self.headings.append(data)
        elif self.figures and where in ("name", "folder", "why", "b"):
            self.figures[-1]["texts"][where] = self.figures[-1]["texts"].get(where, "") + data


def photo(path, size=(300, 120), colour=(200, 30, 30)):
    Image.new("RGB", size, colour).save(path)
    return str(path)


@pytest.fixture
def report(tmp_path):
    folder = tmp_path / "<odd> & folder"
    folder.mkdir()
    keep = photo(folder / "keep.jpg")
    hostile = photo(folder / HOSTILE, (120, 300))
    copy = photo(folder / "copy.jpg")
    gone = str(folder / "gone.jpg")
    exact_keep, exact_dup = photo(tmp_path / "a.png"), photo(tmp_path / "b.png")
    evidence = Evidence(212, 300, rotation=90, flipped=True, edits=["rotated 90°", "flipped"])
    groups = [Group("near", keep, [Duplicate(hostile, 0.123456, evidence=evidence),
                                   Duplicate(copy, 0.2, match="near", copy_of=hostile, evidence=evidence),
                                   Duplicate(gone, 0.05)]),
              Group("exact", exact_keep, [Duplicate(exact_dup, 0.0, match="exact")])]
    return DedupReport(Rule(0.3, 20, nearest=32, close=0.025), "near", 9, groups=groups)


def test_every_file_is_a_card_with_its_exact_name_folder_and_checkbox(report):
    page = Page(review.render(report))
    files = [(g.keep, None) for g in report.groups[:1]] + [(d.path, d) for d in report.groups[0].duplicates] \
        + [(report.groups[1].keep, None), (report.groups[1].duplicates[0].path, report.groups[1].duplicates[0])]
    assert len(page.figures) == len(files) == 6
    for figure, (path, dup), group in zip(page.figures, files, (1, 1, 1, 1, 2, 2)):
        folder, name = path.rsplit("/", 1)
        assert figure["texts"]["name"] == name and figure["texts"]["folder"] == folder
        assert figure["box"]["data-path"] == path and figure["box"]["data-group"] == str(group)
        assert figure["class"] == ("dup" if dup else "keep")
        assert ("checked" in figure["box"]) == (dup is not None)  # the report's to-remove choice
        assert figure["texts"].get("b", "") == ("" if dup else "KEEP")


def test_each_card_says_why_and_the_headings_count_the_files(report):
    page = Page(review.render(report))
    why = [f["texts"]["why"] for f in page.figures]
    assert why[0] == why[4] == "kept by the rule: most pixels, best encoding, EXIF date, shorter name"
    assert why[1] == "distance 0.1235; 212 inliers: rotated 90°, flipped"
    assert why[2] == f"distance 0.2000; same bytes as {HOSTILE}; 212 inliers: rotated 90°, flipped"
    assert why[3] == "distance 0.0500; "  # a one-stage duplicate has no evidence
    assert why[5] == "distance 0.0000; same bytes"
    assert page.headings == ["group 1 · near · 4 files", "group 2 · exact · 2 files"]
    assert page.title == ("lookalike dedup review: 2 groups among 9 images (preset near: cosine distance <= 0.3 "
                          "(among either file's 32 nearest, or <= 0.025) or a rotated/flipped hash within 8 bits, "
                          "then >= 20 ORB inliers)")


def test_a_one_stage_threshold_without_a_preset_is_named_in_the_title(report):
    report.preset, report.rule = None, Rule(0.05)
    assert Page(review.render(report)).title == \
        "lookalike dedup review: 2 groups among 9 images (cosine distance <= 0.05)"


def test_thumbnails_are_embedded_jpegs_of_at_most_200_pixels_and_a_missing_file_says_unreadable(report):
    page = Page(review.render(report))
    sizes = []
    for figure in page.figures:
        if figure["img"] == "missing":
            sizes.append(None)
            continue
        head, data = figure["img"].split(",", 1)
        assert head == "data:image/jpeg;base64"
        img = Image.open(io.BytesIO(base64.b64decode(data)))
        assert img.format == "JPEG"
        sizes.append(img.size)
    assert sizes == [(200, 80), (80, 200), (200, 80), None, (200, 80), (200, 80)]  # 300 x 120 -> 200 x 80
    assert review.thumbnail_uri("/nonexistent.jpg") == ""
    assert review.thumbnail_uri(report.groups[0].keep, size=50).startswith("data:image/jpeg;base64,")


def test_the_page_written_to_a_file_reads_back_as_rendered(report, tmp_path):
    out = tmp_path / "review.html"
    review.write(report, out)
    assert out.read_text(encoding="utf-8") == review.render(report)
    assert "lookalike never deletes anything" in out.read_text(encoding="utf-8")
