"""The web page takes nothing from its address into a request path but a content hash, and the dedup
review page is valid UTF-8 and saves every name's exact bytes (real Chromium, as test_browser)."""

from __future__ import annotations

import json
import os

import pytest
from playwright.sync_api import expect

from lookalike.dedup import review
from lookalike.dedup.report import DedupReport, Duplicate, Group
from lookalike.dedup.rules import Rule
from helpers import CHROMIUM, results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]


@pytest.mark.parametrize("upload", ["..%2F..%2Fapi%2Fquery%3Fid%3D3%26k%3D5%23", "%2E%2E%2Fthumbs%2F3%3F",
                                    "0" * 31 + "G", "0" * 33, ""])
def test_an_upload_that_is_not_a_content_hash_is_never_fetched(page, upload):
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    page.goto(f"/?upload={upload}&mode=nearest&k=5&metric=cosine")
    expect(page.locator("#status")).to_contain_text("choose the image again")
    assert results(page) == [] and [u.split("/api/")[1] for u in asked if "/api/" in u] == ["stats"], asked


def test_the_review_page_is_utf8_and_saves_each_names_exact_bytes(browser, tmp_path):
    odd, emoji = os.fsdecode(b"/photos/x\xff.jpg"), "/photos/фото 😀.jpg"
    groups = [Group("exact", "/photos/keep.jpg", [Duplicate(odd, 0.0, "exact"), Duplicate(emoji, 0.0, "exact")])]
    report = DedupReport(Rule(0.1), None, 3, groups=groups)
    out = tmp_path / "review.html"
    review.write(report, out)
    out.read_bytes().decode("utf-8")  # strict: a name's stray byte is escaped, not written raw
    context = browser.new_context(accept_downloads=True)
    try:
        pg = context.new_page()
        pg.goto(out.as_uri())
        expect(pg.locator("#count")).to_have_text("2 files on the list")
        saved = {}
        for button in ("save-nul", "save-lines", "save-json"):
            with pg.expect_download() as download:
                pg.click(f"#{button}")
            saved[button] = open(download.value.path(), "rb").read()
    finally:
        context.close()
    assert saved["save-nul"] == b"/photos/x\xff.jpg\0" + emoji.encode() + b"\0"
    assert saved["save-lines"] == b"/photos/x\xff.jpg\n" + emoji.encode() + b"\n"
    assert json.loads(saved["save-json"]) == [odd, emoji]  # as --json writes it: os.fsencode gives the bytes
