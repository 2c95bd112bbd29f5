"""``lookalike.train.tune``: grid parsing, a 2x1 grid on tiny generated classes, the time budget."""

import csv
import json
from dataclasses import asdict, replace
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from helpers import sample_photo

from lookalike.train import tune
from lookalike.train.config import TrainConfig

TINY = TrainConfig(unfreeze=2, train_size=64, epochs=1, batch_size=8, per_class=4, dim=32, val_fraction=0.4)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("five")
    rng = np.random.default_rng(0)
    for name in ("chelsea", "coffee", "astronaut", "rocket", "horse"):
        (root / name).mkdir()
        img = sample_photo(name)
        w, h = img.size
        for i in range(4):
            x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
            img.crop((x, y, x + w // 2, y + h // 2)).resize((48, 48)).save(root / name / f"{i}.jpg")
    return root


def test_parse_grid_types_values_by_setting():
    grid = tune.parse_grid(["lr=1e-3,1e-4", "dim=256,512", "temperature=0.05", "train-size=128"])
    assert grid == {"lr": [1e-3, 1e-4], "dim": [256, 512], "temperature": [0.05], "train_size": [128]}
    assert isinstance(grid["dim"][0], int)
    for bad, message in (("lr", "NAME=V1"), ("model=x", "cannot tune"), ("dim=1.5", "whole numbers"),
                         ("lr=fast", "bad value")):
        with pytest.raises(ValueError, match=message):
            tune.parse_grid([bad])


def test_parse_budget():
    assert tune.parse_budget("90") == 90 and tune.parse_budget("10m") == 600 and tune.parse_budget("1h") == 3600
    assert tune.parse_budget(None) is None
    with pytest.raises(ValueError, match="'soon' is not a duration"):
        tune.parse_budget("soon")


@pytest.mark.slow
def test_two_point_grid_is_scored_on_held_out_classes_and_saved(data, tmp_path):
    # augment=features: both points train on one cache of frozen activations (and cover that path)
    result = tune.run_grid(data, {"lr": [1e-3, 1e-5], "augment": ["features"]}, tmp_path, TINY)
    assert [t.settings for t in result.trials] == [{"lr": 1e-3, "augment": "features"},
                                                   {"lr": 1e-5, "augment": "features"}]
    assert all(t.status == "done" and t.epochs_done == 1 for t in result.trials)
    # each held-out class is crops of one photo: found perfectly, before and after one epoch at either rate
    assert all(t.val == dict.fromkeys(tune.SCORES, 1.0) for t in result.trials)
    assert result.best is max(result.trials, key=lambda t: (t.val["map"], t.val["recall@1"]))
    other = next(t for t in result.trials if t is not result.best)
    assert len(other.by_class) == 2 and all(c["queries"] == 4 for c in other.by_class.values())  # 40 % of 5
    # equal scores on every held-out class: no resample can tell them apart
    assert other.vs_best == {"map_difference": 0.0, "interval": [0.0, 0.0], "within_noise": True, "classes": 2}
    assert (result.verdict(result.best), result.verdict(other)) == ("best", "within noise")
    assert result.base["val_split"] == "classes"
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["best"]["settings"] == result.best.settings and len(saved["trials"]) == 2
    rows = list(csv.DictReader(open(tmp_path / "tune.csv")))
    assert [float(r["lr"]) for r in rows] == [1e-3, 1e-5] and rows[0]["map"] != ""
    with Image.open(tmp_path / "tune.png") as fig:
        assert fig.size[0] >= 400 and len(fig.convert("RGB").getcolors(1 << 24)) > 50  # drawn, not blank
    assert not (tmp_path / ".cache").exists()  # the shared activation cache is removed at the end


def _classes(*maps, queries=4):
    return {f"c{i}": {"queries": queries, "map": m} for i, m in enumerate(maps)}


def test_a_trial_worse_on_every_validation_class_is_not_within_noise():
    result = tune.compare(_classes(*[0.7] * 10), _classes(*[0.8] * 10))
    assert result["map_difference"] == pytest.approx(-0.1) and not result["within_noise"]
    assert result["interval"] == pytest.approx([-0.1, -0.1])  # every resample gives the same difference


def test_a_gap_from_one_class_of_two_is_within_noise():
    # class sizes weight the difference: (2 * (0.5 - 1.0) + 6 * 0) / 8
    trial = {"a": {"queries": 2, "map": 0.5}, "b": {"queries": 6, "map": 1.0}}
    best = {"a": {"queries": 2, "map": 1.0}, "b": {"queries": 6, "map": 1.0}}
    result = tune.compare(trial, best)
    assert result["map_difference"] == pytest.approx(-0.125)
    # a quarter of the resamples draw class b twice, where the two agree: the interval reaches 0
    assert result["interval"][0] == pytest.approx(-0.5) and result["interval"][1] == 0.0 and result["within_noise"]


def test_mixed_classes_are_judged_by_the_spread_of_their_differences():
    rng = np.random.default_rng(3)
    best = rng.uniform(0.5, 0.9, 8)
    close = tune.compare(_classes(*(best + rng.normal(0, 0.1, 8) - 0.005)), _classes(*best))
    assert close["within_noise"] and close["interval"][0] < close["map_difference"] < close["interval"][1]
    clear = tune.compare(_classes(*(best - 0.2 + rng.normal(0, 0.01, 8))), _classes(*best))
    assert not clear["within_noise"] and clear["interval"][1] < 0


@pytest.mark.slow
def test_points_that_differ_only_in_blend_and_ema_share_one_training_run(data, tmp_path, monkeypatch):
    from lookalike.train import loop

    fitted, real = [], loop.fit
    monkeypatch.setattr(loop, "fit", lambda *a, **k: fitted.append((a[1], k["also_ema"])) or real(*a, **k))
    grid = {"blend": [0.0, 1.0], "ema": [0.0, 0.5], "lr": [1e-3, 1e-5]}
    result = tune.run_grid(data, grid, tmp_path, TINY)
    # trained once per rate, unblended, keeping the 0.5 average beside the last weights
    assert [(c.lr, c.blend, c.ema, also) for c, also in fitted] == [(1e-3, 1.0, 0.0, (0.0, 0.5)),
                                                                    (1e-5, 1.0, 0.0, (0.0, 0.5))]
    assert [t.settings for t in result.trials] == [{"blend": b, "ema": e, "lr": lr} for b in (0.0, 1.0)
                                                   for e in (0.0, 0.5) for lr in (1e-3, 1e-5)]
    assert all(t.status == "done" and t.epochs_done == 1 and t.val for t in result.trials)
    by = {tuple(t.settings.values()): t.val for t in result.trials}
    for lr in (1e-3, 1e-5):  # blend 0 is the starting network, whatever the average
        assert by[0.0, 0.0, lr] == pytest.approx(by[0.0, 0.5, lr], abs=1e-6)


@pytest.mark.slow
def test_points_that_differ_only_in_embedding_size_share_one_training_run(data, tmp_path, monkeypatch):
    from lookalike.train import loop

    fitted, prepared, real_fit, real_prepare = [], [], loop.fit, loop.prepare
    monkeypatch.setattr(loop, "fit", lambda *a, **k: fitted.append(a[1]) or real_fit(*a, **k))
    monkeypatch.setattr(loop, "prepare", lambda *a, **k: prepared.append(a[1].embed_size) or real_prepare(*a, **k))
    result = tune.run_grid(data, {"embed_size": [0, 96], "lr": [1e-3, 1e-5]}, tmp_path, TINY)
    assert [(c.lr, c.embed_size) for c in fitted] == [(1e-3, 0), (1e-5, 0)]  # once per rate
    assert prepared == [0, 96]  # validation images cached once per size
    assert [t.settings for t in result.trials] == [{"embed_size": e, "lr": lr} for e in (0, 96) for lr in (1e-3, 1e-5)]
    assert all(t.status == "done" and t.val["map"] > 0 for t in result.trials)


def test_a_point_that_cannot_work_is_refused_before_any_point_trains(data, tmp_path, monkeypatch):
    from lookalike.train import loop

    fitted = []
    monkeypatch.setattr(loop, "fit", lambda *a, **k: fitted.append(a[1]))
    with pytest.raises(ValueError, match=r"^augment must be pixels or features, not 'both'$"):
        tune.run_grid(data, {"augment": ["pixels", "both"]}, tmp_path / "out", TINY)
    assert fitted == [] and not (tmp_path / "out").exists()  # nothing trained for nothing, nothing written


def test_budget_skips_what_does_not_fit(data, tmp_path):
    result = tune.run_grid(data, {"lr": [1e-3, 1e-4]}, tmp_path, TINY, budget=0)
    assert [t.status for t in result.trials] == ["skipped (budget)"] * 2
    assert result.best is None and json.loads((tmp_path / "tune.json").read_text())["best"] is None


def _scores(map_, recall1):
    return {"recall@1": recall1, "recall@5": 1.0, "map": map_, "map@r": map_ / 2}


def bars(pixels: np.ndarray, colour: tuple) -> list[tuple[float, int]]:
    """The horizontal bars of one colour in a chart, top to bottom: (middle row, width in pixels)."""
    mask = (np.abs(pixels - colour) <= 3).all(-1)
    rows = np.flatnonzero(mask.any(1))
    found = []
    for run in np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1):
        columns = np.flatnonzero(mask[run].any(0))
        found.append((float(run.mean()), int(columns.max() - columns.min())))
    return found


def test_best_is_the_trial_of_highest_map_then_recall_at_1_and_the_tables_say_so(tmp_path):
    trials = [tune.Trial({"lr": 0.1, "dim": 8}, "done", 2, 1.5, _scores(0.5, 0.9)),
              tune.Trial({"lr": 0.01, "dim": 8}, "done", 2, 1.25, _scores(0.7, 0.1)),
              tune.Trial({"lr": 0.01, "dim": 16}, "stopped (budget)", 1, 0.75, _scores(0.7, 0.3)),
              tune.Trial({"lr": 0.001, "dim": 8}, "done", 2, 2.0, _scores(0.6, 1.0)),
              tune.Trial({"lr": 0.001, "dim": 16}, "skipped (budget)")]
    trials[0].vs_best = {"within_noise": True}
    trials[1].vs_best = {"within_noise": False}
    result = tune.TuneResult(trials, {"epochs": 2}, 7.25)
    assert result.best is trials[2]
    tune.write_tables(result, ["lr", "dim"], tmp_path)
    text = (tmp_path / "tune.json").read_text()
    assert text.startswith('{\n  "base": {\n    "epochs": 2\n  },\n')  # indented by 2 for people to read
    saved = json.loads(text)
    assert saved["best"] == {"settings": {"lr": 0.01, "dim": 16}, "val": _scores(0.7, 0.3)}
    assert saved["seconds"] == 7.2 and saved["base"] == {"epochs": 2}  # rounded to a tenth, half to even
    assert [t["status"] for t in saved["trials"]] == [t.status for t in trials]
    with open(tmp_path / "tune.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["lr", "dim", "recall@1", "recall@5", "map", "map@r", "vs_best", "epochs_done", "seconds",
                       "status"]
    assert [r[6] for r in rows[1:]] == ["within noise", "worse", "best", "", ""]
    with Image.open(tmp_path / "tune.png") as chart:  # 7 x 4.05 inches at 100 dpi: 0.45 inch a trial, 1.8 more
        assert chart.size == (700, 405)
        pixels = np.asarray(chart.convert("RGB")).astype(int)
    # each scored trial's mAP (orange) just above its recall@1 (blue), in proportion; then the legend's two
    maps, recalls = bars(pixels, (255, 127, 14))[:-1], bars(pixels, (31, 119, 180))[:-1]
    unit = recalls[3][1]  # the recall@1 of 1.0
    assert np.allclose([w / unit for _, w in maps], [0.5, 0.7, 0.7, 0.6], atol=0.01)
    assert np.allclose([w / unit for _, w in recalls], [0.9, 0.1, 0.3, 1.0], atol=0.01)
    spacing = maps[1][0] - maps[0][0]
    assert all(0.3 * spacing < r[0] - m[0] < 0.5 * spacing for m, r in zip(maps, recalls))
    assert rows[3] == ["0.01", "16", "0.3", "1.0", "0.7", "0.35", "best", "1", "0.75", "stopped (budget)"]
    assert rows[5] == ["0.001", "16", "", "", "", "", "", "0", "0.0", "skipped (budget)"]  # unscored: no verdict
    assert tune.label({"lr": 0.01, "dim": 16}) == "lr=0.01 dim=16"


def test_the_chart_names_each_trial_and_its_scores_under_a_title_with_the_legend_below(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read it
    trials = [tune.Trial({"lr": 0.1}, "done", 1, 1.0, _scores(0.5, 0.9)),
              tune.Trial({"lr": 0.2}, "done", 1, 1.0, _scores(0.7, 0.25)),
              tune.Trial({"lr": 0.3}, "skipped (budget)")]
    tune.write_tables(tune.TuneResult(trials, {}, 1.0), ["lr"], tmp_path)
    ax = figures[0].axes[0]
    assert ax.get_title() == "grid search: open-set validation (held-out classes)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["lr=0.1", "lr=0.2 (best)", "lr=0.3 (skipped (budget))"]
    assert ax.yaxis_inverted() and ax.get_xlim() == (0.0, 1.1)  # room for the values written after the bars
    assert [t.get_text() for t in ax.texts] == ["0.500", "0.700", "0.000", "0.900", "0.250", "0.000"]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["validation map", "validation recall@1"]
    figures[0].canvas.draw()
    box, axes = legend.get_window_extent(), ax.get_window_extent()
    assert box.y1 < axes.y0 and box.y0 > 0  # under the axes, within the picture
    assert abs((box.x0 + box.x1) / 2 - (axes.x0 + axes.x1) / 2) < 2  # centred
    assert len({round(t.get_window_extent().y0) for t in legend.get_texts()}) == 1  # on one line
    close(figures[0])


def test_no_trial_with_scores_has_no_best():
    assert tune.TuneResult([tune.Trial({"lr": 1.0}, "skipped (budget)")], {}, 0.0).best is None
    assert tune.TuneResult([], {}, 0.0).to_dict()["best"] is None


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), (" 1.5m ", 90), ("2h", 7200), ("0", 0),
                                           ("0.25h", 900)])
