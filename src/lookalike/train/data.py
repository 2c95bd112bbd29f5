"""Folder-per-class data: labels, train/validation splits, class-balanced batches, augmentation.

NumPy and Pillow only (no torch), so :mod:`lookalike.evaluation.evaluate` can use the labelling too.
A file's label is its parent folder relative to the data root (``DATA/roses/a.jpg`` -> ``roses``,
``DATA/a/b/c.jpg`` -> ``a/b``); files directly in the root have no label and are left out.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lookalike.images import folder, left_out_summary, list_images
from lookalike.text import plural


@dataclass(frozen=True)
class LabelledImages:
    """Image paths (absolute, sorted) with their class codes; ``classes[codes[i]]`` names image i's class."""

    root: str
    paths: list[str]
    codes: np.ndarray
    classes: list[str]
    unlabelled: int = 0

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labels(self) -> list[str]:
        return [self.classes[c] for c in self.codes]

    def subset(self, positions: np.ndarray) -> "LabelledImages":
        """The images at ``positions``, with class codes renumbered to the classes present."""
        positions = np.asarray(positions, dtype=np.int64)
        present, codes = np.unique(self.codes[positions], return_inverse=True)
        return LabelledImages(self.root, [self.paths[i] for i in positions], codes.astype(np.int64).ravel(),
                              [self.classes[c] for c in present])


def label_of(root: str, path: str) -> str | None:
    """The class of ``path``: its parent folder relative to ``root`` (POSIX separators), or None at the root."""
    parent = os.path.relpath(os.path.dirname(path), root)
    return None if parent == os.curdir else parent.replace(os.sep, "/")


def labelled(paths: list[str], root: str | os.PathLike) -> LabelledImages:
    """Label given image paths below ``root`` (see :func:`label_of`), dropping unlabelled ones."""
    root = os.path.abspath(os.fspath(root))
    pairs = [(p, label_of(root, p)) for p in paths]
    kept = [(p, lab) for p, lab in pairs if lab is not None]
    classes = sorted({lab for _, lab in kept})
    index = {c: i for i, c in enumerate(classes)}
    codes = np.fromiter((index[lab] for _, lab in kept), dtype=np.int64, count=len(kept))
    return LabelledImages(root, [p for p, _ in kept], codes, classes, unlabelled=len(pairs) - len(kept))


def scan(root: str | os.PathLike, follow_links: bool = False) -> LabelledImages:
    """Every image below ``root`` labelled by its folder (symbolic links that lead outside ``root``
    only with ``follow_links``, as :func:`~lookalike.images.list_images` says); ValueError, saying
    what the listing left out, when there is nothing to learn from."""
    root = folder(root)
    left_out: list[tuple[str, str]] = []
    data = labelled(list(list_images(root, left_out=left_out, follow_links=follow_links)), root)
    if len(data.classes) < 2:
        summary = left_out_summary(left_out)
        raise ValueError(f"{root} needs at least two class folders of images (DATA/<class>/*.jpg); "
                         f"found {len(data.classes)}" + (f"; left out: {summary}" if summary else ""))
    return data


#: The advice in docs/training.md: training classes, and images in each (the median class).
ADVISED_CLASSES = 20
ADVISED_PER_CLASS = 20


def below_advice(images: LabelledImages, by: str = "classes", fraction: float = 0.2, seed: int = 0) -> str | None:
    """Why ``images`` are below the documented advice (:data:`ADVISED_CLASSES` classes of
    :data:`ADVISED_PER_CLASS` images, the median class), saying what :func:`split` holds out of them
    for validation; None when they are not."""
    counts = np.bincount(images.codes)
    counts = counts[counts > 0]
    median = int(np.median(counts))
    if counts.size >= ADVISED_CLASSES and median >= ADVISED_PER_CLASS:
        return None
    _, val = split(images.codes, by, fraction, seed)
    held = (f", of which {plural(np.unique(images.codes[val]).size, 'class', 'classes')} "
            f"({plural(val.size, 'image')}) held out for validation" if val.size else "")
    return (f"{plural(counts.size, 'class', 'classes')} of {median} images (the median){held}: less than the "
            f"advice of {ADVISED_CLASSES} or more classes of {ADVISED_PER_CLASS}-40 images (docs/training.md); "
            "expect validation scores too coarse to tell settings apart, and little gain")


