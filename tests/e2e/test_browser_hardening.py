"""The page takes nothing from its address into a request path but a content hash (real Chromium,
as test_browser)."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from test_browser import CHROMIUM, base_url, browser, page, results  # noqa: F401  (fixtures)

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
