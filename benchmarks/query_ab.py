"""Query latency of a baseline checkout and this tree in one process, interleaved round by round.

Both ``lookalike`` packages (``--before CHECKOUT/src`` and this tree's ``src``) are imported side by
side and open the same index of N synthetic 1280-d vectors (written once, HNSW when N > 25k), so
each round times both under the same load. Prints JSON: per kind (exact, approximate) and mode, the
median over rounds of each side's p50 over the queries, and the median of the per-round ratios.

    git worktree add /tmp/before REV
    python benchmarks/query_ab.py --before /tmp/before --n 30000 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench import emit

HERE = Path(__file__).resolve().parent.parent
MODES = ("nearest", "farthest", "random")


def load_api(src: Path):
    """``lookalike.api`` imported from ``src``, leaving no ``lookalike`` module behind for the next import."""
    for name in [m for m in sys.modules if m.split(".")[0] == "lookalike"]:
        del sys.modules[name]
    sys.path.insert(0, str(src))
    try:
        import lookalike.api as api
    finally:
        sys.path.remove(str(src))
    return api


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True, help="the baseline checkout")
    ap.add_argument("--n", type=int, default=30_000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--queries", type=int, default=20)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()
    before, after = load_api(args.before.resolve() / "src"), load_api(HERE / "src")
    from lookalike.models.registry import resolve
    from lookalike.index.store import Entry, Store

    rng = np.random.default_rng(0)
    dim = 1280
    with tempfile.TemporaryDirectory() as tmp:
        spec = resolve("efficientnet-lite0")
        with Store.create(tmp, spec.identity(), ref=spec.name) as store:
            for start in range(0, args.n, 10_000):
                v = np.maximum(rng.normal(size=(min(10_000, args.n - start), dim)), 0).astype(np.float32)
                store.put(Entry(f"/s/{start + i:07d}.jpg", 1, 1, f"{start + i}", 1, 1, x) for i, x in enumerate(v))
        sides = {"before": before.Index.open(tmp), "after": after.Index.open(tmp)}
        for idx in sides.values():
            idx.ann(), idx.vectors()
        kind = sides["after"].index_type
        queries = np.maximum(rng.normal(size=(args.queries, dim)), 0).astype(np.float32)
        p50: dict[tuple, list[float]] = {}
        load = [os.getloadavg()]
        for _ in range(args.rounds):
            for side, idx in sides.items():
                for exact in (True, False):
                    for mode in MODES:
                        times = []
                        for q in queries:
                            t = time.perf_counter()
                            idx.query_vector(q, 10, mode, "cosine", seed=0, exact=exact)
                            times.append(time.perf_counter() - t)
                        p50.setdefault((side, exact, mode), []).append(float(np.median(times)) * 1e3)
            load.append(os.getloadavg())
        for idx in sides.values():
            idx.close()
    out = {}
    for exact in (True, False):
        for mode in MODES:
            b, a = np.array(p50[("before", exact, mode)]), np.array(p50[("after", exact, mode)])
            out[f"{'exact' if exact else kind}.{mode}"] = {
                "before_p50_ms": round(float(np.median(b)), 2), "after_p50_ms": round(float(np.median(a)), 2),
                "after_over_before": round(float(np.median(a / b)), 3)}
    emit({"benchmark": "query_ab", "n": args.n, "dim": dim, "k": 10, "rounds": args.rounds,
          "queries": args.queries, "cpu_count": os.cpu_count(),
          "loadavg": [[round(x, 2) for x in la] for la in load], "latency": out}, args.out, indent=1)


if __name__ == "__main__":
    main()
