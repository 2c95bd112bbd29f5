"""Time and peak memory of lookalike.evaluation.retrieval.evaluate on synthetic embeddings.

Builds N x D random float32 embeddings around C class centres, runs the exhaustive
leave-one-out evaluation (recall@k, mAP, MAP@R, median rank, comparative sets) and
prints one JSON line: {"n", "dim", "classes", "metric", "chunk_rows", "seconds",
"peak_rss_mb", "data_mb", "summary"}.  peak_rss_mb is the process's maximum resident
set size (resource.getrusage ru_maxrss), embeddings included.

    python benchmarks/eval_memory.py                 # 100k x 1280, 1000 classes (minutes)
    python benchmarks/eval_memory.py --n 20000       # quick check
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

from lookalike.evaluation.retrieval import evaluate
from bench import emit


def synthetic_embeddings(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class centre plus 2x larger noise per image, generated in blocks (no float64 copy)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, dim), dtype=np.float32)
    X = np.empty((n, dim), np.float32)
    for s in range(0, n, 8192):
        block = rng.standard_normal((min(8192, n - s), dim), dtype=np.float32)
        block *= 2.0
        block += centres[labels[s : s + block.shape[0]]]
        X[s : s + block.shape[0]] = block
    return X, labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--metric", choices=("cosine", "l2"), default="cosine")
    parser.add_argument("--chunk-rows", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)

    X, labels = synthetic_embeddings(args.n, args.dim, args.classes, args.seed)
    start = time.perf_counter()
    result = evaluate(X, labels, metric=args.metric, chunk_rows=args.chunk_rows)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    emit({
        "n": args.n,
        "dim": args.dim,
        "classes": args.classes,
        "metric": args.metric,
        "chunk_rows": args.chunk_rows,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "data_mb": round(X.nbytes / 2**20, 1),
        "summary": result.summary(),
    }, args.out, indent=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