def test_budgets_in_seconds_minutes_and_hours(text, seconds):
    assert tune.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10 min", "-5", "1h30m", "5d"])
def test_budgets_that_are_no_duration_are_refused(text):
    with pytest.raises(ValueError, match="is not a duration such as 600, 600s, 10m or 1h"):
        tune.parse_budget(text)


def test_grid_values_are_typed_and_whole_numbers_may_be_written_as_floats():
    grid = tune.parse_grid([" epochs = 2,3.0", "augment=features,pixels", "crop-scale=0.5"])
    assert grid == {"epochs": [2, 3], "augment": ["features", "pixels"], "crop_scale": [0.5]}
    assert all(type(v) is int for v in grid["epochs"])
    for bad in ("epochs=", "=1", "epochs=2.5", "unknown=1"):
        with pytest.raises(ValueError):
            tune.parse_grid([bad])


def test_the_centre_takes_the_training_or_the_validation_images():
    assert tune.parse_grid(["centre= val , train", "lr=0.1"]) == {"centre": ["val", "train"], "lr": [0.1]}


def test_the_bootstrap_is_seeded_and_counts_the_classes():
    rng = np.random.default_rng(4)
    best = rng.uniform(0.5, 0.9, 8)
    trial, base = _classes(*(best + rng.normal(0, 0.1, 8))), _classes(*best)
    first = tune.compare(trial, base)
    assert tune.compare(trial, base) == first == tune.compare(trial, base, seed=0)  # the same interval each run
    assert first["classes"] == 8
    assert len({tuple(tune.compare(trial, base, seed=s)["interval"]) for s in range(5)}) > 1  # the seed draws


