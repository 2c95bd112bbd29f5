"""Measuring and training embeddings: ``evaluate``, ``train`` and ``tune``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lookalike.cli import present
from lookalike.cli.common import (Device, FollowLinksOpt, JsonOpt, LayerOpt, MetricOpt, ModelOpt, QuietOpt,
                                  ThreadsOpt, TorchThreadsOpt, VerboseLeftOutOpt, check_folder, err, fail, no_bar,
                                  print_json, print_skipped, progress_bar, say)
from lookalike.text import plural
from lookalike.train.config import TrainConfig
from lookalike.vectors import MetricName


_TRAIN = TrainConfig()


class Augment(str, Enum):
    pixels = "pixels"
    features = "features"


class Loss(str, Enum):
    normsoftmax = "normsoftmax"
    proxy_anchor = "proxy-anchor"


class ValSplit(str, Enum):
    classes = "classes"
    images = "images"
    none = "none"


def _print_metrics(summary: dict, title: str) -> None:
    from rich.table import Table

    t = Table("metric", "value", title=title, title_justify="left")
    for key, value in summary.items():
        if isinstance(value, dict):
            for k, v in value.items():
                t.add_row(f"{key} {k}", f"{v:.4f}" if isinstance(v, float) else str(v))
        else:  # a list (the skipped files) by its length: they are listed on stderr
            t.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(len(value) if isinstance(value, list)
                                                                                else value))
    present.stdout_console().print(t)


def evaluate(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Folder with one sub-folder of images per class.",
                                         show_default=False)],
    model: ModelOpt = None,
    layer: LayerOpt = None,
    metric: MetricOpt = MetricName.cosine,
    rerank: Annotated[bool, typer.Option("--rerank", help="Also score k-reciprocal re-ranking of the top 100.")] = False,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write an HTML report with PNGs and metrics.json "
                                                   "into this folder.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the comparative sets.")] = 0,
    index_path: Annotated[Optional[Path], typer.Option("--index", show_default=False, help="Embed through this "
                                                       "index (brought up to date with DATA, as dedup DATA does), "
                                                       "reusing the vectors it holds [default: a cache per folder "
                                                       "and model]")] = None,
    threads: ThreadsOpt = None,
    follow_links: FollowLinksOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseLeftOutOpt = False,
) -> None:
    """Leave-one-out retrieval quality on labelled folders: recall@k, mAP, MAP@R, median rank.

    Embeddings are cached per folder and model, so a second run (another metric) is instant;
    with --index, an index that already holds DATA is used without embedding it again.
    """
    from lookalike.evaluation import evaluate as ev

    _check_data(data, follow_links, verbose, note=False)  # its skipped files are listed below
    with progress_bar(quiet or as_json) as bar:
        task = bar.add_task("embed", total=None, rate="")
        result = ev.evaluate_folder(data, model, layer, metric.value, rerank, seed, threads,
                                    on_plan=lambda n: bar.update(task, total=n),
                                    on_progress=lambda n: bar.advance(task, n), index=index_path,
                                    follow_links=follow_links)
    summary = result.to_dict()
    if report is not None:
        page = ev.write_report(result, report)
        err.print(f"report: {page}", soft_wrap=True)
    if as_json:
        print_json(summary)
        return
    print_skipped(result.index.skipped)
    _print_metrics(summary, f"{result.model} on {data} ({metric.value})")


def train(
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Folder with one sub-folder of images per class.",
                                         show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model directory to write (use it as --model).")],
    model: Annotated[str, typer.Option("--model", help="Base model: efficientnet-lite0/1/2.")] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training images.")] = _TRAIN.epochs,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="Backbone learning rate (the head uses 10x).")] = _TRAIN.lr,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Softmax temperature of the "
                                               "NormSoftmax loss (lower: sharper classes); Proxy-Anchor's "
                                               "scale is its inverse.")] = _TRAIN.temperature,
    margin: Annotated[float, typer.Option("--margin", min=0.0, max=0.99, help="Cosine margin subtracted from each "
                                          "image's similarity to its own class in the loss "
                                          "(0: plain NormSoftmax); Proxy-Anchor's delta.")] = _TRAIN.margin,
    loss: Annotated[Loss, typer.Option("--loss", help="Training loss: NormSoftmax, or Proxy-Anchor (each class's "
                                       "proxy pulls its images in and pushes the others out).")] = Loss(_TRAIN.loss),
    dim: Annotated[int, typer.Option("--dim", min=1, help="Embedding dimension.")] = _TRAIN.dim,
    unfreeze: Annotated[int, typer.Option("--unfreeze", min=0, help="Train the last N blocks (0: head only; "
                                          "16 or more: the whole network, slowest).")] = _TRAIN.unfreeze,
    train_size: Annotated[int, typer.Option("--train-size", min=32, help="Network input size in training, "
                                            "in pixels.")] = _TRAIN.train_size,
    crop_size: Annotated[int, typer.Option("--crop-size", min=0, help="Pixels each training crop is rendered at "
                                           "before it is resized to --train-size (0: at --train-size; "
                                           "below it: less detail).")] = _TRAIN.crop_size,
    embed_size: Annotated[int, typer.Option("--embed-size", min=0, help="Input size of the exported model in "
                                            "pixels: whole images at index and query time "
                                            "(0: the base model's, 224 for Lite0).")] = _TRAIN.embed_size,
    augment: Annotated[Augment, typer.Option("--augment", help="Crop and flip the pixels every step, or crop cached "
                                             "feature maps of each image and its mirror (faster, "
                                             "weaker).")] = Augment(_TRAIN.augment),
    batch: Annotated[int, typer.Option("--batch", min=2, help="Images per step.")] = _TRAIN.batch_size,
    lr_decay: Annotated[float, typer.Option("--lr-decay", min=0.0, max=1.0, help="Learning-rate factor per block "
                                            "towards the input (1: one rate for all).")] = _TRAIN.lr_decay,
    ema: Annotated[float, typer.Option("--ema", min=0.0, max=0.9999, help="Export a moving average of the weights "
                                       "with this decay per step (0: the last weights).")] = _TRAIN.ema,
    blend: Annotated[float, typer.Option("--blend", min=0.0, max=1.0, help="Share of the trained weights in the "
                                         "exported model; the rest are the starting weights.")] = _TRAIN.blend,
    whiten: Annotated[float, typer.Option("--whiten", min=0.0, max=1.0, help="Power of the learned whitening "
                                          "fitted on the training images after training (0: none, 1: "
                                          "full).")] = _TRAIN.whiten,
    val_split: Annotated[ValSplit, typer.Option("--val-split", help="Hold out whole classes (open set), images of "
                                                "every class (closed set), or nothing.")] = ValSplit.classes,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.0, max=0.9, help="Share held out for validation.")] = _TRAIN.val_fraction,
    val_data: Annotated[Optional[Path], typer.Option("--val-data", help="Validate on this labelled folder "
                                                     "instead of splitting DATA.")] = None,
    centre_on: Annotated[Optional[Path], typer.Option("--centre-on", help="Centre the exported embedding on the "
                                                      "mean of this folder's images (labels not needed): the "
                                                      "collection to be searched [default: the training "
                                                      "images].")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, initialisation and batches.")] = 0,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name [default: the folder name].")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run in --out.")] = False,
    device: Annotated[Device, typer.Option("--device", help="Torch device; auto: CUDA when available.")] = Device.cpu,
    threads: TorchThreadsOpt = None,
    follow_links: FollowLinksOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseLeftOutOpt = False,
) -> None:
    """Fine-tune an embedding on labelled folders (NormSoftmax or Proxy-Anchor) and write a model directory."""
    from lookalike.train.run import train as run_training

    left_out = [item for folder in (data, val_data, centre_on) if folder is not None
                for item in _check_data(folder, follow_links, verbose)]
    _advise(data, follow_links, "none" if val_data is not None else val_split.value, val_fraction, seed)
    config = TrainConfig(model=model, dim=dim, temperature=temperature, margin=margin, loss=loss.value,
                         epochs=epochs, lr=lr,
                         unfreeze=unfreeze, batch_size=batch, train_size=train_size, crop_size=crop_size,
                         augment=augment.value, val_split=val_split.value,
                         val_fraction=val_fraction, seed=seed, lr_decay=lr_decay, ema=ema, blend=blend,
                         embed_size=embed_size, whiten=whiten)
    with _training_progress(quiet or as_json) as progress:
        result, onnx_path, seconds = run_training(data, out, config, val_data, resume, name, device.value, threads,
                                                  progress=progress, follow_links=follow_links,
                                                  centre_dir=centre_on)
    summary = {"model_dir": str(out), "onnx": str(onnx_path), "seconds": round(seconds, 1),
               "epochs": result.history[-1].epoch, "validation": result.val,
               "untrained_validation": result.history[0].val if result.history[0].epoch == 0 else None,
               "centre": result.centre, "left_out": [{"path": p, "reason": r} for p, r in left_out]}
    if as_json:
        print_json(summary)
        return
    if result.centre is not None and result.centre["unreadable"]:
        (path, reason), more = result.centre["unreadable"][0], len(result.centre["unreadable"]) - 1
        say("warning", "bold yellow", f"centred on {result.centre['images']} images; {path} could not be read "
                                      f"({reason})" + (f", nor {more} more" if more else ""))
    print(f"wrote {out} ({seconds:.0f} s); use it with --model {out}")


def _check_data(folder: Path, follow_links: bool, verbose: bool = False, note: bool = True) -> list[tuple[str, str]]:
    """What a labelled FOLDER's listing leaves out (said on stderr: see :func:`check_folder`); a
    one-line error when it is no folder or holds no image."""
    nothing, left_out = check_folder(folder, follow_links, verbose, note)
    if nothing is not None:
        fail(nothing)
    return left_out


def _advise(folder: Path, follow_links: bool, by: str, fraction: float, seed: int) -> None:
    """A warning when the labelled FOLDER, split for training, is below the documented advice."""
    from lookalike.train import data

    why = data.below_advice(data.scan(folder, follow_links), by, fraction, seed)
    if why is not None:
        say("warning", "bold yellow", why)


def _validation_text(epoch) -> str:
    """An epoch's validation scores as a progress-line suffix ("" when it was not validated)."""
    return f"  val recall@1 {epoch.val['recall@1']:.3f}  mAP {epoch.val['map']:.3f}" if epoch.val else ""


