"""Flip-averaged embeddings: does embedding each image and its mirror image, and comparing their
mean, retrieve better than the image alone, and what does the second inference pass cost?

Embeds the images of a range of flowers51 classes with a model (the pretrained EfficientNet-Lite0 or
a directory written by ``lookalike train``) as index and query time do (the whole image, the model's
own input size), then the mirror images, and scores leave-one-out retrieval (cosine) of the image's
embedding alone and of the normalised mean of the two unit-length embeddings. Prints one JSON
object: both sets of metrics, the gain, and the seconds of decoding and of each inference pass.

    python benchmarks/flip_average.py [--classes 1-35] [--model efficientnet-lite0|MODEL_DIR] [--out result.json]

flowers51 is not part of the repository; the script says so and exits 2 when it is absent.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from PIL import Image

from lookalike.evaluation import retrieval
from lookalike.images import decode
from lookalike.models.embedder import Embedder
from lookalike.models.registry import resolve
from lookalike.train.data import labelled
from bench import FLOWERS51, emit, end_of_run, flowers51

KEYS = ("recall@1", "recall@5", "recall@10", "map", "map@r", "median_rank")
BATCH = 32


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=FLOWERS51)
    p.add_argument("--classes", default="1-35", metavar="FIRST-LAST", help="the classes scored (counted from 1)")
    p.add_argument("--model", default="efficientnet-lite0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    data = flowers51(args.data)
    first, last = (int(x) for x in args.classes.split("-"))
    names = sorted(d.name for d in data.iterdir() if d.is_dir())[first - 1:last]
    images = labelled(sorted(str(f) for n in names for f in (data / n).iterdir() if f.is_file()), data)
    embedder = Embedder(resolve(args.model), args.threads)
    size = embedder.spec.preprocessing.size
    seconds = {"decode": 0.0, "embed": 0.0, "embed_mirror": 0.0}
    plain, mirror = [], []
    for s in range(0, len(images), BATCH):
        t = time.perf_counter()
        decoded = [decode(path, size) for path in images.paths[s:s + BATCH]]
        batch = np.stack([embedder.preprocess(img) for img in decoded])
        flipped = np.stack([embedder.preprocess(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) for img in decoded])
        seconds["decode"] += time.perf_counter() - t
        for key, x, into in (("embed", batch, plain), ("embed_mirror", flipped, mirror)):
            t = time.perf_counter()
            into.append(embedder.embed(x))
            seconds[key] += time.perf_counter() - t
    plain, mirror = unit(np.concatenate(plain)), unit(np.concatenate(mirror))
    scored = {name: retrieval.evaluate(x, images.codes, "cosine").summary()
              for name, x in (("image", plain), ("flip_averaged", unit(plain + mirror)))}
    scored = {name: {k: s[k] for k in KEYS} for name, s in scored.items()}
    emit({"data": str(data), "classes": f"{names[0]}-{names[-1]}", "images": len(images), "model": args.model,
          "input_size": size, **scored,
          "gain": {k: round(scored["flip_averaged"][k] - scored["image"][k], 4) for k in ("recall@1", "map", "map@r")},
          "seconds": {k: round(v, 1) for k, v in seconds.items()},
          "images_per_second": {"one_pass": round(len(images) / seconds["embed"], 1),
                                "flip_averaged": round(len(images) / (seconds["embed"] + seconds["embed_mirror"]), 1)},
          "threads": args.threads, "cpus": os.cpu_count(), **end_of_run()}, args.out)


if __name__ == "__main__":
    main()
