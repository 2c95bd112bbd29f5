"""One training run (``lookalike train``) on a stand-in network (tiny_lite.py) at a 32-pixel input:
the model directory it leaves, the split it records, refusing or resuming an unfinished run, and what
it hands on to preparing and fitting."""

import json
import types
from dataclasses import replace

import pytest
from lookalike.models.registry import resolve
from lookalike.train import loop, run
from lookalike.train.config import TrainConfig

from test_loop import CONFIG, make_data, stand_in  # noqa: F401  (a fixture)

CONFIG1 = replace(CONFIG, epochs=1)


class Stop(Exception):
    pass


def test_a_run_leaves_a_model_directory_with_its_split_and_time(stand_in, tmp_path, monkeypatch):
    data, out = make_data(tmp_path / "data"), tmp_path / "runs" / "mine"
    clock = iter([100.0, 112.34])
    monkeypatch.setattr(run, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    result, onnx_path, seconds = run.train(data, out, CONFIG1, name="given")
    assert seconds == pytest.approx(12.34) and onnx_path == out / "model.onnx"
    assert sorted(p.name for p in out.iterdir()) == ["lookalike.json", "model.onnx", "training.png"]  # no cache
    meta = json.loads((out / "lookalike.json").read_text())
    assert meta["name"] == "given" and meta["validation"] == result.val and meta["dim"] == 6
    held = loop.prepare(data, CONFIG1, tmp_path / "c").val.classes  # the split of the same seed
    assert len(held) == 2
    assert meta["split"] == {"data": str(data), "train_images": 12, "train_classes": 3, "val_data": str(data),
                             "val_images": 8, "val_classes": held, "centre": None, "train_seconds": 12.3}
    assert resolve(str(out)).dim == 6


def test_a_run_validated_on_another_folder_or_not_at_all_says_so(stand_in, tmp_path):
    data, other = make_data(tmp_path / "data"), make_data(tmp_path / "other", classes=2, per_class=3, seed=1)
    run.train(data, tmp_path / "a", CONFIG1, val_dir=other)
    split = json.loads((tmp_path / "a" / "lookalike.json").read_text())["split"]
    assert split["data"] == str(data) and split["train_images"] == 20 and split["train_classes"] == 5
    assert split["val_data"] == str(other) and split["val_images"] == 6 and split["val_classes"] == ["c0", "c1"]
    run.train(data, tmp_path / "b", replace(CONFIG1, val_split="none"))
    split = json.loads((tmp_path / "b" / "lookalike.json").read_text())["split"]
    assert split["val_data"] is None and split["val_images"] == 0 and split["val_classes"] == []
    assert json.loads((tmp_path / "b" / "lookalike.json").read_text())["name"] == "b"  # the directory's name


def test_an_unfinished_run_is_refused_without_resume_and_resumed_with_its_own_settings(stand_in, tmp_path):
    data, out = make_data(tmp_path / "data"), tmp_path / "out"
    config = replace(CONFIG, epochs=2, margin=0.125, loss="proxy-anchor")

    def stop(stage, done, total, info):
        if stage == "epoch" and done == 1:
            raise Stop

    with pytest.raises(Stop):
        run.train(data, out, config, progress=stop)
    assert (out / loop.CHECKPOINT).exists() and any((out / loop.CACHE_DIR).iterdir())  # kept for --resume
    with pytest.raises(ValueError, match=rf"^{out} holds an unfinished training run: add --resume to continue it, "
                                         "or choose another --out$"):
        run.train(data, out, config)
    seen = []
    result, _, _ = run.train(data, out, replace(config, epochs=5, margin=0.0, loss="normsoftmax"), resume=True,
                             progress=lambda *a: seen.append(a[:2]))
    assert result.config == config  # the saved settings, not the ones given
    assert [e.epoch for e in result.history] == [0, 1, 2] and ("epoch", 0) not in seen and ("epoch", 2) in seen
    assert sorted(p.name for p in out.iterdir()) == ["lookalike.json", "model.onnx", "training.png"]


def test_resume_without_an_unfinished_run_starts_one(stand_in, tmp_path):
    result, _, _ = run.train(make_data(tmp_path / "data"), tmp_path / "out", CONFIG1, resume=True)
    assert [e.epoch for e in result.history] == [0, 1]


def test_what_a_run_hands_on_to_preparing_and_fitting(stand_in, tmp_path, monkeypatch):
    calls = {}
    monkeypatch.setattr(run, "prepare", lambda *a: calls.update(prepare=a))

    def fit(*a, **k):
        calls["fit"] = (a, k)
        raise Stop

    monkeypatch.setattr(run, "fit", fit)
    threads = []
    monkeypatch.setattr(run.torch, "set_num_threads", threads.append)
    progress = lambda *a: None  # noqa: E731
    with pytest.raises(Stop):
        run.train("data", tmp_path / "out", val_dir="val", device="cuda", threads=3, workers=5, progress=progress,
                  follow_links=True, also_ema=(0.5,), centre_dir="photos")
    assert threads == [3]
    assert calls["prepare"] == ("data", TrainConfig(), tmp_path / "out" / ".cache", "val", progress, 5, True, "photos")
    assert calls["fit"] == ((None, TrainConfig(), tmp_path / "out", progress),
                            {"resume": False, "workers": 5, "device": "cuda", "also_ema": (0.5,)})
    with pytest.raises(Stop):
        run.train("data", str(tmp_path / "out"), CONFIG1)
    assert threads == [3]  # none asked: torch's own
    assert calls["prepare"][:3] == ("data", CONFIG1, tmp_path / "out" / ".cache")
    assert calls["prepare"][3:] == (None, loop._quiet, 2, False, None)
    assert calls["fit"][1] == {"resume": False, "workers": 2, "device": "cpu", "also_ema": ()}


def test_the_cache_folder_stays_when_it_holds_something_else(stand_in, tmp_path):
    out = tmp_path / "out"
    (out / loop.CACHE_DIR).mkdir(parents=True)
    (out / loop.CACHE_DIR / "mine.txt").write_text("kept")
    run.train(make_data(tmp_path / "data"), out, CONFIG1)
    assert [p.name for p in (out / loop.CACHE_DIR).iterdir()] == ["mine.txt"]

