"""Open-set benefit of fine-tuning: pretrained vs fine-tuned EfficientNet-Lite0 on unseen flower classes.

Trains ``lookalike train``'s default recipe on flowers51 classes 001-035 (all 35 classes; no
validation split, so nothing of the test classes is seen or used to pick anything), then evaluates
leave-one-out retrieval on classes 036-051 with the pretrained model and with the fine-tuned one,
through the same ``lookalike evaluate`` pipeline (ONNX Runtime). Prints one JSON object: both sets
of metrics, the gain, training wall and CPU seconds, and the load average, since on a shared
machine wall time depends on what else runs.

    python benchmarks/train_flowers.py [--data FOLDER] [--epochs N] [--out result.json]
    python benchmarks/train_flowers.py --test 1-16     # another split: train 017-051, score 001-016
    python benchmarks/train_flowers.py --embed-size 256 --also-embed-size 224   # embed at 256 (and 224)
    python benchmarks/train_flowers.py --also-whiten 0                          # and without whitening
    python benchmarks/train_flowers.py --centre-on-test    # centred on the test images, as --centre-on does

With ``--centre-on-test`` the fine-tuned embedding is centred on the mean of the test classes' images
(their labels unused), as ``lookalike train --centre-on`` centres it on the collection to be searched,
and the same training is also scored centred on its training images (the default).

With ``--embed-size N`` (or ``--also-embed-size N``) the pretrained network is scored at N pixels too
(``pretrained_by_size``), so that a gain can be told apart from what the size alone does.

flowers51 (Oxford 102 Flowers, classes 001-051, 40 images each) is not part of the repository; the
script says so and exits 2 when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lookalike.evaluation.evaluate import evaluate_folder  # noqa: E402
from lookalike.train.config import TrainConfig  # noqa: E402
from bench import FLOWERS51, emit, flowers51  # noqa: E402

KEYS = ("recall@1", "recall@5", "recall@10", "map", "map@r", "median_rank")


def link_classes(data: Path, names: list[str], into: Path) -> Path:
    """A folder of symlinks to the chosen class folders."""
    into.mkdir(parents=True)
    for name in names:
        (into / name).symlink_to((data / name).resolve(), target_is_directory=True)
    return into


def scores(data: Path, model: str) -> dict:
    summary = evaluate_folder(data, model, follow_links=True).to_dict()  # the split is links to the classes
    return {k: summary[k] for k in ("n_images", "n_classes", *KEYS)} | {"comparative": summary["comparative"]}


def pretrained_model(spec, into: Path) -> Path:
    """A model directory of the pretrained network ``spec`` (its features, at its input size)."""
    from lookalike.models.export import export
    from lookalike.models.registry import SIDECAR

    into.mkdir()
    export(spec, into / "model.onnx")
    pre = spec.preprocessing
    (into / SIDECAR).write_text(json.dumps({"name": f"{spec.name}-{pre.size}", "input_size": pre.size,
                                            "mean": list(pre.mean), "std": list(pre.std), "dim": spec.dim}))
    return into


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=FLOWERS51)
    p.add_argument("--split", type=int, default=35, help="classes 1..SPLIT train, the rest are evaluated")
    p.add_argument("--test", metavar="FIRST-LAST", help="evaluate classes FIRST..LAST (counted from 1), "
                   "train on all the others (instead of --split)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--also-blend", type=float, action="append", default=[], metavar="SHARE",
                   help="also score the same training exported at this --blend (no second training; repeatable)")
    p.add_argument("--also-ema", type=float, action="append", default=[], metavar="DECAY",
                   help="also keep this moving average in the same training and score it (0: the last weights; "
                        "repeatable; with every blend)")
    p.add_argument("--also-whiten", type=float, action="append", default=[], metavar="POWER",
                   help="also score the same training whitened to this power (0: not whitened; no second "
                        "training; repeatable; with every blend and moving average)")
    p.add_argument("--also-embed-size", type=int, action="append", default=[], metavar="PIXELS",
                   help="also score the same training, and the pretrained network, embedding at this size "
                        "(no second training; repeatable)")
    p.add_argument("--centre-on-test", action="store_true",
                   help="centre the fine-tuned embedding on the test images (labels unused), as lookalike train "
                        "--centre-on does; the same training centred on its training images is scored too")
    p.add_argument("--keep", type=Path, help="write the fine-tuned model directory here (default: a temp dir)")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        if f.name not in ("model", "layer", "val_split", "val_fraction"):
            p.add_argument(f"--{f.name.replace('_', '-')}", type=type(getattr(defaults, f.name)),
                           default=getattr(defaults, f.name))
    args = p.parse_args()
    args.data = flowers51(args.data)
    classes = sorted(d.name for d in args.data.iterdir() if d.is_dir())
    first, last = (int(x) for x in args.test.split("-")) if args.test else (args.split + 1, len(classes))
    test_names = classes[first - 1:last]
    train_names = [c for c in classes if c not in test_names]
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)
                            if hasattr(args, f.name)}, val_split="none")

    import torch

    from lookalike.train.loop import base_spec, embedding_spec, prepare, reblend
    from lookalike.train.run import train
    from lookalike.train.save import write_model_dir

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train_dir = link_classes(args.data, train_names, tmp / "train")
        test_dir = link_classes(args.data, test_names, tmp / "test")
        pretrained = scores(test_dir, "efficientnet-lite0")
        base = base_spec(config)
        sizes = [n for n in dict.fromkeys([config.embed_size, *args.also_embed_size])
                 if n not in (0, base.preprocessing.size)]
        pretrained_by_size = {n: scores(test_dir, str(pretrained_model(embedding_spec(base, n), tmp / f"pre-{n}")))
                              for n in sizes}
        out = args.keep or tmp / "model"
        load_before = os.getloadavg()
        cpu0 = time.process_time()
        centre = test_dir if args.centre_on_test else None
        result, _, seconds = train(train_dir, out, config, threads=args.threads, follow_links=True,
                                   also_ema=tuple(args.also_ema), centre_dir=centre)
        cpu = time.process_time() - cpu0
        load_after = os.getloadavg()
        tuned = scores(test_dir, str(out))
        split = json.loads((out / "lookalike.json").read_text())["split"]
        also = {}
        exports = [(decay, share, power) for decay in dict.fromkeys([config.ema, *args.also_ema])
                   for share in dict.fromkeys([config.blend, *args.also_blend])
                   for power in dict.fromkeys([config.whiten, *args.also_whiten])]
        exports = {f"ema {d} blend {s} whiten {w}": (d, s, w, config.embed_size, centre) for d, s, w in exports
                   if (d, s, w) != (config.ema, config.blend, config.whiten)}
        exports |= {f"embed size {n}": (config.ema, config.blend, config.whiten, n, centre)
                    for n in dict.fromkeys(args.also_embed_size) if n != config.embed_size}
        if centre is not None:
            exports["centred on the training images"] = (config.ema, config.blend, config.whiten, config.embed_size,
                                                         None)
        preps = {}  # the training images at each embedding size (and centring) asked for, prepared once
        for key, (decay, share, power, size, centre_dir) in exports.items():
            # the export the training would have made with these settings (whitening fitted again)
            if (size, centre_dir) not in preps:
                preps[size, centre_dir] = prepare(train_dir, replace(config, embed_size=size), tmp / "cache",
                                                  follow_links=True, centre_dir=centre_dir)
            other = tmp / key.replace(" ", "-")
            write_model_dir(reblend(result, preps[size, centre_dir], share, decay, whiten=power), other)
            also[key] = scores(test_dir, str(other))
        for prep in preps.values():
            prep.close()
    report = {
        "data": str(args.data),
        "train_classes": f"{train_names[0]}-{train_names[-1]}" + (f" except {test_names[0]}-{test_names[-1]}"
                                                                  if train_names[0] < test_names[0] < train_names[-1] else ""),
        "train_images": split["train_images"],
        "centred_on": None if centre is None else {k: split["centre"][k] for k in ("images", "unreadable")},
        "test_classes": f"{test_names[0]}-{test_names[-1]}",
        "pretrained": pretrained,
        "pretrained_by_size": pretrained_by_size,
        "fine_tuned": tuned,
        "gain": {k: round(tuned[k] - pretrained[k], 4) for k in ("recall@1", "map", "map@r")},
        "same_training_other_exports": also,
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu, 1),
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "epoch_seconds": [round(e.seconds, 1) for e in result.history],
        "training_loss": [None if e.loss is None else round(e.loss, 4) for e in result.history],
        "config": asdict(config),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
