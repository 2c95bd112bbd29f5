"""Embedding into Parquet shards, locally and on a local Ray cluster: the vectors equal ``lookalike
index``'s, broken files are rows with reasons, a killed actor loses and repeats nothing, a re-run
embeds nothing."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pyarrow")
pytestmark = pytest.mark.slow

from helpers import shard_rows  # noqa: E402

from lookalike.api import Index  # noqa: E402
from lookalike.cluster import embed as embed_module  # noqa: E402
from lookalike.cluster.embed import embed, model_spec, resources  # noqa: E402
from lookalike.cluster.shards import Shards  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402

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


@pytest.fixture(scope="module")
def indexed(generated, tmp_path_factory):
    """``{path: vector}`` as ``lookalike index`` embeds the generated folder."""
    with Index.open(tmp_path_factory.mktemp("idx") / "index", create=True) as idx:
        idx.index(generated.root)
        ids, vectors = idx.vectors()
        return dict(zip(idx.collection.store.paths(ids), np.asarray(vectors)))


def assert_matches_index(rows: dict[str, dict], indexed: dict[str, np.ndarray], generated) -> None:
    assert len(rows) == generated.n_images + len(generated.broken)
    ok = {p: r for p, r in rows.items() if r["error"] is None}
    assert set(ok) == set(indexed)
    diff = max(float(np.abs(np.asarray(r["vector"], np.float32) - indexed[p]).max()) for p, r in ok.items())
    assert diff <= 1e-5
    for name in generated.broken:
        row = rows[str(generated.root / name)]
        assert row["vector"] is None and row["hash"] is None
        assert "not an image" in row["error"]
    first = next(iter(ok.values()))
    assert (first["model"], first["layer"]) == ("efficientnet-lite0", model_spec().layer)
    assert first["size"] > 0 and first["mtime_ns"] > 0 and len(first["hash"]) == 32


def test_local_engine_matches_index_and_reruns_nothing(generated, indexed, tmp_path):
    out = tmp_path / "shards"
    report = embed(str(generated.root), str(out), model_spec(), "local", shard_rows=100)
    assert (report.embedded, len(report.skipped), report.shards) == (generated.n_images, len(generated.broken), 3)
    assert_matches_index(shard_rows(out), indexed, generated)
    again = embed(str(generated.root), str(out), model_spec(), "local")
    assert (again.embedded, again.unchanged, len(again.skipped), again.shards) == (0, generated.n_images, len(generated.broken), 0)


def test_shards_refuse_another_model(generated, tmp_path):
    out = tmp_path / "shards"
    assert embed(str(generated.root / "part1" / "img0001.jpg"), str(out), model_spec(), "local").embedded == 1
    with pytest.raises(StoreError, match="hold efficientnet-lite0 .*-d\\) vectors, not efficientnet-lite0"):
        embed(str(generated.root), str(out), model_spec(layer="blocks"), "local")


def test_a_uri_source_names_files_by_uri(generated, tmp_path):
    out = f"file://{tmp_path}/shards"
    report = embed(f"file://{generated.root / 'part1'}", out, model_spec(), "local")
    rows = shard_rows(tmp_path / "shards")
    assert report.embedded == generated.n_images // 2 and len(rows) == generated.n_images // 2
    assert all(p.startswith(f"file://{generated.root}/part1/") for p in rows)


@pytest.mark.parametrize("cpus", [1, 2, 3, 8, 64])
@pytest.mark.parametrize("workers", [1, 2, 4, 64])
def test_actors_never_hold_every_cpu(cpus, workers):
    actor, decode = resources(cpus, workers)
    assert 0 < actor <= 1 and 0 < decode <= 1
    assert cpus - actor * workers >= decode  # a read/decode task can always be scheduled


def _run(**kwargs) -> tuple[threading.Thread, dict]:
    """Run ``embed`` in a thread (a deadlock fails the test instead of hanging it)."""
    result: dict = {}

    def target() -> None:
        try:
            result["report"] = embed(**kwargs)
        except BaseException as e:  # reported by the test
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, result


def _finish(thread: threading.Thread, result: dict):
    thread.join(timeout=600)
    assert not thread.is_alive(), "the Ray pipeline did not finish (deadlock?)"
    if "error" in result:
        raise result["error"]
    return result["report"]


def test_ray_on_two_cpus_matches_index_and_reruns_nothing(ray_cluster, generated, indexed, tmp_path):
    out = tmp_path / "shards"
    args = dict(source=str(generated.root), out=str(out), spec=model_spec(), engine="ray", workers=2)
    report = _finish(*_run(**args))
    assert (report.embedded, len(report.skipped), report.workers) == (generated.n_images, len(generated.broken), 2)
    assert sorted(p for p, _ in report.skipped) == sorted(str(generated.root / n) for n in generated.broken)
    assert_matches_index(shard_rows(out), indexed, generated)
    shards_before = Shards(str(out)).names()
    again = _finish(*_run(**args))
    assert (again.embedded, again.unchanged, again.shards) == (0, generated.n_images, 0)
    assert Shards(str(out)).names() == shards_before


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_a_name_that_is_not_utf8_is_embedded_and_kept_byte_for_byte(generated, tmp_path, request, engine):
    if engine == "ray":
        request.getfixturevalue("ray_cluster")
    photos = tmp_path / "photos"
    photos.mkdir()
    odd = photos / os.fsdecode(b"x\xff.jpg")
    odd.write_bytes((generated.root / "part1" / "img0001.jpg").read_bytes())
    (photos / "plain.jpg").write_bytes((generated.root / "part0" / "img0002.jpg").read_bytes())
    out = tmp_path / "shards"
    report = embed(str(photos), str(out), model_spec(), engine, workers=1)
    assert (report.embedded, report.skipped) == (2, [])
    assert sorted(shard_rows(out)) == sorted([str(odd), str(photos / "plain.jpg")])
    assert embed(str(photos), str(out), model_spec(), engine, workers=1).unchanged == 2


def _actor_pids() -> set[int]:
    """Processes of the embedding actors (Ray names them after the class)."""
    pids = set()
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and b"MapBatches(_Embed)" in Path(f"/proc/{entry}/cmdline").read_bytes():
                pids.add(int(entry))
        except OSError:
            continue
    return pids


def test_ray_actor_killed_mid_run_loses_and_repeats_nothing(ray_cluster, generated, indexed, tmp_path, monkeypatch):
    monkeypatch.setattr(embed_module, "BLOCK", 16)  # many small tasks, so the kill lands mid-run
    out = tmp_path / "shards"
    progress = []
    thread, result = _run(source=str(generated.root), out=str(out), spec=model_spec(), engine="ray", workers=2,
                          shard_rows=16, on_progress=progress.append)
    deadline = time.monotonic() + 300
    while not progress and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    victims = _actor_pids()
    assert victims and thread.is_alive() and sum(progress) < generated.n_images, "no actor to kill mid-run"
    victim = min(victims)
    os.kill(victim, signal.SIGKILL)
    report = _finish(thread, result)
    assert victim not in _actor_pids()
    assert (report.embedded, len(report.skipped)) == (generated.n_images, len(generated.broken))
    assert_matches_index(shard_rows(out), indexed, generated)


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_rerun_reports_files_gone_from_source(generated, tmp_path, as_uri):
    import shutil

    source, other = tmp_path / "source", tmp_path / "source-other"
    for folder, names in ((source, ("img0001.jpg", "img0005.jpg", "img0007.jpg")), (other, ("img0011.jpg",))):
        folder.mkdir()
        for name in names:
            shutil.copy(generated.root / "part1" / name, folder / name)
    location = (lambda p: f"file://{p}") if as_uri else str
    out = str(tmp_path / "shards")
    embed(location(source), out, model_spec(), "local")
    embed(location(other), out, model_spec(), "local")  # a sibling folder sharing the prefix, same shards
    assert embed(location(source), out, model_spec(), "local").gone == []
    (source / "img0005.jpg").unlink()
    again = embed(location(source), out, model_spec(), "local")
    assert (again.embedded, again.unchanged, again.gone) == (0, 2, [location(source / "img0005.jpg")])
    assert again.to_dict()["gone"] == [location(source / "img0005.jpg")]