def test_each_malformed_grid_entry_gets_its_own_message():
    cases = {"epochs=": "grid entry 'epochs=' is not NAME=V1,V2,...",
             "lr=1e-3=2": "bad value in 'lr=1e-3=2': lr takes float values",
             "model=x": "cannot tune 'model'; choose from: lr, temperature, margin, loss, dim, epochs, unfreeze, train_size, "
                        "crop_size, batch_size, per_class, weight_decay, head_lr_scale, crop_scale, augment, lr_decay, ema, blend, "
                        "embed_size, whiten, centre",
             "centre=train,photos": "bad value in 'centre=train,photos': centre takes train or val"}
    for entry, message in cases.items():
        with pytest.raises(ValueError) as caught:
            tune.parse_grid([entry])
        assert str(caught.value) == message


class StandInTraining:
    """``loop.prepare``, ``fit`` and ``reblend`` as stand-ins that record their calls: a fit takes
    12.25 s of a stepped clock (``tune.time``, from 100 s) and trains ``epochs[lr]`` epochs; a blend
    scores ``map = lr + ema`` on two classes, and nothing after 0 epochs."""

    def __init__(self, monkeypatch, epochs=None, fail=False) -> None:
        from lookalike.train import loop

        self.now, self.epochs, self.fail = 100.0, epochs or {}, fail
        self.prepared, self.fitted, self.blended, self.closed = [], [], [], []
        self.caches, self.used = [], []  # what prepare made; what fit and reblend were handed
        monkeypatch.setattr(tune, "time", SimpleNamespace(perf_counter=lambda: self.now))
        monkeypatch.setattr(loop, "prepare", self.prepare)
        monkeypatch.setattr(loop, "fit", self.fit)
        monkeypatch.setattr(loop, "reblend", self.reblend)

    def prepare(self, data, config, cache_root, **options):
        self.prepared.append((data, config.unfreeze, config.augment, config.embed_size, cache_root, options))
        own = cache_root / str(len(self.prepared))
        own.mkdir(parents=True)
        (own / "acts.npy").write_bytes(b"x")
        options["progress"]("cache", 1, 1, {})
        cache = SimpleNamespace(close=lambda: self.closed.append(own.name) or (own / "acts.npy").unlink() or own.rmdir())
        cache.centred_on_val = lambda: SimpleNamespace(centred_from=cache)
        self.caches.append(cache)
        return cache

    def fit(self, prepared, config, **options):
        if self.fail:
            raise RuntimeError("out of memory")
        self.fitted.append((config, options))
        self.used.append(prepared)
        options["progress"]("train", 1, config.epochs, {})
        self.now += 12.25
        return config

    def reblend(self, trained, prepared, blend, ema, **options):
        self.blended.append((trained.lr, blend, ema, options))
        self.used.append(prepared)
        scores = dict.fromkeys(tune.SCORES, round(trained.lr + ema, 2))
        scores["by_class"] = {c: {"queries": 2, "map": scores["map"]} for c in ("a", "b")}
        epoch = self.epochs.get(trained.lr, trained.epochs)
        return SimpleNamespace(history=[SimpleNamespace(epoch=epoch)], val=scores if epoch else None)


