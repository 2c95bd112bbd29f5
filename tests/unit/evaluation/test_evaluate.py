"""``lookalike.evaluation.evaluate``: labelled folders through a cached index, metrics, and the HTML report."""

import json
import subprocess
import sys
import time
from pathlib import Path

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
    assert out["metric"] == "cosine" and out["embedded"] == 17 and out["skipped"] == []
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
    # one thumbnail (and its frame) per column; under each row of them, three lines of caption
    assert rows.size[0] == (ev.REPORT_NEIGHBOURS + 1) * (ev.THUMB + 8) + 16
    assert rows.size[1] == ev.REPORT_ROWS * (ev.THUMB + 8 + 3 * ev.CAPTION_LINE + 8)
    band = np.asarray(rows.convert("L"))[ev.THUMB + 8:ev.THUMB + 8 + 3 * ev.CAPTION_LINE]
    assert all((band[:, c:c + ev.THUMB] < 128).any() for c in range(0, rows.size[0] - ev.THUMB, ev.THUMB + 8))  # text


def test_report_captions_name_class_file_distance_and_whether_it_matches(evaluation):
    import os

    from helpers import distances_reference

    queries = np.array([0, 5, 13])
    for q, cells in zip(queries, ev.captions(evaluation, queries, 3)):
        path = evaluation.data.paths[q]
        folder = os.path.basename(os.path.dirname(path))
        assert cells[0] == (q, [folder, os.path.basename(path), "query"], True)
        d = distances_reference(evaluation.vectors[q:q + 1], evaluation.vectors, "cosine")[0]
        expected = [j for j in np.argsort(d, kind="stable") if j != q][:3]
        assert [j for j, _, _ in cells[1:]] == expected
        for j, lines, same in cells[1:]:
            other = evaluation.data.paths[j]
            matches = os.path.basename(os.path.dirname(other)) == folder
            assert lines == [os.path.basename(os.path.dirname(other)), os.path.basename(other),
                             f"{d[j]:.3f} {'same' if matches else 'other'} class"] and same == matches


