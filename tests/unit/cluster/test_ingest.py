"""``lookalike.cluster.ingest`` over a stand-in Milvus (milvus_standin.py) and hand-made shards of a tiny
model: the rows written for each file and what the report says; the newest row of a file winning
whatever order its shards come in, also in one shard and across batches; a failure recorded and
kept, a newer good version clearing it; two names of one key never replacing each other; files gone
from a source (not from a sibling whose name extends it) deleted; long reasons cut; Ray's scheduling
of one task per shard, stood in for by plain Python. (Milvus-lite, Ray and the default model:
test_collection.py and tests/e2e/test_collection_server.py, slow.)"""

from __future__ import annotations

import os
import types

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("pyarrow")

from helpers import stand_in_ray  # noqa: E402
from milvus_standin import Milvus  # noqa: E402

from lookalike.cluster import ingest as ingest_module  # noqa: E402
from lookalike.cluster.collection import file_id  # noqa: E402
from lookalike.cluster.ingest import IngestReport, ingest  # noqa: E402
from lookalike.cluster.shards import Shards, table  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402

SERVER = "http://milvus.example:19530"
IDENT = {"name": "tiny", "layer": "pool", "dim": 4}
V = np.eye(4, dtype=np.float32) + np.arange(4, dtype=np.float32)[:, None] / 8  # four distinct vectors


def _shard(rows: list[tuple], dim: int = 4):
    """A shard table of rows ``(path, mtime_ns, vector or None for a failure[, size[, hash[, error]]])``."""
    full = [(r + (10, None, None)[len(r) - 3:])[:6] for r in rows]
    ok = [v for _, _, v, *_ in full if v is not None]
    cols = {"path": [r[0] for r in full], "size": [r[3] for r in full], "mtime_ns": [r[1] for r in full],
            "hash": [r[4] or f"{r[1]:032x}" for r in full], "width": [4] * len(full), "height": [3] * len(full),
            "error": [None if r[2] is not None else (r[5] or "not an image") for r in full]}
    return table(cols, np.array(ok, np.float32).reshape(len(ok), dim), {**IDENT, "dim": dim})


def _write(folder, *shards) -> str:
    for rows in shards:
        Shards(str(folder)).write(_shard(rows))
    return str(folder)


def _rows(milvus: Milvus, uri: str, name: str = "c") -> dict[str, dict]:
    return {r["path"]: r for r in milvus.at(uri)[name].rows.values()}


def _stored(milvus: Milvus, uri: str, name: str = "c") -> dict[str, tuple[int, list[float]]]:
    return {p: (r["mtime_ns"], r["vector"]) for p, r in _rows(milvus, uri, name).items()}


@pytest.mark.parametrize("batch", [512, 1])
def test_each_file_becomes_one_row_keyed_by_its_name_and_a_rerun_writes_nothing(milvus, tmp_path, monkeypatch,
                                                                                 batch):
    monkeypatch.setattr(ingest_module, "BATCH", batch)  # counts added up over batches
    shards = _write(tmp_path / "s", [("/p/a.jpg", 100, V[0], 11, "aa"), ("/p/b.jpg", 200, V[1], 12, "bb")],
                    [("/p/c.jpg", 300, V[2], 13, "cc"), ("/p/bad.jpg", 5, None, 3)])
    plans, progress = [], []
    report = ingest(shards, SERVER, "c", on_plan=plans.append, on_progress=progress.append)
    rows = _rows(milvus, SERVER)
    assert rows["/p/a.jpg"] == {"id": file_id("/p/a.jpg"), "path": "/p/a.jpg", "vector": V[0].tolist(), "size": 11,
                                "mtime_ns": 100, "hash": "aa", "width": 4, "height": 3}
    assert sorted(rows) == ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"]
    assert list(_rows(milvus, SERVER, "c_skipped").values()) == [
        {"id": file_id("/p/bad.jpg"), "path": "/p/bad.jpg", "vector": [0.0, 0.0], "size": 3, "mtime_ns": 5,
         "error": "not an image"}]
    assert (report.engine, report.workers, report.shards, report.written, report.unchanged, report.removed,
            report.skipped, report.gone, report.total) == ("local", 1, 2, 3, 0, 0, [("/p/bad.jpg", "not an image")],
                                                           0, 3)
    assert plans == [4] and sorted(progress) == [2, 2]
    assert milvus.at(SERVER)["c"].properties == {"lookalike.model": '{"dim": 4, "layer": "pool", "name": "tiny"}'}
    again = ingest(shards, SERVER, "c")
    assert (again.written, again.unchanged, again.removed, again.total) == (0, 3, 0, 3)
    assert again.skipped == [("/p/bad.jpg", "not an image")]
    assert _rows(milvus, SERVER) == rows
    assert milvus.opened == milvus.closed


