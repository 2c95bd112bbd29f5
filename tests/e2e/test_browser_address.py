"""The page's image-address box (a server started to fetch addresses), in real Chromium as test_browser:
shown only when the server fetches, results like an upload's, and the page itself loads nothing
from the address."""

from __future__ import annotations

import os

import pytest
from playwright.sync_api import expect

from helpers import CHROMIUM, ImageServer, served, wait_results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def folder(photo_dir):
    """The photos served (through conftest's ``index``)."""
    return photo_dir


@pytest.fixture(scope="module")
def pictures(photo_dir):
    with ImageServer((photo_dir / "coffee.jpg").read_bytes()) as s:
        yield s


@pytest.fixture(scope="module")
def base_url(index):
    # loopback allowed: the picture server of this test stands for the internet
    with served(index, fetch_urls=True, fetch_private=True) as url:
        yield url


def test_an_address_is_queried_like_an_upload(page, pictures):
    page.goto("/")
    expect(page.locator("#address")).to_be_visible()
    address = pictures.url("/redirect/1")
    page.get_by_label("Image address").fill(address)
    page.get_by_role("button", name="Search", exact=True).click()
    found = wait_results(page, 12, "coffee.jpg")
    assert found[0] == ("coffee.jpg", 0.0)
    expect(page.locator("#query-name")).to_have_text("img.jpg")  # named by its address
    expect(page.locator("#query-open")).to_have_attribute("href", address)
    assert "upload=" in page.url  # a reload queries again by the fetched image's hash
    page.reload()
    wait_results(page, 12, "coffee.jpg")


def test_an_address_that_is_no_image_says_why(page, pictures):
    page.goto("/")
    page.get_by_label("Image address").fill(pictures.url("/page.html"))
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#error")).to_contain_text("not an image: the server says its content is text/html")


def test_the_box_is_hidden_where_the_server_does_not_fetch(browser, index):
    with served(index) as url:
        context = browser.new_context(base_url=url)
        pg = context.new_page()
        pg.goto("/")
        expect(pg.locator("#stats")).to_contain_text("images")
        expect(pg.locator("#address")).to_be_hidden()
        context.close()
