"""Fixtures of the cluster tests: a folder of generated images with broken files, a local Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

N_IMAGES = 240
BROKEN = {"not_an_image.jpg": b"plain text, not a picture", "empty.png": b""}


class Generated(NamedTuple):
    root: Path
    n_images: int
    broken: tuple[str, ...]


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Generated:
    """``N_IMAGES`` small distinct pictures (JPEG and PNG, in two sub-folders) and two broken files."""
    root = tmp_path_factory.mktemp("generated")
    rng = np.random.default_rng(7)
    for i in range(N_IMAGES):
        folder = root / f"part{i % 2}"
        folder.mkdir(exist_ok=True)
        cells = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        img = Image.fromarray(cells).resize((48 + i % 5 * 8, 64), Image.BILINEAR)
        img.save(folder / (f"img{i:04d}.jpg" if i % 3 else f"img{i:04d}.png"))
    for name, data in BROKEN.items():
        (root / name).write_bytes(data)
    return Generated(root, N_IMAGES, tuple(BROKEN))


@pytest.fixture(scope="module")
def ray_cluster():
    """A local two-CPU Ray cluster with a small object store, shut down after the module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