BASE = TrainConfig(epochs=3, unfreeze=2)


def test_a_grid_shares_caches_and_training_runs_and_scores_every_point(data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch, epochs={0.2: 2})
    out = tmp_path / "new" / "out"
    calls = []
    result = tune.run_grid(data, {"lr": [0.1, 0.2], "ema": [0.0, 0.5]}, out, BASE,
                           progress=lambda *a: calls.append(a))
    # one cache for all (the same unfreeze, augment and embed_size), in out/.cache, default options
    assert training.prepared == [(data, 2, BASE.augment, BASE.embed_size, out / ".cache",
                                  {"progress": training.prepared[0][5]["progress"], "workers": 2,
                                   "follow_links": False})]
    # one run per rate, unblended, keeping both averages, without a deadline
    assert [(c.lr, c.ema, c.blend, c.val_split, o["also_ema"], o["deadline"], o["workers"])
            for c, o in training.fitted] == [(0.1, 0.0, 1.0, "classes", (0.0, 0.5), None, 2),
                                             (0.2, 0.0, 1.0, "classes", (0.0, 0.5), None, 2)]
    assert [b[:3] for b in training.blended] == [(0.1, BASE.blend, 0.0), (0.1, BASE.blend, 0.5),
                                                 (0.2, BASE.blend, 0.0), (0.2, BASE.blend, 0.5)]
    assert all(b[3] == {"workers": 2, "whiten": BASE.whiten} for b in training.blended)
    # each stage reported with the point's number and the number of points
    assert calls == [(0, 4, "cache", 1, 1, {}), (0, 4, "train", 1, 3, {}), (2, 4, "train", 1, 3, {})]

    assert [t.settings for t in result.trials] == [{"lr": 0.1, "ema": 0.0}, {"lr": 0.1, "ema": 0.5},
                                                   {"lr": 0.2, "ema": 0.0}, {"lr": 0.2, "ema": 0.5}]
    # 0.2 trained 2 of its 3 epochs; a point sharing another's run took no time of its own
    assert [(t.status, t.epochs_done, t.seconds) for t in result.trials] == [
        ("done", 3, 12.2), ("done", 3, 0.0), ("stopped (budget)", 2, 12.2), ("stopped (budget)", 2, 0.0)]
    assert [t.val["map"] for t in result.trials] == [0.1, 0.6, 0.2, 0.7]
    assert set(result.trials[0].val) == set(tune.SCORES)
    assert result.trials[0].by_class == {"a": {"queries": 2, "map": 0.1}, "b": {"queries": 2, "map": 0.1}}
    assert result.best is result.trials[3] and result.trials[3].vs_best is None
    # worse by the same amount on both classes: every resample says so
    assert result.trials[0].vs_best == {"map_difference": pytest.approx(-0.6), "interval": pytest.approx([-0.6, -0.6]),
                                        "within_noise": False, "classes": 2}
    assert result.seconds == 24.5 and result.base == asdict(replace(BASE, val_split="classes"))
    assert training.closed == ["1"] and sorted(p.name for p in out.iterdir()) == ["tune.csv", "tune.json", "tune.png"]
    assert json.loads((out / "tune.json").read_text())["best"]["settings"] == {"lr": 0.2, "ema": 0.5}


