"""Calibrate the ``lookalike dedup`` presets on edited copies of real photos and on hard negatives.

The collection is :mod:`dedup_data`'s: distinct photos (every flowers51 photo but those kept for hard
pairs, and scikit-image cells), 18 edits of some, flowers51's own same-capture and series pairs
(checked by eye) and built hard pairs (parallax, a moved part, another object in the same place, a
drawing). It prints, per edit, the cosine distances of copies to their original and those between
distinct photos, then the two stages: every candidate pair of the loosest first stage (cosine 0.3 or
a rotated/flipped hash match), plus every hard and series pair, is verified once (ORB + RANSAC and the
picture-against-picture agreement, :mod:`lookalike.dedup.capture`); the inlier and agreement
distributions per kind; a sweep of radius x candidates per file x inlier minimum x agreement
minimum, each replayed through :func:`lookalike.dedup.find_duplicates` with the recorded verification;
``suggest``'s choice; and each preset run for real, scored on both sets: the edited copies (pair
precision and recall, recall per edit and with rotations aside) and the hard negatives (series,
built and other distinct pairs that were grouped).

    python benchmarks/dedup_calibrate.py --workdir /tmp/calib --out dedup.json

With ``--workdir``, the collection, its index and the verified pairs are kept and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from dedup_data import TRANSFORMS, joined, make_collection, scenes
from bench import emit
from lookalike import dedup
from lookalike.dedup import geometry
from lookalike.api import Index
from lookalike.dedup import candidates as dedup_candidates, find as dedup_find
from lookalike.vectors import hamming

#: The loosest first stage the sweep considers; every candidate pair of it is verified once.
LOOSEST = dedup.Rule(0.3, 1)
SWEEP_NEAREST = (16, 32, 48)
SWEEP_INLIERS = (12, 20)
#: (min_agreement, max_shifted, max_displaced) swept; (0, 1, 1): the fit alone, as before the check;
#: (0.9, 0.025, 1): the check before the sub-pixel displacement was measured.
SWEEP_CHECK = ((0.0, 1.0, 1.0), (0.9, 0.025, 1.0), (0.85, 0.025, 0.25), (0.88, 0.025, 0.25), (0.9, 0.025, 0.15),
               (0.9, 0.025, 0.2), (0.9, 0.025, 0.25), (0.9, 0.025, 0.3), (0.9, 0.02, 0.25), (0.9, 0.03, 0.25))
#: The check of the presets, and the one before it; the other candidate caps are swept with these alone.
SWEEP_MAIN = ((0.0, 1.0, 1.0), (0.9, 0.025, 0.25))
SWEEP_CLOSE = 0.025
#: Built hard pairs that are other shots of one scene: the shots preset groups them on purpose.
SHOT_KINDS = ("parallax", "moved part")


def _q(x, ps) -> dict:
    x = np.asarray(x, np.float64)
    if not len(x):
        return {"n": 0}
    return {f"p{p:g}": round(float(np.percentile(x, p)), 4) for p in ps} | {
        "min": round(float(x.min()), 4), "max": round(float(x.max()), 4), "n": int(len(x))}


def calibrate(truth: dict, scene: dict, unit: dict[str, np.ndarray]) -> dict:
    """Distance distributions: each transform's variant-to-base, and between bases of distinct scenes."""
    base_of = {g: p for p, (g, t) in truth.items() if t == "base" and p in unit}
    per = defaultdict(list)
    for p, (g, t) in truth.items():
        if t in TRANSFORMS and p in unit and g in base_of:
            per[t].append(1.0 - float(unit[p] @ unit[base_of[g]]))  # to its own base
    bases = list(base_of.values())
    b = np.stack([unit[p] for p in bases])
    group = np.array([scene[truth[p][0]] for p in bases])
    d = 1.0 - b @ b.T
    d[group[:, None] == group[None, :]] = np.inf  # the same scene (itself, or one capture twice)
    iu = np.triu_indices(len(b), 1)
    iu = tuple(x[np.isfinite(d[iu])] for x in iu)
    return {"variant_to_base": {t: _q(per[t], (50, 95, 99)) for t in TRANSFORMS if per[t]},
            "distinct_all_pairs": _q(d[iu], (0.1, 1, 5, 50)),
            "distinct_nearest": _q(d.min(axis=1), (0.1, 1, 5, 50))}


