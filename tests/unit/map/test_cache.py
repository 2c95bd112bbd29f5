"""The map kept beside an index: reused while the ids are the same, new points placed, laid out anew
past the share of placed points, written whole or not at all."""

from __future__ import annotations

import json
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


# found by mutation testing: what current() keeps, places and lays out anew, over a stand-in layout
# (fast: no UMAP; FAISS's k-means as it is)

@pytest.fixture
def laid(monkeypatch):
    """lay_out replaced by the first two numbers of each row (a different place for every row); the
    number of rows of each call."""
    calls = []

    def lay_out(vectors, seed=0):
        calls.append(len(vectors))
        return np.asarray(vectors[:, :2], np.float32)

    monkeypatch.setattr(cache.layout, "lay_out", lay_out)
    return calls


def _cosine_nearest(x, centre):
    return np.argsort(-(x / np.linalg.norm(x, axis=1, keepdims=True)) @ (centre / np.linalg.norm(centre)),
                      kind="stable")


def test_a_first_map_is_laid_out_clustered_and_saved_unless_read_only(tmp_path, laid):
    ids, x = data(60)
    m = current(tmp_path, 7, ids, x, writable=False)
    assert not (tmp_path / MAP_FILE).exists()
    assert (m.how, m.generation, m.method, m.laid_out, m.placed) == ("laid out", 7, "pca50+umap15", 60, 0)
    assert m.ids.dtype == np.int64 and m.ids.tolist() == ids.tolist() and m.xy.tolist() == x[:, :2].tolist()
    assert len(m.centres) == 3 and sorted(set(m.clusters.tolist())) == [0, 1, 2]  # round(sqrt(60 / 5)) clusters
    for c in range(3):  # each cluster's 8 members nearest its centre, nearest first, by id
        rows = np.flatnonzero(m.clusters == c)
        assert m.central[c].tolist() == ids[rows[_cosine_nearest(x[rows], m.centres[c])[:8]]].tolist()
    m = current(tmp_path, 8, ids, x)
    assert load(tmp_path / MAP_FILE) is not None and laid == [60, 60]


def test_the_same_ids_are_the_saved_map_at_the_new_generation(tmp_path, laid):
    ids, x = data(60)
    first = current(tmp_path, 1, ids, x)
    again = current(tmp_path, 2, ids, x)
    assert (again.how, again.generation, again.placed, laid) == ("cached", 2, 0, [60])
    assert again.xy.tolist() == first.xy.tolist() and again.central.tolist() == first.central.tolist()


def test_new_points_are_placed_among_the_kept_ones_and_gone_ones_dropped(tmp_path, laid):
    ids, x = data(64)
    first = current(tmp_path, 1, ids[:60], x[:60])
    keep = np.r_[0:5, 6:64]  # id 60 gone, ids 610..640 new
    m = current(tmp_path, 2, ids[keep], x[keep])
    assert (m.how, m.generation, m.placed, m.laid_out, laid) == ("placed", 2, 4, 60, [60])
    assert m.ids.tolist() == ids[keep].tolist() and m.ids.dtype == np.int64
    old = np.isin(ids[keep], first.ids)
    assert m.xy[old].tolist() == first.xy[np.r_[0:5, 6:60]].tolist()  # old points never move
    assert m.clusters[old].tolist() == first.clusters[np.r_[0:5, 6:60]].tolist()
    unit = x[60:] / np.linalg.norm(x[60:], axis=1, keepdims=True)
    assert m.clusters[~old].tolist() == np.argmax(unit @ first.centres.T, axis=1).tolist()  # nearest centre
    assert m.centres.tolist() == first.centres.tolist()
    assert m.xy.dtype == np.float32 and m.clusters.dtype == np.int32  # as a map laid out has them
    kept_rows = np.flatnonzero(old)
    want = cache.layout.place(x[keep][~old], x[keep][kept_rows], m.xy[kept_rows])  # placed among the kept points
    assert np.isfinite(m.xy).all() and m.xy[~old].tolist() == want.tolist()
    for c in range(len(m.centres)):  # the central images among the points there are now
        rows = np.flatnonzero(m.clusters == c)
        assert m.central[c].tolist() == ids[keep][rows[_cosine_nearest(x[keep][rows], m.centres[c])[:8]]].tolist()
    assert load(tmp_path / MAP_FILE).placed == 4


