"""Shared fixtures: small real photos (scikit-image's samples) and variants made by the tests."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "horse", "hubble_deep_field",
          "immunohistochemistry", "retina", "moon", "text")


def sample_photo(name: str) -> Image.Image:
    """One of scikit-image's sample pictures as an RGB PIL image."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    if arr.dtype != np.uint8:
        arr = (arr * 255).astype(np.uint8) if arr.max() <= 1 else arr.astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def variants(img: Image.Image) -> dict[str, Image.Image]:
    """Edited copies of a photo: flip, centre crop, colour jitter."""
    w, h = img.size
    return {
        "flip": ImageOps.mirror(img),
        "crop": img.crop((w // 10, h // 10, w - w // 10, h - h // 10)),
        "bright": ImageEnhance.Brightness(img).enhance(1.25),
    }


def run_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``python -m lookalike ARGS`` as a user would; with ``check``, a non-zero exit fails the test."""
    proc = subprocess.run([sys.executable, "-m", "lookalike", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture(scope="session", autouse=True)
def _isolated_dirs(tmp_path_factory):
    """Keep exported models and default indexes out of the user's directories, shared per session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LOOKALIKE_CACHE", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("LOOKALIKE_INDEX", str(tmp_path_factory.mktemp("default") / "index"))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory):
    """A folder of 12 distinct photos plus a flipped and a cropped copy of three of them."""
    root = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        img = sample_photo(name)
        img.save(root / f"{name}.jpg", quality=90)
        if name in ("chelsea", "coffee", "astronaut"):
            v = variants(img)
            v["flip"].save(root / f"{name}_flip.jpg", quality=90)
            v["crop"].save(root / f"{name}_crop.png")
    return root
