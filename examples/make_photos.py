"""Write a small example photo folder: scikit-image's sample photos plus edited copies of some.

Usage: python examples/make_photos.py DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image, ImageEnhance, ImageOps

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "horse", "hubble_deep_field",
          "immunohistochemistry", "retina", "moon", "text", "page", "brick", "grass", "gravel")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        arr = getattr(skimage.data, name)()
        if arr.dtype != np.uint8:
            arr = (arr * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
        img = Image.fromarray(arr).convert("RGB")
        img.save(out / f"{name}.jpg", quality=90)
        if name in ("chelsea", "coffee", "astronaut", "rocket"):
            w, h = img.size
            ImageOps.mirror(img).save(out / f"{name}_flipped.jpg", quality=90)
            img.crop((w // 8, h // 8, w - w // 8, h - h // 8)).save(out / f"{name}_cropped.jpg", quality=90)
            ImageEnhance.Brightness(img).enhance(1.3).save(out / f"{name}_brighter.jpg", quality=80)
    print(f"wrote {len(list(out.glob('*.jpg')))} photos to {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(Path(sys.argv[1]))
