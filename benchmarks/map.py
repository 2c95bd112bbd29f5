"""Benchmark the map: layout time at ``--n`` images, page ready with the cached layout, pan frame rate.

Vectors are ``benchmarks/ann.py``'s embedding-like ones (a Gaussian mixture of ``--centres`` centres
in 64 dimensions mapped to ``--dim``, ReLU, noise, unit length), written straight into a real index
(one folder per centre; the files do not exist, so thumbnails are not served). Stages:

* ``layout``: :meth:`Index.layout` with no map yet (PCA, UMAP, k-means, the answer packed for the
  page; all threads), the same again from ``map.npz``, and again after adding 1 % new vectors (placed
  among neighbours); ``kept_10``: how faithful the first layout is, the share of each point's 10
  nearest images (cosine, all dimensions) that are among its 10 nearest on the map (mean over up to
  3,000 points);
* ``page``: ``lookalike serve`` over the index, then Chromium (Debian's, headless, no GPU) opens
  ``/?map=1`` twice: ``first_s`` right after the server starts (the server reads the typed arrays
  kept beside the index, ``GET /api/map/binary``), ``again_s`` on a reload; each is from navigation
  start to the first frame drawn; ``bytes``: the size of that answer;
* ``pan``: in that page, one pan step (2 px right, 1 down) per animation frame for ``--frames``
  frames with every point in view: frames per second, the milliseconds each frame takes to draw,
  how many times the layer was drawn anew during the pan (once the view leaves its margin), and
  ``layer_ms``, what drawing the layer takes (as on a zoom step). Headless Chromium has no GPU:
  the page draws points into a pixel buffer in JavaScript either way, and copies are done by Skia's
  software rasteriser here, where a desktop would use the GPU.

    python benchmarks/map.py --n 100000 --out map.json
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ann import Embeddings
from bench import emit
from serve_load import free_port, start_server

CHROMIUM = "/usr/bin/chromium"


def build_index(root: Path, args) -> Path:
    """An index of ``args.n`` embedding-like vectors under made-up paths, one folder per centre."""
    from lookalike.models.registry import resolve
    from lookalike.index.store import Store

    spec = resolve()
    if spec.dim != args.dim:
        raise SystemExit(f"--dim {args.dim}: the default model's vectors have {spec.dim}")
    data = Embeddings(args.dim, 64, args.centres, 0.02, seed=7)
    with Store.create(root, spec.identity(), ref=spec.name) as store:
        add(store, data, 0, args.n)
    return root


def add(store, data: Embeddings, first: int, count: int) -> None:
    """Put rows ``first`` to ``first + count`` of ``data`` in ``store``, in 10,000-row commits."""
    from lookalike.index.store import Entry

    for at in range(first, first + count, 10_000):
        rows = min(10_000, first + count - at)
        rng = np.random.default_rng(at)
        centre = rng.integers(0, data.centres.shape[0], rows)
        vectors = data.draw(rows, 1000 + at // 10_000)
        store.put([Entry(f"/collection/class{c:03d}/img{at + i:07d}.jpg", 1000, 0, f"{at + i:064x}", 640, 480, v)
                   for i, (c, v) in enumerate(zip(centre, vectors))])


def bench_layout(index_path: Path, args) -> dict:
    from lookalike.api import Index
    from lookalike.index.store import Store

    out = {}
    with Index.open(index_path) as idx:
        for stage, expect in (("first_s", "laid out"), ("cached_s", "cached")):
            t = time.perf_counter()
            m = idx.layout()
            out[stage] = round(time.perf_counter() - t, 3)
            assert m.how == expect, (stage, m.how)
        out["kept_10"] = kept_neighbours(idx.vectors()[1], m.xy)
        with Store.open(index_path) as store:
            add(store, Embeddings(args.dim, 64, args.centres, 0.02, seed=7), args.n, args.n // 100)
        t = time.perf_counter()
        m = idx.layout()
        out["placed_1pct_s"] = round(time.perf_counter() - t, 3)
        assert m.how == "placed", m.how
        out["count"] = len(m.ids)
        out["clusters"] = len(m.centres)
    out["map_file_bytes"] = (index_path / "map.npz").stat().st_size
    return out


def kept_neighbours(vectors: np.ndarray, xy: np.ndarray, k: int = 10, sample: int = 3000) -> float:
    """The mean share of a point's ``k`` nearest vectors (cosine) among its ``k`` nearest places on the
    map, over ``sample`` points drawn at random (all of them when there are fewer), exactly by FAISS."""
    import faiss

    unit = np.ascontiguousarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.float32)
    places = np.ascontiguousarray(xy, np.float32)
    rows = np.random.default_rng(1).permutation(len(unit))[:sample]
    near = _nearest(faiss.IndexFlatIP(unit.shape[1]), unit, rows, k)
    placed = _nearest(faiss.IndexFlatL2(2), places, rows, k)
    return round(float(np.mean([len(set(a) & set(b)) / k for a, b in zip(near, placed)])), 3)


def _nearest(index, x: np.ndarray, rows: np.ndarray, k: int) -> list[list[int]]:
    """The ``k`` nearest other rows of ``x`` for each of ``rows`` (the row itself left out)."""
    index.add(x)
    _, found = index.search(x[rows], k + 1)
    return [[int(j) for j in near if j != i][:k] for i, near in zip(rows, found)]


def bench_page(index_path: Path, args, log: Path) -> dict:
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = start_server(index_path, port, None, log)
    base = f"http://127.0.0.1:{port}"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(600_000)
            ready = {}
            for name in ("first_s", "again_s"):
                page.goto(f"{base}/?map=1")
                page.wait_for_function("typeof mapState !== 'undefined' && mapState.view && mapState.view.frames > 0",
                                       polling="raf")
                ready[name] = round(page.evaluate("performance.now()") / 1000, 3)
            points = page.evaluate("mapState.view.visible")
            size = page.evaluate("fetch('/api/map/binary').then((r) => r.arrayBuffer()).then((b) => b.byteLength)")
            pan = page.evaluate("""async (frames) => {
                const v = mapState.view;
                const drawn = v.frames, spent = v.drawMs, layers = v.layers, gaps = [];
                await new Promise((r) => requestAnimationFrame(r));
                const start = performance.now();
                let last = start;
                for (let f = 0; f < frames; f++) {
                    await new Promise((r) => requestAnimationFrame(r));
                    v.tx += 2; v.ty += 1; v.render();
                    const now = performance.now();
                    gaps.push(now - last);
                    last = now;
                }
                gaps.sort((a, b) => a - b);
                const layersDrawn = v.layers - layers, drawMs = (v.drawMs - spent) / (v.frames - drawn);
                const t = performance.now();
                v.stale = true;
                v.render();
                return {frames, seconds: (last - start) / 1000, draw_ms: drawMs, layers_drawn: layersDrawn,
                        layer_ms: performance.now() - t,
                        frame_ms_p50: gaps[Math.floor(frames / 2)], frame_ms_p95: gaps[Math.floor(frames * 0.95)],
                        canvas: [v.canvas.width, v.canvas.height]};
            }""", args.frames)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    pan["fps"] = round(pan["frames"] / pan["seconds"], 1)
    for key in ("seconds", "draw_ms", "layer_ms", "frame_ms_p50", "frame_ms_p95"):
        pan[key] = round(pan[key], 3)
    return {"page": {**ready, "points_drawn": points, "bytes": size}, "pan": pan}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="images in the index")
    ap.add_argument("--dim", type=int, default=1280, help="vector dimension (the default model's)")
    ap.add_argument("--centres", type=int, default=200, help="mixture centres (folders)")
    ap.add_argument("--frames", type=int, default=240, help="pan frames to time")
    ap.add_argument("--skip-page", action="store_true", help="only the layout")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lookalike-map-bench-") as tmp:
        index_path = Path(tmp) / "index"
        t = time.perf_counter()
        build_index(index_path, args)
        report = {"n": args.n, "dim": args.dim, "centres": args.centres, "cpus": os.cpu_count(),
                  "python": platform.python_version(), "build_index_s": round(time.perf_counter() - t, 1)}
        report["layout"] = bench_layout(index_path, args)
        if args.skip_page or not os.path.exists(CHROMIUM):
            report["page"] = f"skipped ({'--skip-page' if args.skip_page else f'no Chromium at {CHROMIUM}'})"
        else:
            report.update(bench_page(index_path, args, Path(tmp) / "serve.log"))
    emit(report, args.out)


if __name__ == "__main__":
    main()
