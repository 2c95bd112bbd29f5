"""``lookalike.cluster.embed`` with the tiny model (helpers.tiny_model: milliseconds a batch, no torch),
and Ray's calls stood in for by plain Python: shards of at most ``shard_rows`` files whose vectors equal
what ``lookalike index`` stores; broken files as rows with their reasons; a re-run embedding only what
changed and reporting files gone from the source but not from a sibling whose name extends it; the
report; the Ray engine's blocks, actors, CPUs and GPUs as documented. (The default model on a real Ray
cluster: test_embed.py, slow.)"""

from __future__ import annotations

import os
import types

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pyarrow")

from helpers import shard_rows, stand_in_ray, tiny_model  # noqa: E402

from lookalike.api import Index  # noqa: E402
from lookalike.cluster import embed as embed_module  # noqa: E402
from lookalike.cluster.embed import EmbedReport, embed, model_spec, resources  # noqa: E402
from lookalike.cluster.shards import Shards, paths  # noqa: E402
from lookalike.index.store import StoreError  # noqa: E402

BROKEN = {"not_an_image.jpg": b"plain text, not a picture", "empty.png": b""}


def _pictures(folder, n: int, seed: int = 7) -> list[str]:
    """``n`` small distinct pictures (JPEG and PNG) in ``folder``, and the two broken files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        cells = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        name = f"img{i:02d}.jpg" if i % 3 else f"img{i:02d}.png"
        Image.fromarray(cells).resize((40 + i % 4 * 8, 48), Image.BILINEAR).save(folder / name)
        names.append(str(folder / name))
    for name, data in BROKEN.items():
        (folder / name).write_bytes(data)
    return names


def _indexed(folder, model, tmp_path) -> dict[str, np.ndarray]:
    """``{path: vector}`` as ``lookalike index`` embeds ``folder`` with ``model`` (the reference)."""
    with Index.open(tmp_path / "reference", model=str(model), create=True) as idx:
        idx.index(folder)
        ids, vectors = idx.vectors()
        return dict(zip(idx.collection.store.paths(ids), np.asarray(vectors)))


def _assert_matches(rows: dict[str, dict], indexed: dict[str, np.ndarray], folder) -> None:
    ok = {p: r for p, r in rows.items() if r["error"] is None}
    assert set(ok) == set(indexed)
    assert all(np.abs(np.asarray(r["vector"], np.float32) - indexed[p]).max() <= 1e-6 for p, r in ok.items())
    for name in BROKEN:
        row = rows[str(folder / name)]
        assert (row["vector"], row["hash"]) == (None, None) and row["error"].startswith("not an image")
    for p, r in ok.items():
        with Image.open(p) as img:
            assert (r["width"], r["height"]) == img.size
        assert (r["size"], r["mtime_ns"]) == (os.stat(p).st_size, os.stat(p).st_mtime_ns)
        assert len(r["hash"]) == 32 and (r["model"], r["layer"]) == ("tiny-0", "output")


@pytest.fixture
def model(tmp_path):
    return tiny_model(tmp_path / "tiny")


def test_local_shards_hold_at_most_shard_rows_files_each_equal_to_the_index(model, tmp_path):
    folder = tmp_path / "photos"
    _pictures(folder, 9)
    out = tmp_path / "shards"
    plans, progress = [], []
    report = embed(str(folder), str(out), model_spec(str(model)), "local", batch=2, shard_rows=4,
                   on_plan=plans.append, on_progress=progress.append)
    assert (report.engine, report.workers, report.embedded, report.unchanged, report.shards) == ("local", 2, 9, 0, 3)
    assert sorted(p for p, _ in report.skipped) == sorted(str(folder / n) for n in BROKEN)
    assert all(r.startswith("not an image") for _, r in report.skipped)
    assert (plans, progress) == ([11], [4, 4, 3])
    assert sorted(len(shard) for _, shard in Shards(str(out))) == [3, 4, 4]
    _assert_matches(shard_rows(out), _indexed(folder, model, tmp_path), folder)
    again_plans, again_progress = [], []
    again = embed(str(folder), str(out), model_spec(str(model)), "local", workers=3, on_plan=again_plans.append,
                  on_progress=again_progress.append)
    assert (again.embedded, again.unchanged, again.shards, again.workers) == (0, 9, 0, 0)
    assert sorted(again.skipped) == sorted(report.skipped)  # the broken files, from the shards, not read again
    assert (again_plans, again_progress) == ([0], [])


def test_a_changed_file_is_embedded_again_and_one_gone_reported_but_not_a_siblings(model, tmp_path):
    folder, sibling = tmp_path / "set", tmp_path / "set2"
    names = _pictures(folder, 4)
    others = _pictures(sibling, 2, seed=8)
    out = str(tmp_path / "shards")
    spec = model_spec(str(model))
    embed(str(folder), out, spec)
    embed(str(sibling), out, spec)
    os.utime(names[1], ns=(1, 1))
    os.remove(names[2])
    os.remove(others[0])
    report = embed(str(folder), out, spec, workers=1)
    assert (report.embedded, report.unchanged, report.gone, report.workers) == (1, 2, [names[2]], 1)
    held = sorted(r["mtime_ns"] for _, shard in Shards(out) for p, r in zip(paths(shard), shard.to_pylist())
                  if p == names[1])
    assert held[0] == 1 and len(held) == 2  # a second row beside the first; the newest wins when loaded
    assert report.to_dict()["gone"] == [names[2]]


def test_the_report_as_json():
    report = EmbedReport("ray", workers=2, embedded=10, unchanged=3, skipped=[("/p/x.jpg", "broken")], shards=2,
                         gone=["/p/y.jpg"], seconds=4.0126)
    assert report.to_dict() == {"engine": "ray", "workers": 2, "embedded": 10, "unchanged": 3,
                                "skipped": [{"path": "/p/x.jpg", "reason": "broken"}], "shards": 2,
                                "gone": ["/p/y.jpg"], "seconds": 4.013, "images_per_second": 2.49}
    assert EmbedReport("local", embedded=3, seconds=0.5).to_dict()["images_per_second"] == 6.0
    assert EmbedReport("local", embedded=3, seconds=0.0).to_dict()["images_per_second"] == 0.0
    assert EmbedReport("local", embedded=2, seconds=3.0).to_dict()["images_per_second"] == 0.67
    assert EmbedReport("local").to_dict() == {"engine": "local", "workers": 0, "embedded": 0, "unchanged": 0,
                                              "skipped": [], "shards": 0, "gone": [], "seconds": 0.0,
                                              "images_per_second": 0.0}


def test_the_seconds_are_the_runs_on_a_stepped_clock(model, tmp_path, monkeypatch):
    _pictures(tmp_path / "photos", 1)
    ticks = iter([5.0, 7.25])
    monkeypatch.setattr(embed_module.time, "perf_counter", lambda: next(ticks))
    assert embed(str(tmp_path / "photos"), str(tmp_path / "s"), model_spec(str(model))).seconds == 2.25


def test_what_embed_refuses(model, tmp_path):
    folder = tmp_path / "photos"
    _pictures(folder, 1)
    with pytest.raises(ValueError) as e:
        embed(str(folder), str(tmp_path / "s"), model_spec(str(model)), "spark")
    assert str(e.value) == "unknown engine 'spark'; choose from: local, ray"
    embed(str(folder), str(tmp_path / "s"), model_spec(str(model)))
    other = tiny_model(tmp_path / "other", dim=5)
    with pytest.raises(StoreError, match=r"^shards in .* hold tiny-0 \(layer output, 8-d\) vectors, not tiny-0 "
                                         r"\(layer output, 5-d\); use another --out"):
        embed(str(folder), str(tmp_path / "s"), model_spec(str(other)))


def test_a_bare_onnx_file_is_loaded_once_to_learn_its_dimension(model, tmp_path):
    bare = tmp_path / "bare.onnx"
    bare.write_bytes((model / "model.onnx").read_bytes())
    (tmp_path / "bare.json").write_text('{"input_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}')
    assert model_spec(str(bare)).dim == 8
    assert model_spec(str(model)).dim == 8 and model_spec(str(model)).name == "tiny-0"


@pytest.mark.parametrize("cpus, workers, want", [
    (2, 1, (1.0, 0.5)), (1, 1, (0.5, 0.25)), (8, 2, (1.0, 1.0)), (3, 4, (0.5, 0.5)), (4, 3, (1.0, 0.5)),
    (1, 2, (0.25, 0.25))])
def test_embedding_actors_leave_a_cpu_to_reading_worked_by_hand(cpus, workers, want):
    # at least 1 CPU left (half of a 1-CPU cluster); an actor at most 1; a read task at most 1 and half the rest
    assert resources(cpus, workers) == pytest.approx(want)


def test_a_read_tasks_memory_is_its_process_two_copies_of_its_block_and_one_large_photo(model):
    spec = model_spec(str(model))
    one_image = 3 * 32 * 32 * 4  # float32 planes at the model's 32-pixel input
    assert embed_module._decode_memory(spec, 0) == 220 * 2**20 + 72_000_000
    assert embed_module._decode_memory(spec, 11) - embed_module._decode_memory(spec, 10) == 2 * one_image


class _Data:
    """A Ray Dataset's calls that embed makes, in plain Python: batches of numpy columns, read back
    one block (here: one output of the last ``map_batches`` call) at a time, as Ray does."""

    def __init__(self, ray, columns: dict, blocks: list[dict] | None = None) -> None:
        self.ray, self.columns, self.blocks = ray, columns, blocks or [columns]

    def map_batches(self, fn, batch_size, batch_format, fn_kwargs=None, fn_constructor_kwargs=None, **options):
        assert batch_format == "numpy"
        self.ray.stages.append({"fn": getattr(fn, "__name__", fn), "batch_size": batch_size, **options,
                                **({"constructor": fn_constructor_kwargs} if fn_constructor_kwargs else {})})
        # an actor asked to run on a GPU runs on this machine's CPU
        call = fn(**{**fn_constructor_kwargs, "device": "cpu"}) if isinstance(fn, type) else \
            (lambda cols: fn(cols, **fn_kwargs))
        n = len(next(iter(self.columns.values())))
        outs = [call({k: v[s:s + batch_size] for k, v in self.columns.items()}) for s in range(0, n, batch_size)]
        outs = [{k: np.asarray(v) for k, v in o.items()} for o in outs]  # Ray hands numpy columns on
        return _Data(self.ray, {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}, outs)

    def iter_batches(self, batch_size, batch_format):
        assert (batch_size, batch_format) == (None, "numpy")
        yield from self.blocks


class _Ray(types.ModuleType):
    def __init__(self, cpus: float, gpus: float = 0) -> None:
        super().__init__("ray")
        self.cpus, self.gpus, self.stages, self.sessions, self.blocks = cpus, gpus, [], [], None
        self.data = types.SimpleNamespace(from_items=self.from_items, ActorPoolStrategy=lambda size: ("pool", size))

    def cluster_resources(self) -> dict:
        return {"CPU": self.cpus, **({"GPU": self.gpus} if self.gpus else {})}

    def from_items(self, items: list[dict], override_num_blocks: int) -> _Data:
        self.blocks = override_num_blocks
        return _Data(self, {k: np.array([i[k] for i in items], object) for k in items[0]})


@pytest.fixture
def ray(monkeypatch):
    return lambda cpus, gpus=0: stand_in_ray(monkeypatch, _Ray(cpus, gpus), embed_module)


def test_the_ray_engine_writes_the_same_shards_through_its_stages(model, tmp_path, ray, monkeypatch):
    folder = tmp_path / "photos"
    _pictures(folder, 9)
    odd = folder / os.fsdecode(b"x\xff.png")  # a name that is not UTF-8 travels as its bytes
    odd.write_bytes((folder / "img00.png").read_bytes())
    fake = ray(3.0)
    monkeypatch.chdir(tmp_path)
    progress = []
    report = embed(str(folder), "shards", model_spec(str(model)), "ray", address="ray://head:10001", batch=2,
                   shard_rows=4, verbose=True, on_progress=progress.append)
    assert (report.engine, report.workers, report.embedded, report.shards) == ("ray", 3, 10, 3)
    assert sorted(p for p, _ in report.skipped) == sorted(str(folder / n) for n in BROKEN)
    assert all(r.startswith("not an image") for _, r in report.skipped)
    assert sum(progress) == 12 and fake.sessions == [("ray://head:10001", True)]
    rows = shard_rows(tmp_path / "shards")
    assert str(odd) in rows and rows[str(odd)]["vector"] == rows[str(folder / "img00.png")]["vector"]
    _assert_matches(rows, _indexed(folder, model, tmp_path), folder)
    # 12 files over 3 actors: blocks of max(batch 2, min(64, ceil(12 / 6))) = 2 files, so 6 blocks
    decode, actors, write = fake.stages
    assert fake.blocks == 6
    assert (decode["fn"], decode["batch_size"], decode["num_cpus"]) == ("_decode", 2, 0.5)
    assert decode["memory"] == embed_module._decode_memory(model_spec(str(model)), 2)
    assert (actors["fn"], actors["batch_size"], actors["num_cpus"], actors["num_gpus"], actors["compute"]) == (
        "_Embed", 2, 2 / 3, None, ("pool", 3))
    assert (actors["constructor"]["threads"], actors["constructor"]["device"]) == (1, "cpu")
    assert actors["constructor"]["model"] == (model / "model.onnx").read_bytes()
    assert (write["fn"], write["batch_size"], write["num_cpus"]) == ("_write", 4, 0.5)
    again = embed(str(folder), "shards", model_spec(str(model)), "ray")
    assert (again.embedded, again.unchanged, fake.sessions[-1]) == (0, 10, ("ray://head:10001", True))


def test_ray_blocks_hold_at_most_64_files_and_at_least_a_batch(model, tmp_path, ray, monkeypatch):
    folder = tmp_path / "photos"
    _pictures(folder, 10)
    fake = ray(1.0)
    embed(str(folder), str(tmp_path / "a"), model_spec(str(model)), "ray", batch=4)
    # 12 files, 1 actor: ceil(12 / 2) = 6 files a block, 2 blocks
    assert (fake.blocks, fake.stages[0]["batch_size"], fake.stages[1]["compute"]) == (2, 6, ("pool", 1))
    assert fake.sessions == [(None, False)]
    fake = ray(1.0)
    embed(str(folder), str(tmp_path / "b"), model_spec(str(model)), "ray", batch=8)
    assert (fake.blocks, fake.stages[0]["batch_size"]) == (2, 8)  # at least a batch
    monkeypatch.setattr(embed_module, "BLOCK", 5)
    fake = ray(1.0)
    embed(str(folder), str(tmp_path / "c"), model_spec(str(model)), "ray", batch=1)
    assert (fake.blocks, fake.stages[0]["batch_size"]) == (3, 5)  # at most BLOCK: 12 files in 5, 5 and 2


def test_ray_workers_from_the_gpus_each_asks_for(model, tmp_path, ray):
    folder = tmp_path / "photos"
    _pictures(folder, 2)
    fake = ray(8.0, gpus=3)
    report = embed(str(folder), str(tmp_path / "s"), model_spec(str(model)), "ray", gpus_per_worker=1.5)
    actors = fake.stages[1]
    assert (report.workers, actors["num_gpus"], actors["compute"], actors["constructor"]["device"]) == (
        2, 1.5, ("pool", 2), "cuda")
    assert actors["constructor"]["threads"] == 1 and actors["num_cpus"] == 1.0
    fake = ray(8.0, gpus=1)
    assert embed(str(folder), str(tmp_path / "t"), model_spec(str(model)), "ray", gpus_per_worker=2).workers == 1
    fake = ray(8.0, gpus=4)
    assert embed(str(folder), str(tmp_path / "u"), model_spec(str(model)), "ray", workers=3,
                 gpus_per_worker=1).workers == 3
    fake = ray(8.0)
    assert embed(str(folder), str(tmp_path / "v"), model_spec(str(model)), "ray", device="cuda").workers == 8
    assert fake.stages[1]["constructor"]["device"] == "cuda"


def test_model_spec_hands_on_the_layer_and_the_weights_file(tmp_path):
    blocks = model_spec("efficientnet-lite0", "blocks")
    assert (blocks.name, blocks.layer, blocks.dim) == ("efficientnet-lite0", "blocks", 320)  # its last block's width
    weights = tmp_path / "pt_inception.pth"
    weights.write_bytes(b"abc")  # found and fingerprinted only: nothing loads it here
    fid = model_spec("inception-v3-fid", weights=weights)
    assert fid.weights_path == weights
    assert fid.weights_sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256 of "abc"
