"""The second stage of ``near`` pair by pair, with and without its capture check: edited copies and
other shots of the same thing built from scikit-image's photos (no download), and flowers51's
eye-checked pairs (``dedup_flowers51_pairs.json``: one capture re-cropped or re-encoded, and series
shots of one plant) when flowers51 is there.

Other shots: scikit-image's real stereo pair (whole, three parts of it, and views 0.1-0.5 of the way
from the left camera to the right made from its disparity map), coins of one kind side by side,
a face or a figure before a background moved against it by 4-30 px (parallax), a part of a scene
moved, frames of one animation. "fit" is the inlier minimum alone (the rule before the check),
"near" the whole second stage (:meth:`lookalike.dedup.Rule.accepts`), "shots" that of the ``shots``
preset (other shots of one scene accepted too). With ``--built N``, also N built pairs of each of
:data:`dedup_data.HARD_KINDS` (parallax, a part moved, another object in the same place, a drawing;
from flowers51 photos), which ``shots`` should accept for the first two kinds and refuse for the others.

    python benchmarks/dedup_pairs.py [--built 30] [--out pairs.json]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
import skimage.data as sd
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from bench import FLOWERS51, emit
from dedup_data import _skimage as photo, flowers_pairs, make_collection
from lookalike.dedup import geometry
from lookalike.dedup.rules import PRESETS

NEAR = PRESETS["efficientnet-lite0", "pool"]["near"]
SHOTS = PRESETS["efficientnet-lite0", "pool"]["shots"]
D = os.path.dirname(sd.__file__)


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """``img`` saved as a JPEG of ``quality`` and read back."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def hue(img: Image.Image, shift: int) -> Image.Image:
    """``img`` with its hue turned by ``shift`` of 256."""
    h, s, v = img.convert("HSV").split()
    return Image.merge("HSV", (h.point(lambda x: (x + shift) % 256), s, v)).convert("RGB")


def caption(img: Image.Image) -> Image.Image:
    """``img`` above a white strip with a line of text."""
    out = Image.new("RGB", (img.width, img.height + 60), "white")
    out.paste(img, (0, 0))
    ImageDraw.Draw(out).text((10, img.height + 20), "Holiday 2019 - best of", fill="black")
    return out