def test_the_report_as_json(milvus, tmp_path):
    report = IngestReport("ray", workers=2, shards=3, written=4, unchanged=5, removed=6,
                          skipped=[("/p/x.jpg", "broken")], gone=7, total=8, seconds=1.23456)
    assert report.to_dict() == {"engine": "ray", "workers": 2, "shards": 3, "written": 4, "unchanged": 5,
                                "removed": 6, "skipped": [{"path": "/p/x.jpg", "reason": "broken"}], "gone": 7,
                                "total": 8, "seconds": 1.235}
    assert IngestReport("local").to_dict() == {"engine": "local", "workers": 0, "shards": 0, "written": 0,
                                               "unchanged": 0, "removed": 0, "skipped": [], "gone": 0, "total": 0,
                                               "seconds": 0.0}
    report.add({"written": 1, "unchanged": 2, "removed": 3, "skipped": [["/p/y.jpg", "no"]], "rows": 9})
    assert (report.written, report.unchanged, report.removed, report.skipped) == (
        5, 7, 9, [("/p/x.jpg", "broken"), ("/p/y.jpg", "no")])


def test_the_seconds_are_the_runs_on_a_stepped_clock(milvus, tmp_path, monkeypatch):
    shards = _write(tmp_path / "s", [("/p/a.jpg", 100, V[0])])
    ticks = iter([10.0, 12.5])
    monkeypatch.setattr(ingest_module.time, "perf_counter", lambda: next(ticks))
    assert ingest(shards, SERVER, "c").seconds == 2.5


@pytest.mark.parametrize("batch", [512, 1, 2])
def test_the_newest_row_wins_whatever_order_the_shards_come_in(milvus, tmp_path, monkeypatch, batch):
    monkeypatch.setattr(ingest_module, "BATCH", batch)
    old = [("/p/a.jpg", 100, V[0]), ("/p/b.jpg", 100, V[1]), ("/p/c.jpg", 100, V[2])]
    new = [("/p/a.jpg", 200, V[3]), ("/p/b.jpg", 50, V[3])]
    results = []
    for order in ((old, new), (new, old)):
        uri = f"{SERVER}/{len(results)}"
        for i, rows in enumerate(order):
            ingest(_write(tmp_path / f"{len(results)}-{i}", rows), uri, "c")
        results.append(_stored(milvus, uri))
    ingest(_write(tmp_path / "both", old, new), f"{SERVER}/both", "c")
    results.append(_stored(milvus, f"{SERVER}/both"))
    expected = {"/p/a.jpg": (200, V[3].tolist()), "/p/b.jpg": (100, V[1].tolist()), "/p/c.jpg": (100, V[2].tolist())}
    assert results == [expected] * 3


def test_versions_of_one_mtime_are_ordered_by_size_then_hash(milvus, tmp_path):
    first = [("/p/a.jpg", 100, V[0], 10, "bb"), ("/p/b.jpg", 100, V[0], 10, "bb")]
    second = [("/p/a.jpg", 100, V[1], 11, "aa"), ("/p/b.jpg", 100, V[1], 10, "cc")]
    for i, rows in enumerate((first, second)):
        ingest(_write(tmp_path / str(i), rows), SERVER, "c")
    assert _stored(milvus, SERVER) == {"/p/a.jpg": (100, V[1].tolist()), "/p/b.jpg": (100, V[1].tolist())}
    report = ingest(_write(tmp_path / "back", first), SERVER, "c")
    assert (report.written, report.unchanged) == (0, 2)


def test_a_file_twice_in_one_shard_is_written_once_its_newest_row(milvus, tmp_path):
    shards = _write(tmp_path / "s", [("/p/a.jpg", 200, V[1]), ("/p/a.jpg", 300, V[2]), ("/p/a.jpg", 100, V[3]),
                                     ("/p/b.jpg", 100, V[0])])
    report = ingest(shards, SERVER, "c")
    assert (report.written, report.total) == (2, 2)
    assert _stored(milvus, SERVER)["/p/a.jpg"] == (300, V[2].tolist())


