"""Grid search over training settings with class-disjoint validation (``lookalike tune``).

Every grid point trains on the same split (whole classes held out for validation, so the score is
open-set retrieval) and is scored by validation mAP, then recall@1; a trial whose mAP is not clearly
below the best's (:func:`compare`: the validation classes resampled) is within noise of it. Points with the same
``unfreeze`` and ``augment`` share one cache of frozen activations, and points that differ only in
``blend``, ``ema``, ``embed_size``, ``whiten`` and ``centre`` share one training run (it keeps every
moving average asked for; blending, whitening, centring and embedding at each size are done after
it). Results go to ``tune.json``, ``tune.csv`` and ``tune.png``.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from lookalike import atomic
from lookalike.images import folder

TUNABLE = ("lr", "temperature", "margin", "loss", "dim", "epochs", "unfreeze", "train_size", "crop_size",
           "batch_size", "per_class", "weight_decay", "head_lr_scale", "crop_scale", "augment", "lr_decay", "ema",
           "blend", "embed_size", "whiten", "centre")
SCORES = ("recall@1", "recall@5", "map", "map@r")
SHARED = ("blend", "ema", "embed_size", "whiten", "centre")  # applied after training: one run serves them all
#: ``centre`` values: exports centred on the training images' mean (as by default), or on the validation
#: images', which stand in for the collection to be searched (``lookalike train --centre-on``).
CENTRES = ("train", "val")
DRAWS = 2000  # bootstrap resamples of the validation classes


def parse_grid(items: list[str]) -> dict[str, list]:
    """``["lr=1e-3,1e-4", "dim=256,512"]`` -> ``{"lr": [0.001, 0.0001], "dim": [256, 512]}`` (typed as
    :class:`~lookalike.train.config.TrainConfig`'s fields; ``centre`` as one of :data:`CENTRES`);
    ValueError for anything else."""
    from lookalike.train.config import TrainConfig

    types = {f.name: type(getattr(TrainConfig(), f.name)) for f in fields(TrainConfig)}
    grid: dict[str, list] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ValueError(f"grid entry {item!r} is not NAME=V1,V2,...")
        if key not in TUNABLE:
            raise ValueError(f"cannot tune {key!r}; choose from: {', '.join(TUNABLE)}")
        if key == "centre":
            grid[key] = [v.strip() for v in values.split(",")]
            if not set(grid[key]) <= set(CENTRES):
                raise ValueError(f"bad value in {item!r}: centre takes {' or '.join(CENTRES)}")
            continue
        try:
            grid[key] = [types[key](float(v) if types[key] is int else v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"bad value in {item!r}: {key} takes {types[key].__name__} values") from None
        if types[key] is int and any(float(v) != int(float(v)) for v in values.split(",")):
            raise ValueError(f"{key} takes whole numbers, not {values}")
    return grid


def parse_budget(text: str | None) -> float | None:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"`` or ``"2h"``; None for no budget."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise ValueError(f"budget {text!r} is not a duration such as 600, 600s, 10m or 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


@dataclass
class Trial:
    """One grid point: its settings, validation scores and how it ended (done, stopped, skipped);
    ``by_class`` the validation mAP of each class, ``vs_best`` how its mAP compares with the best's
    (:func:`compare`; None for the best and unscored trials)."""

    settings: dict
    status: str
    epochs_done: int = 0
    seconds: float = 0.0
    val: dict = field(default_factory=dict)
    by_class: dict = field(default_factory=dict, repr=False)
    vs_best: dict | None = None


def compare(trial: dict, best: dict, draws: int = DRAWS, seed: int = 0) -> dict:
    """How a trial's validation mAP compares with the best's, both ``{class: {"queries", "map"}}`` on
    the same classes: the difference, and its 95 % interval when the classes are drawn again with
    replacement (a paired bootstrap: queries of one class are not independent, so classes are the
    unit). ``within_noise`` when the interval reaches zero: the validation data cannot tell them apart."""
    import numpy as np

    classes = sorted(best)
    n = np.array([best[c]["queries"] for c in classes], np.float64)
    gap = np.array([(trial[c]["map"] - best[c]["map"]) * best[c]["queries"] for c in classes])
    picks = np.random.default_rng(seed).integers(0, len(classes), (draws, len(classes)))
    low, high = np.quantile(gap[picks].sum(1) / n[picks].sum(1), [0.025, 0.975])
    return {"map_difference": float(gap.sum() / n.sum()), "interval": [float(low), float(high)],
            "within_noise": bool(high >= 0), "classes": len(classes)}


@dataclass
class TuneResult:
    trials: list[Trial]
    base: dict
    seconds: float

    @property
    def best(self) -> Trial | None:
        scored = [t for t in self.trials if t.val]
        return max(scored, key=lambda t: (t.val["map"], t.val["recall@1"]), default=None)

    def verdict(self, trial: Trial) -> str:
        """``best``, ``within noise`` (of the best), ``worse``, or "" for a trial without scores."""
        if trial is self.best:
            return "best"
        if trial.vs_best is None:
            return ""
        return "within noise" if trial.vs_best["within_noise"] else "worse"

    def to_dict(self) -> dict:
        best = self.best
        return {"base": self.base, "seconds": round(self.seconds, 1),
                "trials": [asdict(t) for t in self.trials],
                "best": None if best is None else {"settings": best.settings, "val": best.val}}


def run_grid(data: str | os.PathLike, grid: dict[str, list], out: str | os.PathLike, base=None,
             budget: float | None = None, workers: int = 2, progress=None, follow_links: bool = False) -> TuneResult:
    """Train every point of ``grid`` (settings not in it come from ``base``) and write the tables to ``out``.

    ``budget`` (seconds) caps the total: the run in progress stops after its current epoch and the
    remaining points are skipped. ``progress(trial_index, n_trials, stage, done, total, info)``.
    ``follow_links`` also takes what symbolic links lead to outside ``data``.
    """
    from lookalike.train.config import TrainConfig
    from lookalike.train.loop import fit, prepare, reblend

    folder(data)  # before anything is written
    base = replace(base or TrainConfig(), val_split="classes")
    keys = list(grid)
    points = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    for point in points:  # a point that cannot work stops the grid before the others are trained
        _config(base, point).check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    deadline = None if budget is None else started + budget
    trials: list[Trial] = []
    prepared, trained = {}, {}
    try:
        for i, point in enumerate(points):
            if deadline is not None and time.perf_counter() >= deadline:
                trials.append(Trial(point, "skipped (budget)"))
                continue
            config = _config(base, point)
            report = (lambda *a, i=i: progress(i, len(points), *a)) if progress else (lambda *a: None)
            t0 = time.perf_counter()
            key = (config.unfreeze, config.augment, config.embed_size)
            if key not in prepared:
                prepared[key] = prepare(data, config, out / ".cache", progress=report, workers=workers,
                                        follow_links=follow_links)
            run = tuple((k, v) for k, v in point.items() if k not in SHARED)
            if run not in trained:
                trained[run] = fit(prepared[key], replace(config, blend=1.0, ema=0.0, whiten=0.0), progress=report,
                                   workers=workers, deadline=deadline, also_ema=tuple(grid.get("ema", [config.ema])))
            prep = prepared[key].centred_on_val() if point.get("centre") == "val" else prepared[key]
            result = reblend(trained[run], prep, config.blend, config.ema, workers=workers, whiten=config.whiten)
            done = result.history[-1].epoch
            trials.append(Trial(point, "done" if done == config.epochs else "stopped (budget)", done,
                                round(time.perf_counter() - t0, 1),
                                {k: result.val[k] for k in SCORES} if result.val else {},
                                result.val["by_class"] if result.val else {}))
    finally:
        for prep in prepared.values():
            prep.close()
        _remove_if_empty(out / ".cache")
    result = TuneResult(trials, asdict(base), time.perf_counter() - started)
    for trial in trials:
        if trial.val and trial is not result.best:
            trial.vs_best = compare(trial.by_class, result.best.by_class)
    write_tables(result, keys, out)
    return result


def _config(base, point: dict):
    """``base`` with a grid point's training settings (all but ``centre``, which is no training setting)."""
    return replace(base, **{k: v for k, v in point.items() if k != "centre"})


def write_tables(result: TuneResult, keys: list[str], out: Path) -> None:
    """``tune.json``, ``tune.csv`` and ``tune.png`` (validation mAP and recall@1 per grid point)."""
    atomic.write(out / "tune.json", json.dumps(result.to_dict(), indent=2))
    with atomic.replacing(out / "tune.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*keys, *SCORES, "vs_best", "epochs_done", "seconds", "status"])
        for t in result.trials:
            w.writerow([*(t.settings[k] for k in keys), *(t.val.get(s, "") for s in SCORES), result.verdict(t),
                        t.epochs_done, t.seconds, t.status])
    _plot(result, out / "tune.png")


def label(settings: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in settings.items())


def _plot(result: TuneResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    trials = result.trials
    y = np.arange(len(trials))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(trials) + 1.8), dpi=100)
    for offset, score, colour in ((-0.2, "map", "tab:orange"), (0.2, "recall@1", "tab:blue")):
        bars = ax.barh(y + offset, [t.val.get(score, 0) for t in trials], height=0.4, color=colour,
                       label=f"validation {score}")
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=2)
    best = result.best
    ax.set_yticks(y, [label(t.settings) + (" (best)" if t is best else "") + ("" if t.val else f" ({t.status})")
                      for t in trials], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.1)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize="small")
    ax.set_title("grid search: open-set validation (held-out classes)")
    fig.tight_layout()
    with atomic.replacing(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