def split(codes: np.ndarray, by: str = "classes", fraction: float = 0.2,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Positions of (train, validation) images.

    ``by="classes"``: a ``fraction`` of the classes (at least 2) is held out whole, the open-set case.
    ``by="images"``: a ``fraction`` of each class's images (none from classes of fewer than 3) is held out.
    ``by="none"`` or ``fraction == 0``: no validation.
    """
    codes = np.asarray(codes)
    everything = np.arange(codes.size)
    if by == "none" or fraction <= 0:
        return everything, everything[:0]
    if not 0 < fraction < 1:
        raise ValueError(f"validation fraction must be in [0, 1), not {fraction}")
    rng = np.random.default_rng(seed)
    if by == "classes":
        classes = np.unique(codes)
        n_val = max(2, round(fraction * classes.size))
        if classes.size - n_val < 2:
            raise ValueError(f"{classes.size} classes are too few to hold out {n_val} for validation "
                             "(use --val-split images or none)")
        held = rng.choice(classes, size=n_val, replace=False)
        is_val = np.isin(codes, held)
    elif by == "images":
        is_val = np.zeros(codes.size, bool)
        for c in np.unique(codes):
            members = np.flatnonzero(codes == c)
            if members.size >= 3:
                is_val[rng.choice(members, size=max(1, round(fraction * members.size)), replace=False)] = True
    else:
        raise ValueError(f"unknown validation split {by!r}; use classes, images or none")
    return everything[~is_val], everything[is_val]


def balanced_batches(codes: np.ndarray, batch_size: int, per_class: int,
                     rng: np.random.Generator) -> Iterator[np.ndarray]:
    """One epoch of class-balanced batches: ``batch_size // per_class`` classes, ``per_class`` images each.

    Classes are drawn uniformly (so small classes are seen as often as big ones) and images
    without replacement within a class where it has enough; an epoch has ``ceil(N / batch_size)`` batches.
    """
    codes = np.asarray(codes)
    members = [np.flatnonzero(codes == c) for c in range(int(codes.max()) + 1)]
    classes = np.array([c for c, m in enumerate(members) if m.size], dtype=np.int64)
    n_classes = min(max(1, batch_size // per_class), classes.size)
    for _ in range(math.ceil(codes.size / batch_size)):
        chosen = rng.choice(classes, size=n_classes, replace=False)
        yield np.concatenate([rng.choice(members[c], size=per_class, replace=members[c].size < per_class)
                              for c in chosen])


def per_class(codes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of up to ``k`` random images of every class."""
    codes = np.asarray(codes)
    picked = [rng.choice(m, size=min(k, m.size), replace=False)
              for m in (np.flatnonzero(codes == c) for c in np.unique(codes))]
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)


def crop_box(rng: np.random.Generator, width: int, height: int, scale: tuple[float, float] = (0.3, 1.0),
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[float, float, float, float]:
    """A random-resized-crop box (left, top, right, bottom) covering ``scale`` of the area at aspect ``ratio``,
    as fractions of the image; falls back to the whole image after 10 failed draws."""
    aspect = width / height
    for _ in range(10):
        area = rng.uniform(*scale)
        r = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w = math.sqrt(area * r / aspect)
        h = math.sqrt(area / r * aspect)
        if w <= 1 and h <= 1:
            left, top = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
            return left, top, left + w, top + h
    return 0.0, 0.0, 1.0, 1.0


def augment(rgb: Image.Image, size: int, rng: np.random.Generator,
            scale: tuple[float, float] = (0.3, 1.0)) -> Image.Image:
    """Random resized crop to ``size`` x ``size`` and a horizontal flip half the time."""
    w, h = rgb.size
    left, top, right, bottom = crop_box(rng, w, h, scale)
    out = rgb.resize((size, size), Image.BILINEAR, box=(left * w, top * h, right * w, bottom * h), reducing_gap=3.0)
    return out.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out
