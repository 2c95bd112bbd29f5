"""``lookalike evaluate``, ``train`` and ``tune`` (cli/training.py) in-process: evaluate for real with the
tiny model; train and tune over stand-ins of the training run and the grid search (training is
tests/unit/train and, end to end, tests/e2e/test_train_cli.py), so that what the commands hand them,
print and refuse is read here: the metric table, the summary --json gives, the progress lines, which
trial the table marks best and the note on trials within noise."""

from __future__ import annotations

import io
import json
import re
import types
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from helpers import sample_photo, tiny_model
from lookalike.cli import app, training
from lookalike.train.config import TrainConfig
from lookalike.train.loop import Epoch
from lookalike.train.tune import Trial, TuneResult

NAMES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "horse")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def labelled(root: Path, classes: int = 2, per_class: int = 3) -> Path:
    """``root``, made, with ``classes`` sub-folders of ``per_class`` small photos each."""
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            name = NAMES[(c * per_class + i) % len(NAMES)]
            sample_photo(name).resize((40 + i, 40)).save(root / f"class{c}" / f"{name}.png")
    return root


def test_evaluate_prints_the_metrics_of_the_labelled_folder_or_its_summary_as_json(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "m")
    data = labelled(tmp_path / "data")
    (data / "class1" / "broken.png").write_bytes(b"")
    reports = []
    from lookalike.evaluation import evaluate as ev

    monkeypatch.setattr(ev, "write_report", lambda result, out: reports.append(out) or Path(out) / "index.html")
    got = run("evaluate", data, "--model", model, "--metric", "l2", "--json", "--report", tmp_path / "r")
    assert got.exit_code == 0, got.output
    summary = json.loads(got.stdout)
    assert summary["model"] == "tiny-0" and summary["embedded"] == 6
    assert summary["skipped"] == [{"path": str(data / "class1" / "broken.png"),
                                   "reason": "not an image (empty or unknown format)"}]
    assert reports == [tmp_path / "r"] and got.stderr == f"report: {tmp_path / 'r' / 'index.html'}\n"
    table = run("evaluate", data, "--model", model, "--metric", "l2")
    assert table.exit_code == 0, table.output
    lines = [line.rstrip() for line in table.stdout.splitlines()]
    assert lines[0] == f"tiny-0 on {data} (l2)"
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in lines if line.count("│") == 3}
    assert rows["recall@1"] == f"{summary['recall@1']:.4f}" and rows["map"] == f"{summary['map']:.4f}"
    assert rows["skipped"] == "1" and rows["embedded"] == "0"  # the cache held them; skipped files counted
    assert table.stderr == f"skipped {data / 'class1' / 'broken.png'}: not an image (empty or unknown format)\n"


def test_evaluate_hands_its_options_to_the_evaluation_and_refuses_a_folder_without_images(tmp_path, monkeypatch):
    from lookalike.evaluation import evaluate as ev

    asked = []

    def stand_in(data, model, layer, metric, rerank, seed, threads, on_plan, on_progress, index, follow_links):
        asked.append((data, model, layer, metric, rerank, seed, threads, index, follow_links))
        raise SystemExit(0)

    monkeypatch.setattr(ev, "evaluate_folder", lambda data, model, layer, metric, rerank, seed, threads, **kw:
                        stand_in(data, model, layer, metric, rerank, seed, threads, **kw))
    data = labelled(tmp_path / "data")
    run("evaluate", data, "--model", "m", "--layer", "x", "--rerank", "--seed", 4, "--index", tmp_path / "ix",
        "--threads", 2, "--follow-links")
    run("evaluate", data)
    assert asked == [(data, "m", "x", "cosine", True, 4, 2, tmp_path / "ix", True),
                     (data, None, None, "cosine", False, 0, None, None, False)]
    (tmp_path / "empty").mkdir()
    result = run("evaluate", tmp_path / "empty")
    assert result.exit_code == 1 and result.stderr == f"error: no images under {tmp_path / 'empty'}\n"