def test_a_grid_passes_its_options_on_and_defaults_to_the_training_defaults(data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch)
    result = tune.run_grid(data, {"unfreeze": [1, 2]}, tmp_path, workers=3, follow_links=True)
    assert [(p[1], p[5]["workers"], p[5]["follow_links"]) for p in training.prepared] == [(1, 3, True), (2, 3, True)]
    assert [(c.unfreeze, c.ema, o["also_ema"], o["workers"]) for c, o in training.fitted] == [
        (1, 0.0, (TrainConfig().ema,), 3), (2, 0.0, (TrainConfig().ema,), 3)]
    assert [b[3] for b in training.blended] == [{"workers": 3, "whiten": BASE.whiten}] * 2
    assert result.base == asdict(replace(TrainConfig(), val_split="classes"))
    assert training.closed == ["1", "2"] and not (tmp_path / ".cache").exists()


def test_each_run_trains_unblended_without_an_average_on_its_own_cache(data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch)
    by_images = replace(BASE, val_split="images")  # tuning validates on held-out classes whatever the base says
    result = tune.run_grid(data, {"blend": [0.5], "ema": [0.5, 0.0], "unfreeze": [1, 2]}, tmp_path, by_images)
    assert [(c.blend, c.ema, c.unfreeze, c.val_split) for c, _ in training.fitted] == [(1.0, 0.0, 1, "classes"),
                                                                                      (1.0, 0.0, 2, "classes")]
    assert result.base["val_split"] == "classes"
    assert [b[1:3] for b in training.blended] == [(0.5, 0.5), (0.5, 0.5), (0.5, 0.0), (0.5, 0.0)]
    one, two = training.caches  # points in grid order: unfreeze 1, 2, 1, 2; a fit before each run's first blend
    assert training.used == [one, one, two, two, one, two]
    assert len(result.trials) == 4


