"""One training run, from a folder of labelled images to a model directory (``lookalike train``)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from lookalike.train import omp  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads)
import torch

from lookalike.train.save import write_model_dir
from lookalike.train.config import TrainConfig
from lookalike.train.loop import CACHE_DIR, Progress, Result, _quiet, fit, prepare, saved_config


def train(data: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None,
          val_dir: str | os.PathLike | None = None, resume: bool = False, name: str | None = None,
          device: str = "cpu", threads: int | None = None, workers: int = 2,
          progress: Progress = _quiet, follow_links: bool = False,
          also_ema: tuple[float, ...] = (), centre_dir: str | os.PathLike | None = None) -> tuple[Result, Path, float]:
    """Fine-tune on ``data`` and write the model directory ``out``; returns (result, ONNX path, seconds).

    With ``resume`` an interrupted run in ``out`` continues with its saved settings (``config`` is
    then ignored); without it an unfinished run there is an error, so nothing is lost by accident.
    ``follow_links`` also takes what symbolic links lead to outside ``data`` (and ``val_dir``).
    ``also_ema``: more moving averages kept for ``result.average`` to export (see ``loop.reblend``).
    ``centre_dir``: centre the exported embedding on its images' mean (see ``loop.prepare``).
    """
    out = Path(out)
    saved = saved_config(out)
    if saved is not None and not resume:
        raise ValueError(f"{out} holds an unfinished training run: add --resume to continue it, "
                         "or choose another --out")
    config = saved if saved is not None else (config or TrainConfig())
    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    prep = prepare(data, config, out / CACHE_DIR, val_dir, progress, workers, follow_links, centre_dir)
    # An exception leaves the activation cache and the last checkpoint in place for --resume.
    result = fit(prep, config, out, progress, resume=saved is not None, workers=workers, device=device,
                 also_ema=also_ema)
    seconds = time.perf_counter() - started
    split = {"data": prep.train.root, "train_images": len(prep.train), "train_classes": len(prep.train.classes),
             "val_data": prep.val.root if prep.val is not None else None,
             "val_images": len(prep.val) if prep.val is not None else 0,
             "val_classes": prep.val.classes if prep.val is not None else [],
             "centre": result.centre, "train_seconds": round(seconds, 1)}
    onnx_path = write_model_dir(result, out, name, {"split": split})
    prep.close()
    _remove_if_empty(out / CACHE_DIR)
    return result, onnx_path, seconds


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass
