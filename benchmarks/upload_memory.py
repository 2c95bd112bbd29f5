"""Peak memory and latency of ``lookalike serve`` under concurrent uploads of very large images.

For each scenario a fresh ``lookalike serve --max-pixels LIMIT`` is started on a free 127.0.0.1 port
over a small index of generated images; ``--clients`` threads then each post one large image at once
(every upload distinct, so none is answered from the upload cache). The images are a 16-bit grey
PNG and an 8-bit RGB PNG of ``--side`` x ``--side`` pixels (81 Mpx by default, under the indexing
limit of 89.5 Mpx), and a 16-bit PNG just under the upload limit. Scenarios: the server's pixel limit
at the indexing limit (what ``serve`` used before uploads had their own) and at the upload default.
Prints JSON per scenario: statuses, latency, the server's resident memory before (VmRSS after a
warm-up search) and its peak (VmHWM), and the load average.

    python benchmarks/upload_memory.py --clients 8 --out upload_memory.json
"""

from __future__ import annotations

import argparse
import io
import os
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import HOST, build_index, free_port, jpeg_bytes, generated_image, percentiles, start_server  # noqa: E402

from lookalike.images import DEFAULT_MAX_PIXELS, UPLOAD_MAX_PIXELS  # noqa: E402
from bench import emit  # noqa: E402


def png(width: int, height: int, sixteen_bit: bool) -> bytes:
    """A smooth gradient PNG (16-bit grey or 8-bit RGB): small to send, large to decode."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    if sixteen_bit:
        img = Image.fromarray(((y * 0.6 + x * 0.4) * 65535).astype(np.uint16))
    else:
        rgb = np.empty((height, width, 3), np.uint8)
        rgb[..., 0], rgb[..., 1], rgb[..., 2] = y * 255, x * 255, (x + y) * 127
        img = Image.fromarray(rgb)
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def variant(data: bytes, n: int) -> bytes:
    """``data`` (a PNG) with a tEXt chunk after its header: other bytes, the same pixels."""
    body = b"nonce\0" + str(n).encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return data[:33] + chunk + data[33:]  # 8-byte signature + 25-byte IHDR chunk


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak) of a process, in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {key: round(int(fields[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM")}


def scenario(index: Path, root: Path, limit: int, name: str, data: bytes, clients: int) -> dict:
    """Start a server with ``--max-pixels limit`` and post ``clients`` variants of ``data`` at once."""
    port = free_port()
    server = start_server(index, port, None, root / f"serve-{name}.log", "--max-pixels", str(limit))
    base = f"http://{HOST}:{port}"
    statuses: Counter = Counter()
    latencies: list[float] = []
    details: set[str] = set()
    lock = threading.Lock()
    try:
        warm = httpx.post(f"{base}/api/query", files={"file": ("warm.jpg", jpeg_bytes(generated_image(10**6)))},
                          timeout=120)
        warm.raise_for_status()
        before = memory_mb(server.pid)
        go = threading.Barrier(clients)

        def client(n: int) -> None:
            body = variant(data, n)
            go.wait()
            sent = time.monotonic()
            r = httpx.post(f"{base}/api/query", files={"file": (f"{name}-{n}.png", body, "image/png")}, timeout=900)
            with lock:
                latencies.append(time.monotonic() - sent)
                statuses[r.status_code] += 1
                if r.status_code != 200:
                    details.add(r.json()["detail"].split(": ", 1)[1])

        started = time.monotonic()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client, range(clients)))
        wall = time.monotonic() - started
        after = memory_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    return {"image": name, "upload_bytes": len(data), "server_max_pixels": limit, "clients": clients,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}, "refusals": sorted(details),
            "latency": percentiles(latencies), "wall_s": round(wall, 1),
            "rss_before_mb": before["VmRSS"], "peak_rss_mb": after["VmHWM"],
            "peak_growth_mb": round(after["VmHWM"] - before["VmRSS"], 1),
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="Uploads posted at once.")
    parser.add_argument("--side", type=int, default=9000, help="Side of the large square PNGs.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lookalike-uploads-"))
    index = build_index(root, 20)
    under = int(UPLOAD_MAX_PIXELS ** 0.5) - 1  # the largest square an upload may be
    big16, big8, under16 = png(args.side, args.side, True), png(args.side, args.side, False), png(under, under, True)
    side = f"{args.side}x{args.side}"
    runs = [(DEFAULT_MAX_PIXELS, f"16-bit {side}", big16), (DEFAULT_MAX_PIXELS, f"8-bit RGB {side}", big8),
            (UPLOAD_MAX_PIXELS, f"16-bit {side}", big16), (UPLOAD_MAX_PIXELS, f"8-bit RGB {side}", big8),
            (UPLOAD_MAX_PIXELS, f"16-bit {under}x{under}", under16)]
    result = {"clients": args.clients, "indexing_max_pixels": DEFAULT_MAX_PIXELS,
              "upload_max_pixels": UPLOAD_MAX_PIXELS, "cpus": os.cpu_count(),
              "scenarios": [scenario(index, root, limit, name, data, args.clients) for limit, name, data in runs]}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