def test_the_metric_table_shows_floats_to_four_places_nested_scores_by_name_and_lists_by_length(monkeypatch):
    printed = []
    monkeypatch.setattr(training.present, "stdout_console", lambda: types.SimpleNamespace(print=printed.append))
    training._print_metrics({"recall@1": 0.123456, "queries": 12, "rerank": {"map": 0.5, "n": 3},
                             "skipped": [("a", "b"), ("c", "d")], "model": "tiny"}, "title")
    [table] = printed
    assert table.title == "title"
    cells = list(zip(*(column._cells for column in table.columns)))
    assert cells == [("recall@1", "0.1235"), ("queries", "12"), ("rerank map", "0.5000"), ("rerank n", "3"),
                     ("skipped", "2"), ("model", "tiny")]


def result_of(history, final=None, centre=None):
    return types.SimpleNamespace(history=history, val=final or history[-1].val, centre=centre)


def test_train_hands_its_settings_to_the_run_and_says_what_it_wrote(tmp_path, monkeypatch):
    from lookalike.train import run as train_run

    data = labelled(tmp_path / "data", classes=3)
    asked = []

    def stand_in(data, out, config, val_data, resume, name, device, threads, progress, follow_links, centre_dir):
        asked.append((data, out, config, val_data, resume, name, device, threads, follow_links, centre_dir))
        progress("epoch", 1, 2, {"epoch": Epoch(1, 0.51234, 3.4, {"recall@1": 0.25, "map": 0.125})})
        history = [Epoch(0, None, 0.0, {"recall@1": 0.1, "map": 0.05}), Epoch(2, 0.4, 7.0, {"recall@1": 0.5, "map": 0.25})]
        return result_of(history), Path(out) / "model.onnx", 12.6

    monkeypatch.setattr(train_run, "train", lambda *a, **kw: stand_in(*a, **kw))
    result = run("train", data, "--out", tmp_path / "out", "--epochs", 2, "--lr", 0.01, "--temperature", 0.1,
                 "--margin", 0.2, "--loss", "proxy-anchor", "--dim", 16, "--unfreeze", 3, "--train-size", 64, "--crop-size", 48,
                 "--augment", "features",
                 "--batch", 8, "--lr-decay", 0.5, "--ema", 0.9, "--blend", 0.7, "--whiten", 0.25, "--val-split", "images",
                 "--val-fraction", 0.3, "--seed", 5, "--name", "mine", "--threads", 2, "--model", "efficientnet-lite1")
    assert result.exit_code == 0, result.output
    config = TrainConfig(model="efficientnet-lite1", dim=16, temperature=0.1, margin=0.2, loss="proxy-anchor", epochs=2,
                         lr=0.01, unfreeze=3,
                         batch_size=8, train_size=64, crop_size=48, augment="features", val_split="images", val_fraction=0.3, seed=5,
                         lr_decay=0.5, ema=0.9, blend=0.7, whiten=0.25)
    assert asked == [(data, tmp_path / "out", config, None, False, "mine", "cpu", 2, False, None)]
    assert result.stdout == f"wrote {tmp_path / 'out'} (13 s); use it with --model {tmp_path / 'out'}\n"
    assert "epoch 1/2  loss 0.512  val recall@1 0.250  mAP 0.125  (3 s)" in result.stderr.splitlines()
    assert result.stderr.startswith("warning: 3 classes of 3 images (the median), of which ")
    as_json = run("train", data, "--out", tmp_path / "out", "--json", "--val-data", data, "--resume", "--follow-links",
                  "--centre-on", data / "class0")
    summary = json.loads(as_json.stdout)
    assert summary == {"model_dir": str(tmp_path / "out"), "onnx": str(tmp_path / "out" / "model.onnx"), "seconds": 12.6,
                       "epochs": 2, "validation": {"recall@1": 0.5, "map": 0.25},
                       "untrained_validation": {"recall@1": 0.1, "map": 0.05}, "centre": None, "left_out": []}
    assert asked[-1][:2] == (data, tmp_path / "out") and asked[-1][2] == TrainConfig()
    assert asked[-1][3:] == (data, True, None, "cpu", None, True, data / "class0")
    assert "epoch 1/2" not in as_json.stderr  # --json: no progress lines


