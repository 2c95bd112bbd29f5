"""Retrieval quality of a model on folder-per-class data (``lookalike evaluate``).

Images are embedded through an ordinary index kept in the user cache directory, keyed by the data
folder and the model, so evaluating again (another metric, re-ranking, a few new files) only embeds
what changed; or through the user's own index (``--index``), brought up to date with the folder as
``lookalike dedup FOLDER`` does, so that vectors it already holds are not computed again. Labels come from folders (:func:`lookalike.train.data.label_of`); the metrics are
:mod:`lookalike.evaluation.retrieval`' leave-one-out protocol and comparative sets, chunked so memory stays bounded.
No torch import here: a cached or trained ONNX model is all that runs.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lookalike import atomic
from lookalike.evaluation import retrieval
from lookalike.evaluation import rerank as reranking
from lookalike.api import Index, model_ref
from lookalike.images import ImageError, decode, folder, left_out_summary
from lookalike.index.indexer import IndexReport
from lookalike.models.registry import resolve
from lookalike.paths import cache_dir
from lookalike.text import middle
from lookalike.index.store import StoreError
from lookalike.train.data import LabelledImages, labelled
from lookalike.vectors import Searcher

RERANK_K = 100
THUMB = 112
CAPTION_SIZE = 11  # pixels: the report's captions under each thumbnail
CAPTION_LINE = 14
CAPTION_LINES = 3
REPORT_ROWS = 6
REPORT_NEIGHBOURS = 8


def index_dir(data: str | os.PathLike, model: str | None, layer: str | None) -> Path:
    """Where the evaluation index of ``data`` under ``model`` lives (``$LOOKALIKE_CACHE`` or the user cache)."""
    spec = resolve(model, layer)
    key = json.dumps([os.path.abspath(os.fspath(data)), model_ref(model, spec), spec.layer])
    return cache_dir("eval", f"{spec.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}")


@dataclass
class Evaluation:
    """The outcome of :func:`evaluate_folder`; :meth:`to_dict` is the ``evaluate --json`` shape."""

    data: LabelledImages
    vectors: np.ndarray
    result: retrieval.RetrievalEvaluation
    reranked: retrieval.RetrievalEvaluation | None
    model: str
    index: IndexReport
    seconds: float

    def to_dict(self) -> dict:
        out = {k: _plain(v) for k, v in self.result.summary().items()}
        if self.reranked is not None:
            s = self.reranked.summary()
            out["rerank"] = {k: _plain(s[k]) for k in s if k.startswith("recall@") or
                             k in ("map", "map@r", "median_rank")}
        out.update({"model": self.model, "data": self.data.root, "unlabelled": self.data.unlabelled,
                    "skipped": [{"path": p, "reason": r} for p, r in self.index.skipped],
                    "embedded": self.index.indexed,
                    "seconds": round(self.seconds, 3)})
        return out


def evaluate_folder(data: str | os.PathLike, model: str | None = None, layer: str | None = None,
                    metric: str = "cosine", rerank: bool = False, seed: int = 0, threads: int | None = None,
                    device: str = "cpu", batch_size: int = 32, workers: int = 2,
                    on_plan=None, on_progress=None, index: str | os.PathLike | None = None,
                    follow_links: bool = False) -> Evaluation:
    """Embed every image below ``data`` (incrementally) and measure leave-one-out retrieval.

    ``rerank`` adds metrics after k-reciprocal re-ranking of each image's top-100 neighbours.
    ``seed`` seeds the comparative sets. ``index`` embeds through that index instead of the
    evaluation cache (its own model unless ``model`` or ``layer`` is given, which must match it).
    ``follow_links`` also takes what symbolic links lead to outside ``data``. ValueError, saying what
    the listing left out, when fewer than two images share a class.
    """
    started = time.perf_counter()
    root = folder(data)
    with _open(root, model, layer, index, threads, device) as idx:
        report = idx.index(root, batch_size, workers, on_plan=on_plan, on_progress=on_progress,
                           follow_links=follow_links)
        ids, vectors = idx.vectors()
        paths = idx.paths(ids)
        name = idx.spec.name
    inside = np.flatnonzero([p.startswith(root + os.sep) for p in paths])  # a user's index holds other folders
    if inside.size < len(paths):
        paths, vectors = [paths[i] for i in inside], vectors[inside]
    images = labelled(paths, root)
    if images.unlabelled:
        kept = set(images.paths)
        x = np.asarray(vectors[np.flatnonzero([p in kept for p in paths])])
    else:
        x = np.asarray(vectors)
    if np.bincount(images.codes).max(initial=0) < 2:
        summary = left_out_summary(report.skipped)
        raise ValueError(f"{root} has no class folder with two or more readable images to evaluate"
                         + (f"; left out: {summary}" if summary else ""))
    result = retrieval.evaluate(x, images.codes, metric, comparative_seed=seed)
    reranked = None
    if rerank:
        neighbours, _ = reranking.rerank(x, k=RERANK_K, metric=metric)
        reranked = retrieval.evaluate_neighbors(neighbours, images.codes, metric=f"{metric}+rerank")
    return Evaluation(images, x, result, reranked, name, report, time.perf_counter() - started)


def _open(root: str, model: str | None, layer: str | None, index: str | os.PathLike | None,
          threads: int | None, device: str) -> Index:
    """The index to embed ``root`` through: ``index`` when given, else the evaluation cache."""
    if index is not None:
        if Index.exists(index) and model is None and layer is None:
            return Index.open(index, threads=threads, device=device)
        return Index.open(index, model, layer, create=True, threads=threads, device=device)
    path = index_dir(root, model, layer)
    try:
        return Index.open(path, model, layer, create=True, threads=threads, device=device)
    except StoreError:  # the model changed (a retrained model directory): start this cache again
        return Index.open(path, model, layer, create=True, rebuild=True, threads=threads, device=device)


def write_report(ev: Evaluation, out: str | os.PathLike, rows: int = REPORT_ROWS,
                 neighbours: int = REPORT_NEIGHBOURS) -> Path:
    """Write ``index.html``, ``metrics.json``, ``cmc.png``, ``best.png`` and ``worst.png`` into ``out``.

    Best and worst queries are ranked by average precision; each row shows the query, then its
    nearest images framed green (same class) or red (another class).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = ev.to_dict()
    atomic.write(out / "metrics.json", json.dumps(summary, indent=2))
    r = ev.result
    max_k = int(min(50, max(1, ev.data.codes.size - 1)))
    curves = {r.metric: retrieval.cmc_curve(r.first_positive_rank, max_k)}
    if ev.reranked is not None:
        curves[ev.reranked.metric] = retrieval.cmc_curve(ev.reranked.first_positive_rank, max_k)
    _plot_cmc(curves, out / "cmc.png")
    order = np.lexsort((r.first_positive_rank, -r.average_precision))
    sections = []
    for title, picked in (("best", order[:rows]), ("worst", order[::-1][:rows])):
        queries = r.query_ids[picked]
        _strip(ev, queries, neighbours, out / f"{title}.png")
        listed = "".join(f"<li>{html.escape(ev.data.paths[q])} ({html.escape(ev.data.classes[ev.data.codes[q]])}): "
                           f"AP {ap:.3f}, first positive at rank {rank:g}</li>"
                           for q, ap, rank in zip(queries, r.average_precision[picked],
                                                  r.first_positive_rank[picked]))
        sections.append(f"<h2>{title.capitalize()} queries (by average precision)</h2>"
                        f"<p>Query at the left, then its {neighbours} nearest images: green = same class, "
                        f"red = another class; under each, its class, file name and distance.</p>"
                        f"<img src='{title}.png'><ol>{listed}</ol>")
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in summary.items()
                    if not isinstance(v, dict))
    for group in ("comparative", "rerank"):
        if isinstance(summary.get(group), dict):
            table += "".join(f"<tr><th>{group} {html.escape(k)}</th><td>{_fmt(v)}</td></tr>"
                             for k, v in summary[group].items())
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>lookalike evaluation</title>"
            f"<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}"
            f"th,td{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}img{{max-width:100%}}</style>"
            f"</head><body><h1>Retrieval evaluation of {html.escape(ev.model)}</h1>"
            f"<p>{html.escape(ev.data.root)}: {r.n_images} images in {r.n_classes} classes; every image queries "
            f"all others ({html.escape(r.metric)} distance).</p><table>{table}</table>"
            f"<h2>Recall@k (CMC curve)</h2><img src='cmc.png'>{''.join(sections)}</body></html>")
    atomic.write(out / "index.html", page)
    return out / "index.html"


