"""Soak: loopback HTTP clients and CLI queries while ``lookalike index`` adds, changes and removes files.

Builds an index of generated images, starts ``lookalike serve`` on a free 127.0.0.1 port, and runs
``--clients`` threads searching by id (ids of the files that exist at the start of each cycle),
plus one ``lookalike query --json`` per cycle, while each of ``--cycles`` cycles adds, rewrites and
deletes a few files and runs ``lookalike index --batch B``. Bounded by ``--duration`` seconds.
Prints JSON: requests, errors by status, p50/p95, and the final consistency check (catalog total
equals the files on disk; no removed file named in a response that started after its removal was
committed). Exit status 1 when there is an error or an inconsistency.

    python benchmarks/soak.py --cycles 10 --batch 1 --out soak.json
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from serve_load import HOST, free_port, generated_image, percentiles, start_server  # noqa: E402
from bench import emit  # noqa: E402

CLI = [sys.executable, "-c", "from lookalike.cli import main; main()"]


def lookalike(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=600)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60, help="Files at the start.")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--per-cycle", type=int, default=4, help="Files added, rewritten and removed per cycle.")
    parser.add_argument("--batch", type=int, default=None, help="index --batch [default: lookalike's default]")
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--duration", type=float, default=600, help="Stop after this many seconds whatever is left.")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lookalike-soak-"))
    images, index = root / "images", root / "index"
    images.mkdir()
    serial = iter(range(10**9))
    for _ in range(args.images):
        i = next(serial)
        generated_image(i).save(images / f"f{i:05d}.jpg", quality=90)
    batch = ["--batch", str(args.batch)] if args.batch else []
    first = lookalike("index", images, "--index", index, "--quiet", *batch)
    if first.returncode:
        raise SystemExit(first.stderr)
    port = free_port()
    server = start_server(index, port, None, root / "serve.log")
    statuses: Counter = Counter()
    samples: list[str] = []
    latencies: list[float] = []
    removed_at: dict[str, float] = {}  # name -> when its removal was committed
    stale: list[str] = []
    ids: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    started = time.monotonic()

    def client() -> None:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as http:
            while not stop.is_set():
                with lock:
                    image_id = random.choice(ids) if ids else 1
                sent = time.monotonic()
                try:
                    r = http.get("/api/query", params={"id": image_id, "k": 20})
                    status = r.status_code
                except httpx.HTTPError as e:
                    status, r = type(e).__name__, None
                with lock:
                    statuses[status] += 1
                    latencies.append(time.monotonic() - sent)
                    if status not in (200, 404) and len(samples) < 5:  # 404: the id was removed meanwhile
                        samples.append(f"{status}: {r.text[:200] if r is not None else ''}")
                    if status == 200:
                        stale.extend(x["name"] for x in r.json()["results"] if removed_at.get(x["name"], sent) < sent)

    def refresh_ids() -> None:
        """The ids now in the index: all results of a search by any id still there."""
        with lock:
            candidates = [*ids[-8:], 1]
        for image_id in candidates:
            r = httpx.get(f"http://{HOST}:{port}/api/query", params={"id": image_id, "k": 1000}, timeout=60)
            if r.status_code == 200:
                with lock:
                    ids[:] = sorted(x["id"] for x in r.json()["results"])
                return

    cli_errors = cycles = 0
    try:
        refresh_ids()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for cycles in range(1, args.cycles + 1):
            if time.monotonic() - started > args.duration:
                cycles -= 1
                break
            files = sorted(images.iterdir())
            gone = random.sample(files, args.per_cycle)
            for path in gone:
                path.unlink()
            for path in random.sample([f for f in files if f not in gone], args.per_cycle):
                generated_image(next(serial)).save(path, quality=90)  # rewritten: a new id
            for _ in range(args.per_cycle):
                i = next(serial)
                generated_image(i).save(images / f"f{i:05d}.jpg", quality=90)
            done = lookalike("index", images, "--index", index, "--quiet", *batch)
            committed = time.monotonic()
            with lock:
                removed_at.update({p.name: committed for p in gone})
            cli_errors += done.returncode != 0
            q = lookalike("query", images / sorted(os.listdir(images))[0], "-k", "5", "--index", index, "--json")
            cli_errors += q.returncode != 0
            if done.returncode or q.returncode:
                samples.append((done.stderr or q.stderr)[-300:])
            refresh_ids()
        stop.set()
        for t in threads:
            t.join()
        stats = httpx.get(f"http://{HOST}:{port}/api/stats", timeout=60).json()
    finally:
        stop.set()
        server.terminate()
        server.wait(30)
    on_disk = len(os.listdir(images))
    errors = {str(k): v for k, v in statuses.items() if k not in (200, 404)}
    result = {"cycles": cycles, "batch": args.batch, "clients": args.clients, "requests": sum(statuses.values()),
              "statuses": {str(k): v for k, v in sorted(statuses.items(), key=str)}, "errors": errors,
              "cli_runs": 2 * cycles, "cli_errors": cli_errors, "latency": percentiles(latencies),
              "consistent": {"catalog_total": stats["count"], "files_on_disk": on_disk,
                             "removed_returned_after_removal": len(stale)},
              "error_samples": samples, "seconds": round(time.monotonic() - started, 1),
              "loadavg": [round(x, 2) for x in os.getloadavg()]}
    emit(result, args.out)
    ok = not errors and not cli_errors and stats["count"] == on_disk and not stale
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
