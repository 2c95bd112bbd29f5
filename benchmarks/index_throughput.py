"""End-to-end ``lookalike index`` throughput vs a seed-style torch baseline on the same files.

Generates N 512x512 JPEGs from scikit-image's sample photos (random crops, flips, colour shifts),
then measures in the same run:
  * lookalike: ``lookalike index`` in a subprocess (draft JPEG decode, thread pool, ONNX Runtime);
  * baseline: full Pillow decode + resize + torch eager forward of the same network, batch 32,
    as the classic tutorial does.
Prints JSON with both rates and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from bench import emit


def make_images(folder: Path, n: int, seed: int = 0) -> None:
    import skimage.data

    rng = np.random.default_rng(seed)
    bases = []
    for name in ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "retina", "hubble_deep_field"):
        arr = getattr(skimage.data, name)()
        bases.append(Image.fromarray(arr).convert("RGB").resize((1024, 1024)))
    for i in range(n):
        img = bases[i % len(bases)]
        s = int(rng.integers(400, 1024))
        x, y = rng.integers(0, 1024 - s + 1, size=2)
        tile = img.crop((x, y, x + s, y + s)).resize((512, 512))
        tile = ImageEnhance.Color(tile).enhance(float(rng.uniform(0.5, 1.5)))
        tile.save(folder / f"img{i:05d}.jpg", quality=90)


def lookalike_rate(folder: Path, index: Path, env: dict) -> dict:
    cmd = [sys.executable, "-m", "lookalike", "index", str(folder), "--index", str(index), "--json"]
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    wall = time.perf_counter() - started
    report = json.loads(out)
    return {"images": report["indexed"], "wall_seconds": round(wall, 2),
            "images_per_second": round(report["indexed"] / wall, 1),
            "images_per_second_excluding_startup": report["images_per_second"]}


def baseline_rate(folder: Path, batch: int = 32) -> dict:
    import torch

    from lookalike.models.export import build_torch
    from lookalike.models.registry import resolve

    spec = resolve("efficientnet-lite0")
    net = build_torch(spec)
    files = sorted(folder.glob("*.jpg"))
    size = spec.preprocessing.size
    started = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(files), batch):
            arrs = []
            for f in files[i:i + batch]:
                img = Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)
                arrs.append(np.asarray(img, np.float32).transpose(2, 0, 1) / 127.5 - 1.0)
            net(torch.from_numpy(np.stack(arrs)))
    wall = time.perf_counter() - started
    return {"images": len(files), "wall_seconds": round(wall, 2), "images_per_second": round(len(files) / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--baseline-n", type=int, default=None, help="images for the (slow) baseline [default: n]")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "images")
        folder.mkdir()
        make_images(folder, args.n)
        env = {**os.environ, "LOOKALIKE_CACHE": str(Path(tmp, "cache"))}
        warm = Path(tmp, "warm")
        warm.mkdir()
        make_images(warm, 4, seed=1)
        subprocess.run([sys.executable, "-m", "lookalike", "index", str(warm), "--index", str(Path(tmp, "wix")),
                        "--quiet"], check=True, env=env, capture_output=True)  # export the ONNX file once
        ours = lookalike_rate(folder, Path(tmp, "ix"), env)
        base_folder = folder
        if args.baseline_n and args.baseline_n < args.n:
            base_folder = Path(tmp, "base")
            base_folder.mkdir()
            for f in sorted(folder.glob("*.jpg"))[: args.baseline_n]:
                os.link(f, base_folder / f.name)
        base = baseline_rate(base_folder)
    emit({"benchmark": "index_throughput", "n": args.n, "cpu_count": os.cpu_count(),
          "load_average": [round(x, 2) for x in os.getloadavg()], "lookalike": ours, "baseline_torch_eager": base,
          "ratio": round(ours["images_per_second"] / base["images_per_second"], 2)}, args.out)


if __name__ == "__main__":
    main()