def test_points_that_differ_only_in_whitening_share_one_unwhitened_training_run(data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch)
    # the first power is not 0: a training run that kept its first point's power would show it
    result = tune.run_grid(data, {"whiten": [0.5, 0.0, 1.0], "lr": [0.1, 0.2]}, tmp_path, replace(BASE, whiten=0.25))
    assert [(c.lr, c.whiten) for c, _ in training.fitted] == [(0.1, 0.0), (0.2, 0.0)]
    assert [(b[0], b[3]["whiten"]) for b in training.blended] == [(lr, w) for w in (0.5, 0.0, 1.0) for lr in (0.1, 0.2)]
    assert [t.settings for t in result.trials] == [{"whiten": w, "lr": lr} for w in (0.5, 0.0, 1.0) for lr in (0.1, 0.2)]


def test_points_that_differ_only_in_their_centre_share_one_run_and_val_centres_on_the_held_out_images(
        data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch)
    result = tune.run_grid(data, {"centre": ["val", "train"], "lr": [0.1]}, tmp_path, BASE)
    (cache,) = training.caches
    assert [c.lr for c, _ in training.fitted] == [0.1] and training.used[0] is cache
    centred, plain = training.used[1:]  # the fit's, then each point's export in grid order
    assert centred.centred_from is cache and plain is cache
    assert [t.settings for t in result.trials] == [{"centre": "val", "lr": 0.1}, {"centre": "train", "lr": 0.1}]


