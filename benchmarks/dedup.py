"""Calibrate and measure ``lookalike dedup`` on generated duplicates of real photos.

Collection: distinct *bases* are one random crop (70-100 % of each side, random position) of every
flower photo of flowers51 (``bench.FLOWERS51``) (2,040 photos of 51 species: many look alike, a fair test
of precision) plus crops from disjoint grid cells of the larger scikit-image sample photos (one
crop per cell, so no two bases share pixels). Without flowers51, a finer grid of scikit-image
cells makes the bases (fewer, smaller; said in the output). For some bases, every transform of
:data:`TRANSFORMS` is written as a variant (byte copy, PNG, JPEG re-encodes, resizes, crops, flip,
rotation, brightness); a base and its variants form one known group. flowers51 itself holds some
re-shot or re-cropped photos: base pairs that an ORB + RANSAC check (no CNN involved) finds to be
the same scene are merged into one known group, with positive and negative controls reported.

Calibration prints, per transform, the p50/p95/p99/max cosine distance of a variant to its base,
and for distinct photos the p0.1/p1/p5 of all base-base distances and of each base's distance to
its nearest other base. Suggested thresholds follow from those figures by the rules in
:func:`suggest`; :data:`lookalike.dedup.PRESETS` holds the values chosen from them.

Two stages (:func:`two_stage`): every candidate pair of the loosest first stage (cosine 0.3 or a
rotated/flipped hash match) is verified once by ORB + RANSAC; the inlier distributions of true pairs
(per transform) and of distinct pairs (same flowers51 class apart) are printed, and a sweep of
radius x inlier minimum (and of candidates per file) replays the grouping through
:func:`lookalike.dedup.find_duplicates` with the recorded inliers. Then, for each preset: pairwise
precision and recall over known duplicate pairs, recall per transform (and with rotations aside),
the wall time and the stage figures (candidate pairs, pairs verified, ms per pair).
``--scale N`` then times ``lookalike dedup DIR`` end to end (indexing included) on N images (with
``--scale-hnsw``, then checks the candidate stage through HNSW on that index's real embeddings),
and ``--grouping N`` the candidate stage against the one-stage grouping search on N synthetic embeddings.

    python benchmarks/dedup.py --out dedup.json                 # calibration + presets (4,888 images)
    python benchmarks/dedup.py --variant-bases 0 --scale 10000  # only the end-to-end timing
    python benchmarks/dedup.py --variant-bases 0 --grouping 100000  # candidate stage vs one-stage search

With ``--workdir``, the collection, its index and the verified groups are kept and reused.
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
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from lookalike import dedup
from lookalike.dedup import phash
from lookalike.dedup import geometry
from lookalike.dedup import candidates as dedup_candidates, find as dedup_find
from lookalike.api import Index
from bench import FLOWERS51, emit

FLOWERS = FLOWERS51
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                  "retina", "camera", "coins", "moon", "clock", "cell")


def _jpeg(q):
    return lambda img, rng: (img, "jpg", {"quality": q})


def _resize(f):
    return lambda img, rng: (img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS), "jpg",
                             {"quality": 90})


def _crop(f):
    def crop(img, rng):
        w, h = round(img.width * f), round(img.height * f)
        x, y = rng.integers(0, img.width - w + 1), rng.integers(0, img.height - h + 1)
        return img.crop((x, y, x + w, y + h)), "jpg", {"quality": 90}
    return crop


def _enhance(f):
    return lambda img, rng: (ImageEnhance.Brightness(img).enhance(f), "jpg", {"quality": 90})


def _screenshot(img, rng):
    """Shown at 90 % in a window (title bar, margins) and captured as PNG."""
    inner = img.resize((round(img.width * 0.9), round(img.height * 0.9)), Image.BILINEAR)
    shot = Image.new("RGB", (inner.width + 24, inner.height + 52), (236, 236, 236))
    ImageDraw.Draw(shot).rectangle((0, 0, shot.width, 28), fill=(60, 63, 70))
    shot.paste(inner, (12, 40))
    return shot, "png", {}


def _letterbox(img, rng):
    """Padded with black bars to a 16:9 (landscape) or 9:16 (portrait) frame."""
    w, h = img.size
    long_side, short_side = (16, 9) if w >= h else (9, 16)
    fw = max(w, round(h * long_side / short_side))
    fh = max(h, round(fw * short_side / long_side))
    frame = Image.new("RGB", (fw, fh), (0, 0, 0))
    frame.paste(img, ((fw - w) // 2, (fh - h) // 2))
    return frame, "jpg", {"quality": 90}


def _watermark(img, rng):
    """A semi-transparent text and logo box over the lower-right corner."""
    out = img.convert("RGBA")
    layer = Image.new("RGBA", out.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    bw, bh = max(40, out.width // 4), max(16, out.height // 10)
    x, y = out.width - bw - 8, out.height - bh - 8
    draw.rectangle((x, y, x + bw, y + bh), fill=(255, 255, 255, 110))
    draw.text((x + 4, y + 2), "(c) lookalike", fill=(0, 0, 0, 200))
    return Image.alpha_composite(out, layer).convert("RGB"), "jpg", {"quality": 90}


def _colour(img, rng):
    """Saturation x1.5 and a warm tint."""
    r, g, b = ImageEnhance.Color(img).enhance(1.5).split()
    return Image.merge("RGB", (r.point(lambda v: min(255, int(v * 1.08))), g,
                               b.point(lambda v: int(v * 0.9)))), "jpg", {"quality": 90}


#: name -> (PIL image of the base, rng) -> (image, extension, save options); "copy" copies the bytes.
TRANSFORMS = {
    "copy": None,
    "png": lambda img, rng: (img, "png", {}),
    "jpeg90": _jpeg(90), "jpeg70": _jpeg(70), "jpeg50": _jpeg(50), "jpeg30": _jpeg(30),
    "resize75": _resize(0.75), "resize50": _resize(0.5),
    "crop90": _crop(0.9), "crop80": _crop(0.8),
    "flip": lambda img, rng: (ImageOps.mirror(img), "jpg", {"quality": 90}),
    "rot90": lambda img, rng: (img.transpose(Image.Transpose.ROTATE_90), "jpg", {"quality": 90}),
    "bright125": _enhance(1.25), "dark80": _enhance(0.8),
    "screenshot": _screenshot, "letterbox": _letterbox, "watermark": _watermark, "colour": _colour,
}


# -- collection ----------------------------------------------------------------------------------
def _skimage(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype != np.uint8:
        arr = (arr * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def _random_crop(img: Image.Image, rng, lo: float = 0.7) -> Image.Image:
    w, h = (round(s * rng.uniform(lo, 1.0)) for s in img.size)
    x, y = rng.integers(0, img.width - w + 1), rng.integers(0, img.height - h + 1)
    return img.crop((x, y, x + w, y + h))


def base_sources(rng) -> tuple[list, str]:
    """Callables making one distinct base photo each, and a note on where they come from."""
    sources = []
    flowers = sorted(FLOWERS.glob("*/*.jpg")) if FLOWERS.is_dir() else []
    grid = 2 if flowers else 4
    for path in flowers:
        sources.append(lambda path=path: _random_crop(Image.open(path).convert("RGB"), rng))
    for name in SKIMAGE_PHOTOS:
        img = _skimage(name)
        cw, ch = img.width // grid, img.height // grid
        for gx in range(grid):
            for gy in range(grid):
                cell = img.crop((gx * cw, gy * ch, (gx + 1) * cw, (gy + 1) * ch))
                sources.append(lambda cell=cell: _random_crop(cell, rng))
    note = (f"{len(flowers)} flowers51 photos + {len(sources) - len(flowers)} scikit-image {grid}x{grid} grid cells"
            if flowers else f"flowers51 absent ({FLOWERS}): {len(sources)} scikit-image {grid}x{grid} grid cells only")
    return sources, note


def make_collection(root: Path, n_images: int | None, variant_bases: int, seed: int,
                    max_bases: int | None = None) -> tuple[dict, dict]:
    """Write bases and variants under ``root``; return ({path: (group, transform)}, description).

    With ``variant_bases`` V, the first V bases get every transform. With ``n_images``, transforms
    (chosen at random) are then added to random bases until there are ``n_images`` files.
    """
    saved = root / "truth.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        return {p: tuple(v) for p, v in data["truth"].items()}, data["description"]
    rng = np.random.default_rng(seed)
    sources, note = base_sources(rng)
    order = rng.permutation(len(sources))[:max_bases]
    truth: dict[str, tuple[int, str]] = {}
    bases: list[tuple[Path, Image.Image]] = []
    (root / "bases").mkdir(parents=True)
    (root / "variants").mkdir()
    for group, i in enumerate(order):
        img = sources[i]()
        path = root / "bases" / f"b{group:05d}.jpg"
        img.save(path, quality=92)
        truth[str(path)] = (group, "base")
        bases.append((path, img))

    def variant(group: int, name: str, tag: str = "") -> None:
        path, img = bases[group]
        if TRANSFORMS[name] is None:
            out = root / "variants" / f"b{group:05d}_{name}{tag}.jpg"
            shutil.copyfile(path, out)
        else:
            vimg, ext, options = TRANSFORMS[name](Image.open(path).convert("RGB"), rng)
            out = root / "variants" / f"b{group:05d}_{name}{tag}.{ext}"
            vimg.save(out, **options)
        truth[str(out)] = (group, name)

    for group in range(min(variant_bases, len(bases))):
        for name in TRANSFORMS:
            variant(group, name)
    names = list(TRANSFORMS)
    extra = 0
    while n_images is not None and len(truth) < n_images:
        variant(int(rng.integers(len(bases))), names[int(rng.integers(len(names)))], f"_{extra}")
        extra += 1
    counts = Counter(t for _, t in truth.values())
    description = {"images": len(truth), "bases": len(bases), "base_sources": note,
                   "variants_per_transform": {k: v for k, v in counts.items() if k != "base"}}
    saved.write_text(json.dumps({"truth": truth, "description": description}))
    return truth, description


# -- ground truth: duplicates already present among the sources ---------------------------------
VERIFY_BELOW = 0.2  # only base pairs closer than this (model distance) can be predicted; verify those
MIN_INLIERS = 15


def _orb(path: str):
    from skimage.feature import ORB

    orb = ORB(n_keypoints=400, fast_threshold=0.05)
    try:
        orb.detect_and_extract(np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0)
    except RuntimeError:  # no corners (flat picture)
        return None
    return (orb.keypoints[:, ::-1], orb.descriptors) if len(orb.descriptors) >= MIN_INLIERS else None


def same_scene(a, b) -> int:
    """Inliers of a RANSAC similarity transform between ORB matches of two pictures (0 when none).

    A model-free check: two photos of the same scene share many geometrically consistent corners,
    distinct photos share almost none.
    """
    from skimage.feature import match_descriptors
    from skimage.measure import ransac
    from skimage.transform import SimilarityTransform

    if a is None or b is None:
        return 0
    m = match_descriptors(a[1], b[1], cross_check=True, max_ratio=0.8)
    if len(m) < MIN_INLIERS:
        return 0
    _, inliers = ransac((a[0][m[:, 0]], b[0][m[:, 1]]), SimilarityTransform, min_samples=3,
                        residual_threshold=3, max_trials=300, rng=0)
    return 0 if inliers is None else int(inliers.sum())


def merge_source_duplicates(truth: dict, unit: dict[str, np.ndarray], root: Path) -> tuple[dict, dict]:
    """Scene of every known group: groups whose bases are the same scene are merged (flowers51 holds some re-shot and re-cropped
    photos), checked by :func:`same_scene` on every base pair closer than :data:`VERIFY_BELOW`.

    Returns {group: scene} and a description with controls: the check on variants of a
    base (should pass) and on random pairs of bases (should fail). Saved under ``root`` for reruns.
    """
    saved = root / "scenes.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        return {int(g): s for g, s in data["scene"].items()}, data["description"]
    started = time.perf_counter()
    bases = sorted(p for p, (_, t) in truth.items() if t == "base")
    b = np.stack([unit[p] for p in bases])
    close = np.argwhere(np.triu(1.0 - b @ b.T <= VERIFY_BELOW, 1))
    cache: dict[str, object] = {}

    def check(p: str, q: str) -> bool:
        for x in (p, q):
            if x not in cache:
                cache[x] = _orb(x)
        return same_scene(cache[p], cache[q]) >= MIN_INLIERS

    parent = {truth[p][0]: truth[p][0] for p in bases}

    def find(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    merged = []
    for i, j in close:
        if check(bases[i], bases[j]):
            merged.append((os.path.basename(bases[i]), os.path.basename(bases[j])))
            parent[find(truth[bases[i]][0])] = find(truth[bases[j]][0])
    rng = np.random.default_rng(1)
    by_group = {g: p for p, (g, t) in truth.items() if t == "base"}
    variants = [(by_group[g], p, t) for p, (g, t) in truth.items() if t in ("crop80", "resize50", "jpeg30")]
    picks = [variants[k] for k in rng.choice(len(variants), min(60, len(variants)), replace=False)]
    randoms = [tuple(rng.choice(bases, 2, replace=False)) for _ in range(60)]
    controls = {"variants_of_a_base_verified": round(float(np.mean([check(p, q) for p, q, _ in picks])), 3),
                "random_base_pairs_verified": round(float(np.mean([check(p, q) for p, q in randoms])), 3)}
    scene = {int(g): int(find(g)) for g in parent}
    description = {"base_pairs_checked": int(len(close)), "same_scene_pairs": len(merged), "examples": merged[:10],
                   "controls": controls, "seconds": round(time.perf_counter() - started, 1)}
    saved.write_text(json.dumps({"scene": scene, "description": description}))
    return scene, description


# -- calibration ---------------------------------------------------------------------------------
def _q(x, ps) -> dict:
    x = np.asarray(x, np.float64)
    return {f"p{p:g}": round(float(np.percentile(x, p)), 4) for p in ps} | {
        "min": round(float(x.min()), 4), "max": round(float(x.max()), 4), "n": int(len(x))}


def calibrate(truth: dict, scene: dict, unit: dict[str, np.ndarray]) -> dict:
    """Distance distributions: each transform's variant-to-base, and between bases of distinct scenes."""
    base_of = {g: p for p, (g, t) in truth.items() if t == "base" and p in unit}
    per = defaultdict(list)
    for p, (g, t) in truth.items():
        if t != "base" and p in unit and g in base_of:
            per[t].append(1.0 - float(unit[p] @ unit[base_of[g]]))  # to its own base
    all_bases = [p for p, (_, t) in truth.items() if t == "base" and p in unit]
    b = np.stack([unit[p] for p in all_bases])
    group = np.array([scene[truth[p][0]] for p in all_bases])
    d = 1.0 - b @ b.T
    d[group[:, None] == group[None, :]] = np.inf  # the same scene (itself, or a verified source duplicate)
    nearest = d.min(axis=1)
    iu = np.triu_indices(len(b), 1)
    iu = tuple(x[np.isfinite(d[iu])] for x in iu)
    return {"variant_to_base": {t: _q(per[t], (50, 95, 99)) for t in TRANSFORMS if per[t]},
            "distinct_all_pairs": _q(d[iu], (0.1, 1, 5, 50)),
            "distinct_nearest": _q(nearest, (0.1, 1, 5, 50))}