def test_a_file_that_stopped_decoding_stays_skipped_until_a_newer_version_decodes(milvus, tmp_path):
    good = _write(tmp_path / "good", [("/p/a.jpg", 100, V[0]), ("/p/c.jpg", 100, V[2])])
    failed = _write(tmp_path / "failed", [("/p/c.jpg", 300, None, 10, None, "cut short")])
    newer = _write(tmp_path / "newer", [("/p/c.jpg", 400, V[3])])
    ingest(good, SERVER, "c")
    report = ingest(failed, SERVER, "c")
    assert (report.written, report.removed, report.skipped) == (0, 1, [("/p/c.jpg", "cut short")])
    assert set(_stored(milvus, SERVER)) == {"/p/a.jpg"}
    assert [(r["path"], r["mtime_ns"], r["error"]) for r in _rows(milvus, SERVER, "c_skipped").values()] == [
        ("/p/c.jpg", 300, "cut short")]
    again = ingest(good, SERVER, "c")  # the older good row never comes back
    assert (again.written, again.unchanged, set(_stored(milvus, SERVER))) == (0, 2, {"/p/a.jpg"})
    assert ingest(failed, SERVER, "c").removed == 0  # recorded once
    report = ingest(newer, SERVER, "c")  # a newer version that decodes replaces the failure
    assert (report.written, _stored(milvus, SERVER)["/p/c.jpg"]) == (1, (400, V[3].tolist()))
    assert _rows(milvus, SERVER, "c_skipped") == {}
    report = ingest(failed, SERVER, "c")  # an older failure changes nothing
    assert (report.written, report.removed, report.unchanged) == (0, 0, 0)
    assert "/p/c.jpg" in _stored(milvus, SERVER) and _rows(milvus, SERVER, "c_skipped") == {}


def test_a_newer_failure_replaces_an_older_one_and_a_good_row_of_one_mtime_clears_it(milvus, tmp_path):
    ingest(_write(tmp_path / "1", [("/p/a.jpg", 100, None, 10, None, "first")]), SERVER, "c")
    ingest(_write(tmp_path / "2", [("/p/a.jpg", 200, None, 10, None, "second")]), SERVER, "c")
    ingest(_write(tmp_path / "3", [("/p/a.jpg", 150, None, 10, None, "older")]), SERVER, "c")
    assert [(r["mtime_ns"], r["error"]) for r in _rows(milvus, SERVER, "c_skipped").values()] == [(200, "second")]
    report = ingest(_write(tmp_path / "4", [("/p/a.jpg", 200, V[0], 10, "ab")]), SERVER, "c")  # same time, a hash
    assert (report.written, _rows(milvus, SERVER, "c_skipped")) == (1, {})
    report = ingest(_write(tmp_path / "5", [("/p/a.jpg", 200, None, 10, None, "again")]), SERVER, "c")
    assert (report.removed, set(_stored(milvus, SERVER))) == (0, {"/p/a.jpg"})  # older than the good row
    assert _rows(milvus, SERVER, "c_skipped") == {}


def test_a_long_reason_is_recorded_cut_and_missing_sizes_as_zero(milvus, tmp_path):
    reason = "x" * 5000
    ingest(_write(tmp_path / "s", [("/p/a.jpg", 1, None, 10, None, reason)]), SERVER, "c")
    (row,) = _rows(milvus, SERVER, "c_skipped").values()
    assert row["error"] == "x" * 4096
    cols = {"path": ["/p/b.jpg"], "size": [1], "mtime_ns": [1], "hash": ["ab"], "width": [None], "height": [None],
            "error": [None]}
    Shards(str(tmp_path / "t")).write(table(cols, V[:1], IDENT))
    ingest(str(tmp_path / "t"), SERVER, "c")
    assert (_rows(milvus, SERVER)["/p/b.jpg"]["width"], _rows(milvus, SERVER)["/p/b.jpg"]["height"]) == (0, 0)


def test_a_name_that_is_not_utf8_is_stored_escaped_under_the_id_of_that_name(milvus, tmp_path):
    name = os.fsdecode(b"/p/caf\xe9.jpg")
    ingest(_write(tmp_path / "s", [(name, 1, V[0])]), SERVER, "c")
    (row,) = milvus.at(SERVER)["c"].rows.values()
    assert (row["path"], row["id"]) == ("/p/caf\\xe9.jpg", file_id("/p/caf\\xe9.jpg"))
    assert ingest(str(tmp_path / "s"), SERVER, "c").unchanged == 1


