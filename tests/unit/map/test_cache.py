"""The map kept beside an index: reused while the ids are the same, new points placed, laid out anew
past the share of placed points, written whole or not at all."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from lookalike.map import cache, groups
from lookalike.map.cache import MAP_FILE, current, load, save

pytest.importorskip("umap", reason="the map needs umap-learn (the map extra)")
# Tests marked slow run UMAP: its first call in a process compiles it (numba), about a minute
# on 2 cores.


def data(n, seed=0, dim=48):
    """(ids, vectors): ``n`` rows around 4 directions, ids 10, 20, 30, ..."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((4, dim))
    x = centres[rng.integers(0, 4, n)] + 0.1 * rng.standard_normal((n, dim))
    return np.arange(1, n + 1, dtype=np.int64) * 10, x.astype(np.float32)


@pytest.mark.slow
def test_reused_byte_for_byte_until_the_ids_change(tmp_path):
    ids, x = data(80)
    first = current(tmp_path, 3, ids, x)
    assert first.how == "laid out" and (first.generation, first.laid_out, first.placed) == (3, 80, 0)
    path = tmp_path / MAP_FILE
    written, stat = path.read_bytes(), path.stat()
    again = current(tmp_path, 4, ids, x)  # another generation with the same ids: the same vectors
    assert again.how == "cached" and again.generation == 4
    for name in ("ids", "xy", "clusters", "centres", "central"):
        assert getattr(again, name).tobytes() == getattr(first, name).tobytes()
    assert path.read_bytes() == written and (path.stat().st_mtime_ns, path.stat().st_ino) == (stat.st_mtime_ns, stat.st_ino)
    assert sorted(os.listdir(tmp_path)) == [MAP_FILE]  # no temporary file left


@pytest.mark.slow
def test_new_points_placed_old_ones_kept_then_laid_out_anew(tmp_path):
    ids, x = data(100)
    first = current(tmp_path, 1, ids, x)
    more_ids, more = data(12, seed=1)
    more_ids = more_ids + 5000
    # 8 new (8 % of those laid out) and two removed: placed; the rest do not move
    ids2, x2 = np.concatenate([ids[2:], more_ids[:8]]), np.concatenate([x[2:], more[:8]])
    second = current(tmp_path, 2, ids2, x2)
    assert second.how == "placed" and (second.generation, second.laid_out, second.placed) == (2, 100, 8)
    assert second.ids.tolist() == ids2.tolist()
    assert second.xy[:98].tobytes() == first.xy[2:].tobytes()
    assert second.clusters[:98].tolist() == first.clusters[2:].tolist()
    assert second.clusters[98:].tolist() == groups.assign(more[:8], first.centres).tolist()
    assert load(tmp_path / MAP_FILE).xy.tobytes() == second.xy.tobytes()
    # each new point lies within the box of the laid-out points it was placed among
    assert ((second.xy[98:] >= second.xy[:98].min(0)) & (second.xy[98:] <= second.xy[:98].max(0))).all()
    # 3 more make 11 placed, past 10 % of 100: everything laid out anew
    ids3, x3 = np.concatenate([ids2, more_ids[8:11]]), np.concatenate([x2, more[8:11]])
    third = current(tmp_path, 3, ids3, x3)
    assert third.how == "laid out" and (third.laid_out, third.placed) == (109, 0)


@pytest.mark.slow
def test_new_points_land_near_their_clump(tmp_path):
    ids, x = data(100)
    first = current(tmp_path, 1, ids, x)
    twin = x[7] * 2  # the direction of point 70
    second = current(tmp_path, 2, np.append(ids, 9999), np.vstack([x, twin]))
    d = np.linalg.norm(first.xy - second.xy[-1], axis=1)
    assert np.argmin(d) == 7 and d[7] < 0.02


@pytest.mark.slow
def test_torn_foreign_or_unwritable(tmp_path):
    ids, x = data(40)
    first = current(tmp_path, 1, ids, x)
    path = tmp_path / MAP_FILE
    path.write_bytes(path.read_bytes()[:-100])  # torn
    assert load(path) is None
    assert current(tmp_path, 1, ids, x).how == "laid out"
    path.write_text("not a map")
    assert load(path) is None
    path.unlink()
    m = current(tmp_path, 1, ids, x, writable=False)  # a read-only index: mapped, nothing written
    assert m.xy.tobytes() == first.xy.tobytes() and not path.exists()
    assert save(tmp_path / "gone" / MAP_FILE, m) is False


@pytest.mark.slow
def test_the_index_keeps_its_map(tmp_path, photo_dir):
    from lookalike.api import Index

    photos = tmp_path / "photos"
    shutil.copytree(photo_dir, photos)
    extra = photos / "chelsea_flip.jpg"
    shutil.move(extra, tmp_path / extra.name)
    with Index.open(tmp_path / "index", create=True) as idx:
        idx.index(photos)
        first = idx.layout()
        assert first.how == "laid out" and len(first.ids) == 17
        assert first.ids.tolist() == idx.vectors()[0].tolist()
        assert idx.layout().how == "cached"
        shutil.move(tmp_path / extra.name, extra)  # one new photo: 1 of 17 laid out, placed
        idx.index(photos)
        second = idx.layout()
        assert second.how == "placed" and len(second.ids) == 18
        new = int(np.setdiff1d(second.ids, first.ids)[0])
        chelsea = idx.query(photos / "chelsea.jpg", k=1).results[0].id
        d = np.linalg.norm(second.xy - second.xy[second.ids == new], axis=1)
        assert second.ids[np.argsort(d)[1]] == chelsea  # the flipped cat lands nearest the cat
    with Index.open(tmp_path / "index") as idx:
        assert idx.layout().how == "cached"


@pytest.mark.parametrize("n", [0, 1])
def test_an_empty_or_single_image_index(tmp_path, n):
    ids, x = data(n)
    m = current(tmp_path, 1, ids, x)
    assert m.xy.shape == (n, 2) and m.clusters.tolist() == [0] * n and len(m.centres) == n
    assert m.central.tolist() == ([[10] + [-1] * (cache.CENTRAL - 1)] if n else [])
    assert current(tmp_path, 2, ids, x).how == "cached"
