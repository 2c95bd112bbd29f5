"""Which file of a group to keep (:func:`keep_order`; among other shots of one scene, :func:`best_shot`),
groups formed around it (:func:`group_around_keepers`) and the report's groups with byte copies
(:func:`assemble_groups`)."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lookalike.dedup import geometry
from lookalike.dedup.report import BestShot, Duplicate, Group, Shot


#: Quality rank of a lossless file (above any JPEG quality) and of a lossy format whose quality is not read.
LOSSLESS, OTHER_LOSSY = 101, 90
_LOSSLESS_FORMATS = {"PNG", "TIFF", "BMP", "PPM"}
#: libjpeg's luminance quantisation table at quality 50 (its scaling gives the other qualities).
_JPEG_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                       14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
                       92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)


@dataclass(frozen=True)
class Traits:
    """What the keep rule reads from a file's header: encoding quality (:data:`LOSSLESS` for a
    lossless format, the estimated JPEG quality, :data:`OTHER_LOSSY` otherwise) and the EXIF
    capture time as text (empty when absent)."""

    quality: int = OTHER_LOSSY
    taken: str = ""
    format: str = ""

    def encoding(self) -> str:
        """``"JPEG q85"``, ``"PNG"``, ... (``"unknown"`` when the header could not be read)."""
        return f"JPEG q{self.quality}" if self.format == "JPEG" else self.format or "unknown"


def file_traits(path: str) -> Traits:
    """:class:`Traits` of one file, from its header only; defaults when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            fmt = img.format or ""
            if fmt in _LOSSLESS_FORMATS:
                quality = LOSSLESS
            elif fmt == "JPEG" and getattr(img, "quantization", None):
                # a JPEG table has 64 steps of at least 1 (natural order, as libjpeg writes it), so the
                # scale is at least 2.3 and the estimate at most 99: only the lower bound can bind
                table = np.asarray(img.quantization[0], np.float64)
                scale = 100.0 * float(np.mean(table / _JPEG_LUMA))
                quality = max(int(round((200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale)), 1)
            else:
                quality = OTHER_LOSSY
            exif = img.getexif()
            taken = str(exif.get_ifd(0x8769).get(36867) or exif.get(306) or "")
    except (OSError, ValueError, SyntaxError):
        return Traits()
    return Traits(quality, taken, fmt)


def keep_order(pixels: np.ndarray, paths: list[str], mtime_ns: np.ndarray,
               traits: list[Traits] | None = None, hops: np.ndarray | None = None) -> np.ndarray:
    """Positions sorted best-to-keep first, preferring the file that is not an edit of the other:
    most pixels, then best encoding (lossless, then higher JPEG quality), then one with an EXIF
    capture time, earliest first, then the fewest symbolic links to the file (``hops``: the file
    itself before a link to it, so removing what is listed never leaves a kept link dangling), then
    the shorter file name, then the older file, then the path. File size plays no part (a flipped or
    re-saved copy can be larger than its original).
    """
    traits = traits or [Traits()] * len(paths)
    hops = np.zeros(len(paths), np.int64) if hops is None else np.asarray(hops, np.int64)
    quality = np.array([t.quality for t in traits], np.int64)
    no_date = np.array([not t.taken for t in traits])
    rank_taken = _ranks([t.taken for t in traits])
    name_len = np.array([len(os.path.basename(p)) for p in paths], np.int64)
    return np.lexsort((_ranks(paths), mtime_ns, name_len, hops, rank_taken, no_date, -quality,
                       -np.asarray(pixels, np.int64)))


#: Gray levels at or beyond these ends count as clipped (blown highlights, crushed shadows).
CLIP_LOW, CLIP_HIGH = 2, 253
#: Shots whose clipped share is within this of the least clipped's are well exposed.
EXPOSURE_SLACK = 0.02
#: Of the well-exposed shots, those with at least this share of the sharpest one's sharpness are as
#: sharp (a JPEG re-encode changes it by about 1 %, a brightness or contrast edit by under 1 %; a
#: resampled copy can lose up to about 20 %, which ranks the larger file first, as the keep rule does).
SHARP_SHARE = 0.9


def shot_quality(image) -> Shot:
    """A shot's :class:`Shot` figures (path, bytes or array): on its gray picture at the features' size
    (:func:`lookalike.dedup.geometry.gray_picture`: every shot is judged at one scale, so a larger
    file is not sharper for its size), ``sharpness`` is the variance of the Laplacian divided
    by the variance of the gray levels (so brightness and contrast play no part: a blurred or shaken
    shot has less) and ``clipped`` the share of pixels at the ends of the gray range (:data:`CLIP_LOW`,
    :data:`CLIP_HIGH`). An unreadable file measures 0 sharpness and 1 clipped: never the best shot."""
    import cv2

    from lookalike.images import ImageError

    try:
        gray, _ = geometry.gray_picture(image)
    except ImageError:
        return Shot(0.0, 1.0)
    laplacian = cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F, ksize=3)
    sharpness = float(laplacian.var()) / max(float(gray.var()), 1.0)
    clipped = float(np.mean((gray <= CLIP_LOW) | (gray >= CLIP_HIGH)))
    return Shot(sharpness, clipped)