def test_two_names_of_one_key_never_replace_each_other(milvus, tmp_path, monkeypatch):
    clash = {"/p/b.jpg": "/p/a.jpg", "/p/d.jpg": "/p/a.jpg", "/p/f.jpg": "/p/e.jpg"}
    monkeypatch.setattr(ingest_module, "file_id", lambda name: file_id(clash.get(name, name)))
    shards = _write(tmp_path / "s", [("/p/b.jpg", 100, V[1]), ("/p/a.jpg", 100, V[0]), ("/p/c.jpg", 100, V[2])],
                    [("/p/d.jpg", 100, V[3])])
    report = ingest(shards, SERVER, "c")
    assert (report.written, report.total) == (2, 2)  # the smallest name keeps the key
    assert sorted(report.skipped) == [(p, f"its id {file_id('/p/a.jpg')} is also the id of /p/a.jpg")
                                      for p in ("/p/b.jpg", "/p/d.jpg")]
    assert {p: v for p, (_, v) in _stored(milvus, SERVER).items()} == {"/p/a.jpg": V[0].tolist(),
                                                                        "/p/c.jpg": V[2].tolist()}
    # a name whose key the collection holds under another name, good or failed, is refused by the writer
    ingest(_write(tmp_path / "e", [("/p/e.jpg", 100, None)]), SERVER, "c")
    report = ingest(_write(tmp_path / "later", [("/p/b.jpg", 300, V[3]), ("/p/f.jpg", 300, V[3])]), SERVER, "c")
    assert (report.written, sorted(report.skipped)) == (0, [
        ("/p/b.jpg", f"its id {file_id('/p/a.jpg')} is held by /p/a.jpg"),
        ("/p/f.jpg", f"its id {file_id('/p/e.jpg')} is held by /p/e.jpg")])
    assert _stored(milvus, SERVER)["/p/a.jpg"] == (100, V[0].tolist())
    report = ingest(_write(tmp_path / "fails", [("/p/b.jpg", 400, None)]), SERVER, "c")  # nor a failure of it
    assert (report.removed, report.skipped) == (0, [("/p/b.jpg", f"its id {file_id('/p/a.jpg')} is held by /p/a.jpg")])
    assert "/p/a.jpg" in _stored(milvus, SERVER)


def test_deleting_with_another_names_key_leaves_that_row(milvus, tmp_path):
    client = milvus.client(SERVER)
    ingest(_write(tmp_path / "s", [("/p/a.jpg", 1, V[0])]), SERVER, "c")
    assert ingest_module._delete(client, "c", ["/p/zz.jpg"]) == 0
    real = file_id
    try:
        ingest_module.file_id = lambda name: real("/p/a.jpg")
        assert ingest_module._delete(client, "c", ["/p/other.jpg"]) == 0  # same key, another name
        assert set(_stored(milvus, SERVER)) == {"/p/a.jpg"}
    finally:
        ingest_module.file_id = real
    assert ingest_module._delete(client, "c", ["/p/a.jpg", "/p/a.jpg"]) == 1 and _stored(milvus, SERVER) == {}


@pytest.mark.parametrize("batch", [512, 1])
def test_files_gone_from_a_source_are_deleted_but_not_a_siblings(milvus, tmp_path, monkeypatch, batch):
    monkeypatch.setattr(ingest_module, "BATCH", batch)
    src, sib = tmp_path / "set", tmp_path / "set2"
    for folder in (src, sib):
        folder.mkdir()
        for name in ("a.png", "b.png", "c.png", "d.png"):
            (folder / name).write_bytes(b"x")
    files = [(str(f / n), 1, V[0]) for f in (src, sib) for n in ("a.png", "b.png", "d.png")] + [
        (str(src / "c.png"), 1, None)]
    shards = _write(tmp_path / "s", files)
    first = ingest(shards, SERVER, "c")
    for gone in (src / "a.png", src / "c.png", src / "d.png", sib / "b.png"):
        gone.unlink()
    kept = ingest(shards, SERVER, "c")
    assert (kept.gone, kept.total) == (0, first.total) == (0, 6)
    pruned = ingest(shards, SERVER, "c", delete_gone=str(src))
    assert (pruned.gone, pruned.total) == (2, 4)
    assert set(_stored(milvus, SERVER)) == {str(src / "b.png")} | {str(sib / n) for n in ("a.png", "b.png", "d.png")}
    assert _rows(milvus, SERVER, "c_skipped") == {}  # its failure record too


