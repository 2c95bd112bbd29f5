"""``index --from SHARDS``: an index loaded from shards answers exactly as one built from the folder,
updates incrementally, records skipped files and refuses another model's shards."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from lookalike.api import Index  # noqa: E402
from lookalike.cluster.embed import embed, model_spec  # noqa: E402
from lookalike.cluster.from_shards import index_shards, into_store  # noqa: E402
from lookalike.cluster.shards import Shards, table  # noqa: E402
from lookalike.index.store import Store, StoreError  # noqa: E402

MODEL = {"name": "hand-made", "layer": "out", "dim": 3}


@pytest.fixture()
def photos(photo_dir, tmp_path):
    """A copy of the shared photos (tests change it) with one broken file."""
    root = tmp_path / "photos"
    shutil.copytree(photo_dir, root)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return root


def answers(idx: Index, queries) -> list:
    return [[(m.path, m.distance) for m in idx.query(str(q), k=6, mode=mode, metric=metric).results]
            for q in queries for mode in ("nearest", "farthest") for metric in ("cosine", "l2")]


@pytest.mark.slow  # the default model
def test_index_from_shards_answers_as_index_from_folder(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(), "local", shard_rows=5)
    queries = [photos / f"{name}.jpg" for name in ("chelsea", "coffee", "rocket", "coins")]
    with Index.open(tmp_path / "direct", create=True) as direct, \
            Index.open(tmp_path / "loaded", create=True) as loaded:
        direct.index(photos)
        report = index_shards(loaded, shards)
        assert (report.indexed, report.total, len(loaded)) == (len(direct), len(direct), len(direct))
        assert [p for p, _ in report.skipped] == [str(photos / "broken.jpg")]
        assert sorted(report.added) == sorted(direct.paths(direct.vectors()[0]))
        for a, b in zip(answers(direct, queries), answers(loaded, queries)):
            assert [p for p, _ in a] == [p for p, _ in b]
            np.testing.assert_allclose([d for _, d in a], [d for _, d in b], atol=1e-5)
        again = index_shards(loaded, shards)
        assert (again.indexed, again.unchanged, len(again.skipped)) == (0, len(direct), 1)


@pytest.mark.slow  # the default model
def test_changed_file_reaches_the_index_through_new_shards(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(), "local")
    with Index.open(tmp_path / "loaded", create=True) as idx:
        index_shards(idx, shards)
        target = photos / "chelsea.jpg"
        target.write_bytes((photos / "coffee.jpg").read_bytes())
        assert embed(str(photos), shards, model_spec(), "local").embedded == 1
        report = index_shards(idx, shards)
        assert (report.indexed, report.changed) == (1, [str(target)])
        top = idx.query(str(photos / "coffee.jpg"), k=2).results
        assert {m.path for m in top} == {str(target), str(photos / "coffee.jpg")}
        assert max(m.distance for m in top) < 1e-6


@pytest.mark.slow  # the default model
def test_ivfpq_index_from_shards(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(), "local")
    with Index.open(tmp_path / "loaded", create=True) as idx:
        idx.set_ann("ivfpq")
        index_shards(idx, shards)
        assert idx.index_type == "ivfpq" and idx.ann().describe()["ntotal"] == len(idx)
        result = idx.query(str(photos / "coffee.jpg"), k=1).results[0]
        assert result.path == str(photos / "coffee.jpg") and result.distance < 1e-6


@pytest.mark.slow  # the default model
def test_shards_of_another_model_are_refused(photos, tmp_path):
    shards = str(tmp_path / "shards")
    embed(str(photos), shards, model_spec(layer="blocks"), "local")
    with Index.open(tmp_path / "idx", create=True) as idx, pytest.raises(StoreError, match="layer blocks"):
        index_shards(idx, shards)


def _shard(folder, rows: list[tuple], sizes: list[tuple[int, int]] | None = None) -> str:
    """Write a shard of ``rows`` (path, size, mtime_ns, hash, vector or an error string) into ``folder``,
    their pictures ``sizes`` (width, height; 4 x 4 when not given); its name."""
    sizes = sizes or [(4, 4)] * len(rows)
    cols = {"path": [r[0] for r in rows], "size": [r[1] for r in rows], "mtime_ns": [r[2] for r in rows],
            "hash": [r[3] for r in rows], "width": [w for w, _ in sizes], "height": [h for _, h in sizes],
            "error": [r[4] if isinstance(r[4], str) else None for r in rows]}
    vectors = np.array([r[4] for r in rows if not isinstance(r[4], str)], np.float32).reshape(-1, 3)
    return Shards(str(folder)).write(table(cols, vectors, MODEL))


@pytest.mark.parametrize("order", ["newest in the middle", "newest first", "newest last"])
def test_a_file_in_several_shards_is_indexed_from_its_newest_row_whatever_the_shard_order(tmp_path, order):
    """Rows of one file in three shards: the newest (largest mtime, then size, then hash) is the one
    indexed, whichever place its shard's name sorts in; a file in one shard only is indexed from it."""
    shards = tmp_path / "shards"
    written = [_shard(shards, [("/p/a.jpg", 10, 5, "h5", [1, 0, 0]), ("/p/b.jpg", 10, 1, "hb", [0, 0, 1])]),
               _shard(shards, [("/p/a.jpg", 10, 9, "h9", [0, 1, 0])]),  # the newest row of a.jpg
               _shard(shards, [("/p/a.jpg", 11, 7, "h7", [0, 0, 2])])]
    places = {"newest in the middle": "acb", "newest first": "bac", "newest last": "cab"}[order]
    names = [f"part-{place}.parquet" for place in places]  # the names the shards are read in the order of
    for old, new in zip(written, names):
        (shards / old).rename(shards / new)
    assert Shards(str(shards)).names() == sorted(names)
    latest, superseded = Shards(str(shards)).newest()
    assert latest == {"/p/a.jpg": (10, 9, names[1], None), "/p/b.jpg": (10, 1, names[0], None)}
    assert superseded == {names[0]: ["/p/a.jpg"], names[1]: [], names[2]: ["/p/a.jpg"]}
    store = Store.create(tmp_path / "ix", MODEL, "hand-made")
    report = into_store(store, str(shards))
    assert (report.indexed, sorted(report.added)) == (2, ["/p/a.jpg", "/p/b.jpg"])
    assert (report.changed, report.skipped) == ([], [])
    records = store.records()
    assert {p: (r.size, r.mtime_ns, r.hash) for p, r in records.items()} == {"/p/a.jpg": (10, 9, "h9"),
                                                                          "/p/b.jpg": (10, 1, "hb")}
    ids, vectors = store.vectors()
    by_path = dict(zip(store.paths(ids), vectors.tolist()))
    assert by_path == {"/p/a.jpg": [0, 1, 0], "/p/b.jpg": [0, 0, 1]}
    again = into_store(store, str(shards))  # nothing new: every file unchanged, once
    assert (again.indexed, again.unchanged, again.added, again.changed) == (0, 2, [], [])
    store.close()