def best_shot(files: list[str], quality: dict[str, Shot], other_shots: bool = True) -> BestShot:
    """The file to keep among ``files`` (paths of one group, best-to-keep first by :func:`keep_order`;
    ``other_shots``: not all of them copies of one capture), from their ``quality``: the well-exposed
    ones (clipped share within :data:`EXPOSURE_SLACK` of the least clipped), of them those as sharp
    as the sharpest (within :data:`SHARP_SHARE`), and of those the first by the keep rule. So copies
    alike in quality (re-encoded, resized, a brightness edit that clips nothing) keep the original
    the keep rule names, and a blurred or clipped file never outranks a good one."""
    least = min(quality[p].clipped for p in files)
    exposed = [p for p in files if quality[p].clipped <= least + EXPOSURE_SLACK]
    sharpest = max(quality[p].sharpness for p in exposed)
    keep = next(p for p in exposed if quality[p].sharpness >= SHARP_SHARE * sharpest)
    others = [p for p in files if p != keep]
    beats = lambda among: all(quality[keep].sharpness > quality[p].sharpness / SHARP_SHARE  # noqa: E731
                              for p in among if p != keep)
    if beats(files):
        lead = "the sharpest"
    elif exposed == [keep]:
        lead = "the best exposed"
    elif len(exposed) < len(files):
        lead = ("the sharpest well-exposed" if beats(exposed) else
                "as sharp as any well-exposed one and first by the keep rule")
    else:
        lead = "as sharp and well exposed as any and first by the keep rule"
    what = f"{len(files)} {'shots' if other_shots else 'copies'}"
    why = (f"{lead} of {what} (sharpness {quality[keep].sharpness:.2f}, clipped {quality[keep].clipped:.1%}; others: "
           f"sharpness {', '.join(f'{quality[p].sharpness:.2f}' for p in others)}, clipped "
           f"{', '.join(f'{quality[p].clipped:.1%}' for p in others)})")
    return BestShot(keep, why, {p: quality[p] for p in files}, other_shots)


def _ranks(values: list[str]) -> np.ndarray:
    """Dense ranks of strings (equal strings, equal ranks) for :func:`numpy.lexsort`."""
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].reshape(-1)


def group_around_keepers(order: np.ndarray, offsets: np.ndarray, columns: np.ndarray,
                         accept: Callable[[int, np.ndarray], np.ndarray] | None = None,
                         onward: np.ndarray | None = None) -> list[tuple[int, list[int]]]:
    """Visit rows in ``order``; each row not yet grouped claims its neighbours not yet grouped
    (those that ``accept(row, neighbours)`` confirms, when given: a bool mask over exactly those).
    With ``onward`` (and ``accept``; a bool per entry of ``columns``: the pairs likely to be copies),
    it then claims the neighbours of the rows it claimed that ``onward`` marks, each confirmed
    against itself, and theirs in turn: a copy that is a neighbour of another copy but not of the
    kept file (a turned copy whose hash matches the original's, not that of a letterboxed copy with
    more pixels) still joins the file kept, never one step further away. A member's other
    neighbours (other photos of its kind, most of them) are not offered: each would be one more
    pair to verify, and few are copies of the kept file.

    Returns (keeper, members) per group of two or more rows.
    """
    taken = np.zeros(len(offsets) - 1, dtype=bool)
    asked = np.full(len(offsets) - 1, -1, np.int64)  # the keeper each row was last offered to
    groups = []
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        members, offer = [], columns[offsets[i]:offsets[i + 1]]
        while True:
            offer = offer[~taken[offer] & (asked[offer] != i)]
            if not len(offer):
                break
            asked[offer] = i
            claimed = offer if accept is None else offer[np.asarray(accept(int(i), offer), bool)]
            taken[claimed] = True
            members.extend(claimed.tolist())
            if onward is None or accept is None or not len(claimed):
                break
            offer = np.unique(np.concatenate([columns[offsets[m]:offsets[m + 1]][onward[offsets[m]:offsets[m + 1]]]
                                              for m in claimed.tolist()]))
        if members:
            groups.append((int(i), members))
    return groups


def assemble_groups(order: np.ndarray, content: list[str],
                    near: list[tuple[int, list[tuple[int, float, geometry.Evidence | None]]]],
                    paths: list[str]) -> list[Group]:
    """The report's groups from the files' content hashes and the near groups of their representatives.

    ``order`` ranks files best-to-keep first; the first file of each content in that order is its
    representative, and ``near`` holds (keeper, [(member, distance, evidence)]) among representatives, each
    representative in at most one near group (:func:`group_around_keepers`); a member may carry a fourth
    item, the representative its evidence was measured against when not the keeper, and a group a
    third, the :class:`BestShot` that chose its keeper among other shots (a ``"shots"`` group). One keep decision per
    connected set: a near group also lists the keeper's byte copies and its members' byte copies,
    and a content whose representative is in no near group forms an exact group. So every file is
    in at most one group, each group keeps exactly one file, and every listed file is the kept
    file's bytes or those of a file compared with the kept file itself.
    """
    copies: dict[int, list[int]] = defaultdict(list)
    firsts: dict[str, int] = {}
    for i in order:
        rep = firsts.setdefault(content[i], int(i))
        if rep != i:
            copies[rep].append(int(i))
    groups, seen = [], set()
    for keeper, members, *best in near:
        best = best[0] if best else None
        dups = [Duplicate(paths[c], 0.0, "exact") for c in copies[keeper]]
        for m, dist, evidence, *via in sorted(members, key=lambda md: (md[1], paths[md[0]])):
            via = paths[via[0]] if via and via[0] is not None else None
            dups.append(Duplicate(paths[m], dist, evidence=evidence, compared_with=via))
            dups.extend(Duplicate(paths[c], dist, "near", paths[m], evidence, via) for c in copies[m])
        seen.update((keeper, *(m[0] for m in members)))
        groups.append(Group("shots" if best is not None and best.other_shots else "near", paths[keeper], dups, best))
    for rep in firsts.values():
        if rep not in seen and copies[rep]:
            groups.append(Group("exact", paths[rep], [Duplicate(paths[c], 0.0, "exact") for c in copies[rep]]))
    groups.sort(key=lambda g: (g.kind != "exact", g.keep))
    return groups