def test_the_budget_skips_the_points_left_once_it_has_run_out(data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch, epochs={0.2: 0})
    result = tune.run_grid(data, {"lr": [0.1, 0.2, 0.3]}, tmp_path, BASE, budget=24.5)
    # the first fit ends at 12.25 s, the second at 24.5 s, using the budget up: the third point is not started
    assert [o["deadline"] for _, o in training.fitted] == [124.5, 124.5]
    assert [t.status for t in result.trials] == ["done", "stopped (budget)", "skipped (budget)"]
    assert (result.trials[1].epochs_done, result.trials[1].val, result.trials[1].by_class) == (0, {}, {})
    assert result.trials[2].val == {} and result.trials[2].vs_best is None and result.verdict(result.trials[2]) == ""


def test_a_failed_training_run_still_closes_and_removes_the_caches(data, tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch, fail=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        tune.run_grid(data, {"lr": [0.1]}, tmp_path, BASE)
    assert training.closed == ["1"] and list(tmp_path.iterdir()) == []


def test_a_cache_folder_holding_other_files_is_kept(data, tmp_path, monkeypatch):
    StandInTraining(monkeypatch)
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "mine.txt").write_text("kept")
    tune.run_grid(data, {"lr": [0.1]}, tmp_path, BASE)
    assert (tmp_path / ".cache" / "mine.txt").read_text() == "kept"


def test_a_missing_data_folder_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    training = StandInTraining(monkeypatch)
    with pytest.raises(ValueError, match="not a directory"):
        tune.run_grid(tmp_path / "missing", {"lr": [0.1]}, tmp_path / "out", BASE)
    assert not (tmp_path / "out").exists() and training.prepared == []