def suggest(cal: dict, sweep: list[dict]) -> dict:
    """Presets from the measured figures (deleting a distinct photo costs more than keeping a copy).

    * exact (one stage): half the distinct-nearest p0.1: twice as close as all but 0.1 % of photos'
      nearest distinct photo, so only visually identical re-saves fall under it.
    * near (the default, two stages): of the swept rules with pair precision >= 0.995, those whose
      recall is within 0.015 of the best; of them the one verifying fewest pairs (verification is
      the cost), ties: the higher inlier minimum.
    * similar (two stages): near's candidates with the lowest inlier minimum that keeps pair
      precision >= 0.99: looser verification, for review.
    """
    safe = [s for s in sweep if s["precision"] >= 0.995] or sweep
    best = max(s["recall"] for s in safe)
    near = min((s for s in safe if s["recall"] >= best - 0.015), key=lambda s: (s["pairs_verified"], -s["min_inliers"]))
    same = [s for s in sweep if (s["radius"], s["nearest"]) == (near["radius"], near["nearest"])]
    similar = min([s for s in same if s["precision"] >= 0.99] or [near], key=lambda s: s["min_inliers"])
    pick = lambda s: {k: s[k] for k in ("radius", "min_inliers", "nearest", "close")}  # noqa: E731
    return {"exact": round(cal["distinct_nearest"]["p0.1"] / 2, 3),
            "near": pick(near), "similar": pick(similar)}


