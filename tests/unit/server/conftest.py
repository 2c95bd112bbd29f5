"""The server tests' stand-in index: plain pictures embedded by their mean colour (no model), new for each
test, so that each test builds its own app (mutation testing credits a test only with the code it ran)."""

from __future__ import annotations

import pytest
from PIL import Image

from helpers import stand_in_index

def colour(i: int) -> tuple[int, int, int]:
    return (20 * i + 5, 250 - 17 * i, (70 * i + 30) % 256)


@pytest.fixture
def served(tmp_path):
    """(index, folder, id by file name) of 13 plain pictures of distinct colours, one of them a TGA
    (a type without a registered media type), and ``copy.png`` with the bytes of ``c00.png``."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (48, 32), colour(i)).save(folder / f"c{i:02d}.png")
    Image.new("RGB", (48, 32), colour(12)).save(folder / "c12.tga")
    (folder / "copy.png").write_bytes((folder / "c00.png").read_bytes())
    idx = stand_in_index(tmp_path / "ix")
    idx.index(folder)
    ids, _ = idx.members()
    yield idx, folder, {p.rsplit("/", 1)[1]: i for i, p in zip(ids, idx.paths(ids))}
    idx.close()
