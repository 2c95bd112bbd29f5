"""The web page in a real Chromium (Playwright), against a server on a free loopback port.

Needs Debian's chromium at /usr/bin/chromium (``apt-get install -y chromium``); skipped without it.
With ``LOOKALIKE_SCREENSHOT=path`` the results page is also saved there (docs/screenshot.png).
"""

from __future__ import annotations

import io
import os
import re
import shutil

import httpx
import pytest
from playwright.sync_api import expect

from helpers import CHROMIUM, sample_photo, wait_results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM} "
                       "(apt-get install -y chromium)"),
]


def test_upload_shows_results(page, photo_dir, tmp_path):
    page.goto("/")
    expect(page.locator("#stats")).to_contain_text("18 images")
    page.set_input_files("#file", photo_dir / "chelsea.jpg")
    found = wait_results(page, 12, "chelsea.jpg")
    assert found[0] == ("chelsea.jpg", 0.0)
    assert {"chelsea_flip.jpg", "chelsea_crop.png"} <= {name for name, _ in found[:4]}
    assert [d for _, d in found] == sorted(d for _, d in found)
    expect(page.locator("#query-name")).to_have_text("chelsea.jpg")
    expect(page.locator("#status")).to_contain_text("12 nearest results for chelsea.jpg")
    expect(page.locator("#dupes")).to_contain_text("Already in the index: chelsea.jpg (0.000)")
    page.wait_for_function("[...document.querySelectorAll('#results img, #query-img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    shot = tmp_path / "results.png"
    page.screenshot(path=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("LOOKALIKE_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["LOOKALIKE_SCREENSHOT"])


def test_click_a_result_searches_again_with_history(page, photo_dir):
    page.goto("/")
    page.set_input_files("#file", photo_dir / "coffee.jpg")
    wait_results(page, 12, "coffee.jpg")

    second = page.locator("#results li a").nth(4)
    name = second.locator(".name").inner_text()
    second.click()
    found = wait_results(page, 12, name)
    assert found[0] == (name, 0.0)
    expect(page.locator("#dupes")).to_be_hidden()  # an indexed image: no duplicate check
    assert re.search(r"\?id=\d+&mode=nearest&k=12&metric=cosine$", page.url)
    first_url = page.url
    page.locator("#query-name").get_by_text(name).wait_for()

    target = page.locator("#results li a").nth(3)  # by keyboard this time
    other = target.locator(".name").inner_text()
    target.focus()
    page.keyboard.press("Enter")
    wait_results(page, 12, other)
    assert page.url != first_url

    page.go_back()
    wait_results(page, 12, name)
    assert page.url == first_url
    page.go_forward()
    wait_results(page, 12, other)
    page.go_back()
    page.go_back()
    wait_results(page, 12, "coffee.jpg")  # the upload, replayed from memory


def test_mode_toggle_changes_order(page, photo_dir):
    page.goto("/")
    page.set_input_files("#file", photo_dir / "astronaut.jpg")
    wait_results(page, 12, "astronaut.jpg")
    page.fill("#k", "18")
    page.press("#k", "Enter")
    page.locator("#k").blur()
    nearest = wait_results(page, 18, "astronaut.jpg")

    page.get_by_label("farthest").check()
    farthest = wait_results(page, 18)
    assert [n for n, _ in farthest] == [n for n, _ in nearest][::-1]
    assert [d for _, d in farthest] == sorted((d for _, d in farthest), reverse=True)
    assert "mode=farthest" in page.url and "k=18" in page.url

    page.get_by_label("random").check()
    sample = wait_results(page, 18)
    assert sorted(sample) == sorted(nearest) and sample != nearest and sample != farthest

    page.go_back()
    assert wait_results(page, 18) == farthest
    assert page.get_by_label("farthest").is_checked()


def test_deep_link_by_id(page, base_url):
    ids = {r["name"]: r["id"] for r in httpx.get(f"{base_url}/api/query", params={"id": 1, "k": 18}).json()["results"]}
    page.goto(f"/?id={ids['rocket.jpg']}&mode=nearest&k=5&metric=l2")
    found = wait_results(page, 5, "rocket.jpg")
    assert found[0] == ("rocket.jpg", 0.0)
    expect(page.locator("#metric")).to_have_value("l2")
    expect(page.locator("#query-name")).to_have_text("rocket.jpg")


def test_webcam_capture_searches(page):
    page.goto("/")
    page.click("#camera")
    expect(page.locator("#camera")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#capture")).to_be_enabled()
    page.click("#capture")
    found = wait_results(page, 12)
    assert all(d > 0 for _, d in found)
    expect(page.locator("#query-name")).to_have_text(re.compile(r"^webcam-\d\d:\d\d:\d\d\.jpg$"))
    page.click("#stop")
    expect(page.locator("#webcam")).to_be_hidden()


def drop(page, data: bytes, name: str, mime: str) -> None:
    """Drop a file on the drop zone, as a drag from the desktop would."""
    transfer = page.evaluate_handle(
        """([bytes, name, mime]) => {
            const dt = new DataTransfer();
            dt.items.add(new File([new Uint8Array(bytes)], name, {type: mime}));
            return dt;
        }""", [list(data), name, mime])
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_drop_and_error_states(page, photo_dir):
    page.goto("/")
    drop(page, (photo_dir / "horse.jpg").read_bytes(), "horse.jpg", "image/jpeg")
    assert wait_results(page, 12, "horse.jpg")[0] == ("horse.jpg", 0.0)

    new = io.BytesIO()
    sample_photo("clock").save(new, "JPEG", quality=85)
    drop(page, new.getvalue(), "clock.jpg", "image/jpeg")
    wait_results(page, 12)
    expect(page.locator("#dupes")).to_contain_text("Not in the index: no image within near")

    drop(page, b"not really a png", "broken.png", "image/png")
    expect(page.locator("#error")).to_contain_text("Search failed: broken.png: not an image")
    expect(page.locator("#results li")).to_have_count(0)
    expect(page.locator("#dupes")).to_contain_text("Duplicate check failed: broken.png: not an image")

    drop(page, b"hello", "notes.txt", "text/plain")
    expect(page.locator("#error")).to_contain_text("notes.txt is not an image")

    huge = page.evaluate_handle("""() => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(21 * 1048576)], "huge.jpg", {type: "image/jpeg"}));
        return dt;
    }""")
    page.dispatch_event("#drop", "drop", {"dataTransfer": huge})
    expect(page.locator("#error")).to_contain_text("huge.jpg is 21.0 MB; the server accepts up to 20.0 MB")


def test_docs_work_offline(page):
    page.goto("/docs")
    expect(page.locator(".swagger-ui")).to_contain_text("/api/query")
    expect(page.locator(".swagger-ui")).to_contain_text("/api/thumbs/{image_id}")
