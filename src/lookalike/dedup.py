"""Near-duplicate groups: exact copies by content hash, near copies by feature distance.

How groups are formed (see :func:`find_duplicates`):

1. Files with the same content hash are *exact* duplicates; each such set is one group.
2. One file per distinct content is kept for the near search. Its neighbours within the
   threshold (cosine distance) come from a range query of the index's searcher
   (:meth:`lookalike.vectors.Searcher.within`), run in chunks of queries, so memory grows with the
   number of close pairs, never with all pairs (and a threshold that would hold more than
   :data:`MAX_PAIRS` is refused). Without an approximate structure that is an exact scan. With one
   (HNSW or IVF-PQ, see :mod:`lookalike.ann_store`), each file's nearest come from it instead
   (:data:`ANN_NEIGHBOURS`, more while they are all close, and an exact scan beyond
   :data:`ANN_WIDEST`), re-scored exactly: time grows about as N log N rather than N squared while
   few files have that many copies.
3. Near groups are formed around the file that will be kept, not by connected components:
   files are visited best first (:func:`keep_order`: the file that is not an edit of the other —
   most pixels, then best encoding, then EXIF capture time, then shorter name) and each file not yet in a group claims every neighbour not yet in a group. Every listed
   duplicate is therefore within the threshold of the kept file itself, which is what makes the
   to-remove list safe to act on, and a chain of small steps (A~B, B~C, ...) cannot merge distinct
   photos: two members of one group are at most about twice the threshold apart.
4. One keep decision per connected set (:func:`assemble_groups`): a near group also lists the byte
   copies of its kept file and of its members, so no file is kept by one group and listed by
   another, and every listed file is the kept file's bytes or those of a file compared with it.

Two-stage rules (the ``near`` and ``similar`` presets, :class:`Rule`): step 2's pairs are only
*candidates*, taken at a loose radius and unioned with pairs whose perceptual hashes match under a
rotation or flip (:mod:`lookalike.phash`); in step 3 a file claims a candidate only when ORB +
RANSAC verification against the kept file itself confirms it (:mod:`lookalike.verify`), and the
fitted transform is the duplicate's evidence. The presets are measured for one model by
``benchmarks/dedup.py`` (edited copies of real photos against distinct photos, other photos of the
same flower class among them); its printed figures justify the values below.
"""

from __future__ import annotations

import functools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from lookalike import phash, verify
from lookalike.api import Index, ImageInput, Match, QueryResult
from lookalike.images import ImageError
from lookalike.vectors import Backend, Searcher
from lookalike.vectors.faiss_backend import RANGE_FIRST, RANGE_SLACK, RANGE_WIDEST

METRIC = "cosine"
DEFAULT_PRESET = "near"
PRESET_NAMES = ("exact", "near", "similar")

@dataclass(frozen=True)
class Rule:
    """When two images are duplicates. With ``min_inliers`` 0, one stage: within ``radius`` cosine
    distance. Otherwise two: candidates within ``radius`` (loose) or with a rotated or flipped
    perceptual hash within ``hash_radius`` bits, each confirmed by at least ``min_inliers`` ORB
    matches consistent with one similarity transform (:mod:`lookalike.verify`)."""

    radius: float
    min_inliers: int = 0
    hash_radius: int = phash.RADIUS

    @property
    def verified(self) -> bool:
        return self.min_inliers > 0

    def describe(self) -> str:
        if not self.verified:
            return f"cosine distance <= {self.radius}"
        return (f"cosine distance <= {self.radius} or a rotated/flipped hash within {self.hash_radius} bits, "
                f"then >= {self.min_inliers} ORB inliers")

    def to_dict(self) -> dict:
        return {"radius": self.radius, "min_inliers": self.min_inliers,
                "hash_radius": self.hash_radius if self.verified else None}