def test_train_warns_of_images_to_centre_on_that_could_not_be_read(tmp_path, monkeypatch):
    from lookalike.train import run as train_run

    data = labelled(tmp_path / "data", classes=2)
    for unreadable, said in (([["a.jpg", "broken"]], "a.jpg could not be read (broken)\n"),
                             ([["a.jpg", "broken"], ["b.jpg", "empty"]], "a.jpg could not be read (broken), nor 1 more\n"),
                             ([], None)):
        centre = {"data": "photos", "listed": 5, "images": 5 - len(unreadable), "unreadable": unreadable}
        monkeypatch.setattr(train_run, "train", lambda *a, **kw: (result_of([Epoch(1, 0.2, 1.0, None)], centre=centre),
                                                                   Path("m.onnx"), 1.0))
        result = run("train", data, "--out", tmp_path / "out", "--val-split", "none")
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.stderr.splitlines(keepends=True) if "centred on" in line]
        assert warnings == ([] if said is None else [f"warning: centred on {5 - len(unreadable)} images; {said}"])
    centre = {"data": "photos", "listed": 5, "images": 4, "unreadable": [["a.jpg", "broken"]]}
    err = terminal(monkeypatch)  # on a terminal: the label in bold yellow, as every warning
    assert run("train", data, "--out", tmp_path / "out", "--val-split", "none").exit_code == 0
    assert "\x1b[1;33mwarning:\x1b[0m centred on 4 images; a.jpg could not be read (broken)\n" in err.getvalue()


def test_train_without_an_untrained_epoch_and_with_files_left_out(tmp_path, monkeypatch):
    import os

    from lookalike.train import run as train_run

    data = labelled(tmp_path / "data", classes=2)
    (tmp_path / "elsewhere.png").write_bytes((data / "class0" / "astronaut.png").read_bytes())
    os.symlink(tmp_path / "elsewhere.png", data / "class0" / "link.png")
    monkeypatch.setattr(train_run, "train", lambda *a, **kw: (result_of([Epoch(3, 0.2, 1.0, None)]), Path("m.onnx"), 1.0))
    summary = json.loads(run("train", data, "--out", tmp_path / "out", "--json", "--val-split", "none").stdout)
    assert summary["untrained_validation"] is None and summary["validation"] is None and summary["epochs"] == 3
    assert summary["left_out"] == [{"path": str(data / "class0" / "link.png"),
                                    "reason": "symbolic link to outside the folder (use --follow-links to include it)"}]


def test_train_follows_a_link_to_a_class_folder_only_when_asked_and_lists_it_with_v(tmp_path, monkeypatch):
    import os

    from lookalike.train import run as train_run

    data = labelled(tmp_path / "data", classes=2)
    os.symlink(labelled(tmp_path / "outside", classes=1) / "class0", data / "linked")
    monkeypatch.setattr(train_run, "train", lambda *a, **kw: (result_of([Epoch(3, 0.2, 1.0, None)]), Path("m.onnx"), 1.0))
    link = {"path": str(data / "linked"), "reason": "symbolic link to outside the folder (use --follow-links to include it)"}
    plain = run("train", data, "--out", tmp_path / "out", "--json", "--val-split", "none")
    assert json.loads(plain.stdout)["left_out"] == [link]
    assert "warning: 2 classes of 3 images (the median)" in plain.stderr  # the advice counts without the link
    assert f"left out {data / 'linked'}" not in plain.stderr  # listed with -v only
    followed = run("train", data, "--out", tmp_path / "out", "--json", "--val-split", "none", "--follow-links")
    assert json.loads(followed.stdout)["left_out"] == []
    assert "warning: 3 classes of 3 images (the median)" in followed.stderr  # the linked class counted
    listed = run("train", data, "--out", tmp_path / "out", "--json", "--val-split", "none", "-v")
    assert f"left out {data / 'linked'}: symbolic link to outside the folder" in listed.stderr


def test_an_epochs_validation_text_is_empty_when_it_was_not_validated():
    assert training._validation_text(Epoch(1, 0.5, 1.0, None)) == ""
    assert training._validation_text(Epoch(1, 0.5, 1.0, {"recall@1": 0.12345, "map": 0.5})) == \
        "  val recall@1 0.123  mAP 0.500"