@pytest.mark.parametrize("ties", ["same time, larger file", "same time and size, later hash"])
def test_equal_modification_times_are_decided_by_size_then_hash(tmp_path, ties):
    shards = tmp_path / "shards"
    if ties == "same time, larger file":
        old, new = ("/p/a.jpg", 10, 5, "hz", [1, 0, 0]), ("/p/a.jpg", 12, 5, "ha", [0, 1, 0])
    else:
        old, new = ("/p/a.jpg", 10, 5, "h1", [1, 0, 0]), ("/p/a.jpg", 10, 5, "h2", [0, 1, 0])
    _shard(shards, [old])
    newest = _shard(shards, [new])
    assert Shards(str(shards)).latest() == {"/p/a.jpg": (new[1], 5, newest, None)}
    store = Store.create(tmp_path / "ix", MODEL, "hand-made")
    into_store(store, str(shards))
    assert store.records()["/p/a.jpg"].hash == new[3] and store.vectors()[1].tolist() == [[0, 1, 0]]
    store.close()


def test_a_file_skipped_by_a_newer_run_is_recorded_as_skipped_and_a_fixed_one_indexed(tmp_path):
    shards = tmp_path / "shards"
    _shard(shards, [("/p/a.jpg", 10, 5, "ha", [1, 0, 0]), ("/p/b.jpg", 10, 5, None, "broken: cut short")])
    _shard(shards, [("/p/a.jpg", 10, 6, None, "broken: cut short"), ("/p/b.jpg", 11, 6, "hb", [0, 0, 1])])
    store = Store.create(tmp_path / "ix", MODEL, "hand-made")
    report = into_store(store, str(shards))
    assert (report.indexed, report.added, report.skipped) == (1, ["/p/b.jpg"], [("/p/a.jpg", "broken: cut short")])
    assert store.paths(store.vectors()[0]) == ["/p/b.jpg"]
    assert into_store(store, str(shards)).skipped == [("/p/a.jpg", "broken: cut short")]  # still said, not written
    store.close()


