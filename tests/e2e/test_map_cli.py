"""``lookalike map``: the PNG, the standalone page (opened in Chromium), --json, the cache kept and
brought up to date, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from helpers import run_cli
from lookalike.map.picture import colour

pytestmark = pytest.mark.slow
pytest.importorskip("umap", reason="the map needs umap-learn (the map extra)")

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def indexed(photo_dir, tmp_path_factory):
    """(index, photos): 15 sample photos in folders cats, cups and other, indexed; three kept back."""
    root = tmp_path_factory.mktemp("map-cli")
    photos, spare = root / "photos", root / "spare"
    spare.mkdir()
    for src in sorted(photo_dir.iterdir()):
        folder = "cats" if src.stem.startswith("chelsea") else "cups" if src.stem.startswith("coffee") else "other"
        (photos / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, (spare if src.stem.startswith("astronaut") else photos / folder) / src.name)
    run_cli("index", photos, "--index", root / "index")
    return root / "index", photos, spare


def map_json(index, *args) -> dict:
    return json.loads(run_cli("map", "--index", index, "--json", *args).stdout)


def test_png_json_and_the_cache(indexed, tmp_path):
    index, photos, spare = indexed
    png = tmp_path / "map.png"
    first = map_json(index, "--out", png)
    assert first["how"] == "laid out" and first["count"] == 15 and first["color"] == "folder"
    paths = sorted(str(p) for p in photos.rglob("*.*"))
    assert sorted(p["path"] for p in first["points"]) == paths
    ids = [p["id"] for p in first["points"]]
    assert ids == sorted(ids) and len(set(ids)) == 15
    assert {f["path"]: f["size"] for f in first["folders"]} == {str(photos / "cats"): 3, str(photos / "cups"): 3,
                                                                 str(photos / "other"): 9}
    assert sum(c["size"] for c in first["clusters"]) == 15
    assert all(0 <= p["x"] <= 1 and 0 <= p["y"] <= 1 for p in first["points"])
    # the picture: a real PNG with dots in the colours of the folders (sorted: cats, cups, other)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape[0] > 500 and img.shape[1] > 500
    for group in range(3):
        target = np.array(colour(group)) * 255
        assert (np.abs(img - target).sum(axis=2) < 12).sum() > 20, f"no dot of folder {group}'s colour"

    again = map_json(index)
    assert again["how"] == "cached" and again["points"] == first["points"]
    stamp = (index / "map.npz").stat().st_mtime_ns
    assert map_json(index)["how"] == "cached" and (index / "map.npz").stat().st_mtime_ns == stamp

    # one new photo (1 of 15): placed, the others where they were
    shutil.copy(spare / "astronaut.jpg", photos / "other" / "astronaut.jpg")
    run_cli("index", photos, "--index", index)
    placed = map_json(index)
    assert placed["how"] == "placed" and placed["count"] == 16
    before = {p["path"]: (p["x"], p["y"]) for p in first["points"]}
    assert all(before[p["path"]] == (p["x"], p["y"]) for p in placed["points"] if p["path"] in before)
    # two more make 3 of 15 placed, past 10 %: laid out anew
    for name in ("astronaut_flip.jpg", "astronaut_crop.png"):
        shutil.copy(spare / name, photos / "other" / name)
    run_cli("index", photos, "--index", index)
    assert map_json(index, "--color", "cluster")["how"] == "laid out"


def test_one_line_errors(indexed, tmp_path):
    index, _, _ = indexed
    for args, message in [(["--out", tmp_path / "map.gif"], "give a .html or a .png file"),
                          ([], "say what to write"),
                          (["--index", tmp_path / "none", "--json"], "no index at")]:
        proc = run_cli("map", "--index", index, *args, check=False)
        assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "map.gif").exists()


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}")
def test_the_page_stands_alone(indexed, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    index, _, _ = indexed
    html = tmp_path / "map.html"
    data = map_json(index, "--out", html)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors, foreign = [], []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "blob:")) else foreign.append(r.url))
        page.goto(html.as_uri())
        page.wait_for_function("view.frames > 0")
        assert page.evaluate("view.n") == page.evaluate("view.visible") == data["count"]
        expect(page.locator("#map-color")).to_have_value("folder")
        at = page.evaluate("""() => { const r = view.canvas.getBoundingClientRect();
            return Array.from({length: view.n}, (_, i) => view.toScreen(i)).map(([x, y]) => [r.left + x / view.dpr, r.top + y / view.dpr]); }""")
        room = [min((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 for j, b in enumerate(at) if j != i) for i, a in enumerate(at)]
        lone = int(np.argmax(room))
        page.mouse.move(*at[lone])
        expect(page.locator("#map-tip .name")).to_have_text(data["points"][lone]["path"])
        page.wait_for_function("document.querySelector('#map-tip img').naturalWidth > 0")  # the file itself
        browser.close()
    assert errors == [] and foreign == []