def test_the_training_progress_prints_epochs_and_one_bar_per_stage(monkeypatch):
    printed = []
    monkeypatch.setattr(training.err, "print", lambda text, **kw: printed.append(text))
    with training._training_progress(quiet=False) as progress:
        progress("cache", 1, 4, {"name": "train"})
        progress("cache", 4, 4, {"name": "train"})
        progress("train", 2, 10, {"epoch": 1, "loss": 0.25})
        progress("epoch", 1, 3, {"epoch": Epoch(1, None, 2.4, None)})
        tasks = {t.description: (t.completed, t.total, t.fields["info"]) for t in progress.bar.tasks}
    assert printed == ["epoch 1/3  (untrained)  (2 s)"]
    assert tasks == {"caching train": (4, 4, ""), "epoch 1": (2, 10, "loss 0.250")}
    with training._training_progress(quiet=True) as progress:
        progress("epoch", 2, 3, {"epoch": Epoch(2, 0.5, 1.0, None)})
    assert printed == ["epoch 1/3  (untrained)  (2 s)"]


def grid_result(within_noise: bool) -> TuneResult:
    best = Trial({"lr": 0.001, "dim": 8}, "done", 2, 30.4, {"map": 0.5, "recall@1": 0.6})
    other = Trial({"lr": 0.01, "dim": 8}, "stopped", 1, 12.0, {"map": 0.45, "recall@1": 0.7},
                  vs_best={"within_noise": within_noise, "classes": 7})
    skipped = Trial({"lr": 0.1, "dim": 8}, "skipped", 0, 0.0)
    return TuneResult([other, best, skipped], {}, 42.0)


@pytest.mark.parametrize("within_noise", [True, False])
def test_tune_marks_the_best_trial_and_says_which_are_within_noise(tmp_path, monkeypatch, within_noise):
    from lookalike.train import tune

    data = labelled(tmp_path / "data", classes=5)
    asked = []

    def stand_in(data, points, out, base, seconds, progress, follow_links):
        asked.append((data, points, out, base, seconds, follow_links))
        progress(0, 3, "epoch", 1, 2, {"epoch": Epoch(1, 0.3, 1.0, {"recall@1": 0.5, "map": 0.25})})
        progress(0, 3, "train", 1, 2, {})
        return grid_result(within_noise)

    monkeypatch.setattr(tune, "run_grid", lambda *a, **kw: stand_in(*a, **kw))
    result = run("tune", data, "--grid", "lr=0.01,0.001,0.1", "dim=8", "--epochs", 2, "--val-fraction", 0.5,
                 "--budget", "2m", "--seed", 3, "--out", tmp_path / "t", "--follow-links")
    assert result.exit_code == 0, result.output
    assert asked == [(data, {"lr": [0.01, 0.001, 0.1], "dim": [8]}, tmp_path / "t",
                      TrainConfig(epochs=2, val_fraction=0.5, seed=3), 120.0, True)]
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    assert " ".join(lines).startswith(f"grid search ({tmp_path / 't'}) ")  # rich wraps a title to the table
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.count("│") == 9]
    assert rows == [["0.01", "8", "0.4500", "0.7000", "within noise" if within_noise else "worse", "1 of 2", "12",
                         "stopped"],
                        ["0.001", "8", "0.5000", "0.6000", "best", "2", "30", "done"],
                        ["0.1", "8", "-", "-", "", "0 of 2", "0", "skipped"]]
    assert lines[-1] == "best: --lr 0.001 --dim 8  (val mAP 0.5000, recall@1 0.6000)"
    note = ("note: within noise of the best: 1 other trial (the 95 % interval of the mAP difference reaches 0 when the 7 "
            "validation classes are drawn again with replacement); this validation data cannot tell them apart, more "
            "held-out classes would\n")
    assert result.stderr.endswith(note) == within_noise
    assert "[1/3] epoch 1/2  val recall@1 0.500  mAP 0.250" in result.stderr.splitlines()
    as_json = run("tune", data, "--grid", "lr=0.01,0.001,0.1", "--json")
    assert json.loads(as_json.stdout)["best"] == {"settings": {"lr": 0.001, "dim": 8}, "val": {"map": 0.5, "recall@1": 0.6}}
    assert "[1/3]" not in as_json.stderr and asked[-1][4] is None and asked[-1][2] == Path("tune")