def test_points_placed_up_to_exactly_a_tenth_of_those_laid_out_then_laid_out_anew(tmp_path, laid):
    ids, x = data(45)
    current(tmp_path, 1, ids[:40], x[:40])
    assert current(tmp_path, 2, ids[:42], x[:42]).placed == 2
    assert current(tmp_path, 3, ids[:44], x[:44]).placed == 4  # 2 + 2: exactly 10 % of 40
    m = current(tmp_path, 4, ids, x)  # a 5th
    assert (m.how, m.placed, m.laid_out, laid) == ("laid out", 0, 45, [40, 45])


def test_a_map_left_with_fewer_than_ten_points_to_place_among_is_laid_out_anew(tmp_path, laid):
    ids, x = data(12)
    current(tmp_path, 1, ids[:10], x[:10])
    assert current(tmp_path, 2, ids[:10], x[:10]).how == "cached"
    m = current(tmp_path, 3, ids[1:11], x[1:11])  # 9 kept, 1 new: 0.1 of 10 placed, but too few to place among
    assert (m.how, laid) == ("laid out", [10, 10])
    ids, x = data(200)
    current(tmp_path, 4, ids[:100], x[:100])
    assert current(tmp_path, 5, ids[90:101], x[90:101]).how == "placed"  # exactly 10 kept: enough


def test_a_map_laid_out_another_way_is_laid_out_anew(tmp_path, laid):
    ids, x = data(40)
    save(tmp_path / MAP_FILE, cache.replace(current(tmp_path, 1, ids[:39], x[:39]), method="pca50+umap30"))
    assert current(tmp_path, 2, ids, x).how == "laid out" and laid == [39, 40]


def _saved(tmp_path, **changes):
    """A map file of 2 points and 1 cluster with ``changes`` to its arrays or meta; what load reads of it."""
    arrays = {"ids": np.array([10, 20], np.int64), "xy": np.zeros((2, 2), np.float32),
              "clusters": np.zeros(2, np.int32), "centres": np.eye(1, 4, dtype=np.float32),
              "central": np.array([[10, 20] + [-1] * 6], np.int64)}
    meta = {"format": 1, "generation": 3, "method": "m", "laid_out": 2, "placed": 0}
    meta.update(changes.pop("meta", {}))
    arrays.update(changes)
    with open(tmp_path / MAP_FILE, "wb") as f:
        np.savez(f, meta=np.array(json.dumps(meta)), **arrays)
    return load(tmp_path / MAP_FILE)


def test_a_map_file_is_read_only_while_its_arrays_agree(tmp_path):
    m = _saved(tmp_path)
    assert (m.generation, m.method, m.laid_out, m.placed, m.ids.tolist()) == (3, "m", 2, 0, [10, 20])
    for changes in ({"clusters": np.array([0, 1], np.int32)},  # cluster 1 of 1 cluster
                    {"clusters": np.array([0, -1], np.int32)}, {"clusters": np.zeros(3, np.int32)},
                    {"xy": np.zeros((2, 3), np.float32)}, {"central": np.zeros((1, 7), np.int64)},
                    {"meta": {"format": 2}}, {"ids": np.array([10, 20], object)}):
        assert _saved(tmp_path, **changes) is None, changes
    with open(tmp_path / MAP_FILE, "wb") as f:
        np.savez(f, meta=np.array("[1]"), ids=np.zeros(0))
    assert load(tmp_path / MAP_FILE) is None


def test_save_says_whether_the_map_was_written(tmp_path):
    m = _saved(tmp_path)
    assert save(tmp_path / "again.npz", m) is True and load(tmp_path / "again.npz").ids.tolist() == [10, 20]
    assert save(tmp_path / "none" / "map.npz", m) is False


def test_a_cluster_left_without_images_counts_0():
    m = cache.Map(np.array([1, 2, 3], np.int64), np.zeros((3, 2), np.float32), np.array([0, 0, 1], np.int32),
                  np.eye(3, 4, dtype=np.float32), np.full((3, 8), -1, np.int64), 1, "m", 3, 0)
    assert m.cluster_sizes().tolist() == [2, 1, 0]