def test_what_ingest_refuses(milvus, tmp_path):
    with pytest.raises(ValueError) as e:
        ingest(str(tmp_path), SERVER, engine="spark")
    assert str(e.value) == "unknown engine 'spark'; choose from: local, ray"
    with pytest.raises(StoreError) as e:
        ingest(str(tmp_path), str(tmp_path / "c.db"), engine="ray")
    assert str(e.value) == ("a milvus-lite file takes one process: ingest into it with --engine local, or give a "
                            "Milvus server URI")
    with pytest.raises(StoreError) as e:
        ingest(str(tmp_path / "none"), SERVER)
    assert str(e.value) == f"no shards in {tmp_path / 'none'}"
    assert milvus.servers == {}


def test_the_collection_is_made_as_asked_and_a_lite_file_takes_local_ingest(milvus, tmp_path):
    shards = _write(tmp_path / "s", [("/p/a.jpg", 1, V[0])])
    ingest(shards, SERVER, index_type="IVF_FLAT")
    assert sorted(milvus.at(SERVER)) == ["lookalike", "lookalike_skipped"]
    assert milvus.at(SERVER)["lookalike"].index["index_type"] == "IVF_FLAT"
    report = ingest(shards, SERVER, rebuild=True)
    assert (report.written, report.unchanged) == (1, 0)
    db = tmp_path / "c.db"
    assert ingest(shards, str(db), "x").total == 1 and sorted(milvus.at(str(db))) == ["x", "x_skipped"]
    assert ("flush", "x", {}) in milvus.calls


class _Ray(types.ModuleType):
    """Ray's calls that ingest makes, in plain Python: a task runs when its result is asked for."""

    def __init__(self, cpus: float | None) -> None:
        super().__init__("ray")
        self.cpus, self.options, self.in_flight, self.sessions, self.ran = cpus, None, [], [], []

    def cluster_resources(self) -> dict:
        return {} if self.cpus is None else {"CPU": self.cpus}

    def remote(self, **options):
        self.options = options
        return lambda fn: types.SimpleNamespace(remote=lambda *args: (fn, args))

    def wait(self, pending: list, num_returns: int):
        assert num_returns == 1
        self.in_flight.append(len(pending))
        return pending[:1], pending[1:]

    def get(self, ref):
        fn, args = ref
        self.ran.append(args[3])
        return fn(*args)


@pytest.fixture
def ray(monkeypatch):
    return lambda cpus: stand_in_ray(monkeypatch, _Ray(cpus), ingest_module)


def _five_shards(tmp_path) -> str:
    return _write(tmp_path / "s", *([(f"/p/{i}.jpg", 1, V[i % 4])] for i in range(5)))


def test_ray_runs_one_task_per_shard_at_most_workers_at_a_time(milvus, tmp_path, ray):
    fake = ray(4.0)
    shards = _five_shards(tmp_path)
    progress = []
    report = ingest(shards, SERVER, "c", engine="ray", workers=2, address="ray://head:10001", verbose=True,
                    on_progress=progress.append)
    assert (report.engine, report.workers, report.written, report.total, progress) == ("ray", 2, 5, 5, [1] * 5)
    assert fake.sessions == [("ray://head:10001", True)]
    assert fake.options == {"num_cpus": 1.0, "max_retries": 3}
    assert fake.in_flight == [2, 2, 2, 2, 1]
    assert sorted(fake.ran) == sorted(Shards(shards).names())


def test_ray_uses_the_clusters_cpus_by_default_each_task_a_share_of_them(milvus, tmp_path, ray):
    shards = _five_shards(tmp_path)
    fake = ray(3.0)
    report = ingest(shards, SERVER, "c", engine="ray")
    assert (report.workers, fake.in_flight, fake.options["num_cpus"]) == (3, [3, 3, 3, 2, 1], 1.0)
    assert fake.sessions == [(None, False)]
    fake = ray(3.0)
    assert ingest(shards, SERVER, "d", engine="ray", workers=6).workers == 6
    assert (fake.options["num_cpus"], fake.in_flight) == (0.5, [5, 4, 3, 2, 1])
    fake = ray(None)  # a cluster that reports no CPUs: one
    assert ingest(shards, SERVER, "e", engine="ray").workers == 1
    assert (fake.options["num_cpus"], fake.in_flight) == (1.0, [1] * 5)
    fake = ray(0.5)
    assert ingest(shards, SERVER, "f", engine="ray").workers == 1
    assert fake.options["num_cpus"] == 0.5