EDITS = {
    "jpeg30": lambda i: jpeg(i, 30), "jpeg70": lambda i: jpeg(i, 70),
    "half": lambda i: i.resize((i.width // 2, i.height // 2), Image.LANCZOS),
    "third": lambda i: i.resize((i.width // 3, i.height // 3), Image.BILINEAR),
    "up150": lambda i: i.resize((i.width * 3 // 2, i.height * 3 // 2), Image.BICUBIC),
    "crop75": lambda i: i.crop((i.width // 8, i.height // 8, i.width * 7 // 8, i.height * 7 // 8)),
    "crop60corner": lambda i: i.crop((0, 0, i.width * 6 // 10, i.height * 6 // 10)),
    "flip": ImageOps.mirror, "vflip": ImageOps.flip,
    "rot90": lambda i: i.transpose(Image.Transpose.ROTATE_90),
    "rot270_half": lambda i: i.transpose(Image.Transpose.ROTATE_270).resize((i.height // 2, i.width // 2)),
    "letterbox": lambda i: ImageOps.pad(i, (max(i.width, i.height * 16 // 9), i.height), color="black"),
    "whitepad": lambda i: ImageOps.expand(i, border=40, fill="white"),
    "bright": lambda i: ImageEnhance.Brightness(i).enhance(1.35),
    "dark": lambda i: ImageEnhance.Brightness(i).enhance(0.6),
    "contrast": lambda i: ImageEnhance.Contrast(i).enhance(1.5),
    "gray": lambda i: ImageOps.grayscale(i).convert("RGB"),
    "hue": lambda i: hue(i, 40), "sat": lambda i: ImageEnhance.Color(i).enhance(0.3),
    "gamma": lambda i: i.point(lambda v: int(255 * (v / 255) ** 0.6)),
    "caption": caption, "blur": lambda i: i.filter(ImageFilter.GaussianBlur(1.2)),
    "sharpen": lambda i: i.filter(ImageFilter.UnsharpMask(2, 150)),
    "flip_crop_jpeg": lambda i: jpeg(ImageOps.mirror(i).crop((i.width // 10, 0, i.width, i.height * 9 // 10)), 60),
}
BASES = ["astronaut", "camera", "coffee", "rocket", "coins", "hubble_deep_field", "retina", "immunohistochemistry",
         "moon", "page", "text", "clock", "brick", "gravel", "grass", "horse", "cell"]


def motor() -> tuple[Image.Image, Image.Image, np.ndarray]:
    """scikit-image's stereo pair (left, right) and the left view's disparity."""
    return (Image.open(D + "/motorcycle_left.png").convert("RGB"), Image.open(D + "/motorcycle_right.png").convert("RGB"),
            np.load(D + "/motorcycle_disp.npz")["arr_0"])


def novel(left: Image.Image, disp: np.ndarray, alpha: float) -> Image.Image:
    """``left`` seen from ``alpha`` of the way to the right camera (warped back by alpha x disparity)."""
    a, (h, w) = np.asarray(left), disp.shape
    d = np.where(np.isfinite(disp), disp, 0).astype(np.float32)
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return Image.fromarray(cv2.remap(a, xs + alpha * d, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))


def layered(back: Image.Image, front: Image.Image, box: tuple, shift: int, size=(480, 360)) -> tuple:
    """Two views of ``front``'s ``box`` (an ellipse, soft-edged) before ``back``: between them the
    background moves by 2 px and the near thing by ``shift`` px (parallax)."""
    bg = back.resize((size[0] + 40, size[1] + 40))
    part = front.crop(box).resize((200, 200))
    mask = Image.new("L", part.size, 0)
    ImageDraw.Draw(mask).ellipse((2, 2, 197, 197), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(2))
    views = []
    for dx, x in ((0, 140), (2, 140 + shift)):
        view = bg.crop((20 + dx, 20, 20 + dx + size[0], 20 + size[1]))
        view.paste(part, (x, 80), mask)
        views.append(view)
    return tuple(views)


def moved(base: Image.Image, box: tuple, dx: int, dy: int) -> tuple:
    """``base`` and ``base`` with its ``box`` moved by (dx, dy): something moved between two shots."""
    out = base.copy()
    out.paste(base.crop(box), (box[0] + dx, box[1] + dy))
    return base, out


def negatives():
    """(name, picture, another shot of the same thing) for each hard negative."""
    L, R, disp = motor()
    yield "stereo motorcycle L/R", L, R
    for (x, y) in [(0, 0), (200, 100), (100, 200)]:
        yield f"stereo crop {x},{y}", L.crop((x, y, x + 480, y + 300)), R.crop((x, y, x + 480, y + 300))
    for a in (0.1, 0.2, 0.35, 0.5):
        yield f"motorcycle novel view {a}", L, novel(L, disp, a)
    coins = photo("coins")
    # other instances: coin crops (same class, same pose) of equal size, pairs
    boxes = [(20, 20, 100, 100), (100, 15, 180, 95), (180, 20, 260, 100), (260, 20, 340, 100), (20, 95, 100, 175),
             (100, 95, 180, 175), (180, 95, 260, 175), (260, 95, 340, 175)]
    for i in range(0, len(boxes) - 1):
        yield f"coins {i}/{i+1}", coins.crop(boxes[i]).resize((240, 240)), coins.crop(boxes[i + 1]).resize((240, 240))
    astro, cam, rocket, hubble = photo("astronaut"), photo("camera"), photo("rocket"), photo("hubble_deep_field")
    for s in (4, 8, 15, 30):
        yield f"layered parallax {s}px (rocket behind astronaut)", *layered(rocket, astro, (150, 30, 330, 210), s)
        yield f"layered parallax {s}px (hubble behind camera)", *layered(hubble, cam, (180, 60, 380, 260), s)
    yield "moved: camera man 12px", *moved(cam, (150, 40, 350, 420), 12, 0)
    yield "moved: astronaut helmet 10px", *moved(astro, (140, 0, 360, 230), 0, 10)
    yield "moved: coffee cup 25px", *moved(photo("coffee"), (150, 30, 450, 330), 25, 5)
    g = Image.open(D + "/no_time_for_that_tiny.gif")
    frames = []
    for k in range(g.n_frames):
        g.seek(k)
        frames.append(g.convert("RGB").resize((250, 140), Image.NEAREST))
    for k in (0, 6, 12):
        yield f"gif frames {k}/{k+3}", frames[k], frames[k + 3]


def decide(a, b) -> dict:
    """The fit alone and the whole second stage on one pair."""
    fa, fb = geometry.features(a), geometry.features(b)
    fit = geometry.compare(fa, fb, NEAR.min_inliers, 0.0)
    found = geometry.compare(fa, fb, NEAR.min_inliers, NEAR.min_agreement)
    return {"fit": fit.inliers >= NEAR.min_inliers, "near": NEAR.accepts(found), "shots": SHOTS.accepts(found),
            "inliers": found.inliers,
            "agreement": round(found.agreement, 3), "shifted": round(found.shifted, 3),
            "displaced": round(found.displaced, 3)}


def score(rows: dict, copies: bool) -> dict:
    """How many pairs each rule accepts; the pairs the whole stage decides wrongly, by name."""
    return {"pairs": len(rows), "fit_accepts": sum(r["fit"] for r in rows.values()),
            "near_accepts": sum(r["near"] for r in rows.values()),
            "shots_accepts": sum(r["shots"] for r in rows.values()),
            "near_wrong": {k: r for k, r in rows.items() if r["near"] != copies}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also write the JSON here")
    ap.add_argument("--built", type=int, default=0, help="also this many built pairs of each hard kind (flowers51)")
    args = ap.parse_args()
    copies = {f"{base}/{name}": decide(img, edit(img)) for base in BASES for img in [photo(base)]
              for name, edit in EDITS.items()}
    others = {name: decide(a, b) for name, a, b in negatives()}
    result = {"skimage": {"edited copies": score(copies, True), "other shots": score(others, False)}}
    if FLOWERS51.is_dir():
        listed = flowers_pairs()
        result["flowers51"] = {kind: score({f"{a} {b}": decide(str(FLOWERS51 / a), str(FLOWERS51 / b))
                                            for a, b in listed[kind]}, kind == "same_capture")
                               for kind in ("same_capture", "series")}
        if args.built:
            with tempfile.TemporaryDirectory() as tmp:
                _, extras = make_collection(Path(tmp) / "built", None, 0, 0, 0, args.built)
                result["built"] = {kind: score({f"{os.path.basename(a)} {os.path.basename(b)}": decide(a, b)
                                                for a, b in pairs}, False) for kind, pairs in extras["hard"].items()}
    else:
        result["flowers51"] = f"absent ({FLOWERS51}): only the scikit-image pairs"
    c, o = result["skimage"]["edited copies"], result["skimage"]["other shots"]
    for rule in ("fit", "near"):
        accepted = c[f"{rule}_accepts"] + o[f"{rule}_accepts"]
        result["skimage"][rule] = {"precision": round(c[f"{rule}_accepts"] / max(accepted, 1), 4),
                                   "recall": round(c[f"{rule}_accepts"] / c["pairs"], 4)}
    emit(result, args.out)


if __name__ == "__main__":
    main()
