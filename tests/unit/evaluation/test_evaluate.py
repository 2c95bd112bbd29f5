"""``lookalike.evaluation.evaluate``: labelled folders through a cached index, metrics, and the HTML report."""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import ranking_reference, sample_photo, variants

from lookalike.evaluation import evaluate as ev

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Four classes (one photo each: the photo and its edited copies), plus an unlabelled file in the root."""
    root = tmp_path_factory.mktemp("labelled")
    for name in PHOTOS:
        (root / name).mkdir()
        img = sample_photo(name).resize((96, 96))
        img.save(root / name / "orig.jpg")
        for kind, v in variants(img).items():
            v.save(root / name / f"{kind}.png")
    sample_photo("horse").resize((96, 96)).save(root / "loose.jpg")
    return root


def assert_matches_reference(evaluation):
    """The reported figures equal those of a leave-one-out ranking written out in the tests."""
    out = evaluation.to_dict()
    ids, ap, ap_r, first = ranking_reference(evaluation.vectors, evaluation.data.codes, out["metric"])
    assert out["n_queries"] == len(ids) == 16
    expected = {"recall@1": np.mean(first <= 1), "recall@5": np.mean(first <= 5), "recall@10": np.mean(first <= 10),
                "map": ap.mean(), "map@r": ap_r.mean(), "median_rank": np.median(first)}
    for key, value in expected.items():
        assert out[key] == pytest.approx(value, abs=1e-6), key


@pytest.fixture(scope="module")
def evaluation(data):
    return ev.evaluate_folder(data, rerank=True)


def test_metrics_match_a_reference_ranking_of_the_same_vectors(evaluation):
    out = evaluation.to_dict()
    assert out["n_images"] == 16 and out["n_classes"] == 4 and out["unlabelled"] == 1
    assert out["metric"] == "cosine" and out["embedded"] == 17 and out["skipped"] == 0
    assert_matches_reference(evaluation)
    assert set(out["comparative"]) == {"median_rank", "recall@1", "recall@5", "recall@10"}
    assert set(out["rerank"]) == {"recall@1", "recall@5", "recall@10", "map", "map@r", "median_rank"}
    # edited copies of one photo find each other: retrieval by class is near perfect
    assert out["recall@1"] == 1.0 and out["map"] > 0.9
    assert [p.rsplit("/", 2)[-2] for p in evaluation.data.paths] == [n for n in sorted(PHOTOS) for _ in range(4)]


def test_second_run_reuses_the_cached_embeddings(evaluation, data):
    again = ev.evaluate_folder(data, metric="l2")
    assert again.index.indexed == 0 and again.index.unchanged == 17
    assert np.array_equal(again.vectors, evaluation.vectors)
    assert again.to_dict()["metric"] == "l2" and "rerank" not in again.to_dict()
    assert ev.index_dir(data, None, None).is_dir() and ev.index_dir(data, None, None) != ev.index_dir(
        data / "chelsea", None, None)


def test_report_has_page_metrics_curve_and_query_rows(evaluation, tmp_path):
    page = ev.write_report(evaluation, tmp_path / "report")
    folder = page.parent
    assert sorted(p.name for p in folder.iterdir()) == ["best.png", "cmc.png", "index.html", "metrics.json",
                                                         "worst.png"]
    saved = json.loads((folder / "metrics.json").read_text())
    assert {"n_images", "n_classes", "metric", "recall@1", "recall@5", "recall@10", "map", "map@r",
            "median_rank"} <= set(saved)
    assert saved["map"] == evaluation.to_dict()["map"]
    html = page.read_text()
    assert "cmc.png" in html and "best.png" in html and "worst.png" in html and "recall@1" in html
    from PIL import Image

    rows = Image.open(folder / "worst.png")
    assert rows.size == ((ev.REPORT_NEIGHBOURS + 1) * (ev.THUMB + 8) + 16, ev.REPORT_ROWS * (ev.THUMB + 8))


def test_folder_without_two_images_of_a_class_is_an_error(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        sample_photo("coffee").resize((32, 32)).save(tmp_path / name / "x.jpg")
    with pytest.raises(ValueError, match="two or more"):
        ev.evaluate_folder(tmp_path)


def test_evaluation_does_not_import_torch_once_the_model_is_cached(evaluation, data):
    code = ("import sys; from lookalike.evaluation.evaluate import evaluate_folder; "
            f"r = evaluate_folder({str(data)!r}, metric='l2'); "
            "assert r.index.indexed == 0; print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert out.stdout.strip() == "[]"


def _tiny_model(folder, seed):
    """A model directory holding a small random ONNX network (32 px input, 4-d output) and its sidecar."""
    import torch

    from lookalike.models.registry import ModelSpec
    from lookalike.models.export import export
    from lookalike.models.preprocess import Preprocessing

    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    spec = ModelSpec("tiny", "onnx", Preprocessing(32), {"output": 4}, "output", "test")
    export(spec, folder / "model.onnx", module=net)
    (folder / "lookalike.json").write_text(json.dumps({"name": "tiny", "input_size": 32, "mean": [0.5] * 3,
                                                      "std": [0.5] * 3, "dim": 4}))
    return folder


def test_a_retrained_model_directory_is_embedded_again(data, tmp_path):
    model = _tiny_model(tmp_path, seed=0)
    first = ev.evaluate_folder(data, str(model))
    assert first.index.indexed == 17 and first.vectors.shape == (16, 4) and first.model == "tiny"
    assert 0.3 < first.to_dict()["map"] < 0.95  # random features: ranks of every kind to check
    assert_matches_reference(first)
    assert_matches_reference(ev.evaluate_folder(data, str(model), metric="l2"))
    _tiny_model(tmp_path, seed=1)  # new weights in the same directory, as after training again
    second = ev.evaluate_folder(data, str(model))
    assert second.index.indexed == 17 and not np.allclose(second.vectors, first.vectors)
