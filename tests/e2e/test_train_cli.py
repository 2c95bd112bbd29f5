"""``lookalike train / evaluate / tune`` as a user runs them, and a trained model used by index and query."""

import json

import numpy as np
import pytest

from helpers import run_cli as run
from helpers import sample_photo

pytestmark = pytest.mark.slow

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "horse")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Five classes of random crops of one photo each."""
    root = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(1)
    for name in PHOTOS:
        (root / name).mkdir()
        img = sample_photo(name)
        w, h = img.size
        for i in range(5):
            x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
            img.crop((x, y, x + w // 2, y + h // 2)).resize((64, 64)).save(root / name / f"{i}.jpg")
    return root


@pytest.fixture(scope="module")
def model_dir(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "flowers-model"
    proc = run("train", data, "--out", out, "--epochs", "1", "--unfreeze", "2", "--train-size", "64", "--batch", "8",
               "--dim", "32", "--margin", "0.1", "--embed-size", "96", "--val-fraction", "0.4", "--json")
    return out, json.loads(proc.stdout)


def test_train_writes_a_model_directory(model_dir):
    out, summary = model_dir
    assert sorted(p.name for p in out.iterdir()) == ["lookalike.json", "model.onnx", "training.png"]
    assert summary["epochs"] == 1 and summary["validation"]["n_classes"] == 2  # 40% of 5 classes held out
    assert summary["untrained_validation"]["n_images"] == 10 and summary["centre"] is None  # the training images'
    meta = json.loads((out / "lookalike.json").read_text())
    assert meta["name"] == "flowers-model" and meta["dim"] == 32 and meta["training"]["unfreeze"] == 2
    assert meta["training"]["margin"] == 0.1
    assert meta["training"]["embed_size"] == 96 and meta["input_size"] == 96  # whole images at 96 px


def test_index_and_query_with_the_trained_model(model_dir, data, tmp_path):
    out, _ = model_dir
    ix = tmp_path / "ix"
    report = json.loads(run("index", data, "--model", out, "--index", ix, "--json").stdout)
    assert report["indexed"] == 25 and report["skipped"] == []
    query = data / "coffee" / "0.jpg"
    found = json.loads(run("query", query, "-k", "3", "--index", ix, "--json").stdout)
    assert found["results"][0]["path"] == str(query) and found["results"][0]["distance"] == 0.0
    assert len(found["results"]) == 3


def test_evaluate_with_the_trained_model_and_a_report(model_dir, data, tmp_path):
    out, _ = model_dir
    result = json.loads(run("evaluate", data, "--model", out, "--report", tmp_path / "r", "--json").stdout)
    assert result["n_images"] == 25 and result["n_classes"] == 5 and result["metric"] == "cosine"
    assert result["model"] == "flowers-model"
    # five classes of crops of one photo each: the trained features still find every crop's class first
    assert result["recall@1"] == 1.0 and result["map"] > 0.9, result
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["map"] == result["map"]
    again = json.loads(run("evaluate", data, "--model", out, "--metric", "l2", "--json").stdout)
    assert again["embedded"] == 0 and again["metric"] == "l2"
    table = run("evaluate", data, "--model", out).stdout
    assert "recall@1" in table and "map@r" in table


def test_train_centres_the_embedding_on_a_folder_of_unlabelled_images(data, tmp_path):
    collection = tmp_path / "photos"
    collection.mkdir()
    for name in PHOTOS[:3]:  # whole photos, no class folders
        sample_photo(name).resize((80, 60)).save(collection / f"{name}.jpg")
    (collection / "broken.jpg").write_bytes(b"not a picture")
    out = tmp_path / "centred"
    proc = run("train", data, "--out", out, "--epochs", "1", "--unfreeze", "1", "--train-size", "64", "--batch", "8",
               "--dim", "16", "--whiten", "0", "--centre-on", collection, "--val-fraction", "0.4")
    centre = json.loads((out / "lookalike.json").read_text())["split"]["centre"]
    assert centre["data"] == str(collection) and centre["listed"] == 4 and centre["images"] == 3
    assert [path for path, _ in centre["unreadable"]] == [str(collection / "broken.jpg")]
    assert f"warning: centred on 3 images; {collection / 'broken.jpg'} could not be read (" in proc.stderr
    proc = run("train", data, "--out", tmp_path / "m", "--centre-on", tmp_path / "missing", check=False)
    assert proc.returncode == 1 and "not a directory" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = run("train", data, "--out", tmp_path / "m", "--centre-on", tmp_path / "empty", check=False)
    assert proc.returncode == 1 and f"no images under {tmp_path / 'empty'}" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_user_errors_are_one_line(data, model_dir, tmp_path):
    proc = run("train", tmp_path / "missing", "--out", tmp_path / "m", check=False)
    assert proc.returncode == 1 and "not a directory" in proc.stderr
    proc = run("tune", data, "--grid", "colour=red", check=False)
    assert proc.returncode == 1 and "cannot tune" in proc.stderr and "Traceback" not in proc.stderr
    proc = run("train", data, "--out", tmp_path / "m", "--model", model_dir[0], check=False)  # not a base model
    assert proc.returncode == 1 and "EfficientNet-Lite" in proc.stderr


def test_tune_names_the_best_configuration(data, tmp_path):
    proc = run("tune", data, "--grid", "lr=1e-3,1e-4", "unfreeze=2", "train_size=64", "dim=32", "epochs=1",
               "--val-fraction", "0.4", "--out", tmp_path)
    assert "best: --lr" in proc.stdout
    assert "[2/2] epoch 1/1  val recall@1 " in proc.stderr  # progress goes to stderr, one line per epoch
    header = next(line for line in proc.stdout.splitlines() if "val mAP" in line)
    assert header.count("epochs") == 1 and "vs best" in header
    # five classes of five images, two held out: below the advice, and said so before training
    assert ("warning: 5 classes of 5 images (the median), of which 2 classes (10 images) held out for "
            "validation: less than the advice") in " ".join(proc.stderr.split())
    verdicts = json.loads((tmp_path / "tune.json").read_text())["trials"]
    if any(t["vs_best"] and t["vs_best"]["within_noise"] for t in verdicts):
        assert "note: within noise of the best: 1 other trial" in " ".join(proc.stderr.split())
    assert {p.name for p in tmp_path.iterdir()} == {"tune.json", "tune.csv", "tune.png"}