#: Presets per model (name, layer), chosen by the rules of benchmarks/dedup.py ``suggest`` from its
#: figures (2,088 distinct photos incl. 40 per flowers51 class, 200 of them with 18 edits each):
#:   exact    one stage, cosine 0.025          P 1.000  R 0.21  byte copies, PNG, JPEG q90 re-saves
#:   near     cosine 0.3 or hash, >= 20 inliers P 0.997  R 0.95  rot90 0.85, flip 0.96
#:   similar  cosine 0.3 or hash, >= 12 inliers P 0.993  R 0.94  (looser verification, for review)
PRESETS: dict[tuple[str, str], dict[str, Rule]] = {
    ("efficientnet-lite0", "pool"): {"exact": Rule(0.025), "near": Rule(0.3, 20), "similar": Rule(0.3, 12)},
}

_CHUNK = 1024
#: Neighbours first fetched per file from an approximate index (more when all of them are close).
ANN_NEIGHBOURS = RANGE_FIRST
#: Most neighbours asked of an approximate index per file; a file with more close ones is scanned exactly.
ANN_WIDEST = RANGE_WIDEST
#: How far beyond the threshold an approximate distance may be for the pair to be re-scored.
ANN_SLACK = RANGE_SLACK
#: Images whose features the verifier keeps at a time (about 30 KB each).
FEATURE_CACHE = 4096
#: Most close pairs the exact search holds (16 bytes each); a threshold reaching more is refused.
MAX_PAIRS = 20_000_000


@dataclass(frozen=True)
class Duplicate:
    """A file that duplicates its group's kept file, at ``distance`` (cosine) from it.

    ``match`` is ``"exact"`` (the kept file's bytes) or ``"near"``; ``copy_of`` names the near
    duplicate whose bytes this file has (it is then listed with that file's distance and evidence);
    ``evidence`` is the verification of a two-stage rule (None for one stage and exact copies).
    """

    path: str
    distance: float
    match: str = "near"
    copy_of: str | None = None
    evidence: verify.Evidence | None = None

    def to_dict(self) -> dict:
        out = {"path": self.path, "distance": round(self.distance, 6), "match": self.match}
        if self.copy_of is not None:
            out["copy_of"] = self.copy_of
        if self.evidence is not None:
            out["evidence"] = {**self.evidence.to_dict(), "summary": self.evidence.describe()}
        return out


@dataclass(frozen=True)
class Group:
    """The file to keep and its duplicates; ``kind`` is ``"exact"`` (all of them the kept file's
    bytes) or ``"near"``."""

    kind: str
    keep: str
    duplicates: list[Duplicate]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "keep": self.keep, "duplicates": [d.to_dict() for d in self.duplicates]}


@dataclass
class DedupReport:
    """Result of :func:`find_duplicates`; :meth:`to_dict` is the ``dedup --json`` shape."""

    rule: Rule
    preset: str | None
    n_images: int
    search: str = "exact"
    groups: list[Group] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    #: Candidate pairs by source, pairs verified and verification time (two-stage rules).
    stages: dict = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return self.rule.radius

    def to_remove(self) -> list[str]:
        """Every grouped file except the one kept per group (lookalike never deletes anything).

        RuntimeError if a file would be listed twice or is some group's kept file: groups are
        disjoint by construction (:func:`assemble_groups`), this re-checks it on what is listed.
        """
        listed = [d.path for g in self.groups for d in g.duplicates]
        kept = {g.keep for g in self.groups}
        if len(kept) != len(self.groups) or len(set(listed)) != len(listed) or not kept.isdisjoint(listed):
            raise RuntimeError("duplicate groups overlap; refusing to write a list of files to remove")
        return listed

    def to_dict(self) -> dict:
        return {"metric": METRIC, "threshold": self.threshold, "preset": self.preset, "n_images": self.n_images,
                "search": self.search, "rule": self.rule.to_dict(), "stages": self.stages,
                "groups": [g.to_dict() for g in self.groups],
                "to_remove": self.to_remove(),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "seconds": round(self.seconds, 3)}


def write_paths(paths: list[str], out: str | os.PathLike, null: bool = False) -> None:
    """Write ``paths`` to ``out``, one per line, or NUL-terminated with ``null`` (names as bytes,
    as the file system has them).

    ValueError, writing nothing, when a name holds a line break and ``null`` is off: such a list
    could not be read back unambiguously.
    """
    if not null:
        broken = next((p for p in paths if "\n" in p or "\r" in p), None)
        if broken is not None:
            raise ValueError(f"a file name holds a line break ({broken!r}): a one-per-line list would be "
                             "ambiguous; use -0 (NUL-separated) or --json")
    end = b"\0" if null else b"\n"
    with open(out, "wb") as f:
        f.write(b"".join(os.fsencode(p) + end for p in paths))


