"""Loopback load test of ``lookalike serve``: concurrent clients search by upload and by id.

Starts ``lookalike serve`` in a subprocess on a free 127.0.0.1 port (nothing else is contacted),
over ``--index`` or over a small index it builds from generated images, then runs ``--clients``
threads for ``--duration`` seconds. Each client alternates ``POST /api/query`` with a generated
image that is not in the index (so the model runs) and ``GET /api/query?id=`` (stored vector),
cycling through the nearest, farthest and random modes. Prints JSON: requests/s, p50/p95 latency
overall and per kind, and the error count (exit status 1 when it is not 0).

    python benchmarks/serve_load.py --duration 30 --clients 4 --out serve_load.json
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image, ImageDraw

from bench import emit

HOST = "127.0.0.1"
MODES = ("nearest", "farthest", "random")


def generated_image(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A deterministic picture: a colour gradient with random ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    w, h = size
    a, b = rng.integers(0, 256, (2, 3))
    t = np.linspace(0, 1, w)[None, :, None]
    img = Image.fromarray(np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        box = (x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2)))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def jpeg_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def build_index(root: Path, n: int) -> Path:
    """Write ``n`` generated JPEGs under ``root/images`` and index them into ``root/index``."""
    from lookalike.api import Index

    images = root / "images"
    images.mkdir()
    for i in range(n):
        generated_image(i).save(images / f"gen{i:04d}.jpg", quality=90)
    with Index.open(root / "index", create=True) as idx:
        idx.index(images)
    return root / "index"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(index: Path, port: int, threads: int | None, log: Path, *options: str) -> subprocess.Popen:
    """``lookalike serve`` over ``index`` on ``port`` with more ``options``, once it answers /healthz."""
    cmd = [sys.executable, "-c", "from lookalike.cli import main; main()", "serve", "--index", str(index),
           "--host", HOST, "--port", str(port), *options]
    if threads:
        cmd += ["--threads", str(threads)]
    with open(log, "w") as err:
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"lookalike serve exited {server.returncode}: {log.read_text().strip()}")
        try:
            if httpx.get(f"http://{HOST}:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("lookalike serve did not answer within 120 s")


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"count": 0}
    ms = np.asarray(seconds) * 1000
    return {"count": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "max_ms": round(float(ms.max()), 2)}


def run_load(base: str, ids: list[int], queries: list[bytes], clients: int, duration: float, k: int) -> dict:
    """Hammer the server from ``clients`` threads until ``duration`` seconds have passed."""
    latencies: dict[str, list[float]] = {"upload": [], "id": []}
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + duration

    def client(number: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            n = 0
            while time.monotonic() < stop_at:
                i = number + n * clients  # this request's number across all clients
                mode = MODES[(number + n) % len(MODES)]
                kind = "upload" if (number + n) % 2 == 0 else "id"
                started = time.perf_counter()
                try:
                    if kind == "upload":
                        r = http.post("/api/query", params={"k": k, "mode": mode},
                                      files={"file": (f"q{i}.jpg", queries[i % len(queries)], "image/jpeg")})
                    else:
                        r = http.get("/api/query", params={"id": ids[i % len(ids)], "k": k, "mode": mode})
                    ok = r.status_code == 200 and len(r.json()["results"]) == min(k, len(ids))
                    problem = None if ok else f"{kind} {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as e:
                    problem = f"{kind}: {type(e).__name__}: {e}"
                elapsed = time.perf_counter() - started
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies[kind].append(elapsed)
                n += 1

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    done = sum(len(v) for v in latencies.values())
    return {"wall_s": round(wall, 2), "requests": done + len(errors), "requests_per_s": round(done / wall, 2),
            "errors": len(errors), "error_samples": errors[:5],
            "latency": percentiles(latencies["upload"] + latencies["id"]),
            "by_kind": {kind: {**percentiles(v), "requests_per_s": round(len(v) / wall, 2)}
                        for kind, v in latencies.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, help="Existing index [default: build one from --images generated images]")
    parser.add_argument("--images", type=int, default=64, help="Generated images to index without --index.")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    parser.add_argument("--k", type=int, default=10, help="Results per search.")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads of the server.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="lookalike-serve-load-") as tmp:
        built = time.perf_counter()
        index = args.index or build_index(Path(tmp), args.images)
        built = time.perf_counter() - built
        port = free_port()
        server = start_server(index, port, args.threads, Path(tmp) / "serve.log")
        base = f"http://{HOST}:{port}"
        try:
            stats = httpx.get(f"{base}/api/stats").json()
            queries = [jpeg_bytes(generated_image(100_000 + i)) for i in range(16)]
            warm = httpx.post(f"{base}/api/query", params={"k": 1000}, timeout=60,
                              files={"file": ("warm.jpg", queries[0], "image/jpeg")})
            warm.raise_for_status()
            ids = [r["id"] for r in warm.json()["results"]]  # up to 1000 ids to search by
            if not ids:
                raise SystemExit(f"the index {index} is empty")
            load = run_load(base, ids, queries, args.clients, args.duration, args.k)
        finally:
            server.terminate()
            server.wait(30)
    report = {"host": HOST, "index_images": stats["count"], "model": stats["model"], "dims": stats["dims"],
              "index_built_s": None if args.index else round(built, 1), "clients": args.clients,
              "duration_s": args.duration, "k": args.k, "cpu_count": os.cpu_count(), **load}
    emit(report, args.out)
    return 1 if load["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
