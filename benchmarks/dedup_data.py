"""The dedup benchmarks' collection: distinct photos, edited copies of some, and pairs that must not group.

Distinct *bases* are one random crop (70-100 % of each side, random position) of every flower photo
of flowers51 (``bench.FLOWERS51``) (2,040 photos of 51 species: many look alike, a fair test of precision)
plus crops from disjoint grid cells of the larger scikit-image sample photos (one crop per cell, so
no two bases share pixels). Without flowers51, a finer grid of scikit-image cells makes the bases
(fewer, smaller; said in the output). For some bases, every transform of :data:`TRANSFORMS` is
written as a variant (byte copy, PNG, JPEG re-encodes, resizes, crops, flip, rotation, brightness,
screenshot, letterbox, watermark, colour); a base and its variants form one known group.

Hard negatives, each of its own group: flowers51 holds some photos twice (re-cropped, resized) and
some *series*, shots of one plant moments apart (parallax, a moved flower or bee): the pairs in
``dedup_flowers51_pairs.json`` were found by ORB + RANSAC and each looked at by eye; same-capture
pairs join one group, series pairs stay apart. And :data:`HARD_KINDS` pairs are built from
flowers51 photos kept out of the bases (each photo in one pair only): another shot with parallax,
a part moved, another object of the kind in the same place, a drawing of a photo.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from bench import FLOWERS51

FLOWERS = FLOWERS51
PAIRS_FILE = Path(__file__).with_name("dedup_flowers51_pairs.json")
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


# -- hard negatives: pairs built to look alike without being one picture -------------------------------
def _cutout(img: Image.Image, width: int) -> Image.Image:
    """The middle of ``img`` as an RGBA ellipse ``width`` wide, with a soft edge (something pasted)."""
    side = min(img.size)
    part = img.crop(((img.width - side) // 2, (img.height - side) // 2, (img.width + side) // 2,
                     (img.height + side) // 2)).resize((width, width), Image.LANCZOS)
    mask = Image.new("L", part.size, 0)
    ImageDraw.Draw(mask).ellipse((2, 2, width - 3, width - 3), fill=255)
    part.putalpha(mask.filter(ImageFilter.GaussianBlur(2)))
    return part


def _parallax(photos: list[Image.Image], rng) -> tuple[Image.Image, Image.Image]:
    """A near object (a cutout of one photo) before a far scene (another), shot twice from a step
    aside: the scene moves by a little, the object by 8-12 % of the width more."""
    scene, near = photos
    w, h = scene.width - 40, scene.height - 40
    step = int(rng.integers(8, 13)) * w // 100 * (1 if rng.random() < 0.5 else -1)
    thing = _cutout(near, w // 2)
    shots = []
    for far, close in ((20, w // 4), (20 + 6, w // 4 + 6 + step)):
        shot = scene.crop((far, 20, far + w, 20 + h))
        shot.paste(thing, (close, h // 2 - thing.height // 2), thing)
        shots.append(shot)
    return shots[0], shots[1]


def _moved(photos: list[Image.Image], rng) -> tuple[Image.Image, Image.Image]:
    """One scene shot twice while a part of it (a cutout of another photo, a fifth of the width) moved."""
    scene, part = photos
    thing = _cutout(part, scene.width // 5)
    y = int(rng.integers(0, scene.height - thing.height))
    shots = []
    for x in (scene.width // 10, scene.width // 10 + thing.width + int(rng.integers(0, thing.width // 2))):
        shot = scene.copy()
        shot.paste(thing, (x, y), thing)
        shots.append(shot)
    return shots[0], shots[1]


def _other_object(photos: list[Image.Image], rng) -> tuple[Image.Image, Image.Image]:
    """The same backdrop with another object of the kind in the same place (two photos of one species
    cut out alike), the scene slightly zoomed in the second."""
    scene, one, other = photos
    width = scene.width * 2 // 5
    shots = []
    for thing in (_cutout(one, width), _cutout(other, width)):
        shot = scene.copy()
        shot.paste(thing, (scene.width // 2 - width // 2, scene.height // 2 - width // 2), thing)
        shots.append(shot)
    w, h = shots[1].size
    zoomed = shots[1].crop((w // 40, h // 40, w - w // 40, h - h // 40)).resize((w, h), Image.LANCZOS)
    return shots[0], zoomed


def _drawing(photos: list[Image.Image], rng) -> tuple[Image.Image, Image.Image]:
    """A photo and a pencil drawing of it (its gray "colour-dodged" by its blurred negative: strokes
    along its edges on white paper)."""
    photo, = photos
    gray = np.asarray(ImageOps.grayscale(photo), np.float32)
    blurred = np.asarray(Image.fromarray(255 - gray.astype(np.uint8)).filter(ImageFilter.GaussianBlur(6)), np.float32)
    sketch = np.clip(gray * 255.0 / np.maximum(255.0 - blurred, 1.0), 0, 255) ** 2 / 255.0  # darker strokes
    return photo, Image.fromarray(sketch.astype(np.uint8)).convert("RGB")


#: kind -> (photos it takes, builder); each builder returns the two pictures of one pair.
HARD_KINDS = {"parallax": (2, _parallax), "moved part": (2, _moved), "other object": (3, _other_object),
              "drawing": (1, _drawing)}


# -- collection -------------------------------------------------------------------------------------
def flowers_pairs() -> dict:
    """The eye-checked flowers51 pairs: {"same_capture": [[a, b], ...], "series": [...]}, class/file paths."""
    return json.loads(PAIRS_FILE.read_text())


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


def base_sources(rng, hard_pairs: int = 0) -> tuple[list, list[str], list[Path], str]:
    """Callables making one distinct base photo each, their sources, the flowers51 photos kept out of
    the bases for ``hard_pairs`` pairs of each of :data:`HARD_KINDS`, and a note on the bases."""
    flowers = sorted(FLOWERS.glob("*/*.jpg")) if FLOWERS.is_dir() else []
    listed = {p for pairs in flowers_pairs().values() for pair in pairs for p in pair}
    free = [p for p in flowers if f"{p.parent.name}/{p.name}" not in listed]
    wanted = hard_pairs * sum(n for n, _ in HARD_KINDS.values())
    reserved = [free[i] for i in np.random.default_rng(12345).permutation(len(free))[:wanted]] if flowers else []
    flowers = [p for p in flowers if p not in set(reserved)]
    grid = 2 if flowers else 4
    sources = [lambda path=path: _random_crop(Image.open(path).convert("RGB"), rng) for path in flowers]
    names = [f"{p.parent.name}/{p.name}" for p in flowers]
    for name in SKIMAGE_PHOTOS:
        img = _skimage(name)
        cw, ch = img.width // grid, img.height // grid
        for gx in range(grid):
            for gy in range(grid):
                cell = img.crop((gx * cw, gy * ch, (gx + 1) * cw, (gy + 1) * ch))
                sources.append(lambda cell=cell: _random_crop(cell, rng))
                names.append(f"skimage {name} {gx},{gy}")
    note = (f"{len(flowers)} flowers51 photos + {len(sources) - len(flowers)} scikit-image {grid}x{grid} grid cells"
            if flowers else f"flowers51 absent ({FLOWERS}): {len(sources)} scikit-image {grid}x{grid} grid cells only")
    return sources, names, reserved, note


def make_collection(root: Path, n_images: int | None, variant_bases: int, seed: int, max_bases: int | None = None,
                    hard_pairs: int = 0) -> tuple[dict, dict]:
    """Write bases, variants and hard pairs under ``root``; return ({path: (group, kind)}, extras): kind
    is "base", a transform or a hard kind; extras hold "source" ({group: where its base came from}),
    "hard" ({kind: [[path, path], ...]}) and "description". Saved as ``root/truth.json`` and reused.

    With ``variant_bases`` V, the first V bases get every transform. With ``n_images``, transforms
    (chosen at random) are then added to random bases until there are ``n_images`` files.
    """
    saved = root / "truth.json"
    if saved.exists():
        data = json.loads(saved.read_text())
        data["source"] = {int(g): s for g, s in data["source"].items()}
        return {p: tuple(v) for p, v in data.pop("truth").items()}, data
    rng = np.random.default_rng(seed)
    sources, names, reserved, note = base_sources(rng, hard_pairs)
    order = rng.permutation(len(sources))[:max_bases]
    truth: dict[str, tuple[int, str]] = {}
    source: dict[int, str] = {}
    bases: list[tuple[Path, Image.Image]] = []
    for folder in ("bases", "variants", "hard"):
        (root / folder).mkdir(parents=True)
    for group, i in enumerate(order):
        img = sources[i]()
        path = root / "bases" / f"b{group:05d}.jpg"
        img.save(path, quality=92)
        truth[str(path)] = (group, "base")
        source[group] = names[i]
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
    names_ = list(TRANSFORMS)
    extra = 0
    while n_images is not None and len(truth) < n_images:
        variant(int(rng.integers(len(bases))), names_[int(rng.integers(len(names_)))], f"_{extra}")
        extra += 1
    hard: dict[str, list[list[str]]] = defaultdict(list)
    group = len(bases)
    pool = list(reserved)
    for k in range(hard_pairs):
        for kind, (n, build) in HARD_KINDS.items():
            used = [pool.pop() for _ in range(n)]
            if kind == "other object":  # the two objects: photos of one species
                twin = next((p for p in pool if p.parent == used[1].parent), None)
                if twin is not None:
                    pool.remove(twin)
                    pool.append(used[2])
                    used[2] = twin
            pair = build([Image.open(p).convert("RGB") for p in used], rng)
            paths = []
            for side, img in zip("ab", pair):
                out = root / "hard" / f"{kind.replace(' ', '_')}{k:03d}{side}.jpg"
                img.save(out, quality=90)
                truth[str(out)] = (group, kind)
                source[group] = " + ".join(f"{p.parent.name}/{p.name}" for p in used)
                paths.append(str(out))
                group += 1
            hard[kind].append(paths)
    counts = Counter(t for _, t in truth.values())
    description = {"images": len(truth), "bases": len(bases), "base_sources": note,
                   "variants_per_transform": {k: v for k, v in counts.items() if k in TRANSFORMS},
                   "hard_pairs_per_kind": {k: len(v) for k, v in hard.items()}}
    extras = {"source": source, "hard": dict(hard), "description": description}
    saved.write_text(json.dumps({"truth": truth, **extras}))
    return truth, extras


def scenes(truth: dict, source: dict) -> tuple[dict[int, int], list[tuple[int, int]]]:
    """({group: scene}, series): groups whose bases are one flowers51 capture (the same-capture list)
    share a scene; ``series`` are the group pairs of the series list (hard negatives)."""
    pairs = flowers_pairs()
    group_of = {s: g for g, s in source.items()}
    same = [(group_of[a], group_of[b]) for a, b in pairs["same_capture"] if a in group_of and b in group_of]
    series = [(group_of[a], group_of[b]) for a, b in pairs["series"] if a in group_of and b in group_of]
    return joined({g: g for g, _ in truth.values()}, same), series


def joined(labels: dict, pairs: Iterable[tuple]) -> dict:
    """``labels`` ({item: label}) with the labels of the two items of each pair made one: a new dict."""
    parent = {v: v for v in labels.values()}

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in pairs:
        parent[find(labels[a])] = find(labels[b])
    return {k: find(v) for k, v in labels.items()}