def _plot_cmc(curves: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for label, curve in curves.items():
        ax.plot(np.arange(1, curve.size + 1), curve, marker=".", label=label)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    low = min((float(np.nanmin(c)) for c in curves.values() if np.isfinite(c).any()), default=0.0)
    ax.set_ylim(max(0.0, np.floor((low - 0.05) * 10) / 10), 1.01)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    with atomic.replacing(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _strip(ev: Evaluation, queries: np.ndarray, k: int, path: Path) -> None:
    """One row per query: the query thumbnail, a gap, then its k nearest neighbours with coloured
    frames, each captioned (:func:`captions`) below."""
    pad, gap = 4, 16
    cell = THUMB + 2 * pad
    height = cell + CAPTION_LINES * CAPTION_LINE + 2 * pad  # and a margin before the next row
    k = min(k, len(ev.vectors) - 1)
    sheet = Image.new("RGB", (cell * (k + 1) + gap, height * max(1, len(queries))), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=CAPTION_SIZE)
    for row, (q, cells) in enumerate(zip(queries, captions(ev, queries, k))):
        y = row * height
        for col, (j, lines, same) in enumerate(cells):
            x = 0 if col == 0 else cell * col + gap
            colour = None if col == 0 else (40, 160, 60) if same else (210, 40, 40)
            if colour is not None:
                draw.rectangle([x + 1, y + 1, x + cell - 2, y + cell - 2], outline=colour, width=pad - 1)
            sheet.paste(_thumb(ev.data.paths[j]), (x + pad, y + pad))
            for n, line in enumerate(lines):
                draw.text((x + pad, y + cell + n * CAPTION_LINE), line, font=font,
                          fill=colour if n == 2 and colour else (40, 40, 40))
    with atomic.replacing(path) as f:
        sheet.save(f, "PNG")


def captions(ev: Evaluation, queries: np.ndarray, k: int) -> list[list[tuple[int, list[str], bool]]]:
    """For each query, its own cell and those of its ``k`` nearest images: (image position, caption
    lines, same class as the query). A caption is the class, the file name (both shortened in the
    middle to a thumbnail's width) and the distance with "same class" or "other class" (the
    query's: "query")."""
    searcher = Searcher(np.arange(len(ev.vectors)), ev.vectors)
    width = round(THUMB / (CAPTION_SIZE * 0.55))  # characters of the caption font across a thumbnail
    rows = []
    for q in queries:
        distances, found = searcher.nearest(ev.vectors[q], k + 1, ev.result.metric)
        pairs = [(int(i), float(d)) for i, d in zip(found[0], distances[0]) if i != q][:k]
        cells = [(int(q), [middle(ev.data.classes[ev.data.codes[q]], width),
                           middle(os.path.basename(ev.data.paths[q]), width), "query"], True)]
        for j, d in pairs:
            same = bool(ev.data.codes[j] == ev.data.codes[q])
            cells.append((j, [middle(ev.data.classes[ev.data.codes[j]], width),
                              middle(os.path.basename(ev.data.paths[j]), width),
                              f"{d:.3f} {'same' if same else 'other'} class"], same))
        rows.append(cells)
    return rows


def _thumb(path: str) -> Image.Image:
    try:
        img = decode(path, THUMB)
    except ImageError:
        return Image.new("RGB", (THUMB, THUMB), (200, 200, 200))
    return img.resize((THUMB, THUMB), Image.BILINEAR, reducing_gap=3.0)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 6) if np.isfinite(value) else None  # JSON has no NaN or infinity
    return value


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