def test_loading_shards_reports_its_plan_progress_counts_and_seconds_and_writes_nothing_twice(tmp_path, monkeypatch):
    import types

    from lookalike.cluster import from_shards

    shards = tmp_path / "shards"
    _shard(shards, [("/p/a.jpg", 10, 5, "ha", [1, 0, 0]), ("/p/b.jpg", 20, 5, "hb", [0, 1, 0]),
                    ("/p/c.jpg", 30, 5, None, "broken: cut short")], sizes=[(640, 480), (30, 20), (0, 0)])
    _shard(shards, [("/p/a.jpg", 11, 6, "ha2", [0, 0, 1])], sizes=[(800, 600)])  # a.jpg changed since
    ticks = iter([100.0, 102.5, 200.0, 200.25])
    monkeypatch.setattr(from_shards, "time", types.SimpleNamespace(perf_counter=lambda: next(ticks)))
    store = Store.create(tmp_path / "ix", MODEL, "hand-made")
    plan, progress = [], []
    report = into_store(store, str(shards), plan.append, progress.append)
    assert plan == [3] and progress == [2, 1]  # three files; b and c from the first shard, a from the second
    assert (report.indexed, report.total, report.seconds) == (2, 2, 2.5)
    assert sorted(report.added) == ["/p/a.jpg", "/p/b.jpg"] and report.skipped == [("/p/c.jpg", "broken: cut short")]
    ids, _ = store.vectors()
    columns = store.columns(ids)
    assert {p: (w, h) for p, w, h in zip(columns["path"], columns["width"], columns["height"])} == {
        "/p/a.jpg": (800, 600), "/p/b.jpg": (30, 20)}
    assert store.records()["/p/c.jpg"].status == "error"  # the skipped file is recorded, with its reason
    writes = []
    real_put = store.put
    monkeypatch.setattr(store, "put", lambda *args: writes.append(args) or real_put(*args))
    again = into_store(store, str(shards))
    assert writes == [] and (again.unchanged, again.skipped, again.seconds) == (2, [("/p/c.jpg", "broken: cut short")], 0.25)
    _shard(shards, [("/p/b.jpg", 21, 7, "hb2", [1, 1, 0])])  # b.jpg changed: changed, not added
    ticks = iter([0.0, 1.0])
    changed = into_store(store, str(shards))
    assert (changed.added, changed.changed, changed.indexed, changed.total) == ([], ["/p/b.jpg"], 1, 2)
    store.close()


def test_shards_that_are_not_there_or_of_another_model_are_refused_in_one_line(tmp_path):
    store = Store.create(tmp_path / "ix", {"name": "other", "layer": "pool", "dim": 3}, "hand-made")
    with pytest.raises(StoreError) as refused:
        into_store(store, str(tmp_path / "none"))
    assert str(refused.value) == f"no shards in {tmp_path / 'none'}"
    _shard(tmp_path / "shards", [("/p/a.jpg", 10, 5, "ha", [1, 0, 0])])
    with pytest.raises(StoreError) as refused:
        into_store(store, str(tmp_path / "shards"))
    assert str(refused.value) == (f"shards in {tmp_path / 'shards'} hold hand-made (layer out) vectors; index "
                                  f"{store.root} was built with other; use another --index")
    store.close()


def test_an_index_is_brought_up_to_date_from_shards_then_its_approximate_structure(tmp_path):
    import types

    shards = tmp_path / "shards"
    _shard(shards, [("/p/a.jpg", 10, 5, "ha", [1, 0, 0]), ("/p/b.jpg", 20, 5, "hb", [0, 1, 0])])
    store = Store.create(tmp_path / "ix", MODEL, "hand-made")
    plan, progress, calls = [], [], []
    # an Index stands in (the hand-made model has no network to load): its store, and ann() recorded
    idx = types.SimpleNamespace(collection=types.SimpleNamespace(store=store),
                                ann=lambda: calls.append(("ann", store.count())))
    report = index_shards(idx, str(shards), plan.append, progress.append)
    assert (report.indexed, sorted(report.added), plan, progress) == (2, ["/p/a.jpg", "/p/b.jpg"], [2], [2])
    assert calls == [("ann", 2)]  # after the files are in
    store.close()