def test_tunes_best_centred_on_the_held_out_images_is_named_as_centring_on_the_photos(tmp_path, monkeypatch):
    from lookalike.train import tune

    data = labelled(tmp_path / "data", classes=5)
    for centre, said in (("val", "best: --lr 0.001 --centre-on PHOTOS  ("), ("train", "best: --lr 0.001  (")):
        best = Trial({"lr": 0.001, "centre": centre}, "done", 2, 30.4, {"map": 0.5, "recall@1": 0.6})
        monkeypatch.setattr(tune, "run_grid", lambda *a, **kw: TuneResult([best], {}, 1.0))
        result = run("tune", data, "--grid", "lr=0.001", "centre=val,train")
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[-1].startswith(said)


def test_tune_with_no_scored_trial_names_no_best_and_refuses_a_bad_grid_before_training(tmp_path, monkeypatch):
    from lookalike.train import tune

    data = labelled(tmp_path / "data", classes=5)
    ran = []
    monkeypatch.setattr(tune, "run_grid", lambda *a, **kw: ran.append(a) or TuneResult(
        [Trial({"lr": 0.1}, "failed", 0, 0.0)], {}, 1.0))
    result = run("tune", data, "--grid", "lr=0.1")
    assert result.exit_code == 0 and "best:" not in result.stdout and "skipped" not in result.stdout
    bad = run("tune", data, "--grid", "lr")
    assert bad.exit_code != 0 and len(ran) == 1
    budget = run("tune", data, "--grid", "lr=0.1", "--budget", "soon")
    assert budget.exit_code != 0 and len(ran) == 1


def test_the_evaluation_bar_counts_the_images_embedded(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "m")
    data = labelled(tmp_path / "data")
    made = []
    real = training.progress_bar
    monkeypatch.setattr(training, "progress_bar", lambda quiet: made.append((quiet, real(quiet))) or made[-1][1])
    assert run("evaluate", data, "--model", model).exit_code == 0
    quiet, bar = made[-1]
    assert quiet is False and (bar.tasks[0].description, bar.tasks[0].total, bar.tasks[0].completed) == ("embed", 6, 6)
    for flag in ("-q", "--json"):
        assert run("evaluate", data, "--model", model, flag).exit_code == 0 and made[-1][0] is True


# what a reader sees on a terminal and in the tables, the advice's split, the options each check is handed

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def terminal(monkeypatch) -> io.StringIO:
    """stderr as a 100-column colour terminal writing into the StringIO returned."""
    from rich.console import Console

    from lookalike.cli import common

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system="standard")
    monkeypatch.setattr(common, "err", console)
    monkeypatch.setattr(training, "err", console)
    return out


def last_frame(raw: str) -> list[str]:
    """The lines of a progress display's last drawing, colours taken out."""
    return [line for line in ANSI.sub("", raw).replace("\r", "\n").splitlines() if line.strip()]


def test_on_a_terminal_the_training_bars_show_each_stage_count_loss_and_time_left_on_stderr(monkeypatch, capsys):
    out = terminal(monkeypatch)
    with training._training_progress(quiet=False) as progress:
        progress("cache", 3, 4, {"name": "[b]val"})  # a name as it is, never markup
        progress("train", 2, 10, {"epoch": 1, "loss": 0.25})
    caching, epoch = (line.split() for line in last_frame(out.getvalue())[-2:])
    assert caching[:2] == ["caching", "[b]val"] and caching[3:] == ["3/4", "-:--:--"]
    assert epoch[:2] == ["epoch", "1"] and epoch[3:] == ["2/10", "loss", "0.250", "-:--:--"]
    assert set(caching[2] + epoch[2]) == {"━", "╺"} and len(caching[2]) == len(epoch[2]) == 40  # the bars
    assert "\x1b[1mcaching [b]val\x1b[0m" in out.getvalue() and "\x1b[1mepoch 1" in out.getvalue()  # bold
    assert capsys.readouterr().out == ""
    out.seek(0), out.truncate()
    with training._training_progress(quiet=True) as progress:
        progress("cache", 3, 4, {"name": "val"})
        progress("epoch", 1, 3, {"epoch": Epoch(1, 0.5, 1.0, None)})
    assert out.getvalue() == ""  # quiet: no bar, no epoch line