def presets(model: dict) -> dict[str, Rule]:
    """The presets calibrated for an index's model identity (empty when it was never calibrated)."""
    return PRESETS.get((model.get("name"), model.get("layer")), {})


def resolve_threshold(value: str | float | None, model: dict) -> tuple[Rule, str | None]:
    """(rule, preset name or None) for a preset name or a number (a one-stage cosine distance);
    default preset ``near``.

    ValueError for a number outside [0, 2], an unknown preset, or a preset on an uncalibrated model.
    """
    value = DEFAULT_PRESET if value is None else value
    try:
        threshold = float(value)
    except ValueError:
        pass
    else:
        if not 0.0 <= threshold <= 2.0:
            raise ValueError(f"threshold must be a cosine distance in [0, 2], not {threshold}")
        return Rule(threshold), None
    table = presets(model)
    if value not in PRESET_NAMES:
        raise ValueError(f"unknown preset {value!r}; choose from: {', '.join(PRESET_NAMES)} or a cosine distance")
    if not table:
        raise ValueError(f"presets are calibrated for {', '.join(f'{n} ({l})' for n, l in PRESETS)}, not "
                         f"{model.get('name')} ({model.get('layer')}); give --threshold as a cosine distance")
    return table[value], str(value)


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
                table = np.asarray(img.quantization[0], np.float64)  # natural order, as libjpeg writes it
                scale = 100.0 * float(np.mean(table / _JPEG_LUMA)) if len(table) == 64 else 100.0
                quality = int(round((200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale))
                quality = min(max(quality, 1), 100)
            else:
                quality = OTHER_LOSSY
            exif = img.getexif()
            taken = str(exif.get_ifd(0x8769).get(36867) or exif.get(306) or "")
    except (OSError, ValueError, SyntaxError):
        return Traits()
    return Traits(quality, taken, fmt)


def keep_order(pixels: np.ndarray, paths: list[str], mtime_ns: np.ndarray,
               traits: list[Traits] | None = None) -> np.ndarray:
    """Positions sorted best-to-keep first, preferring the file that is not an edit of the other:
    most pixels, then best encoding (lossless, then higher JPEG quality), then one with an EXIF
    capture time, earliest first, then the shorter file name, then the older file, then the path.
    File size plays no part (a flipped or re-saved copy can be larger than its original).
    """
    traits = traits or [Traits()] * len(paths)
    quality = np.array([t.quality for t in traits], np.int64)
    no_date = np.array([not t.taken for t in traits])
    rank_taken = _ranks([t.taken for t in traits])
    name_len = np.array([len(os.path.basename(p)) for p in paths], np.int64)
    return np.lexsort((_ranks(paths), mtime_ns, name_len, rank_taken, no_date, -quality,
                       -np.asarray(pixels, np.int64)))


def _ranks(values: list[str]) -> np.ndarray:
    """Dense ranks of strings (equal strings, equal ranks) for :func:`numpy.lexsort`."""
    return np.unique(np.asarray(values, dtype=object), return_inverse=True)[1].reshape(-1)


def neighbours(unit: np.ndarray, threshold: float, chunk: int = _CHUNK,
               max_pairs: int = MAX_PAIRS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs of rows of ``unit`` within ``threshold`` cosine distance, as CSR arrays (offsets,
    columns, distances): row ``i`` lists every other row ``j`` with ``1 - cos(u_i, u_j) <= threshold``.

    An exact range query, ``chunk`` query rows at a time. ValueError when more than ``max_pairs``
    (ordered) pairs are within the threshold.
    """
    rows = np.arange(len(unit))
    return _pairs_among(Searcher(rows, unit), unit, rows, threshold, chunk, max_pairs)


def ann_neighbours(ann: Backend, unit: np.ndarray, ids: np.ndarray, threshold: float, k: int = ANN_NEIGHBOURS,
                   chunk: int = _CHUNK, max_pairs: int = MAX_PAIRS,
                   widest: int = ANN_WIDEST) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like :func:`neighbours`, but each row's candidates are its nearest in ``ann`` (whose ids for
    the rows are ``ids``); only candidates that are rows count.

    Each row first asks for its ``k`` nearest; a row whose farthest answer is still within reach of
    the threshold asks again for four times as many, until one is not (or all are fetched), so a
    photo with many copies loses none of them. Rows that would ask for more than ``widest`` are
    compared with every row instead (cheaper than a very wide approximate search). Candidates
    within :data:`ANN_SLACK` of the threshold by the index's approximate distance are re-scored on
    ``unit``. ValueError when more than ``max_pairs`` pairs are within the threshold.
    """
    return _pairs_among(Searcher(ids, unit, [ann]), unit, ids, threshold, chunk, max_pairs, first=k, widest=widest)


def _pairs_among(searcher: Searcher, vectors: np.ndarray, ids: np.ndarray, threshold: float, chunk: int,
                 max_pairs: int, **options) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR pairs (offsets, columns, distances) among the rows ``vectors`` (stored in ``searcher``
    under ``ids``) within ``threshold``, by the searcher's range queries, ``chunk`` rows at a time."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    csr = _Csr()
    for start in range(0, len(ids), chunk):
        queries = np.asarray(vectors[start:start + chunk], dtype=np.float32)
        offsets, found, d = searcher.within(queries, threshold, **options)
        rows = np.repeat(np.arange(len(queries)), np.diff(offsets))
        pos = np.minimum(np.searchsorted(sorted_ids, found), len(ids) - 1)
        cols = order[pos]
        ok = (sorted_ids[pos] == found) & (cols != start + rows)
        csr.append(rows[ok], len(queries), cols[ok], d[ok])
        _check_pairs(len(csr), max_pairs, threshold)
    return csr.arrays()


def _check_pairs(n_pairs: int, max_pairs: int, threshold: float) -> None:
    if n_pairs > max_pairs:
        raise ValueError(f"more than {max_pairs:,} pairs of images are within cosine distance {threshold}: "
                         "that is not a duplicate threshold; give a smaller --threshold")


class _Csr:
    """Neighbour lists appended chunk of rows by chunk, as CSR arrays (offsets, columns, distances)."""

    def __init__(self) -> None:
        self.offsets, self.columns, self.distances = [np.zeros(1, np.int64)], [], []

    def __len__(self) -> int:
        return int(self.offsets[-1][-1])

    def append(self, rows: np.ndarray, n_rows: int, columns: np.ndarray, distances: np.ndarray) -> None:
        """Pairs of the next ``n_rows`` rows; ``rows`` (ascending) are positions within the chunk."""
        self.offsets.append(self.offsets[-1][-1] + np.cumsum(np.bincount(rows, minlength=n_rows)))
        self.columns.append(columns.astype(np.int64))
        self.distances.append(np.maximum(distances, 0.0))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.concatenate(self.offsets), np.concatenate([np.zeros(0, np.int64), *self.columns]),
                np.concatenate([np.zeros(0), *self.distances]))


def group_around_keepers(order: np.ndarray, offsets: np.ndarray, columns: np.ndarray,
                         accept: Callable[[int, int], bool] | None = None) -> list[tuple[int, list[int]]]:
    """Visit rows in ``order``; each row not yet grouped claims its neighbours not yet grouped
    (those that ``accept(row, neighbour)`` confirms, when given: it is asked only about such pairs).

    Returns (keeper, members) per group of two or more rows.
    """
    taken = np.zeros(len(offsets) - 1, dtype=bool)
    groups = []
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        nbrs = columns[offsets[i]:offsets[i + 1]]
        members = nbrs[~taken[nbrs]]
        if accept is not None:
            members = np.array([m for m in members.tolist() if accept(int(i), m)], np.int64)
        if len(members):
            taken[members] = True
            groups.append((int(i), members.tolist()))
    return groups


def embedding_pairs(index: Index, vectors: np.ndarray | _Rows, ids: np.ndarray, radius: float,
                    chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of ``vectors`` rows (images ``ids``) within ``radius`` cosine distance, as CSR
    arrays, by the index's searcher's range queries (its ANN backend when it has one)."""
    return _pairs_among(index.searcher(), vectors, ids, radius, chunk, MAX_PAIRS)


def _union(csr: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray, cols: np.ndarray,
           vectors: _Rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR neighbour arrays with the pairs (rows[k], cols[k]) added both ways (cosine distances of ``vectors``)."""
    offsets, columns, distances = csr
    n = len(offsets) - 1
    base_rows = np.repeat(np.arange(n), np.diff(offsets))
    extra_d = np.array([_cosine(vectors[i:i + 1][0], vectors[j:j + 1][0]) for i, j in zip(rows, cols)], np.float64)
    r = np.concatenate([base_rows, rows, cols])
    c = np.concatenate([columns, cols, rows])
    d = np.maximum(np.concatenate([distances, extra_d, extra_d]), 0.0)
    key = r * n + c
    _, first = np.unique(key, return_index=True)  # sorted by row, then column; each pair once
    r, c, d = r[first], c[first], d[first]
    return np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n))]).astype(np.int64), c, d