class _training_progress:
    """A rich progress display for training: caching, then one bar per epoch with loss and validation."""

    def __init__(self, quiet: bool) -> None:
        self.bar = Progress(TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err, disable=no_bar(quiet))
        self.tasks: dict[str, int] = {}
        self.quiet = quiet

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int, info: dict) -> None:
        if stage == "epoch":
            e = info["epoch"]
            loss = f"  loss {e.loss:.3f}" if e.loss is not None else "  (untrained)"
            if not self.quiet:
                err.print(f"epoch {e.epoch}/{total}{loss}{_validation_text(e)}  ({e.seconds:.0f} s)")
            return
        key = f"{stage} {info.get('name', '')} {info.get('epoch', '')}"
        if key not in self.tasks:
            label = f"epoch {info['epoch']}" if stage == "train" else f"caching {info.get('name', '')}"
            self.tasks[key] = self.bar.add_task(label, total=total, info="")
        text = f"loss {info['loss']:.3f}" if "loss" in info else ""
        self.bar.update(self.tasks[key], completed=done, info=text)


def tune(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(metavar="DATA", help="Folder with one sub-folder of images per class.",
                                         show_default=False)],
    grid: Annotated[list[str], typer.Option("--grid", metavar="NAME=V1,V2,...", help="NAME=V1,V2,... entries, e.g. --grid lr=1e-3,1e-4 "
                                            "temperature=0.05,0.1 dim=256,512; a single value fixes a setting.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for tune.json, tune.csv and tune.png.")] = Path("tune"),
    model: Annotated[str, typer.Option("--model", help="Base model: efficientnet-lite0/1/2.")] = "efficientnet-lite0",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Passes over the training images.")] = _TRAIN.epochs,
    val_fraction: Annotated[float, typer.Option("--val-fraction", min=0.05, max=0.9, help="Share of the classes held out for scoring.")] = _TRAIN.val_fraction,
    budget: Annotated[Optional[str], typer.Option("--budget", help="Cap on total time: 600, 600s, 10m, 1h.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split, initialisation and batches.")] = 0,
    threads: TorchThreadsOpt = None,
    follow_links: FollowLinksOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Grid search of training settings, scored on held-out classes; names the best configuration."""
    from rich.table import Table

    from lookalike.train import tune as tn

    _check_data(data, follow_links)
    _advise(data, follow_links, "classes", val_fraction, seed)
    points = tn.parse_grid([*grid, *ctx.args])  # "--grid a=1,2 b=3" leaves "b=3" in ctx.args
    seconds = tn.parse_budget(budget)
    if threads:
        import torch

        torch.set_num_threads(threads)
    base = TrainConfig(model=model, epochs=epochs, val_fraction=val_fraction, seed=seed)

    def progress(i: int, n: int, stage: str, done: int, total: int, info: dict) -> None:
        if stage == "epoch" and not (quiet or as_json):
            e = info["epoch"]
            err.print(f"[{i + 1}/{n}] epoch {e.epoch}/{total}{_validation_text(e)}")

    result = tn.run_grid(data, points, out, base, seconds, progress=progress, follow_links=follow_links)
    if as_json:
        print_json(result.to_dict())
        return
    keys = [k for k in points if k != "epochs"]  # the epochs column says how many were planned and done
    t = Table(*keys, "val mAP", "val recall@1", "vs best", "epochs", "seconds", "status", title=f"grid search ({out})",
              title_justify="left")
    best = result.best
    for trial in result.trials:
        planned = trial.settings.get("epochs", base.epochs)
        epochs = str(planned) if trial.epochs_done == planned else f"{trial.epochs_done} of {planned}"
        t.add_row(*(str(trial.settings[k]) for k in keys), f"{trial.val['map']:.4f}" if trial.val else "-",
                  f"{trial.val['recall@1']:.4f}" if trial.val else "-", result.verdict(trial), epochs,
                  f"{trial.seconds:.0f}", trial.status, style="bold green" if trial is best else None)
    present.stdout_console().print(t)
    if best is None:
        return
    options = [f"--{k.replace('_', '-')} {v}" for k, v in best.settings.items() if k != "centre"]
    if best.settings.get("centre") == "val":  # centred on the held-out images: on the collection to be searched
        options.append("--centre-on PHOTOS")
    print("best: " + " ".join(options) + f"  (val mAP {best.val['map']:.4f}, recall@1 {best.val['recall@1']:.4f})")
    close = [trial for trial in result.trials if trial.vs_best and trial.vs_best["within_noise"]]
    if close:
        say("note", "bold", f"within noise of the best: {plural(len(close), 'other trial')} (the 95 % interval of "
            f"the mAP difference reaches 0 when the {close[0].vs_best['classes']} validation classes are drawn "
            "again with replacement); this validation data cannot tell them apart, more held-out classes would")