def test_the_training_progress_keeps_one_bar_per_cache_and_per_epoch(monkeypatch):
    with training._training_progress(quiet=True) as progress:
        progress("cache", 2, 4, {"name": "train"})
        progress("cache", 1, 2, {"name": "val"})
        progress("cache", 4, 4, {"name": "train"})
        progress("train", 10, 10, {"epoch": 1, "loss": 0.5})
        progress("train", 3, 10, {"epoch": 2, "loss": 0.125})
        tasks = [(t.description, t.completed, t.total, t.fields["info"]) for t in progress.bar.tasks]
    assert tasks == [("caching train", 4, 4, ""), ("caching val", 1, 2, ""), ("epoch 1", 10, 10, "loss 0.500"),
                     ("epoch 2", 3, 10, "loss 0.125")]


def test_the_metric_table_heads_its_columns_metric_and_value(monkeypatch):
    from rich.console import Console

    out = io.StringIO()
    monkeypatch.setattr(training.present, "stdout_console", lambda: Console(file=out, width=80, color_system=None))
    training._print_metrics({"recall@1": 0.5, "queries": 12}, "tiny on /d (cosine)")
    lines = out.getvalue().splitlines()
    assert lines[0].rstrip() == "tiny on /d (cosine)"
    assert [[c.strip() for c in line.split("┃")[1:-1]] for line in lines if line.startswith("┃")] == [["metric", "value"]]
    assert [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│")] == \
        [["recall@1", "0.5000"], ["queries", "12"]]


def write_classes(root: Path, sizes) -> Path:
    """``root`` with a class folder ``c<i>`` of ``n`` tiny PNG files for each ``n`` of ``sizes``."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(buf, "PNG")
    for c, n in enumerate(sizes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(n):
            (root / f"c{c}" / f"{i}.png").write_bytes(buf.getvalue())
    return root


@pytest.mark.parametrize("command", ["train", "tune"])
def test_the_advice_counts_the_images_its_seed_holds_out_as_the_training_will(tmp_path, monkeypatch, command):
    """Classes of 1, 2, 4, ... 32 images: each choice of 3 held-out classes holds out its own number of images."""
    import numpy as np

    from lookalike.train import data as train_data
    from lookalike.train import run as train_run
    from lookalike.train import tune

    root = write_classes(tmp_path / "data", [1, 2, 4, 8, 16, 32])
    monkeypatch.setattr(train_run, "train", lambda *a, **kw: (result_of([Epoch(1, 0.2, 1.0, None)]), Path("m.onnx"), 1.0))
    monkeypatch.setattr(tune, "run_grid", lambda *a, **kw: TuneResult([], {}, 1.0))
    codes = np.repeat(np.arange(6), [1, 2, 4, 8, 16, 32])
    held = {seed: train_data.split(codes, "classes", 0.5, seed)[1].size for seed in (0, 2)}
    assert held[0] != held[2]  # the seed given, not the default one, decides
    extra = ["--out", tmp_path / "out"] if command == "train" else ["--grid", "lr=0.1", "--out", tmp_path / "t"]
    got = run(command, root, *extra, "--val-fraction", 0.5, "--seed", 2, "--json")
    assert got.exit_code == 0, got.output
    assert got.stderr.startswith(f"warning: 6 classes of 6 images (the median), of which 3 classes ({held[2]} images) "
                                 "held out for validation: less than the advice")


def test_evaluate_says_a_link_left_out_once_and_with_v_lists_it_before_refusing_a_folder_of_links(tmp_path):
    import os

    model = tiny_model(tmp_path / "m")
    data = labelled(tmp_path / "data")
    outside = labelled(tmp_path / "outside", classes=1) / "class0"
    os.symlink(outside, data / "linked")
    reason = "symbolic link to outside the folder (use --follow-links to include it)"
    plain = run("evaluate", data, "--model", model)
    assert plain.exit_code == 0, plain.output
    assert plain.stderr == f"skipped {data / 'linked'}: {reason}\n"  # once: no note besides
    (tmp_path / "only").mkdir()
    os.symlink(outside, tmp_path / "only" / "linked")
    listed = run("evaluate", tmp_path / "only", "--model", model, "-v")
    assert listed.exit_code == 1
    assert listed.stderr == (f"left out {tmp_path / 'only' / 'linked'}: {reason}\nerror: no images under {tmp_path / 'only'}; "
                             "left out: 1 symbolic link to outside the folder (--follow-links includes it)\n")
    followed = run("evaluate", tmp_path / "only", "--model", model, "--follow-links", "--json")
    assert followed.exit_code == 0, followed.output
    assert json.loads(followed.stdout)["embedded"] == 3


def test_the_evaluation_bar_waits_for_its_plan_then_counts_without_a_rate_and_the_report_gets_the_result(
        tmp_path, monkeypatch):
    from lookalike.evaluation import evaluate as ev

    out = terminal(monkeypatch)
    made, before = [], []
    real = training.progress_bar
    monkeypatch.setattr(training, "progress_bar", lambda quiet: made.append(real(quiet)) or made[-1])
    evaluation = types.SimpleNamespace(to_dict=lambda: {"map": 0.5}, model="m", index=types.SimpleNamespace(skipped=[]))

    def stand_in(*args, on_plan, on_progress, **kw):
        made[-1].refresh()
        before.append(last_frame(out.getvalue())[-1].split())
        on_plan(4)
        on_progress(1)
        return evaluation

    monkeypatch.setattr(ev, "evaluate_folder", stand_in)
    reports = []
    monkeypatch.setattr(ev, "write_report", lambda result, folder: reports.append(result) or folder / "index.html")
    result = run("evaluate", labelled(tmp_path / "data"), "--report", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert before[0][0] == "embedding" and before[0][2:] == ["0/?"]  # no total (nor time left) before the plan
    final = [line.split() for line in last_frame(out.getvalue()) if line.startswith("embedding")][-1]
    assert final[0] == "embedding" and final[2] == "1/4" and len(final) == 4  # the count, no rate text
    assert reports == [evaluation]


def test_train_rounds_its_seconds_to_a_tenth_passes_the_embedding_size_and_has_no_untrained_scores_after_a_resume(
        tmp_path, monkeypatch):
    from lookalike.train import run as train_run

    asked = []
    resumed = [Epoch(3, 0.2, 1.0, {"recall@1": 0.5, "map": 0.25}), Epoch(4, 0.1, 1.0, {"recall@1": 0.75, "map": 0.5})]
    monkeypatch.setattr(train_run, "train", lambda data, out, config, *a, **kw: asked.append(config) or (
        result_of(resumed), Path("m.onnx"), 12.64))
    got = run("train", write_classes(tmp_path / "data", [2] * 4), "--out", tmp_path / "out", "--embed-size", 160, "--json")
    assert got.exit_code == 0, got.output
    summary = json.loads(got.stdout)
    assert summary["seconds"] == 12.6 and summary["epochs"] == 4
    assert summary["untrained_validation"] is None  # the first epoch recorded is no untrained one (epoch 0)
    assert summary["validation"] == {"recall@1": 0.75, "map": 0.5}
    assert asked == [TrainConfig(embed_size=160)]


def test_tune_on_a_terminal_heads_every_column_marks_the_best_row_and_reads_planned_epochs_from_the_grid(
        tmp_path, monkeypatch):
    import sys

    from rich.console import Console

    from lookalike.train import tune

    data = write_classes(tmp_path / "data", [2] * 5)
    monkeypatch.chdir(tmp_path)
    table = io.StringIO()
    monkeypatch.setattr(training.present, "stdout_console",
                        lambda: Console(file=table, force_terminal=True, color_system="standard", width=200))
    err = terminal(monkeypatch)
    threads = []
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(set_num_threads=threads.append))
    best = Trial({"epochs": 3, "lr_decay": 0.5}, "stopped", 2, 9.0, {"map": 0.5, "recall@1": 0.6})
    other = Trial({"epochs": 1, "lr_decay": 1.0}, "done", 1, 4.0, {"map": 0.4, "recall@1": 0.5},
                  vs_best={"within_noise": True, "classes": 2})
    asked = []
    monkeypatch.setattr(tune, "run_grid", lambda data, points, out, base, *a, **kw: asked.append((points, base)) or
                        TuneResult([other, best], {}, 13.0))
    result = run("tune", data, "--grid", "epochs=1,3", "lr_decay=1.0,0.5", "--model", "efficientnet-lite1",
                 "--threads", 3, "--out", "t")
    assert result.exit_code == 0, result.output
    assert asked == [({"epochs": [1, 3], "lr_decay": [1.0, 0.5]}, TrainConfig(model="efficientnet-lite1"))]
    assert threads == [3]
    raw = table.getvalue().splitlines()
    plain = [ANSI.sub("", line) for line in raw]
    assert plain[0].rstrip() == "grid search (t)"
    assert [[c.strip() for c in line.split("┃")[1:-1]] for line in plain if line.startswith("┃")] == \
        [["lr_decay", "val mAP", "val recall@1", "vs best", "epochs", "seconds", "status"]]
    body = [i for i, line in enumerate(plain) if line.startswith("│")]
    assert [[c.strip() for c in plain[i].split("│")[1:-1]] for i in body] == \
        [["1.0", "0.4000", "0.5000", "within noise", "1", "4", "done"],
         ["0.5", "0.5000", "0.6000", "best", "2 of 3", "9", "stopped"]]
    assert "\x1b[1;32m0.5000" in raw[body[1]] and "\x1b[1;32m" not in raw[body[0]]  # the best row bold green
    assert result.stdout.splitlines()[-1] == "best: --epochs 3 --lr-decay 0.5  (val mAP 0.5000, recall@1 0.6000)"
    lines = err.getvalue().splitlines()
    assert lines[0].startswith("\x1b[1;33mwarning:\x1b[0m 5 classes of 2 images (the median)")
    assert lines[-1].startswith("\x1b[1mnote:\x1b[0m within noise of the best: 1 other trial (the 95 % interval")


def test_tune_follows_a_linked_class_only_when_asked_and_lists_no_path_without_v(tmp_path, monkeypatch):
    import os

    from lookalike.train import tune

    data = write_classes(tmp_path / "data", [2] * 4)
    os.symlink(write_classes(tmp_path / "outside", [3]) / "c0", data / "linked")
    followed = []
    monkeypatch.setattr(tune, "run_grid", lambda *a, follow_links, **kw: followed.append(follow_links) or
                        TuneResult([], {}, 1.0))
    plain = run("tune", data, "--grid", "lr=0.1")
    assert plain.exit_code == 0, plain.output
    lines = plain.stderr.splitlines()
    assert lines[0] == f"note: left out under {data}: 1 symbolic link to outside the folder (--follow-links includes it)"
    assert lines[1].startswith("warning: 4 classes of 2 images (the median)") and len(lines) == 2  # no path listed
    linked = run("tune", data, "--grid", "lr=0.1", "--follow-links")
    assert linked.exit_code == 0, linked.output
    assert linked.stderr.startswith("warning: 5 classes of 2 images (the median)")  # counted, and nothing left out
    assert followed == [False, True]


def test_tunes_advice_counts_the_classes_its_seed_holds_out(tmp_path, monkeypatch):
    from lookalike.train import data as train_data
    from lookalike.train import tune

    data = write_classes(tmp_path / "data", range(2, 12))  # 10 classes of different sizes: each split says its own count
    monkeypatch.setattr(tune, "run_grid", lambda *a, **kw: TuneResult([], {}, 1.0))
    result = run("tune", data, "--grid", "lr=0.1", "--val-fraction", 0.5, "--seed", 3)
    assert result.exit_code == 0, result.output
    want = train_data.below_advice(train_data.scan(data), "classes", 0.5, 3)
    assert result.stderr.splitlines()[0] == f"warning: {want}"
