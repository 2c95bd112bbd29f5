"""The map on the web page in a real Chromium (as test_browser): its points, a hover, a click that
searches, a lasso selection listed and downloaded as TSV, the clusters' central images.

With ``LOOKALIKE_MAP_SCREENSHOT=path`` the map is also saved there (docs/map.png).
"""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from playwright.sync_api import expect

from helpers import CHROMIUM, served_folder, wait_results

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,  # the server lays the map out with UMAP (compiled on its first call: about a minute)
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]
pytest.importorskip("umap", reason="the map needs umap-learn (the map extra)")

CATS = ("chelsea", "chelsea_flip", "chelsea_crop")
CUPS = ("coffee", "coffee_flip", "coffee_crop")


@pytest.fixture(scope="module")
def photos(photo_dir, tmp_path_factory):
    """The 18 sample photos in three folders: cats, cups and other."""
    root = tmp_path_factory.mktemp("map-photos")
    for src in sorted(photo_dir.iterdir()):
        folder = "cats" if src.stem in CATS else "cups" if src.stem in CUPS else "other"
        (root / folder).mkdir(exist_ok=True)
        shutil.copy(src, root / folder / src.name)
    return root


@pytest.fixture(scope="module")
def base_url(photos, tmp_path_factory):
    with served_folder(photos, tmp_path_factory.mktemp("browser-map")) as url:
        yield url


@pytest.fixture(scope="module")
def served_map(base_url):
    """The map as the server sends it (laid out by the first request)."""
    for _ in range(120):
        r = httpx.get(f"{base_url}/api/map", timeout=60)
        if r.status_code == 200:
            return r.json()
    raise AssertionError("no map")


def open_map(page):
    page.goto("/")
    page.click("#map-open")
    expect(page.locator("#map")).to_have_attribute("data-ready", "true")


def screen(page) -> list[tuple[float, float]]:
    """Where each point is drawn, in page (CSS) pixels, in the map's order."""
    return page.evaluate("""() => {
        const v = mapState.view, r = v.canvas.getBoundingClientRect();
        return Array.from({length: v.n}, (_, i) => v.toScreen(i)).map(([x, y]) => [r.left + x / v.dpr, r.top + y / v.dpr]);
    }""")


def lone_point(at: list[tuple[float, float]], folder_of, want: str) -> int:
    """The point of folder ``want`` farthest from any other point (so the pointer finds only it)."""
    def room(i):
        return min((at[i][0] - x) ** 2 + (at[i][1] - y) ** 2 for j, (x, y) in enumerate(at) if j != i)
    return max((i for i in range(len(at)) if folder_of(i) == want), key=room)


def test_points_hover_click_and_lasso(page, photos, served_map, tmp_path):
    data = served_map
    open_map(page)
    assert data["count"] == 18 == len(data["ids"])
    assert page.evaluate("mapState.view.n") == 18
    page.wait_for_function("mapState.view.frames > 0")
    assert page.evaluate("mapState.view.visible") == 18  # every point drawn in the fitted view
    expect(page.locator("#map-status")).to_contain_text("18 images")
    # coloured by folder (there are three), the legend lists them with their sizes
    expect(page.locator("#map-color")).to_have_value("folder")
    legend = page.locator("#map-legend li").all_inner_texts()
    assert sorted(legend) == ["cats · 3", "cups · 3", "other · 12"]

    folder_of = lambda i: data["folders"][data["folder"][i]]["name"]  # noqa: E731
    at = screen(page)
    cat = lone_point(at, folder_of, "cats")
    page.mouse.move(*at[cat])
    tip = page.locator("#map-tip")
    expect(tip).to_be_visible()
    expect(tip.locator(".name")).to_have_text(data["names"][cat])
    expect(tip.locator(".folder")).to_have_text("cats")
    page.wait_for_function("document.querySelector('#map-tip img').naturalWidth > 0")

    page.mouse.click(*at[cat])  # searches with it: the image itself first, at distance 0
    found = wait_results(page, 12, data["names"][cat])
    assert found[0][1] == 0.0
    assert f"id={data['ids'][cat]}" in page.url
    assert page.evaluate("mapState.view.marked") == cat

    # a lasso (shift+drag) around the left half of the map selects exactly the points drawn inside it
    box = page.locator("#map-canvas").bounding_box()
    left, top, right, bottom = box["x"] + 2, box["y"] + 2, box["x"] + box["width"] / 2, box["y"] + box["height"] - 2
    page.keyboard.down("Shift")
    page.mouse.move(left, top)
    page.mouse.down()
    for x, y in [(right, top), (right, bottom), (left, bottom), (left, top + 1)]:
        page.mouse.move(x, y, steps=4)
    page.mouse.up()
    page.keyboard.up("Shift")
    inside = [i for i, (x, y) in enumerate(at) if left < x < right and top < y < bottom]
    assert 0 < len(inside) < 18
    expected = [f"{data['ids'][i]}\t{folder_of(i)}\t{data['names'][i]}" for i in inside]
    expect(page.locator("#map-count")).to_have_text(f"{len(inside)} selected")
    assert page.locator("#map-list").input_value().split("\n") == expected
    with page.expect_download() as download:
        page.click("#map-download")
    tsv = tmp_path / "selection.tsv"
    download.value.save_as(tsv)
    assert tsv.read_text().splitlines() == ["id\tfolder\tname", *expected]
    if os.environ.get("LOOKALIKE_MAP_SCREENSHOT"):
        page.mouse.move(*at[cat])
        page.wait_for_function("document.querySelector('#map-tip img').naturalWidth > 0")
        page.screenshot(path=os.environ["LOOKALIKE_MAP_SCREENSHOT"], full_page=True)


def test_clusters_and_their_central_images(page, served_map):
    data = served_map
    open_map(page)
    page.select_option("#map-color", "cluster")
    items = page.locator("#map-legend li")
    expect(items).to_have_count(len(data["clusters"]))
    sizes = [int(t.rsplit("·", 1)[1]) for t in items.all_inner_texts()]
    assert sizes == [c["size"] for c in data["clusters"]] and sum(sizes) == 18
    first = data["clusters"][0]["central"][0]  # the most central image of the largest cluster
    page.click(f"#map-legend a[data-id='{first}']")
    name = data["names"][data["ids"].index(first)]
    found = wait_results(page, 12, name)
    assert found[0] == (name, 0.0)