def test_two_pairs_of_names_sharing_keys_each_keep_their_smallest(milvus, tmp_path, monkeypatch):
    clash = {"/p/b.jpg": "/p/a.jpg", "/p/f.jpg": "/p/e.jpg"}  # exactly two names on each key
    monkeypatch.setattr(ingest_module, "file_id", lambda name: file_id(clash.get(name, name)))
    report = ingest(_write(tmp_path / "s", [("/p/f.jpg", 1, V[0]), ("/p/b.jpg", 1, V[1]), ("/p/e.jpg", 1, V[2]),
                                            ("/p/a.jpg", 1, V[3])]), SERVER, "c")
    assert sorted(report.skipped) == [("/p/b.jpg", f"its id {file_id('/p/a.jpg')} is also the id of /p/a.jpg"),
                                      ("/p/f.jpg", f"its id {file_id('/p/e.jpg')} is also the id of /p/e.jpg")]
    assert sorted(_stored(milvus, SERVER)) == ["/p/a.jpg", "/p/e.jpg"]


def test_keys_a_float_could_not_tell_apart_are_no_clash(milvus, tmp_path, monkeypatch):
    keys = {"/p/a.jpg": 2**62, "/p/b.jpg": 2**62 + 1}  # equal as float64
    monkeypatch.setattr(ingest_module, "file_id", lambda name: keys[name])
    report = ingest(_write(tmp_path / "s", [("/p/a.jpg", 1, V[0]), ("/p/b.jpg", 1, V[1])]), SERVER, "c")
    assert (report.written, report.skipped) == (2, [])


def test_an_older_failure_leaves_the_good_row_and_the_rest_of_its_batch(milvus, tmp_path):
    ingest(_write(tmp_path / "1", [("/p/a.jpg", 200, V[0])]), SERVER, "c")
    report = ingest(_write(tmp_path / "2", [("/p/a.jpg", 100, None), ("/p/b.jpg", 100, V[1])]), SERVER, "c")
    assert (report.written, report.removed, sorted(_stored(milvus, SERVER))) == (1, 0, ["/p/a.jpg", "/p/b.jpg"])


def test_a_good_row_of_the_failures_time_and_size_wins_whatever_its_hash(milvus, tmp_path):
    for i, digest in enumerate(("12ab", "ab12")):  # a hash starting with a digit or a letter
        uri = f"{SERVER}/{i}"
        ingest(_write(tmp_path / f"bad{i}", [("/p/a.jpg", 100, None, 10, None, "cut short")]), uri, "c")
        report = ingest(_write(tmp_path / f"good{i}", [("/p/a.jpg", 100, V[0], 10, digest)]), uri, "c")
        assert (report.written, _rows(milvus, uri, "c_skipped")) == (1, {})
        report = ingest(str(tmp_path / f"bad{i}"), uri, "c")  # and the failure again changes nothing
        assert (report.removed, set(_stored(milvus, uri))) == (0, {"/p/a.jpg"})


def test_rows_removed_and_files_held_are_counted_over_every_batch(milvus, tmp_path, monkeypatch):
    monkeypatch.setattr(ingest_module, "BATCH", 1)  # one row an upsert, two ids a look-up
    names = [f"/p/{i}.jpg" for i in range(5)]
    ingest(_write(tmp_path / "good", [(n, 100, V[i % 4]) for i, n in enumerate(names)]), SERVER, "c")
    again = ingest(str(tmp_path / "good"), SERVER, "c")
    assert (again.written, again.unchanged) == (0, 5)
    report = ingest(_write(tmp_path / "failed", [(n, 200, None) for n in names[:3]]), SERVER, "c")
    assert (report.removed, sorted(_stored(milvus, SERVER))) == (3, names[3:])


def test_a_newer_failure_leaves_the_rest_of_its_batch(milvus, tmp_path):
    ingest(_write(tmp_path / "1", [("/p/a.jpg", 100, V[0])]), SERVER, "c")
    report = ingest(_write(tmp_path / "2", [("/p/a.jpg", 200, None), ("/p/b.jpg", 100, V[1])]), SERVER, "c")
    assert (report.written, report.removed, sorted(_stored(milvus, SERVER))) == (1, 1, ["/p/b.jpg"])
