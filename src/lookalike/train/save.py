"""Writing a trained network as a model directory that every ``--model`` option accepts.

The directory holds ``model.onnx`` (images -> L2-normalised embeddings, dynamic batch),
``lookalike.json`` (name, input size, normalisation, dim, base model, training settings, validation
metrics and history) and ``training.png`` (loss and validation curves).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from lookalike import atomic
from lookalike.models.export import export
from lookalike.models.registry import SIDECAR
from lookalike.train.loop import CHECKPOINT, Result

ONNX_NAME = "model.onnx"
CURVE_NAME = "training.png"


def write_model_dir(result: Result, out: str | os.PathLike, name: str | None = None,
                    extra: dict | None = None) -> Path:
    """Export ``result`` into directory ``out`` and remove its training checkpoint; returns the ONNX path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = replace(result.spec, layers={result.spec.layer: result.config.dim})
    onnx_path = out / ONNX_NAME
    export(spec, onnx_path, module=result.net)
    pre = spec.preprocessing
    meta = {
        "name": name or out.resolve().name,
        "input_size": pre.size, "mean": list(pre.mean), "std": list(pre.std), "resize": pre.resize,
        "dim": result.config.dim,
        "base_model": result.spec.name, "base_layer": result.spec.layer,
        "method": "NormSoftmax fine-tuning",
        "training": asdict(result.config),
        "validation": result.val,
        "history": [asdict(e) for e in result.history],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    atomic.write(out / SIDECAR, json.dumps(meta, indent=2))
    plot_history(result, out / CURVE_NAME)
    (out / CHECKPOINT).unlink(missing_ok=True)
    return onnx_path


def plot_history(result: Result, path: Path) -> None:
    """Training loss and validation recall@1 / mAP per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    trained = [e for e in result.history if e.loss is not None]
    ax.plot([e.epoch for e in trained], [e.loss for e in trained], "o-", color="tab:gray", label="training loss")
    ax.set_xlabel("epoch (0: before training)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss")
    validated = [e for e in result.history if e.val]
    if validated:
        right = ax.twinx()
        for key, colour in (("recall@1", "tab:blue"), ("map", "tab:orange")):
            right.plot([e.epoch for e in validated], [e.val[key] for e in validated], "s-", color=colour,
                       label=f"validation {key}")
        right.set_ylabel("validation")
        right.set_ylim(0, 1)
        lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize="small")
    else:
        ax.legend(loc="upper right", fontsize="small")
    ax.set_title(f"{result.spec.name} + NormSoftmax ({result.config.dim}-d)")
    fig.tight_layout()
    with atomic.replacing(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
