"""The map's drawing (map.js) in a real Chromium, without a server: panning within the layer only
copies it, and the frame it gives is the frame a fresh drawing gives; the layer is drawn anew when
the view leaves it or the zoom changes; the points counted in view are those a plain count finds."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import sync_playwright

from helpers import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}"),
]
MAP_JS = Path(__file__).parents[2] / "src" / "lookalike" / "server" / "static" / "map.js"
N = 50_000


@pytest.fixture(scope="module")
def view():
    """A page with a 600 × 400 canvas and a LookalikeMap of N points in two colours, and the points."""
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.normal(0.3, 0.08, (N // 2, 2)), rng.normal(0.7, 0.12, (N - N // 2, 2))]).clip(0, 1)
    xy = xy.astype(np.float32)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.set_content('<canvas id="c" style="width:600px;height:400px;display:block"></canvas>')
        page.add_script_tag(content=MAP_JS.read_text(encoding="utf-8"))
        page.evaluate("""([x, y]) => {
            window.asked = new Set();
            window.v = new LookalikeMap(document.getElementById("c"),
                {x: Float32Array.from(x), y: Float32Array.from(y)},
                {thumb: (i) => { window.asked.add(i); return null; }});  // no image: only asked for
            v.setColors(Int32Array.from(x, (_, i) => (i < x.length / 2 ? 0 : 1)), ["#1f77b4", "#d62728"]);
            v.render();
        }""", [xy[:, 0].tolist(), xy[:, 1].tolist()])
        yield page, xy
        browser.close()


def frame(page) -> np.ndarray:
    """The canvas's pixels (h, w, 4) after one frame drawn now (read back as a PNG: lossless)."""
    url = page.evaluate("() => { v.render(); return v.canvas.toDataURL('image/png'); }")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def fresh(page) -> np.ndarray:
    """The frame with the layer drawn anew for the current view."""
    page.evaluate("v.stale = true")
    return frame(page)


def in_view(page, xy) -> int:
    s, tx, ty, w, h = page.evaluate("[v.scale, v.tx, v.ty, v.canvas.width, v.canvas.height]")
    sx, sy = xy[:, 0] * np.float32(s) + tx, xy[:, 1] * np.float32(s) + ty
    return int(((sx >= 0) & (sy >= 0) & (sx < w) & (sy < h)).sum())


def test_a_pan_within_the_layer_copies_it(view):
    page, xy = view
    assert page.evaluate("[v.canvas.width, v.canvas.height, v.layer.width, v.layer.height]") == [600, 400, 1200, 800]
    page.evaluate("v.zoom(3, 200, 150); v.render()")
    layers = page.evaluate("v.layers")
    page.evaluate("v.pan(-137, 61)")  # within the margin (300 × 200)
    copied = frame(page)
    assert page.evaluate("v.layers") == layers  # only copied
    assert page.evaluate("v.visible") == in_view(page, xy)
    drawn = fresh(page)
    assert page.evaluate("v.layers") == layers + 1
    differ = (copied != drawn).any(axis=2)
    assert differ.sum() <= 0.001 * differ.size  # the same picture (a pixel may round the other way)
    # and it is a picture of the points: where a point is in view, the pixel is not the background
    s, tx, ty = page.evaluate("[v.scale, v.tx, v.ty]")
    at = np.floor(xy * np.float32(s) + [tx, ty]).astype(int)
    shown = at[(at[:, 0] >= 0) & (at[:, 1] >= 0) & (at[:, 0] < 600) & (at[:, 1] < 400)]
    assert len(shown) > 1000
    assert (copied[shown[:, 1], shown[:, 0], :3] != [0xfa, 0xfa, 0xfa]).any(axis=1).all()


def test_the_layer_is_drawn_anew_beyond_it_or_at_another_zoom(view):
    page, xy = view
    page.evaluate("v.fit(); v.render()")
    layers = page.evaluate("v.layers")
    page.evaluate("v.pan(250, 0)")
    frame(page)
    assert page.evaluate("v.layers") == layers
    page.evaluate("v.pan(100, 0)")  # 350 from where the layer was drawn: past its 300 margin
    beyond = frame(page)
    assert page.evaluate("v.layers") == layers + 1
    assert (beyond == fresh(page)).all()
    page.evaluate("v.zoom(1.1, 300, 200)")
    zoomed = frame(page)
    assert page.evaluate("v.layers") == layers + 3
    assert page.evaluate("v.visible") == in_view(page, xy) > 0
    assert not (zoomed == beyond).all()


def test_a_selection_is_drawn_into_the_layer(view):
    page, _ = view
    page.evaluate("v.fit(); v.clearSelection(); v.render()")
    before = frame(page)
    page.evaluate("v.selectPolygon([[0, 0], [300, 0], [300, 400], [0, 400]])")  # the left half of the canvas
    after = frame(page)
    changed = (before != after).any(axis=2)
    assert changed[:, :290].any() and not changed[:, 310:].any()  # outlines only around the selected


def test_zoomed_in_each_point_in_view_is_asked_for_its_thumbnail(view):
    page, xy = view
    page.evaluate("v.fit(); v.zoom(300, 300, 200); asked.clear()")
    frame(page)
    s, tx, ty = page.evaluate("[v.scale, v.tx, v.ty]")
    sx, sy = xy[:, 0] * np.float32(s) + tx, xy[:, 1] * np.float32(s) + ty
    shown = set(np.flatnonzero((sx >= 0) & (sy >= 0) & (sx < 600) & (sy < 400)).tolist())
    assert 0 < page.evaluate("v.visible") == len(shown) <= 150
    assert shown <= set(page.evaluate("Array.from(asked)"))


def test_colours_are_read_as_the_pixels_the_layer_writes(view):
    page, _ = view
    colours = ["#1f77b4", "hsl(120, 100%, 25%)", "#555", "rgb(1, 2, 3)"]
    # 0xAABBGGRR, worked by hand: hsl(120, 100%, 25%) is rgb(0, 128, 0)
    assert page.evaluate("(c) => mapPixels(c)", colours) == [0xFFB4771F, 0xFF008000, 0xFF555555, 0xFF030201]