def evaluate(report: dedup.DedupReport, truth: dict, scene: dict, series: list, hard: dict) -> dict:
    """Both sets: pair precision and recall against the known scenes, recall per transform (the share
    of variants grouped with their own base) and with rotations aside; and the hard negatives grouped:
    series pairs, built pairs per kind, and all pairs of distinct scenes."""
    keeper = {p: p for p in truth}
    for g in sorted(report.groups, key=lambda g: g.kind != "exact"):  # exact keepers may be near duplicates
        for d in g.duplicates:
            keeper[d.path] = g.keep
    for p in keeper:  # follow exact -> near chains to the final kept file
        while keeper[keeper[p]] != keeper[p]:
            keeper[p] = keeper[keeper[p]]
    pairs = lambda c: sum(n * (n - 1) // 2 for n in c.values())  # noqa: E731
    tp = pairs(Counter((keeper[p], scene[g]) for p, (g, _) in truth.items()))
    pp, tt = pairs(Counter(keeper[p] for p in truth)), pairs(Counter(scene[g] for g, _ in truth.values()))
    base_of = {g: p for p, (g, t) in truth.items() if t == "base"}
    hit = defaultdict(list)
    for p, (g, t) in truth.items():
        if t in TRANSFORMS:
            hit[t].append(keeper[p] == keeper[base_of[g]])
    upright = [(p, g) for p, (g, t) in truth.items() if t != "rot90"]
    tp_up = pairs(Counter((keeper[p], scene[g]) for p, g in upright))
    tt_up = pairs(Counter(scene[g] for _, g in upright))
    together = lambda a, b: keeper[a] == keeper[b]  # noqa: E731
    # Other shots of one scene as one: series pairs and built parallax and moved-part pairs (what the
    # shots preset groups on purpose); what is left false is other instances, other objects, drawings.
    shots = [(truth[p][0], truth[q][0]) for k in SHOT_KINDS for p, q in hard.get(k, [])]
    shot_scene = joined(scene, [*series, *shots])
    tp_shots = pairs(Counter((keeper[p], shot_scene[g]) for p, (g, _) in truth.items()))
    return {"precision": round(tp / pp, 4) if pp else 1.0, "recall": round(tp / tt, 4) if tt else 1.0,
            "precision_other_shots_aside": round(tp_shots / pp, 5) if pp else 1.0,
            "false_pairs_other_shots_aside": pp - tp_shots,
            "recall_rotations_aside": round(tp_up / tt_up, 4) if tt_up else 1.0,
            "true_pairs": tp, "predicted_pairs": pp, "known_pairs": tt, "false_pairs": pp - tp,
            "groups": len(report.groups), "exact_groups": sum(g.kind == "exact" for g in report.groups),
            "recall_per_transform": {t: round(float(np.mean(h)), 4) for t, h in hit.items()},
            "series_grouped": sum(together(base_of[a], base_of[b]) for a, b in series), "series_pairs": len(series),
            "hard_grouped": {k: sum(together(a, b) for a, b in v) for k, v in hard.items()},
            "hard_pairs": {k: len(v) for k, v in hard.items()}}


class RecordedVerifier(dedup.Verifier):
    """A :class:`lookalike.dedup.Verifier` that answers from verifications recorded by :func:`verify_pairs`."""

    def __init__(self, paths: list[str], rule: dedup.Rule, recorded: dict) -> None:
        super().__init__(paths, rule)
        self.recorded = recorded

    def accept(self, keeper: int, others: np.ndarray) -> np.ndarray:
        ok = []
        for other in others.tolist():
            inliers, flipped, agreement, shifted, displaced = self.recorded.get(
                tuple(sorted((self.paths[keeper], self.paths[other]))), (0, False, 0.0, 1.0, 1.0))
            self.results[keeper, other] = found = geometry.Evidence(inliers, inliers, flipped=flipped, agreement=agreement,
                                                                    shifted=shifted, displaced=displaced)
            ok.append(self.rule.accepts(found))
        self.checked += len(ok)
        return np.array(ok, bool)


def verify_pairs(idx: Index, root: Path, extra: list[tuple[str, str]]) -> tuple[dict, dict]:
    """Every candidate pair of :data:`LOOSEST` among distinct contents and the ``extra`` pairs, verified
    once (ORB + RANSAC, mirror tried too, and the agreement of the fit):
    ({(path, path): (inliers, flipped, agreement, shifted, displaced)}, stage figures). Saved under ``root``."""
    saved = root / "pairs.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        return {tuple(k.split("\0")): tuple(v) for k, v in data["pairs"].items()}, data["stages"]
    ids, vectors = idx.vectors()
    catalog = dedup_find.read_catalog(idx, ids)
    first: dict[str, int] = {}
    for n, h in enumerate(catalog["hash"]):
        first.setdefault(h, n)
    rows = np.fromiter(first.values(), np.int64, len(first))
    paths = [catalog["path"][r] for r in rows]
    stages: dict = {}
    offsets, columns, *_ = dedup.candidate_pairs(idx, dedup_candidates.Rows(vectors, rows), ids[rows], list(first),
                                                paths, LOOSEST, stages)
    a = np.repeat(np.arange(len(rows)), np.diff(offsets))
    pairs = {tuple(sorted((paths[i], paths[j]))) for i, j in zip(a.tolist(), columns.tolist()) if i < j}
    stages["candidate_pairs"] = len(pairs)
    pairs = sorted(pairs | {tuple(sorted(p)) for p in extra})
    started = time.perf_counter()
    needed = sorted({p for pair in pairs for p in pair})
    with ThreadPoolExecutor(2, initializer=hamming.single_threaded) as pool:
        feats = dict(zip(needed, pool.map(geometry.features, needed)))
        stages["features_seconds"] = round(time.perf_counter() - started, 1)
        stages["images_with_features"] = len(needed)
        tick = time.perf_counter()
        found = list(pool.map(lambda p: geometry.compare(feats[p[0]], feats[p[1]]), pairs))
    stages["pairs_verified"] = len(pairs)
    stages["verify_seconds"] = round(time.perf_counter() - tick, 1)
    recorded = {p: (e.inliers, e.flipped, round(e.agreement, 4), round(e.shifted, 4), round(e.displaced, 4))
                for p, e in zip(pairs, found)}
    saved.write_text(json.dumps({"pairs": {"\0".join(k): v for k, v in recorded.items()}, "stages": stages}))
    return recorded, stages


def distributions(recorded: dict, truth: dict, scene: dict, source: dict, series: list, hard: dict) -> dict:
    """Inliers, and agreement, shifted and displaced share among pairs of >= 12 inliers, of the verified pairs by kind:
    true pairs by edit (a base and its variant), crops of one flowers51 capture, series, built hard pairs,
    and other distinct pairs (same flowers51 species or not)."""
    group_of = {p: g for p, (g, _) in truth.items()}
    kind_of = {p: t for p, (_, t) in truth.items()}
    base_of = {g: p for p, (g, t) in truth.items() if t == "base"}
    label = {tuple(sorted((base_of[a], base_of[b]))): "series" for a, b in series}
    label |= {tuple(sorted(pair)): f"hard: {kind}" for kind, v in hard.items() for pair in v}
    species = lambda p: source[group_of[p]].split("/")[0]  # noqa: E731
    by: dict = defaultdict(list)
    for (p, q), (inliers, _, agreement, shifted, displaced) in recorded.items():
        if (p, q) in label:
            kind = label[p, q]
        elif group_of[p] == group_of[q]:
            kind = kind_of[q] if kind_of[p] == "base" else kind_of[p] if kind_of[q] == "base" else "variant-variant"
        elif scene[group_of[p]] == scene[group_of[q]]:
            kind = "same capture (flowers51 crops)"
        else:
            kind = "distinct, same species" if species(p) == species(q) else "distinct, other"
        by[kind].append((inliers, agreement, shifted, displaced))
    out = {}
    for kind, values in sorted(by.items()):
        v = np.array(values, np.float64)
        fitted = v[v[:, 0] >= 12]
        out[kind] = {"inliers": _q(v[:, 0], (1, 5, 50, 99)), "agreement_at_12_inliers": _q(fitted[:, 1], (1, 5, 50, 99)),
                     "shifted_at_12_inliers": _q(fitted[:, 2], (50, 95, 99)),
                     "displaced_at_12_inliers": _q(fitted[:, 3], (50, 95, 99))}
    return out


def sweep(idx: Index, recorded: dict, judge) -> list[dict]:
    """Each rule of the sweep replayed through find_duplicates with the recorded verification (every
    candidate stage computed once: it does not depend on the second stage)."""
    stage, memo = dedup_find.candidate_pairs, {}

    def cached(index, vectors, ids, contents, paths, rule, stages, chunk=dedup_candidates.CHUNK):
        key = (rule.radius, rule.nearest, rule.close, rule.hash_radius)
        if key not in memo:
            memo[key] = (stage(index, vectors, ids, contents, paths, rule, stages, chunk), dict(stages))
        stages.update(memo[key][1])
        return memo[key][0]

    out = []
    dedup_find.candidate_pairs = cached
    try:
        for nearest in SWEEP_NEAREST:
            for inliers in SWEEP_INLIERS:
                for agreement, shifted, displaced in SWEEP_CHECK:
                    if nearest != 32 and (agreement, shifted, displaced) not in SWEEP_MAIN:
                        continue
                    rule = dedup.Rule(LOOSEST.radius, inliers, nearest=nearest, close=SWEEP_CLOSE,
                                      min_agreement=agreement, max_shifted=shifted, max_displaced=displaced)
                    rep = dedup.find_duplicates(idx, rule, verifier=lambda paths, r: RecordedVerifier(paths, r, recorded))
                    out.append({"rule": rule.to_dict(), **judge(rep), "pairs_verified": rep.stages["pairs_verified"]})
    finally:
        dedup_find.candidate_pairs = stage
    return out


def suggest(cal: dict, rows: list[dict]) -> dict:
    """Presets from the measured figures (deleting a distinct photo costs more than keeping a copy).

    * exact (one stage): half the distinct-nearest p0.1: twice as close as all but 0.1 % of photos'
      nearest distinct photo, so only visually identical re-saves fall under it.
    * near (the default): of the swept rules that group no series pair and keep pair precision
      >= 0.995, those whose recall is within 0.01 of the best; of them the one grouping fewest built
      hard pairs, then verifying fewest pairs (verification is the cost), then the stricter check.
    * similar: near's candidates and check with the lowest inlier minimum that keeps pair
      precision >= 0.99 (looser, for review).
    """
    clean = [r for r in rows if r["precision"] >= 0.995 and not r["series_grouped"]]
    safe = clean or rows
    best = max(r["recall"] for r in safe)
    key = lambda r: (sum(r["hard_grouped"].values()), r["pairs_verified"], -r["rule"]["min_agreement"],  # noqa: E731
                     r["rule"]["max_shifted"], r["rule"]["max_displaced"], -r["rule"]["min_inliers"])
    near = min((r for r in safe if r["recall"] >= best - 0.01), key=key)
    check = ("nearest", "min_agreement", "max_shifted", "max_displaced")
    same = [r for r in rows if all(r["rule"][k] == near["rule"][k] for k in check)]
    similar = min([r for r in same if r["precision"] >= 0.99] or [near], key=lambda r: r["rule"]["min_inliers"])
    return {"exact": round(cal["distinct_nearest"]["p0.1"] / 2, 3), "near": near["rule"], "similar": similar["rule"],
            "no_rule_met_every_bar": not clean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant-bases", type=int, default=200, help="bases that get every transform")
    ap.add_argument("--hard-pairs", type=int, default=30, help="built hard pairs of each kind")
    ap.add_argument("--max-bases", type=int, help="use at most this many distinct bases (quick runs)")
    ap.add_argument("--no-sweep", action="store_true", help="only the presets (and the distributions)")
    ap.add_argument("--presets-only", action="store_true",
                    help="only the presets run for real, and near without its displacement limit (no pair verified twice)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep generated files here (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="lookalike-dedup-"))).absolute()
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "loadavg_start": [round(x, 2) for x in os.getloadavg()]}}
    try:
        truth, extras = make_collection(workdir / "calib", None, args.variant_bases, args.seed, args.max_bases,
                                        args.hard_pairs)
        result["collection"] = extras["description"]
        print(f"collection: {json.dumps(result['collection'])}", file=sys.stderr)
        scene, series = scenes(truth, extras["source"])
        hard = extras["hard"]
        result["collection"]["same_capture_merges"] = sum(scene[g] != g for g in scene)
        result["collection"]["series_pairs"] = len(series)
        with Index.open(workdir / "ix", create=True) as idx:
            report = idx.index(workdir / "calib")
            result["embedding"] = {"images": report.indexed, "seconds": round(report.seconds, 1)}
            ids, vecs = idx.vectors()
            unit = {p: v / np.linalg.norm(v) for p, v in zip(idx.collection.store.paths(ids), np.asarray(vecs, np.float64))}
            result["calibration"] = cal = calibrate(truth, scene, unit)
            base_of = {g: p for p, (g, t) in truth.items() if t == "base"}
            extra = [(base_of[a], base_of[b]) for a, b in series] + [tuple(p) for v in hard.values() for p in v]
            judge = lambda rep: evaluate(rep, truth, scene, series, hard)  # noqa: E731
            if not args.presets_only:
                recorded, result["verified"] = verify_pairs(idx, workdir / "calib", extra)
                result["distributions"] = distributions(recorded, truth, scene, extras["source"], series, hard)
            if not args.no_sweep and not args.presets_only:
                result["sweep"] = sweep(idx, recorded, judge)
                result["suggested"] = suggest(cal, result["sweep"])
            baseline = dedup.find_duplicates(idx, 0.08)
            result["one_stage_0.08"] = {"seconds": round(baseline.seconds, 3), **judge(baseline)}
            result["presets"] = {}
            rules = dict(dedup.presets(idx.model))
            if args.presets_only:
                rules["near, no displacement limit"] = replace(rules["near"], max_displaced=1.0)
            for name, rule in rules.items():
                load = os.getloadavg()[0]
                rep = dedup.find_duplicates(idx, rule, name if name in dedup.PRESET_NAMES else None)
                result["presets"][name] = {"rule": rule.to_dict(), "seconds": round(rep.seconds, 3), "stages": rep.stages,
                                           "loadavg": round(load, 2), **judge(rep)}
        _print(result)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    emit(result, args.out)


def _print(result: dict) -> None:
    err = sys.stderr
    for kind, d in result.get("distributions", {}).items():
        i, a = d["inliers"], d["agreement_at_12_inliers"]
        sh, dp = d["shifted_at_12_inliers"], d["displaced_at_12_inliers"]
        agree = (f"agreement p1 {a['p1']:.3f} p5 {a['p5']:.3f} p50 {a['p50']:.3f} max {a['max']:.3f}, shifted p99 "
                 f"{sh['p99']:.3f} max {sh['max']:.3f}, displaced p50 {dp['p50']:.3f} p99 {dp['p99']:.3f} max "
                 f"{dp['max']:.3f} (n {a['n']})" if a["n"] else "")
        print(f"{kind:<28} inliers p50 {i['p50']:>5.0f} p99 {i['p99']:>5.0f} max {i['max']:>4.0f} (n {i['n']:>6})  {agree}",
              file=err)
    for r in result.get("sweep", []):
        rule = r["rule"]
        print(f"  nearest {rule['nearest'] or '-':<3} inliers >= {rule['min_inliers']:<3} agreement >= "
              f"{rule['min_agreement']:<5} shifted <= {rule['max_shifted']:<6} displaced <= {rule['max_displaced']:<5} P {r['precision']:.4f} R {r['recall']:.4f} (upright {r['recall_rotations_aside']:.4f})"
              f" rot90 {r['recall_per_transform'].get('rot90', 0):.2f} flip {r['recall_per_transform'].get('flip', 0):.2f}"
              f" series {r['series_grouped']} hard {sum(r['hard_grouped'].values())} verified {r['pairs_verified']}",
              file=err)
    if "suggested" in result:
        print(f"suggested: {result['suggested']}", file=err)
    for name, r in [("one-stage 0.08", result["one_stage_0.08"]), *result["presets"].items()]:
        print(f"{name:<15} P {r['precision']:.4f} R {r['recall']:.4f} (upright {r['recall_rotations_aside']:.4f}) "
              f"series {r['series_grouped']}/{r['series_pairs']} hard {r['hard_grouped']} {r.get('seconds', 0):.2f} s\n"
              f"    other shots aside: P {r['precision_other_shots_aside']:.5f} ({r['false_pairs_other_shots_aside']} false pairs)\n"
              f"    per transform: {r['recall_per_transform']}", file=err)


if __name__ == "__main__":
    main()
