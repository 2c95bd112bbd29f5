"""The page as a person uses it day to day (issue 17): the three rows together, folders, the full
image, leaving the query out, and a reload that keeps the last upload. Real Chromium, as test_browser."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from helpers import CHROMIUM, results, served_folder, wait_results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]

CLASSES = {"cats": ("chelsea", "chelsea_flip"), "cups": ("coffee", "coffee_flip"),
           "space": ("rocket", "moon", "hubble_deep_field", "astronaut")}


@pytest.fixture(scope="module")
def photos(photo_dir, tmp_path_factory):
    """The sample photos in class folders."""
    root = tmp_path_factory.mktemp("classes")
    for folder, names in CLASSES.items():
        (root / folder).mkdir()
        for name in names:
            shutil.copy(photo_dir / f"{name}.jpg", root / folder / f"{name}.jpg")
    return root


@pytest.fixture(scope="module")
def base_url(photos, tmp_path_factory):
    """The server over an index of the class folders."""
    with served_folder(photos, tmp_path_factory.mktemp("browser-everyday")) as url:
        yield url


def row(page, mode: str) -> list[tuple[str, float]]:
    cards = page.locator(f"#results ol[data-mode={mode}] li a")
    return [(c.locator(".name").inner_text(), float(c.locator(".distance").inner_text())) for c in cards.all()]


def test_the_three_rows_together(page, photos):
    page.goto("/")
    page.get_by_label("all three").check()
    page.fill("#k", "4")
    page.locator("#k").blur()
    page.set_input_files("#file", photos / "cats" / "chelsea.jpg")
    wait_results(page, 12)
    headings = page.locator("#results h2").all_inner_texts()
    assert headings[0] == "nearest" and headings[2] == "farthest"
    assert headings[1].startswith("random (seed ") and headings[1].endswith(")")
    nearest, sample, farthest = row(page, "nearest"), row(page, "random"), row(page, "farthest")
    assert nearest[0] == ("chelsea.jpg", 0.0) and nearest[1][0] == "chelsea_flip.jpg"
    assert [d for _, d in nearest] == sorted(d for _, d in nearest)
    assert [d for _, d in farthest] == sorted((d for _, d in farthest), reverse=True)
    assert farthest[0][1] >= nearest[-1][1] and len(sample) == 4
    expect(page.locator("#status")).to_contain_text("4 nearest, 4 random (seed ")
    assert "mode=all" in page.url


def test_folders_full_image_and_leaving_the_query_out(page, photos):
    page.goto("/")
    page.set_input_files("#file", photos / "cups" / "coffee.jpg")
    wait_results(page, 8, "coffee.jpg")
    folders = dict(zip(page.locator("#results li .name").all_inner_texts(),
                       page.locator("#results li .folder").all_inner_texts()))
    assert folders["coffee_flip.jpg"] == "cups" and folders["chelsea.jpg"] == "cats" and folders["moon.jpg"] == "space"

    page.locator("#results li a").filter(has_text="moon.jpg").click()
    wait_results(page, 8, "moon.jpg")
    expect(page.locator("#query-folder")).to_have_text("in space")
    full = page.locator("#query-open")
    expect(full).to_be_visible()
    got = httpx.get(page.url.split("?")[0].rstrip("/") + full.get_attribute("href"))
    assert got.content == (photos / "space" / "moon.jpg").read_bytes()

    page.get_by_label("leave out the query itself").check()
    found = wait_results(page, 7)
    assert "moon.jpg" not in [name for name, _ in found]
    assert "exclude_self=true" in page.url
    page.reload()
    assert "moon.jpg" not in [name for name, _ in wait_results(page, 7)]
    expect(page.get_by_label("leave out the query itself")).to_be_checked()


def test_a_reload_keeps_the_last_upload(page, photos, tmp_path):
    page.goto("/")
    query = tmp_path / "my cat.png"
    Image.open(photos / "cats" / "chelsea.jpg").rotate(3).save(query)  # not in the index
    page.set_input_files("#file", query)
    before = wait_results(page, 8)
    page.wait_for_url("**upload=*")
    page.reload()
    after = wait_results(page, 8)
    assert after == before
    expect(page.locator("#query-name")).to_have_text("my cat.png")
    page.wait_for_function("document.querySelector('#query-img').naturalWidth > 0")  # the kept thumbnail
    expect(page.locator("#error")).to_be_hidden()
    page.get_by_label("farthest").check()  # other options still search with it
    far = wait_results(page, 8)
    assert [n for n, _ in far] == [n for n, _ in before][::-1]


def test_an_upload_the_server_forgot_says_what_to_do(page):
    page.goto(f"/?upload={'0' * 32}&mode=nearest&k=5&metric=cosine")
    expect(page.locator("#error")).to_contain_text("no longer holds")
    expect(page.locator("#error")).to_contain_text("drop, paste or choose the image again")
    assert results(page) == []