# -- evaluation ----------------------------------------------------------------------------------
def evaluate(report: dedup.DedupReport, truth: dict, scene: dict) -> dict:
    """Pairwise precision/recall of the groups against the known scenes, and recall per transform
    (the share of variants grouped with their own base)."""
    keeper = {p: p for p in truth}
    for g in sorted(report.groups, key=lambda g: g.kind != "exact"):  # exact keepers may be near duplicates
        for d in g.duplicates:
            keeper[d.path] = g.keep
    for p in keeper:  # follow exact -> near chains to the final kept file
        while keeper[keeper[p]] != keeper[p]:
            keeper[p] = keeper[keeper[p]]
    predicted = Counter(keeper[p] for p in truth)
    both = Counter((keeper[p], scene[g]) for p, (g, _) in truth.items())
    known = Counter(scene[g] for g, _ in truth.values())
    pairs = lambda c: sum(n * (n - 1) // 2 for n in c.values())  # noqa: E731
    tp, pp, tt = pairs(both), pairs(predicted), pairs(known)
    base_of = {g: p for p, (g, t) in truth.items() if t == "base"}
    hit = defaultdict(list)
    for p, (g, t) in truth.items():
        if t != "base":
            hit[t].append(keeper[p] == keeper[base_of[g]])
    upright = [(p, g) for p, (g, t) in truth.items() if t != "rot90"]
    tp_up = pairs(Counter((keeper[p], scene[g]) for p, g in upright))
    tt_up = pairs(Counter(scene[g] for _, g in upright))
    return {"precision": round(tp / pp, 4) if pp else 1.0, "recall": round(tp / tt, 4) if tt else 1.0,
            "recall_rotations_aside": round(tp_up / tt_up, 4) if tt_up else 1.0,
            "true_pairs": tp, "predicted_pairs": pp, "known_pairs": tt,
            "groups": len(report.groups), "exact_groups": sum(g.kind == "exact" for g in report.groups),
            "recall_per_transform": {t: round(float(np.mean(h)), 4) for t, h in hit.items()}}


# -- two stages: candidates, verification, rules -------------------------------------------------
#: The loosest first stage the sweep considers; every candidate pair of it is verified once.
LOOSEST = dedup.Rule(0.3, 1)
SWEEP_RADII = (0.2, 0.25, 0.3)
SWEEP_INLIERS = (10, 12, 15, 20, 30)
#: Candidates per file kept at the loosest radius (each file's nearest, and every pair within SWEEP_CLOSE).
SWEEP_NEAREST = (16, 32, 48)
SWEEP_CLOSE = 0.025


def base_classes(truth: dict, seed: int) -> dict[int, str]:
    """flowers51 class folder of each group's base (make_collection's permutation, redrawn), or a
    scikit-image cell's photo name."""
    sources = sorted(FLOWERS.glob("*/*.jpg")) if FLOWERS.is_dir() else []
    grid = 2 if sources else 4
    names = [p.parent.name for p in sources] + [n for n in SKIMAGE_PHOTOS for _ in range(grid * grid)]
    order = np.random.default_rng(seed).permutation(len(names))
    return {g: names[order[g]] for g, _ in truth.values()}


class RecordedVerifier(dedup.Verifier):
    """A :class:`lookalike.dedup.Verifier` that answers from inliers recorded by :func:`verify_candidates`."""

    def __init__(self, paths: list[str], min_inliers: int, recorded: dict) -> None:
        super().__init__(paths, min_inliers)
        self.recorded = recorded

    def accept(self, keeper: int, others: np.ndarray) -> np.ndarray:
        ok = []
        for other in others.tolist():
            found = self.recorded.get(tuple(sorted((self.paths[keeper], self.paths[other]))), (0, False))
            self.results[keeper, other] = geometry.Evidence(found[0], found[0], flipped=found[1])
            ok.append(found[0] >= self.min_inliers)
        self.checked += len(ok)
        return np.array(ok, bool)


def verify_candidates(idx: Index, root: Path) -> tuple[dict, dict]:
    """Every candidate pair of :data:`LOOSEST` among distinct contents, verified once (ORB + RANSAC,
    mirror tried too): ({(path, path): (inliers, flipped)}, stage figures). Saved under ``root``."""
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
    offsets, columns, _ = dedup.candidate_pairs(idx, dedup_candidates.Rows(vectors, rows), ids[rows], list(first),
                                                paths, LOOSEST, stages)
    a = np.repeat(np.arange(len(rows)), np.diff(offsets))
    pairs = [(int(i), int(j)) for i, j in zip(a, columns) if i < j]
    from concurrent.futures import ThreadPoolExecutor

    started = time.perf_counter()
    needed = sorted({i for p in pairs for i in p})
    with ThreadPoolExecutor(2) as pool:
        feats = dict(zip(needed, pool.map(lambda i: geometry.features(paths[i]), needed)))
        stages["features_seconds"] = round(time.perf_counter() - started, 1)
        stages["images_with_features"] = len(needed)
        tick = time.perf_counter()
        found = list(pool.map(lambda p: geometry.compare(feats[p[0]], feats[p[1]]), pairs))
    stages["pairs_verified"] = len(pairs)
    stages["verify_seconds"] = round(time.perf_counter() - tick, 1)
    recorded = {tuple(sorted((paths[i], paths[j]))): (e.inliers, e.flipped) for (i, j), e in zip(pairs, found)}
    saved.write_text(json.dumps({"pairs": {"\0".join(k): v for k, v in recorded.items()}, "stages": stages}))
    return recorded, stages


def two_stage(idx: Index, truth: dict, scene: dict, classes: dict, root: Path) -> dict:
    """Candidate recall by source, inlier distributions (true pairs by transform, same-class and other
    distinct pairs) and a sweep of radius x inlier minimum (and, at the loosest radius, of candidates
    per file), each through find_duplicates."""
    recorded, stages = verify_candidates(idx, root)
    group_of = {p: g for p, (g, _) in truth.items()}
    kind_of = {p: t for p, (_, t) in truth.items()}
    by_kind: dict = defaultdict(list)
    for (p, q), (inliers, _) in recorded.items():
        if scene[group_of[p]] == scene[group_of[q]]:
            t = kind_of[q] if kind_of[p] == "base" else kind_of[p] if kind_of[q] == "base" else "variant-variant"
            by_kind[t].append(inliers)
        else:
            same = classes[group_of[p]] == classes[group_of[q]]
            by_kind["distinct same class" if same else "distinct other class"].append(inliers)
    inliers = {k: _q(v, (1, 5, 50, 99, 99.9)) for k, v in sorted(by_kind.items())}
    sweep = []
    for rule in [dedup.Rule(r, k) for r in SWEEP_RADII for k in SWEEP_INLIERS] + [
            dedup.Rule(LOOSEST.radius, k, nearest=n, close=SWEEP_CLOSE) for n in SWEEP_NEAREST for k in (12, 20)]:
        rep = dedup.find_duplicates(idx, rule, verifier=lambda paths, m: RecordedVerifier(paths, m, recorded))
        e = evaluate(rep, truth, scene)
        sweep.append({"radius": rule.radius, "min_inliers": rule.min_inliers, "nearest": rule.nearest,
                      "close": rule.close, "precision": e["precision"], "recall": e["recall"],
                      "recall_rotations_aside": e["recall_rotations_aside"],
                      "recall_per_transform": e["recall_per_transform"],
                      "candidate_pairs": rep.stages["candidate_pairs"], "pairs_verified": rep.stages["pairs_verified"]})
    return {"first_stage_loosest": {"rule": LOOSEST.to_dict(), **stages}, "inliers": inliers, "sweep": sweep}


def run_scale(n: int, seed: int, workdir: Path) -> dict:
    """Time ``lookalike dedup DIR`` end to end (indexing + grouping, into a new index) on ``n``
    generated images: wall and CPU seconds, the stage figures (pairs verified, ms per pair...)."""
    root = workdir / f"scale{n}"
    truth, description = make_collection(root, n, 0, seed + 1)
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
    scene = {g: g for g, _ in truth.values()}  # source duplicates not verified here: precision is a lower bound
    quality = evaluate(dedup.DedupReport(dedup.Rule(out["threshold"]), out["preset"], out["n_images"], groups=groups),
                       truth, scene)
    return {"collection": description, "wall_seconds": round(wall, 1),
            "cpu_seconds": round(used.ru_utime + used.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
            "index_seconds": out["index"]["seconds"], "images_per_second": out["index"]["images_per_second"],
            "dedup_seconds": out["seconds"], "stages": out["stages"], "groups": len(out["groups"]),
            "precision_unverified_labels": quality["precision"], "recall": quality["recall"],
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
    ap.add_argument("--variant-bases", type=int, default=200, help="bases that get every transform (0: skip calibration)")
    ap.add_argument("--scale", type=int, default=0, help="also time `lookalike dedup DIR` on this many images")
    ap.add_argument("--scale-hnsw", action="store_true", help="with --scale: also the candidate stage through HNSW on "
                    "that index's real embeddings against the exact search, and HNSW's SQ8 distance error")
    ap.add_argument("--grouping", type=int, default=0, help="also time the candidate stage against the one-stage "
                    "grouping search (HNSW) on this many synthetic 1280-d embeddings and dihedral hashes")
    ap.add_argument("--cluster", type=int, default=0, help="with --grouping: make this many of the embeddings "
                    "near-identical copies of one")
    ap.add_argument("--grouping-exact", action="store_true", help="with --grouping: also the exact range search "
                    "and the all-vs-all hash comparison, and what the fast paths find of them")
    ap.add_argument("--max-bases", type=int, help="use at most this many distinct bases (quick runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep generated files here (default: a temp dir, removed)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="lookalike-dedup-"))).absolute()
    default_rule = dedup.presets({"name": "efficientnet-lite0", "layer": "pool"})[dedup.DEFAULT_PRESET]
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "loadavg_start": [round(x, 2) for x in os.getloadavg()]}}
    try:
        if args.variant_bases:
            truth, result["collection"] = make_collection(workdir / "calib", None, args.variant_bases, args.seed,
                                                                args.max_bases)
            print(f"collection: {json.dumps(result['collection'])}", file=sys.stderr)
            with Index.open(workdir / "ix", create=True) as idx:
                report = idx.index(workdir / "calib")
                result["embedding"] = {"images": report.indexed, "seconds": round(report.seconds, 1),
                                       "images_per_second": round(report.images_per_second, 1)}
                ids, vecs = idx.vectors()
                paths = idx.collection.store.paths(ids)
                unit = {p: v / np.linalg.norm(v) for p, v in zip(paths, np.asarray(vecs, np.float64))}
                scene, result["source_duplicates"] = merge_source_duplicates(truth, unit, workdir / "calib")
                print(f"source duplicates: {json.dumps(result['source_duplicates'])}", file=sys.stderr)
                cal = calibrate(truth, scene, unit)
                result["calibration"] = cal
                classes = base_classes(truth, args.seed)
                result["two_stage"] = two_stage(idx, truth, scene, classes, workdir / "calib")
                result["suggested"] = suggest(cal, result["two_stage"]["sweep"])
                _print_calibration(cal, result["two_stage"], result["suggested"])
                baseline = dedup.find_duplicates(idx, 0.08)
                result["one_stage_0.08"] = {"seconds": round(baseline.seconds, 3), **evaluate(baseline, truth, scene)}
                result["presets"] = {}
                for name, rule in dedup.presets(idx.model).items():
                    load = os.getloadavg()[0]
                    rep = dedup.find_duplicates(idx, rule, name)
                    result["presets"][name] = {"rule": rule.to_dict(), "seconds": round(rep.seconds, 3),
                                               "stages": rep.stages, "loadavg": round(load, 2),
                                               **evaluate(rep, truth, scene)}
            _print_presets(result)
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
    emit(result, args.out, indent=1)


def _print_calibration(cal: dict, stages: dict, suggested: dict) -> None:
    err = sys.stderr
    print(f"{'variant -> base':<16}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}", file=err)
    for t, q in cal["variant_to_base"].items():
        print(f"{t:<16}{q['p50']:>8.4f}{q['p95']:>8.4f}{q['p99']:>8.4f}{q['max']:>8.4f}", file=err)
    for key in ("distinct_all_pairs", "distinct_nearest"):
        q = cal[key]
        print(f"{key:<20} min {q['min']:.4f}  p0.1 {q['p0.1']:.4f}  p1 {q['p1']:.4f}  p5 {q['p5']:.4f}  "
              f"p50 {q['p50']:.4f}", file=err)
    print(f"first stage (loosest): {json.dumps(stages['first_stage_loosest'])}", file=err)
    print(f"{'inliers of':<24}{'p1':>6}{'p5':>6}{'p50':>6}{'p99':>6}{'p99.9':>7}{'max':>6}{'n':>7}", file=err)
    for k, q in stages["inliers"].items():
        print(f"{k:<24}{q['p1']:>6.0f}{q['p5']:>6.0f}{q['p50']:>6.0f}{q['p99']:>6.0f}{q['p99.9']:>7.0f}"
              f"{q['max']:>6.0f}{q['n']:>7}", file=err)
    for r in stages["sweep"]:
        print(f"  radius {r['radius']:<5} nearest {r['nearest'] or '-':<3} inliers >= {r['min_inliers']:<3} "
              f"precision {r['precision']:.4f} "
              f"recall {r['recall']:.4f}  rot90 {r['recall_per_transform'].get('rot90', 0):.2f} "
              f"flip {r['recall_per_transform'].get('flip', 0):.2f}  verified {r['pairs_verified']}", file=err)
    print(f"suggested: {suggested}", file=err)


def _print_presets(result: dict) -> None:
    err = sys.stderr
    for name, r in [("one-stage 0.08", result["one_stage_0.08"]), *result["presets"].items()]:
        print(f"{name:<15} precision {r['precision']:.4f} recall {r['recall']:.4f} (rotations aside "
              f"{r['recall_rotations_aside']:.4f}) {r.get('seconds', 0):.2f} s {r.get('stages', '')}\n"
              f"    per transform: {r['recall_per_transform']}", file=err)


if __name__ == "__main__":
    main()