def assemble_groups(order: np.ndarray, content: list[str],
                    near: list[tuple[int, list[tuple[int, float, verify.Evidence | None]]]],
                    paths: list[str]) -> list[Group]:
    """The report's groups from the files' content hashes and the near groups of their representatives.

    ``order`` ranks files best-to-keep first; the first file of each content in that order is its
    representative, and ``near`` holds (keeper, [(member, distance, evidence)]) among representatives, each
    representative in at most one near group (:func:`group_around_keepers`). One keep decision per
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
    for keeper, members in near:
        dups = [Duplicate(paths[c], 0.0, "exact") for c in copies[keeper]]
        for m, dist, evidence in sorted(members, key=lambda md: (md[1], paths[md[0]])):
            dups.append(Duplicate(paths[m], dist, evidence=evidence))
            dups.extend(Duplicate(paths[c], dist, "near", paths[m], evidence) for c in copies[m])
        seen.update((keeper, *(m[0] for m in members)))
        groups.append(Group("near", paths[keeper], dups))
    for rep in firsts.values():
        if rep not in seen and copies[rep]:
            groups.append(Group("exact", paths[rep], [Duplicate(paths[c], 0.0, "exact") for c in copies[rep]]))
    groups.sort(key=lambda g: (g.kind != "exact", g.keep))
    return groups


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(1.0 - a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def candidate_pairs(index: Index, vectors: _Rows, ids: np.ndarray, paths: list[str], rule: Rule,
                    stages: dict, chunk: int = _CHUNK) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First stage, as CSR arrays over the rows of ``vectors`` (images ``ids`` at ``paths``): pairs within
    the rule's radius by the embedding and, for a two-stage rule, pairs whose hashes match under a
    rotation or flip (:mod:`lookalike.phash`). Counts and seconds go into ``stages``."""
    tick = time.perf_counter()
    csr = embedding_pairs(index, vectors, ids, rule.radius, chunk)
    stages.update(embedding_pairs=len(csr[1]) // 2, embedding_seconds=round(time.perf_counter() - tick, 3))
    if rule.verified:
        tick = time.perf_counter()
        table, readable = phash.HashStore(index.store.root).get(ids, paths)
        i, j, _, _ = phash.pairs(table, rule.hash_radius)
        ok = readable[i] & readable[j]
        csr = _union(csr, i[ok], j[ok], vectors)
        stages.update(hash_pairs=int(ok.sum()), hash_seconds=round(time.perf_counter() - tick, 3))
    stages["candidate_pairs"] = len(csr[1]) // 2
    return csr


def find_duplicates(index: Index, rule: Rule | float, preset: str | None = None, under: str | None = None,
                    chunk: int = _CHUNK, verifier: Callable[[list[str], int], Verifier] | None = None) -> DedupReport:
    """Exact and near-duplicate groups among the index's images (only those below ``under`` if given),
    by ``rule`` (a number: a one-stage cosine distance); ``verifier`` makes the second stage's
    :class:`Verifier` from the paths and the inlier minimum (default: :class:`Verifier`).

    Exact groups come first, then near groups; each lists its duplicates nearest first. Files the
    index could not read are reported in ``skipped``.
    """
    started = time.perf_counter()
    rule = rule if isinstance(rule, Rule) else Rule(float(rule))
    under = os.path.abspath(under) if under is not None else None
    records = index.store.records(under)
    skipped = sorted((r.path, r.error or "unreadable") for r in records.values() if r.status != "ok")
    wanted = {r.id for r in records.values() if r.status == "ok"}
    ids, vectors = index.vectors()
    rows = np.flatnonzero(np.isin(ids, np.fromiter(wanted, np.int64, len(wanted))))
    catalog = _catalog(index, ids[rows])
    report = DedupReport(rule, preset, len(rows), search=index.index_type, skipped=skipped)
    if not len(rows):
        report.seconds = time.perf_counter() - started
        return report
    paths = catalog["path"]
    pixels = catalog["width"] * catalog["height"]
    order = keep_order(pixels, paths, catalog["mtime_ns"])  # byte copies share pixels and header traits

    # One file per distinct content (the first in keep order) stands for all its copies in the near search.
    first: dict[str, int] = {}
    for i in order:
        first.setdefault(catalog["hash"][i], int(i))
    unique = np.fromiter(first.values(), np.int64, len(first))
    upaths = [paths[u] for u in unique]
    offsets, columns, distances = candidate_pairs(index, _Rows(vectors, rows[unique]), ids[rows[unique]], upaths,
                                                  rule, report.stages, chunk)
    verifier = (verifier or Verifier)(upaths, rule.min_inliers) if rule.verified else None
    paired = np.diff(offsets) > 0  # only files with a neighbour compete to be kept: read their headers
    traits = [file_traits(p) if c else Traits() for p, c in zip(upaths, paired)]
    visit = keep_order(pixels[unique], upaths, catalog["mtime_ns"][unique], traits)
    tick = time.perf_counter()
    found = group_around_keepers(visit, offsets, columns, verifier.accept if verifier else None)
    if verifier is not None:
        seconds = time.perf_counter() - tick
        report.stages.update(pairs_verified=verifier.checked, verify_seconds=round(seconds, 3),
                             ms_per_pair=round(1000 * seconds / max(verifier.checked, 1), 2))
    near = []
    for keeper, members in found:
        row = slice(offsets[keeper], offsets[keeper + 1])
        to_keeper = dict(zip(columns[row].tolist(), distances[row].tolist()))
        near.append((int(unique[keeper]), [
            (int(unique[m]), to_keeper[m], verifier.evidence(keeper, m, traits) if verifier else None)
            for m in members]))
    report.groups = assemble_groups(order, catalog["hash"], near, paths)
    report.seconds = time.perf_counter() - started
    return report


class Verifier:
    """Second stage: confirms candidate pairs of ``paths`` by ORB + RANSAC (:func:`verify.compare`),
    each image's features extracted once (kept for the last :data:`FEATURE_CACHE` images)."""

    def __init__(self, paths: list[str], min_inliers: int) -> None:
        self.paths, self.min_inliers, self.checked = paths, min_inliers, 0
        self.results: dict[tuple[int, int], verify.Evidence] = {}
        self.features = functools.lru_cache(maxsize=FEATURE_CACHE)(self._features)

    def _features(self, i: int) -> verify.Features | None:
        try:
            return verify.features(self.paths[i])
        except ImageError:
            return None

    def accept(self, keeper: int, other: int) -> bool:
        a, b = self.features(keeper), self.features(other)
        found = verify.NO_MATCH if a is None or b is None else verify.compare(a, b, self.min_inliers)
        self.checked += 1
        self.results[keeper, other] = found
        return found.inliers >= self.min_inliers

    def evidence(self, keeper: int, other: int, traits: list[Traits]) -> verify.Evidence:
        """The verification of an accepted pair, with a re-encoding named when the encodings differ."""
        found = self.results[keeper, other]
        a, b = traits[keeper], traits[other]
        if (b.format, b.quality) != (a.format, a.quality):
            found = replace(found, edits=[*found.edits, f"re-encoded ({b.encoding()})"])
        return found


@dataclass(frozen=True)
class DuplicateMatches(QueryResult):
    """:class:`QueryResult` of mode ``duplicates``, with the verification of each match by image id
    (none for a one-stage rule or a file with the query's bytes)."""

    evidence: dict[int, verify.Evidence] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = super().to_dict()
        for row, m in zip(out["results"], self.results):
            if m.id in self.evidence:
                row["evidence"] = {**self.evidence[m.id].to_dict(), "summary": self.evidence[m.id].describe()}
        return out


def duplicates_of(index: Index, image: ImageInput, rule: Rule | float, label: str | None = None) -> DuplicateMatches:
    """Indexed images that duplicate ``image`` by ``rule``, nearest first (mode ``duplicates``).

    Indexed files with the same bytes come first, at distance 0.
    """
    vector, same = index.embed(image)
    if label is None:
        label = os.fspath(image) if isinstance(image, (str, os.PathLike)) else "<image>"
    return duplicates_of_vector(index, vector, same, rule, label, image)


def duplicates_of_vector(index: Index, vector: np.ndarray, same: Iterable[int], rule: Rule | float,
                         label: str = "<vector>", image: ImageInput | None = None) -> DuplicateMatches:
    """:func:`duplicates_of` for a feature vector; ``same`` are the ids of files with the query's bytes.

    A two-stage rule also needs the ``image`` (its hashes and features): candidates within the
    radius or with a matching rotated/flipped hash, each verified against it.
    """
    rule = rule if isinstance(rule, Rule) else Rule(float(rule))
    if rule.verified and image is None:
        raise ValueError("a two-stage duplicate rule needs the query image, not only its vector")
    same = {int(i) for i in same}
    hits: dict[int, float] = {i: 0.0 for i in same}
    _, found, d = index.searcher(approximate=False).within(vector, rule.radius, METRIC)
    for i, dist in zip(found.tolist(), d.tolist()):
        hits.setdefault(i, dist)
    evidence: dict[int, verify.Evidence] = {}
    if rule.verified:
        ids, vectors = index.vectors()
        paths = index.store.paths(ids.tolist(), missing_ok=True)
        table, readable = phash.HashStore(index.store.root).get(ids, paths)
        rows, _, _, _ = phash.pairs(table, rule.hash_radius, queries=phash.image_hashes(image)[None])
        for row in set(rows[readable[rows]].tolist()) - set(np.flatnonzero(np.isin(ids, list(hits))).tolist()):
            hits[int(ids[row])] = _cosine(vector, vectors[row])
        mine = verify.features(image)
        where = dict(zip(ids.tolist(), paths))
        for i in [i for i in hits if i not in same]:
            try:  # a file removed from the catalog since the vectors were read has no path
                found = verify.NO_MATCH if where.get(i) is None else verify.compare(
                    mine, verify.features(where[i]), rule.min_inliers)
            except ImageError:
                found = verify.NO_MATCH
            if found.inliers >= rule.min_inliers:
                evidence[i] = found
            else:
                del hits[i]
    ranked = sorted(hits.items(), key=lambda item: (item[1], item[0]))
    paths = index.store.paths([i for i, _ in ranked])
    matches = [Match(rank, i, p, d) for rank, ((i, d), p) in enumerate(zip(ranked, paths), start=1)]
    return DuplicateMatches(label, "duplicates", METRIC, matches, evidence=evidence)


class _Rows:
    """Rows ``rows`` of ``vectors`` sliced like an array, gathered only when a slice is read."""

    def __init__(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        self.vectors, self.rows = vectors, rows

    def __getitem__(self, part: slice) -> np.ndarray:
        return np.asarray(self.vectors[self.rows[part]])


def _catalog(index: Index, ids: Iterable[int]) -> dict:
    """Path, size, mtime, hash, width and height of embedded images, in the order of ``ids``."""
    found = index.store.catalog(ids)
    ints = ("size", "mtime_ns", "width", "height")
    return {key: np.asarray(value, np.int64) if key in ints else value for key, value in found.items()}