def test_folder_without_two_images_of_a_class_is_an_error_that_says_what_was_left_out(tiny, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        sample_photo("coffee").resize((32, 32)).save(tmp_path / name / "x.jpg")
    (tmp_path / "a" / "y.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ValueError) as e:
        ev.evaluate_folder(tmp_path, tiny)
    assert str(e.value) == (f"{tmp_path} has no class folder with two or more readable images to evaluate; "
                            "left out: 1 dangling symbolic link")


def test_a_split_of_linked_class_folders_is_evaluated_with_follow_links_and_explained_without(evaluation, data,
                                                                                              tmp_path):
    import os

    split = tmp_path / "split"
    split.mkdir()
    for name in PHOTOS[:3]:
        os.symlink(data / name, split / name)
    with pytest.raises(ValueError) as e:
        ev.evaluate_folder(split)
    assert str(e.value).endswith("left out: 3 symbolic links to outside the folder (--follow-links includes them)")
    linked = ev.evaluate_folder(split, follow_links=True)
    assert linked.data.classes == sorted(PHOTOS[:3]) and linked.to_dict()["n_images"] == 12
    # the same pictures as three of the real folders: the same vectors
    same = [evaluation.data.paths.index(str(data / os.path.relpath(p, split))) for p in linked.data.paths]
    assert np.allclose(linked.vectors, evaluation.vectors[same], atol=1e-5)


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


# Fast cases: a tiny ONNX model (helpers.tiny_model) or hand-made vectors, no model export.

def _solid(path, colour):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)
    return str(path)


class _Captions:
    """The ``<li>`` captions under each ``<h2>`` of the report page, and its table's rows."""

    def __init__(self, text):
        from html.parser import HTMLParser

        self.sections, self.table, self.stray, where = {}, {}, [], []
        page = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                if tag in ("img", "meta", "br"):  # no end tag
                    return
                where.append(tag)
                if tag == "li":
                    page.sections[page.heading].append("")

            def handle_endtag(self, tag):
                where.pop()

            def handle_data(self, data):
                if where[-1] == "h2":
                    page.heading = data
                    page.sections[data] = []
                elif where[-1] == "li":
                    page.sections[page.heading][-1] += data
                elif where[-1] == "th":
                    page.key = data
                elif where[-1] == "td":
                    page.table[page.key] = data
                elif where[-1] in ("ol", "table", "tr", "body"):
                    page.stray.append(data)

        Parser(convert_charrefs=True).feed(text)


@pytest.fixture
def hand_made(tmp_path):
    """An evaluation of 12 images in 3 classes with seeded random 6-d vectors: every image a file of its
    own solid colour (so a thumbnail in the report shows which image it is) under a folder whose name
    holds markup."""
    from lookalike.evaluation import retrieval
    from lookalike.index.indexer import IndexReport
    from lookalike.train.data import labelled

    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((12, 6)).astype(np.float32)
    colours = [(20 * i, 255 - 20 * i, (97 * i) % 256) for i in range(12)]
    classes = ["a <b>", "b & c", "d"]
    paths = [_solid(tmp_path / "data" / classes[i // 4] / f"{i:02d}.png", colours[i]) for i in range(12)]
    data = labelled(paths, tmp_path / "data")
    result = retrieval.evaluate(vectors, data.codes, "l2")
    evaluation = ev.Evaluation(data, vectors, result, None, "tiny <model>", IndexReport(), 1.5)
    return evaluation, colours


def test_the_report_calls_best_the_queries_of_highest_average_precision_and_worst_the_lowest(hand_made, tmp_path):
    evaluation, _ = hand_made
    ids, ap, _, first = ranking_reference(evaluation.vectors, evaluation.data.codes, "l2")
    assert len(set(ap.round(9))) >= 8  # few ties: the order below is the APs' own
    page = _Captions(ev.write_report(evaluation, tmp_path / "report", rows=3, neighbours=4).read_text())
    by_ap = sorted(range(len(ids)), key=lambda i: (-ap[i], first[i]))

    def caption(i):
        q = ids[i]
        return (f"{evaluation.data.paths[q]} ({evaluation.data.classes[evaluation.data.codes[q]]}): "
                f"AP {ap[i]:.3f}, first positive at rank {first[i]:g}")

    assert page.sections["Best queries (by average precision)"] == [caption(i) for i in by_ap[:3]]
    assert page.sections["Worst queries (by average precision)"] == [caption(i) for i in by_ap[::-1][:3]]
    assert page.stray == []  # the lists hold their items and nothing between them
    assert ap[by_ap[0]] > ap[by_ap[-1]]


def test_each_report_row_shows_the_query_then_its_nearest_framed_by_class(hand_made, tmp_path):
    from PIL import Image

    from helpers import distances_reference

    evaluation, colours = hand_made
    out = tmp_path / "report"
    ev.write_report(evaluation, out, rows=3, neighbours=4)
    page = _Captions((out / "index.html").read_text())
    cell, gap, pad, half = ev.THUMB + 8, 16, 4, ev.THUMB // 2
    height = cell + 3 * ev.CAPTION_LINE + 2 * pad  # a row: thumbnails, three lines of caption, a margin
    distances = distances_reference(evaluation.vectors, evaluation.vectors, "l2")
    for title in ("best", "worst"):
        sheet = Image.open(out / f"{title}.png").convert("RGB")
        assert sheet.size == (5 * cell + gap, 3 * height)
        captions = page.sections[f"{title.capitalize()} queries (by average precision)"]
        queries = [evaluation.data.paths.index(c.split(" (", 1)[0]) for c in captions]
        for row, q in enumerate(queries):
            y = row * height
            assert sheet.getpixel((pad + half, y + pad + half)) == colours[q]
            nearest = [int(j) for j in np.argsort(distances[q], kind="stable") if j != q][:4]
            for col, j in enumerate(nearest):
                x = cell * (col + 1) + gap
                assert sheet.getpixel((x + pad + half, y + pad + half)) == colours[j], (title, row, col)
                same = evaluation.data.codes[j] == evaluation.data.codes[q]
                assert sheet.getpixel((x + 2, y + 2)) == ((40, 160, 60) if same else (210, 40, 40))


def test_the_report_table_and_metrics_file_give_the_summary(hand_made, tmp_path):
    evaluation, _ = hand_made
    out = tmp_path / "report"
    ev.write_report(evaluation, out)
    summary = evaluation.to_dict()
    assert json.loads((out / "metrics.json").read_text()) == summary
    _, ap, ap_r, first = ranking_reference(evaluation.vectors, evaluation.data.codes, "l2")
    page = _Captions((out / "index.html").read_text())
    assert page.table["map"] == f"{ap.mean():.4f}" and page.table["map@r"] == f"{ap_r.mean():.4f}"
    assert page.table["recall@1"] == f"{np.mean(first <= 1):.4f}" and page.table["n_images"] == "12"
    assert page.table["model"] == "tiny <model>" and page.table["seconds"] == "1.5000"
    assert summary["seconds"] == 1.5 and summary["embedded"] == 0 and summary["unlabelled"] == 0
    with open(out / "cmc.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_rows_and_neighbours_are_capped_by_the_images_there_are(tmp_path):
    from PIL import Image

    from lookalike.evaluation import retrieval
    from lookalike.index.indexer import IndexReport
    from lookalike.train.data import labelled

    paths = [_solid(tmp_path / "data" / c / f"{i}.png", (50 * i, 0, 0)) for i, c in enumerate("aab")]
    data = labelled(paths, tmp_path / "data")
    vectors = np.array([[0, 1], [0, 2], [3, 0]], np.float32)
    evaluation = ev.Evaluation(data, vectors, retrieval.evaluate(vectors, data.codes, "cosine"), None, "m",
                               IndexReport(), 0.0)
    out = tmp_path / "report"
    ev.write_report(evaluation, out, rows=6, neighbours=8)
    page = _Captions((out / "index.html").read_text())
    assert len(page.sections["Best queries (by average precision)"]) == 2  # the two images of class a
    cell = ev.THUMB + 8
    height = cell + 3 * ev.CAPTION_LINE + 8  # and three lines of caption
    assert Image.open(out / "best.png").size == (3 * cell + 16, 2 * height)  # 2 neighbours: every other image


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from helpers import tiny_model

    return str(tiny_model(tmp_path_factory.mktemp("tiny")))


def _classes(root, counts, size=(48, 40)):
    names = iter(("chelsea", "coffee", "astronaut", "rocket", "camera", "coins", "horse", "moon"))
    for label, n in counts.items():
        (root / label).mkdir(parents=True)
        photo = sample_photo(next(names)).resize(size)
        for i in range(n):
            photo.rotate(7 * i).save(root / label / f"{i}.png")
    return root


def test_a_class_of_exactly_two_images_is_enough_to_evaluate(tiny, tmp_path):
    data = _classes(tmp_path / "data", {"two": 2, "one": 1, "other": 1})
    out = ev.evaluate_folder(data, tiny).to_dict()
    assert (out["n_images"], out["n_queries"], out["n_classes"]) == (4, 2, 3)
    single = _classes(tmp_path / "single", {"a": 1, "b": 1})
    with pytest.raises(ValueError) as caught:  # nothing left out: the message says no more
        ev.evaluate_folder(single, tiny)
    assert str(caught.value) == f"{single} has no class folder with two or more readable images to evaluate"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as caught:  # no image at all
        ev.evaluate_folder(tmp_path / "empty", tiny)
    assert str(caught.value) == f"{tmp_path / 'empty'} has no class folder with two or more readable images to evaluate"
    with pytest.raises(ValueError, match="^not a directory: "):
        ev.evaluate_folder(tmp_path / "missing", tiny)


def test_a_users_index_holding_a_folder_whose_name_extends_the_datas_evaluates_the_data_alone(tiny, tmp_path):
    from lookalike.api import Index

    data = _classes(tmp_path / "data", {"a": 3, "b": 3})
    longer = _classes(tmp_path / "data2", {"a": 2, "c": 2})
    (tmp_path / "data" / "loose.png").write_bytes((tmp_path / "data" / "a" / "0.png").read_bytes())
    ix = tmp_path / "ix"
    with Index.open(ix, tiny, create=True) as index:
        index.index(data)
        index.index(longer)
        assert len(index) == 11
    reused = ev.evaluate_folder(data, index=ix)
    out = reused.to_dict()
    assert (out["n_images"], out["n_classes"], out["embedded"], out["unlabelled"]) == (6, 2, 0, 1)
    assert all(p.startswith(str(data) + "/") for p in reused.data.paths)
    cached = ev.evaluate_folder(data, tiny)
    assert np.array_equal(cached.vectors, reused.vectors) and cached.to_dict()["embedded"] == 7


def test_re_ranked_figures_are_reported_beside_the_plain_ones(tiny, tmp_path):
    from lookalike.evaluation import rerank, retrieval

    data = _classes(tmp_path / "data", {"a": 4, "b": 4, "c": 3})
    out = ev.evaluate_folder(data, tiny, rerank=True)
    neighbours, _ = rerank.rerank(out.vectors, k=ev.RERANK_K)
    expected = retrieval.evaluate_neighbors(neighbours, out.data.codes, metric="cosine+rerank").summary()
    assert out.reranked.metric == "cosine+rerank"
    assert out.to_dict()["rerank"] == {k: round(expected[k], 6) for k in ("recall@1", "recall@5", "recall@10",
                                                                          "map", "map@r", "median_rank")}


def test_the_curves_drawn_are_each_results_recall_at_k_up_to_the_images_there_are(hand_made, tmp_path, monkeypatch):
    """cmc.png draws, for the plain and the re-ranked result, recall@k for k = 1..N-1 (11 of 12 images):
    the share of queries whose first same-class image is at rank k or better, from the reference ranking."""
    from dataclasses import replace

    from lookalike.evaluation import retrieval

    evaluation, _ = hand_made
    other = retrieval.evaluate(evaluation.vectors, evaluation.data.codes, "cosine")  # standing in for a re-rank
    evaluation = replace(evaluation, reranked=other)
    drawn = {}
    monkeypatch.setattr(ev, "_plot_cmc", lambda curves, path: drawn.update(curves))
    ev.write_report(evaluation, tmp_path / "a" / "b", rows=2, neighbours=2)  # a folder made with its parents
    ev.write_report(evaluation, tmp_path / "a" / "b", rows=2, neighbours=2)  # and written again
    assert sorted(drawn) == ["cosine", "l2"]
    for metric, curve in drawn.items():
        _, _, _, first = ranking_reference(evaluation.vectors, evaluation.data.codes, metric)
        want = [float(np.mean(first <= k)) for k in range(1, 12)]
        np.testing.assert_allclose(curve, want)


def test_the_curve_stops_at_rank_50_however_many_images_there_are(tmp_path, monkeypatch):
    from lookalike.evaluation import retrieval
    from lookalike.index.indexer import IndexReport
    from lookalike.train.data import labelled

    vectors = np.random.default_rng(2).standard_normal((60, 4)).astype(np.float32)
    data = labelled([str(tmp_path / f"c{i % 3}" / f"{i}.png") for i in range(60)], tmp_path)  # no files: grey thumbs
    result = retrieval.evaluate(vectors, data.codes, "l2")
    evaluation = ev.Evaluation(data, vectors, result, None, "m", IndexReport(), 1)
    drawn = {}
    monkeypatch.setattr(ev, "_plot_cmc", lambda curves, path: drawn.update(curves))
    ev.write_report(evaluation, tmp_path / "report", rows=1, neighbours=1)
    _, _, _, first = ranking_reference(vectors, data.codes, "l2")
    np.testing.assert_allclose(drawn["l2"], [np.mean(first <= k) for k in range(1, 51)])


class _Recorder:
    """Stands in for matplotlib's figure and axes: records each call (name, args, kwargs)."""

    def __init__(self, calls):
        self.calls = calls

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args, kwargs))


@pytest.mark.parametrize("curves, bottom", [
    ({"l2": [0.62, 0.75, 1.0], "l2+rerank": [0.7, 0.9, 1.0]}, 0.5),  # 0.05 below the lowest point, floored to 0.1
    ({"cosine": [0.02, 0.5]}, 0.0),  # never below 0
    ({"cosine": [float("nan"), float("nan")], "l2": [0.81, 0.9]}, 0.7),  # a curve with no point is passed over
    ({"cosine": [float("nan")]}, 0.0),
])
def test_the_cmc_figure_draws_each_curve_from_k_1_labelled_above_a_floor_under_its_lowest_point(
        curves, bottom, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    calls = []
    figure = _Recorder(calls)
    figure.savefig = lambda f, format: f.write(format.encode())
    monkeypatch.setattr(plt, "subplots", lambda **kwargs: (figure, _Recorder(calls)))
    monkeypatch.setattr(plt, "close", lambda fig: calls.append(("close", (fig is figure,), {})))
    ev._plot_cmc({label: np.array(c) for label, c in curves.items()}, tmp_path / "cmc.png")
    plots = [(args, kwargs) for name, args, kwargs in calls if name == "plot"]
    assert [kwargs["label"] for _, kwargs in plots] == list(curves)
    for (args, kwargs), curve in zip(plots, curves.values()):
        assert args[0].tolist() == list(range(1, len(curve) + 1)) and args[1].tolist() == pytest.approx(
            curve, nan_ok=True) and kwargs["marker"] == "."
    named = {name: (args, kwargs) for name, args, kwargs in calls if name != "plot"}
    assert named["set_xlabel"] == (("k",), {}) and named["set_ylabel"] == (("recall@k",), {})
    assert named["set_ylim"][0] == pytest.approx((bottom, 1.01)) and named["legend"] == ((), {"loc": "lower right"})
    assert named["close"] == ((True,), {}) and (tmp_path / "cmc.png").read_bytes() == b"png"


def test_the_cmc_figure_is_a_600_by_360_png(hand_made, tmp_path):
    from PIL import Image

    evaluation, _ = hand_made
    ev.write_report(evaluation, tmp_path / "report")
    with Image.open(tmp_path / "report" / "cmc.png") as img:
        assert (img.format, img.size) == ("PNG", (600, 360))


def test_json_figures_are_rounded_to_6_places_and_nan_or_infinity_become_null():
    assert ev._plain({"a": float("nan"), "b": {"c": 0.1234567891, "d": float("-inf"), "e": [0.5]}, "f": 3,
                      "g": 2.0000004}) == {"a": None, "b": {"c": 0.123457, "d": None, "e": [0.5]}, "f": 3, "g": 2.0}


def test_the_evaluation_cache_is_one_per_data_folder_and_model(tiny, tmp_path, monkeypatch):
    import os
    import re

    from helpers import tiny_model

    here = ev.index_dir(tmp_path / "data", tiny, None)
    assert here.parent == Path(os.environ["LOOKALIKE_CACHE"]) / "eval"
    assert re.fullmatch(r"tiny-0-[0-9a-f]{16}", here.name)
    monkeypatch.chdir(tmp_path)
    assert ev.index_dir("data", tiny, None) == here  # the folder's absolute path counts
    assert ev.index_dir(tmp_path / "data2", tiny, None) != here
    twin = str(tiny_model(tmp_path / "twin"))  # the same network in another directory: another model
    assert ev.index_dir(tmp_path / "data", twin, None).name.startswith("tiny-0-")
    assert ev.index_dir(tmp_path / "data", twin, None) != here
    pool = ev.index_dir(tmp_path / "data", None, None)  # the default model's default layer
    assert ev.index_dir(tmp_path / "data", None, "pool") == pool != ev.index_dir(tmp_path / "data", None, "blocks")


def test_a_model_changed_in_its_directory_starts_its_evaluation_cache_again(tmp_path):
    from helpers import tiny_model

    data = _classes(tmp_path / "data", {"a": 2, "b": 2})
    model = str(tiny_model(tmp_path / "model", seed=0))
    first = ev.evaluate_folder(data, model)
    again = ev.evaluate_folder(data, model)
    tiny_model(tmp_path / "model", seed=1)  # retrained in place
    second = ev.evaluate_folder(data, model)
    assert (first.index.indexed, again.index.indexed, second.index.indexed) == (4, 0, 4)
    assert (first.model, second.model) == ("tiny-0", "tiny-1") and not np.allclose(first.vectors, second.vectors)


def test_a_users_index_is_made_for_the_model_asked_and_must_match_it_after(tiny, tmp_path):
    from helpers import tiny_model

    from lookalike.api import Index
    from lookalike.index.store import StoreError

    data = _classes(tmp_path / "data", {"a": 2, "b": 2})
    ix = tmp_path / "mine"
    made = ev.evaluate_folder(data, tiny, index=ix)
    assert made.index.indexed == 4 and Index.exists(ix)
    assert ev.evaluate_folder(data, index=ix).index.indexed == 0  # its own model by default
    assert ev.evaluate_folder(data, tiny, index=ix).index.indexed == 0
    other = str(tiny_model(tmp_path / "other", seed=3))
    with pytest.raises(StoreError):
        ev.evaluate_folder(data, other, index=ix)


def test_the_summary_says_what_was_embedded_skipped_and_left_unlabelled(tiny, tmp_path):
    data = _classes(tmp_path / "data", {"a": 3, "b": 2})
    (data / "a" / "broken.png").write_bytes(b"not a picture")
    (data / "loose.png").write_bytes((data / "a" / "0.png").read_bytes())
    started = time.perf_counter()
    out = ev.evaluate_folder(data, tiny).to_dict()
    took = time.perf_counter() - started
    assert 0 < out["seconds"] <= round(took, 3) + 0.001  # the time it took, not more
    assert (out["model"], out["data"], out["unlabelled"], out["embedded"]) == ("tiny-0", str(data), 1, 6)
    assert out["skipped"] == [{"path": str(data / "a" / "broken.png"), "reason": "not an image (empty or unknown format)"}]
    assert out["seconds"] == round(out["seconds"], 3) and out["seconds"] > 0
    assert "rerank" not in out and (out["n_images"], out["n_classes"]) == (5, 2)


def test_the_report_table_lists_the_comparative_and_re_ranked_figures_under_their_group(hand_made, tmp_path):
    from dataclasses import replace

    from lookalike.evaluation import retrieval

    evaluation, _ = hand_made
    other = retrieval.evaluate(evaluation.vectors, evaluation.data.codes, "cosine")  # standing in for a re-rank
    ev.write_report(replace(evaluation, reranked=other), tmp_path / "report", rows=1, neighbours=1)
    page = _Captions((tmp_path / "report" / "index.html").read_text())
    plain, reranked = evaluation.result.summary(), other.summary()
    assert {k: v for k, v in page.table.items() if k.startswith("comparative ")} == {
        f"comparative {k}": f"{v:.4f}" for k, v in plain["comparative"].items()}
    assert page.stray == []  # the table holds its rows and nothing between them
    assert {k: v for k, v in page.table.items() if k.startswith("rerank ")} == {
        f"rerank {k}": f"{reranked[k]:.4f}" for k in ("recall@1", "recall@5", "recall@10", "map", "map@r",
                                                       "median_rank")}


def test_a_report_of_two_images_draws_recall_at_1_alone(tmp_path, monkeypatch):
    from lookalike.evaluation import retrieval
    from lookalike.index.indexer import IndexReport
    from lookalike.train.data import labelled

    paths = [_solid(tmp_path / "data" / "a" / f"{i}.png", (90 * i, 0, 0)) for i in range(2)]
    data = labelled(paths, tmp_path / "data")
    vectors = np.array([[0, 1], [1, 1]], np.float32)
    evaluation = ev.Evaluation(data, vectors, retrieval.evaluate(vectors, data.codes, "l2"), None, "m",
                               IndexReport(), 0.0)
    drawn = {}
    monkeypatch.setattr(ev, "_plot_cmc", lambda curves, path: drawn.update(curves))
    ev.write_report(evaluation, tmp_path / "report")
    assert drawn["l2"].tolist() == [1.0]


def test_of_queries_with_the_same_average_precision_best_lists_the_one_found_first_and_worst_the_last(
        hand_made, tmp_path):
    from dataclasses import replace

    evaluation, _ = hand_made
    r = evaluation.result
    # hand-set figures per query: three tie at AP 0.5 (first positive at ranks 2, 1, 3), two at 0.1 (6, 5)
    ap = np.array([0.2, 0.5, 0.9, 0.5, 0.1, 0.5, 0.3, 0.35, 0.4, 0.45, 0.1, 0.25])
    first = np.array([4.0, 2.0, 1.0, 1.0, 6.0, 3.0, 3.0, 2.0, 2.0, 2.0, 5.0, 4.0])
    tied = replace(evaluation, result=replace(r, average_precision=ap, first_positive_rank=first))
    page = _Captions(ev.write_report(tied, tmp_path / "report", rows=4, neighbours=1).read_text())
    listed = {title: [caption.split(" (", 1)[0] for caption in page.sections[f"{title} queries (by average precision)"]]
              for title in ("Best", "Worst")}
    paths = [evaluation.data.paths[q] for q in r.query_ids]
    assert listed["Best"] == [paths[i] for i in (2, 3, 1, 5)]
    assert listed["Worst"] == [paths[i] for i in (4, 10, 0, 11)]


def test_captions_give_class_file_and_distance_shortened_in_the_middle_to_19_characters(tmp_path):
    from lookalike.evaluation import retrieval
    from lookalike.index.indexer import IndexReport
    from lookalike.train.data import labelled

    names = [("a-very-long-class-name-indeed", "a-file-name-far-too-long-to-fit.png"),
             ("a-very-long-class-name-indeed", "short.png"), ("b", "other.png")]
    paths = [_solid(tmp_path / "data" / c / f, (60 * i, 0, 0)) for i, (c, f) in enumerate(names)]
    data = labelled(paths, tmp_path / "data")
    vectors = np.array([[0, 0], [3, 4], [6, 8]], np.float32)
    evaluation = ev.Evaluation(data, vectors, retrieval.evaluate(vectors, data.codes, "l2"), None, "m",
                               IndexReport(), 0.0)
    (row,) = ev.captions(evaluation, np.array([data.paths.index(paths[0])]), 2)
    at = {p: data.paths.index(p) for p in paths}
    assert row == [(at[paths[0]], ["a-very-lo…me-indeed", "a-file-na…o-fit.png", "query"], True),
                   (at[paths[1]], ["a-very-lo…me-indeed", "short.png", "5.000 same class"], True),
                   (at[paths[2]], ["b", "other.png", "10.000 other class"], False)]


def test_caption_lines_are_grey_but_a_neighbours_distance_line_takes_its_frames_colour(hand_made, tmp_path):
    from PIL import Image

    evaluation, pictures = hand_made
    out = tmp_path / "report"
    ev.write_report(evaluation, out, rows=1, neighbours=2)
    sheet = Image.open(out / "best.png").convert("RGB")
    cell, pad, gap, line = ev.THUMB + 8, 4, 16, ev.CAPTION_LINE
    (query,) = [evaluation.data.paths.index(c.split(" (", 1)[0])
                for c in _Captions((out / "index.html").read_text()).sections["Best queries (by average precision)"]]
    cells = ev.captions(evaluation, np.array([query]), 2)[0]

    def colours(col, n):
        x = 0 if col == 0 else cell * col + gap
        box = (x + pad, cell + n * line, x + cell, cell + (n + 1) * line)
        return {c for _, c in sheet.crop(box).getcolors(maxcolors=1 << 16)}

    grey, green, red = (40, 40, 40), (40, 160, 60), (210, 40, 40)
    height = cell + 3 * line + 2 * pad
    assert sheet.size == (3 * cell + gap, height)  # one row: the query, a gap, two neighbours
    query_colour = sheet.getpixel((pad + 50, pad + 50))
    assert sheet.getpixel((pad, pad)) == query_colour and sheet.getpixel((pad - 1, pad)) == (255, 255, 255)
    assert sheet.getpixel((cell + gap // 2, 50)) == (255, 255, 255)  # the gap: white
    for col, (j, _, same) in enumerate(cells[1:], start=1):
        x, frame = cell * col + gap, green if same else red
        for d in (1, 3, cell - 4, cell - 2):  # a 3-pixel frame, 1 pixel inside the cell, on each side
            assert sheet.getpixel((x + d, cell // 2)) == sheet.getpixel((x + cell // 2, d)) == frame, (col, d)
        for d in (0, cell - 1):
            assert sheet.getpixel((x + d, cell // 2)) == sheet.getpixel((x + cell // 2, d)) == (255, 255, 255)
        assert sheet.getpixel((x + pad, pad)) == pictures[j]  # the thumbnail from the frame's inner edge
    for col, (_, _, same) in enumerate(cells):
        frame = None if col == 0 else green if same else red
        for n in range(3):
            found = colours(col, n)
            if n == 2 and frame:
                assert frame in found and grey not in found, (col, n)
            else:
                assert grey in found and not {green, red} & found, (col, n)


def test_a_thumbnail_is_the_picture_at_112_pixels_or_plain_grey_when_it_cannot_be_read(tmp_path):
    wide = _solid(tmp_path / "wide.png", (10, 120, 200))
    thumb = ev._thumb(wide)
    assert thumb.size == (112, 112) and thumb.getcolors() == [(112 * 112, (10, 120, 200))]
    gone = ev._thumb(str(tmp_path / "gone.png"))
    assert gone.size == (112, 112) and gone.getcolors() == [(112 * 112, (200, 200, 200))]
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    assert ev._thumb(str(tmp_path / "broken.png")).getcolors() == [(112 * 112, (200, 200, 200))]


def test_evaluate_folder_passes_its_indexing_options_on(tiny, tmp_path):
    import os

    data = _classes(tmp_path / "data", {"a": 3, "b": 2})
    outside = _classes(tmp_path / "outside", {"c": 2})
    os.symlink(outside / "c", data / "c")
    plans, progress = [], []
    result = ev.evaluate_folder(data, tiny, batch_size=3, workers=1, on_plan=plans.append,
                                on_progress=progress.append, follow_links=True)
    assert plans == [7] and sum(progress) == 7 and max(progress) == 3  # batches of 3
    assert result.data.classes == ["a", "b", "c"] and result.to_dict()["n_images"] == 7
    plain = ev.evaluate_folder(data, tiny)  # links to outside the data are not followed by default
    assert plain.data.classes == ["a", "b"] and plain.to_dict()["n_images"] == 5


class _Opened(Exception):
    """Raised by the recording ``Index.open`` below once it has seen its call."""


def test_evaluate_folder_opens_the_index_asked_with_its_model_layer_threads_and_device(tiny, tmp_path, monkeypatch):
    """Which index is opened, and how, by every branch: a user's existing index as it is (its own
    model), a user's index with a layer asked made or checked for it, a missing user's index made
    (even while the default index exists), the evaluation cache of the data, model and layer, and that
    cache wiped and made again when its model changed. Threads and device reach it on each."""
    import inspect

    from lookalike.api import DB_NAME, Index
    from lookalike.index.store import StoreError

    real = Index.open
    signature = inspect.signature(real)
    calls, fail_first = [], []

    def record(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        calls.append(dict(bound.arguments))
        if fail_first:
            fail_first.pop()
            raise StoreError("the model changed")
        raise _Opened

    monkeypatch.setattr(Index, "open", record)
    data = _classes(tmp_path / "data", {"a": 2})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / DB_NAME).write_bytes(b"")  # Index.exists looks for its database file
    default = tmp_path / "default"
    default.mkdir()
    (default / DB_NAME).write_bytes(b"")
    monkeypatch.setenv("LOOKALIKE_INDEX", str(default))

    def opened(**options):
        calls.clear()
        with pytest.raises(_Opened):
            ev.evaluate_folder(data, threads=3, device="cuda", **options)
        return [{k: str(v) if isinstance(v, Path) else v for k, v in call.items()} for call in calls]

    def call(path, model=None, layer=None, create=False, rebuild=False):
        return {"path": str(path), "model": model, "layer": layer, "create": create, "rebuild": rebuild,
                "threads": 3, "device": "cuda", "weights": None}

    assert opened(index=mine) == [call(mine)]
    assert opened(index=mine, layer="blocks") == [call(mine, layer="blocks", create=True)]
    assert opened(index=mine, model=tiny) == [call(mine, tiny, create=True)]
    assert opened(index=tmp_path / "new") == [call(tmp_path / "new", create=True)]
    cache = ev.index_dir(data, tiny, None)
    assert opened(model=tiny) == [call(cache, tiny, create=True)]
    layered = ev.index_dir(data, None, "blocks")
    assert layered != ev.index_dir(data, None, None)
    assert opened(layer="blocks") == [call(layered, layer="blocks", create=True)]
    fail_first.append(True)  # the cache's model changed (StoreError): wiped and made again
    assert opened(layer="blocks") == [call(layered, layer="blocks", create=True),
                                      call(layered, layer="blocks", create=True, rebuild=True)]
    fail_first.append(True)
    assert opened(model=tiny) == [call(cache, tiny, create=True), call(cache, tiny, create=True, rebuild=True)]


def test_evaluate_folder_measures_with_the_metric_and_seed_asked_and_its_workers_reach_the_indexing(
        tiny, tmp_path, monkeypatch):
    """The metric and the comparative sets' seed reach the measurement and the re-ranking (by default
    cosine and seed 0, as ``lookalike evaluate`` without options), and the decoding workers the indexing."""
    import inspect

    from lookalike.api import Index
    from lookalike.evaluation import rerank, retrieval

    seen = []

    def recording(name, function):
        signature = inspect.signature(function)

        def record(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            seen.append((name, {k: v for k, v in bound.arguments.items() if not isinstance(v, np.ndarray)}))
            return function(*args, **kwargs)

        return record

    monkeypatch.setattr(retrieval, "evaluate", recording("evaluate", retrieval.evaluate))
    monkeypatch.setattr(rerank, "rerank", recording("rerank", rerank.rerank))
    monkeypatch.setattr(Index, "index", recording("index", Index.index))
    data = _classes(tmp_path / "data", {"a": 3, "b": 2})
    out = ev.evaluate_folder(data, tiny, metric="l2", rerank=True, seed=7, workers=1)
    (_, indexing), (_, measured), (_, reranked) = seen
    assert indexing["workers"] == 1
    assert (measured["metric"], measured["comparative_seed"]) == ("l2", 7)
    assert (reranked["metric"], reranked["k"]) == ("l2", 100)
    assert (out.result.metric, out.reranked.metric, out.to_dict()["metric"]) == ("l2", "l2+rerank", "l2")
    seen.clear()
    ev.evaluate_folder(data, tiny)
    (_, measured), = [s for s in seen if s[0] == "evaluate"]
    assert (measured["metric"], measured["comparative_seed"]) == ("cosine", 0)
