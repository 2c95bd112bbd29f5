"""The review page of duplicate groups, read back with the standard library's HTML parser."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import pytest
from PIL import Image

from lookalike.dedup import review
from lookalike.dedup.geometry import Evidence
from lookalike.dedup.report import BestShot, DedupReport, Duplicate, Group, Shot
from lookalike.dedup.rules import Rule

HOSTILE = 'a <b>&amp; "quoted" \'x\' <script>.jpg'  # markup, an entity, both quotes


class Page(HTMLParser):
    """The title, the group headings and, per figure, its class, checkbox attributes and caption texts."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title, self.headings, self.figures, self.stray = "", [], [], []
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
        if tag not in ("img", "input", "meta"):  # void elements: no end tag follows
            self._in.append(attrs.get("class") if tag == "span" else tag)

    def handle_endtag(self, tag):
        self._in.pop()

    def handle_data(self, data):
        where = self._in[-1] if self._in else None
        if self.figures and "figure" in self._in:
            self.figures[-1]["all"] = self.figures[-1].get("all", "") + data
        elif where in ("div", "section", "body") and data.strip():
            self.stray.append(data)
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
    evidence = Evidence(212, 300, rotation=90, flipped=True, edits=["rotated 90°", "flipped"], agreement=0.98)
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
        assert json.loads(figure["box"]["data-path"]) == path and figure["box"]["data-group"] == str(group)
        assert figure["class"] == ("dup" if dup else "keep")
        assert ("checked" in figure["box"]) == (dup is not None)  # the report's to-remove choice
        assert figure["texts"].get("b", "") == ("" if dup else "KEEP")
        assert set(figure["box"]) == {"type", "data-group", "data-path"} | ({"checked"} if dup else set())
        assert figure["box"]["type"] == "checkbox"
        image = "unreadable" if figure["img"] == "missing" else ""
        assert figure["all"] == f"{image} remove{figure['texts'].get('b', '')}{name}{folder}{figure['texts']['why']}"
    assert page.stray == []  # nothing between the cards or the groups


def test_each_card_says_why_and_the_headings_count_the_files(report):
    page = Page(review.render(report))
    why = [f["texts"]["why"] for f in page.figures]
    assert why[0] == why[4] == "kept by the rule: most pixels, best encoding, EXIF date, shorter name"
    assert why[1] == "distance 0.1235; 212 inliers, 98% alike: rotated 90°, flipped"
    assert why[2] == f"distance 0.2000; same bytes as {HOSTILE}; 212 inliers, 98% alike: rotated 90°, flipped"
    assert why[3] == "distance 0.0500; "  # a one-stage duplicate has no evidence
    assert why[5] == "distance 0.0000; same bytes"
    assert page.headings == ["group 1 · near · 4 files", "group 2 · exact · 2 files"]
    assert page.title == ("lookalike dedup review: 2 groups among 9 images (preset near: cosine distance <= 0.3 "
                          "(among either file's 32 nearest, or <= 0.025) or a rotated/flipped hash within 8 bits, "
                          "then >= 20 ORB inliers)")


def test_a_group_of_shots_says_why_its_file_is_kept_and_each_shots_figures(report):
    keep, first, other = report.groups[0].keep, *(d.path for d in report.groups[0].duplicates[:2])
    best = BestShot(keep, "the sharpest of 2 shots", {keep: Shot(2.0, 0.0), first: Shot(0.25, 0.125)})
    evidence = report.groups[0].duplicates[0].evidence
    report.groups[0] = Group("shots", keep, [Duplicate(first, 0.1, evidence=evidence),
                                             Duplicate(other, 0.2, "near", first, evidence, compared_with=first)], best)
    report.rule = Rule(0.3, 20, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25, shots=0.025)
    page = Page(review.render(report))
    why = [f["texts"]["why"] for f in page.figures]
    assert why[0] == "kept as the sharpest of 2 shots"
    assert why[1] == "distance 0.1000; 212 inliers, 98% alike: rotated 90°, flipped; sharpness 0.25, clipped 12.5%"
    moved = Evidence(60, 90, agreement=0.5, shifted=0.3)
    report.groups[0].duplicates[0] = Duplicate(first, 0.1, evidence=moved)
    assert Page(review.render(report)).figures[1]["texts"]["why"] == (
        "distance 0.1000; another shot: 60 inliers, 50% alike: same framing; sharpness 0.25, clipped 12.5%")
    assert why[2] == (f"distance 0.2000; same bytes as {HOSTILE}; 212 inliers, 98% alike: rotated 90°, flipped "
                      f"(against {HOSTILE}); sharpness 0.25, clipped 12.5%")
    assert page.headings[0] == "group 1 · shots · 3 files"


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


def _ijg_table(quality):
    """The IJG (libjpeg) luminance quantization table scaled to ``quality``, row by row as Pillow reports it."""
    base = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
            14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
            49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]  # ITU T.81 Annex K, row by row
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return [min(255, max(1, (q * scale + 50) // 100)) for q in base]


def test_thumbnails_are_jpegs_of_quality_80_decoded_at_a_reduced_scale(tmp_path, monkeypatch):
    from lookalike.images import decode

    big = tmp_path / "big.jpg"
    Image.effect_noise((2400, 1600), 60).convert("RGB").save(big, quality=95)
    decoded = []
    def spy(*args, **kwargs):
        img = decode(*args, **kwargs)
        decoded.append(img.size)
        return img

    monkeypatch.setattr(review, "decode", spy)
    uri = review.thumbnail_uri(str(big))
    thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    assert thumb.size == (200, 133)
    assert list(thumb.quantization[0]) == _ijg_table(80)
    assert decoded == [(300, 200)]  # drafted at 1/8 scale, the smallest still at least 200 pixels


def test_a_name_that_is_not_utf8_keeps_its_bytes_in_a_page_that_is_valid_utf8(report, tmp_path):
    import os

    raw = os.fsdecode(b"x\xff.jpg")
    keep = report.groups[1].keep
    odd = os.path.join(os.path.dirname(keep), raw)
    os.rename(report.groups[1].duplicates[0].path, odd)
    report.groups[1] = Group("exact", keep, [Duplicate(odd, 0.0, match="exact")])
    out = tmp_path / "review.html"
    review.write(report, out)
    card = Page(out.read_bytes().decode("utf-8")).figures[-1]  # strict: no byte of the name written raw
    assert os.fsencode(json.loads(card["box"]["data-path"])) == os.fsencode(odd)  # as --json writes it
    assert card["texts"]["name"] == "x\ufffd.jpg" and "checked" in card["box"]
