"""Time ``lookalike dedup`` at scale: end to end on a generated folder, and its candidate stage.

``--scale N`` times ``lookalike dedup DIR`` end to end (indexing included, into a new index) on N
images of :mod:`dedup_data`'s collection (distinct photos and random edits of them); with
``--scale-hnsw``, it then checks the candidate stage through HNSW on that index's real embeddings
against the exact search. ``--grouping N`` times the candidate stage against the one-stage grouping
search on N synthetic embeddings.

    python benchmarks/dedup_scale.py --scale 10000              # the end-to-end timing
    python benchmarks/dedup_scale.py --grouping 100000          # candidate stage vs one-stage search

With ``--workdir``, the generated folder is kept and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from dedup_calibrate import evaluate
from dedup_data import make_collection, scenes
from bench import emit
from lookalike import dedup
from lookalike.dedup import phash
from lookalike.api import Index


def run_scale(n: int, seed: int, workdir: Path) -> dict:
    """Time ``lookalike dedup DIR`` end to end (indexing + grouping, into a new index) on ``n``
    generated images: wall and CPU seconds, the stage figures (pairs verified, ms per pair...)."""
    root = workdir / f"scale{n}"
    truth, extras = make_collection(root, n, 0, seed + 1)
    index = workdir / f"ix{n}"
    shutil.rmtree(index, ignore_errors=True)  # a kept index would make the indexing incremental
    load = os.getloadavg()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "lookalike", "dedup", str(root), "--index", str(index), "--json"],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = json.loads(proc.stdout)
    groups = [dedup.Group(g["kind"], g["keep"], [dedup.Duplicate(d["path"], d["distance"]) for d in g["duplicates"]])
              for g in out["groups"]]
    scene, series = scenes(truth, extras["source"])
    quality = evaluate(dedup.DedupReport(dedup.Rule(out["threshold"]), out["preset"], out["n_images"], groups=groups),
                       truth, scene, series, {})
    return {"collection": extras["description"], "wall_seconds": round(wall, 1),
            "cpu_seconds": round(used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
            "index_seconds": out["index"]["seconds"], "images_per_second": out["index"]["images_per_second"],
            "dedup_seconds": out["seconds"], "stages": out["stages"], "groups": len(out["groups"]),
            "precision": quality["precision"], "recall": quality["recall"],
            "series_grouped": f"{quality['series_grouped']} of {quality['series_pairs']}",
            "loadavg_before": [round(x, 2) for x in load], "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def _pair_set(csr: tuple) -> set:
    """The (row, column) pairs of CSR neighbour arrays."""
    return set(zip(np.repeat(np.arange(len(csr[0]) - 1), np.diff(csr[0])).tolist(), csr[1].tolist()))


def hnsw_on_real(index: Path, rule: dedup.Rule) -> dict:
    """The candidate stage through HNSW on an index's real embeddings (``--scale``'s), against the
    exact search: the share of the exact candidate pairs found, and how far HNSW's SQ8 distances
    are from the float ones (each of the first 2,000 vectors' 64 nearest)."""
    from lookalike.dedup.candidates import nearest_only
    from lookalike.vectors import Searcher
    from lookalike.vectors.faiss_backend import FaissBackend

    with Index.open(index) as idx:
        _, vecs = idx.vectors()
        unit = np.asarray(vecs, np.float32)
    unit = unit / np.linalg.norm(unit, axis=1, keepdims=True)
    n = len(unit)
    rows = np.arange(n, dtype=np.int64)
    hnsw = FaissBackend.build(unit, rows, "cosine", "hnsw")

    want = _pair_set(nearest_only(dedup.neighbours(unit, rule.radius), rule.nearest, rule.close))
    stages: dict = {}
    got = _pair_set(dedup.embedding_candidates(Searcher(rows, unit, [hnsw]), unit, rows, rule, stages))
    sample = unit[:2000]
    approx, found = hnsw.nearest(sample, 65)
    ok = found >= 0
    error = np.abs(approx - (1.0 - np.einsum("qd,qkd->qk", sample, unit[np.where(ok, found, 0)])))[ok]
    return {"vectors": n, "exact_candidate_pairs": len(want), "hnsw_candidate_recall": round(len(want & got) / len(want), 5),
            "missed": len(want - got), "embedding_seconds": stages["embedding_seconds"],
            "sq8_error_p50_p99_max": [round(float(x), 5) for x in np.percentile(error, [50, 99, 100])]}


def run_grouping(n: int, seed: int, rule: dedup.Rule, cluster: int = 0, exact: bool = False,
                 before: float = 0.08) -> dict:
    """Time the candidate stage of ``rule`` (the two-stage default) on ``n`` synthetic embeddings
    (benchmarks/ann.py's generator; 10 % of them near copies of others, cosine distance about
    0.01-0.06, and ``cluster`` of them copies of one vector, like a burst of near-identical shots)
    against the one-stage grouping search at ``before`` (the default this replaces), both through
    the HNSW path (each vector's nearest, widened while all are close, re-scored; for the candidate
    stage, while its 32 nearest are not yet certain), alternating, in the same run. The candidate stage is :func:`lookalike.dedup.embedding_candidates` (radius,
    nearest) plus :func:`lookalike.dedup.hash_candidates` on synthetic dihedral hashes (8 random
    64-bit codes per picture, the near copies' untransformed code ~5 % of bits from its source's),
    as :func:`lookalike.dedup.candidate_pairs` runs them (the hash store's read aside). With
    ``exact``, also the exact range search at the radius: the share of its pairs and of the exact
    candidate pairs that HNSW gives, and the hash pairs against an all-vs-all comparison."""
    from ann import Embeddings  # benchmarks/ann.py

    from lookalike.dedup.candidates import nearest_only
    from lookalike.vectors import Searcher, hamming
    from lookalike.vectors.faiss_backend import FaissBackend

    rng = np.random.default_rng(seed)
    base = Embeddings(1280, 48, 1000, 0.02, seed).draw(n - n // 10, 1)
    copies = base[rng.choice(len(base), n // 10, replace=False)]
    copies += rng.uniform(0.003, 0.007, (len(copies), 1)).astype(np.float32) * rng.standard_normal(
        copies.shape, dtype=np.float32)
    copies[:cluster] = copies[0] + 0.005 * rng.standard_normal((cluster, copies.shape[1]), dtype=np.float32)
    unit = np.concatenate([base, copies / np.linalg.norm(copies, axis=1, keepdims=True)])
    del base, copies
    ids = np.arange(n, dtype=np.int64)
    codes = rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
    bits = np.unpackbits(codes[:n // 10, 0], axis=1)
    bits[rng.random(bits.shape) < 0.05] ^= 1
    codes[n - n // 10:, 0] = np.packbits(bits, axis=1)
    readable = np.ones(n, bool)
    started = time.perf_counter()
    hnsw = FaissBackend.build(unit, ids, "cosine", "hnsw")
    searcher = Searcher(ids, unit, [hnsw])
    out = {"vectors": n, "dim": 1280, "rule": rule.to_dict(), "before": before, "cluster": cluster,
           "hnsw_build_seconds": round(time.perf_counter() - started, 1), "loadavg_start": os.getloadavg()[0]}
    times: dict = defaultdict(list)
    cpu: dict = defaultdict(list)
    for step in ("before", "candidates", "before", "candidates"):
        stages: dict = {}
        started, cpu_started = time.perf_counter(), time.process_time()
        if step == "before":
            csr = dedup.embedding_candidates(searcher, unit, ids, dedup.Rule(before), stages)
            out["pairs_before"] = stages["embedding_pairs"]
        else:
            csr = dedup.embedding_candidates(searcher, unit, ids, rule, stages)
            out["embedding_seconds"] = out.get("embedding_seconds", []) + [stages["embedding_seconds"]]
            tick = time.perf_counter()
            csr = dedup.hash_candidates(csr, codes, readable, unit, rule, stages)
            out["hash_seconds"] = out.get("hash_seconds", []) + [round(time.perf_counter() - tick, 2)]
            out["stages"] = {**stages, "candidate_pairs": len(csr[1]) // 2}
        times[step].append(time.perf_counter() - started)
        cpu[step].append(time.process_time() - cpu_started)
    out["seconds_before"] = [round(x, 1) for x in times["before"]]
    out["seconds_candidates"] = [round(x, 1) for x in times["candidates"]]
    out["cpu_seconds_before"] = [round(x, 1) for x in cpu["before"]]
    out["cpu_seconds_candidates"] = [round(x, 1) for x in cpu["candidates"]]
    out["ratio"] = round(min(times["candidates"]) / min(times["before"]), 2)
    out["ratio_embedding_only"] = round(min(out["embedding_seconds"]) / min(times["before"]), 2)
    out["loadavg_end"] = os.getloadavg()[0]
    if exact:
        started = time.perf_counter()
        want = dedup.neighbours(unit, rule.radius)
        out["exact_range_search_seconds"] = round(time.perf_counter() - started, 1)

        approx = dedup.embedding_pairs(searcher, unit, ids, rule.radius)
        exact_pairs = _pair_set(want)
        out["hnsw_pair_recall"] = round(len(exact_pairs & _pair_set(approx)) / max(len(exact_pairs), 1), 4)
        stages = {}
        got = dedup.embedding_candidates(searcher, unit, ids, rule, stages)
        exact_candidates = _pair_set(nearest_only(want, rule.nearest, rule.close))
        out["hnsw_candidate_recall"] = round(len(exact_candidates & _pair_set(got)) / max(len(exact_candidates), 1), 4)
        started = time.perf_counter()
        probe, row, _ = hamming.within(codes[:, 0], codes.reshape(-1, 8), rule.hash_radius, flat=True)
        out["hash_all_vs_all_seconds"] = round(time.perf_counter() - started, 1)
        i, j, _, _ = phash.pairs(codes, rule.hash_radius)
        brute = {(min(a, b), max(a, b)) for a, b in zip(row.tolist(), (probe // 8).tolist()) if a != b}
        out["hash_pairs_equal_all_vs_all"] = brute == set(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=0, help="time `lookalike dedup DIR` on this many images")
    ap.add_argument("--scale-hnsw", action="store_true", help="with --scale: also the candidate stage through HNSW on "
                    "that index's real embeddings against the exact search, and HNSW's SQ8 distance error")
    ap.add_argument("--grouping", type=int, default=0, help="time the candidate stage against the one-stage "
                    "grouping search (HNSW) on this many synthetic 1280-d embeddings and dihedral hashes")
    ap.add_argument("--cluster", type=int, default=0, help="with --grouping: make this many of the embeddings "
                    "near-identical copies of one")
    ap.add_argument("--grouping-exact", action="store_true", help="with --grouping: also the exact range search "
                    "and the all-vs-all hash comparison, and what the fast paths find of them")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep generated files here (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="lookalike-dedup-"))).absolute()
    default_rule = dedup.presets({"name": "efficientnet-lite0", "layer": "pool"})[dedup.DEFAULT_PRESET]
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "loadavg_start": [round(x, 2) for x in os.getloadavg()]}}
    try:
        if args.scale:
            result["scale"] = run_scale(args.scale, args.seed, workdir)
            print(f"scale: {json.dumps(result['scale'])}", file=sys.stderr)
            if args.scale_hnsw:
                result["scale_hnsw"] = hnsw_on_real(workdir / f"ix{args.scale}", default_rule)
                print(f"scale_hnsw: {json.dumps(result['scale_hnsw'])}", file=sys.stderr)
        if args.grouping:
            result["grouping"] = run_grouping(args.grouping, args.seed, default_rule, args.cluster, args.grouping_exact)
            print(f"grouping: {json.dumps(result['grouping'])}", file=sys.stderr)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    emit(result, args.out)


if __name__ == "__main__":
    main()
