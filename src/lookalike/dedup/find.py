"""Finding duplicates: the groups of an index (:func:`find_duplicates`) and the duplicates of one
image (:func:`duplicates_of`), both by a :class:`~lookalike.dedup.rules.Rule` (second stage: :mod:`.verifier`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from lookalike.dedup import phash
from lookalike.dedup import geometry
from lookalike.api import Index, ImageInput, Match, QueryResult
from lookalike.dedup import ondisk
from lookalike.dedup.candidates import CHUNK, Rows, candidate_pairs, cosine, ranks
from lookalike.dedup.keep import (Traits, assemble_groups, best_shot, file_traits, group_around_keepers, keep_order,
                                  shot_quality)
from lookalike.dedup.report import BestShot, DedupReport
from lookalike.dedup.rules import METRIC, Rule
from lookalike.dedup.verifier import Verifier


#: A member's likely copies are offered to its keeper too (:func:`~lookalike.dedup.keep.group_around_keepers`'s
#: ``onward``): its candidates within ONWARD cosine distance, its ONWARD_NEAREST nearest and those whose hashes
#: match its own. On the calibration set (photos with 18 edited copies each) the copies found only through a
#: member were up to 0.3 from it and up to its 17th nearest: within 0.1 or the 8 nearest lost eight of them
#: (four 80 % crops), these limits one (a second file of one capture, 0.26 away and the 17th nearest).
ONWARD, ONWARD_NEAREST = 0.2, 16


def find_duplicates(index: Index, rule: Rule | float, preset: str | None = None, under: str | None = None,
                    chunk: int = CHUNK, verifier: Callable[[list[str], Rule], Verifier] | None = None) -> DedupReport:
    """Exact and near-duplicate groups among the index's images (only those below ``under`` if given),
    by ``rule`` (a number: a one-stage cosine distance); ``verifier`` makes the second stage's
    :class:`Verifier` from the paths and the rule (default: :class:`Verifier`).

    Exact groups come first, then near groups; each lists its duplicates nearest first. Files the
    index could not read are reported in ``skipped``; the report keeps what the index holds for each
    grouped file, to check the disk against before it lists anything (:meth:`DedupReport.to_remove`).
    """
    started = time.perf_counter()
    rule = rule if isinstance(rule, Rule) else Rule(float(rule))
    under = os.path.abspath(under) if under is not None else None
    wanted, skipped = index.members(under)
    ids, vectors = index.vectors()
    rows = np.flatnonzero(np.isin(ids, np.fromiter(wanted, np.int64, len(wanted))))
    catalog = read_catalog(index, ids[rows])
    report = DedupReport(rule, preset, len(rows), search=index.index_type, skipped=skipped)
    if not len(rows):
        report.seconds = time.perf_counter() - started
        return report
    paths = catalog["path"]
    pixels = catalog["width"] * catalog["height"]
    hops = np.array([ondisk.link_hops(p) for p in paths], np.int64)
    order = keep_order(pixels, paths, catalog["mtime_ns"], hops=hops)  # byte copies share pixels and traits

    # One file per distinct content (the first in keep order) stands for all its copies in the near search.
    first: dict[str, int] = {}
    for i in order:
        first.setdefault(catalog["hash"][i], int(i))
    unique = np.fromiter(first.values(), np.int64, len(first))
    upaths = [paths[u] for u in unique]
    offsets, columns, distances, hashed = candidate_pairs(index, Rows(vectors, rows[unique]), ids[rows[unique]],
                                                          list(first), upaths, rule, report.stages, chunk)
    paired = np.diff(offsets) > 0  # only files with a neighbour compete to be kept: read their headers
    traits = [file_traits(p) if c else Traits() for p, c in zip(upaths, paired)]
    visit = keep_order(pixels[unique], upaths, catalog["mtime_ns"][unique], traits, hops[unique])
    make = verifier or Verifier
    with make(upaths, rule) if rule.verified else contextlib.nullcontext() as check:
        tick = time.perf_counter()
        if check is not None:
            check.plan(_feature_order(visit, offsets, columns))
        found = group_around_keepers(visit, offsets, columns, check.accept if check is not None else None,
                                     _likely_copies(offsets, columns, distances, hashed) if check is not None else None)
        shots = _best_shots(found, check, rule, upaths, visit) if check is not None and rule.shots else {}
        if check is not None:
            seconds = time.perf_counter() - tick
            report.stages.update(pairs_verified=check.checked, verify_seconds=round(seconds, 3),
                                 ms_per_pair=round(1000 * seconds / max(check.checked, 1), 2),
                                 features_extracted=check.extracted, verify_workers=check.workers)
            if rule.shots:
                report.stages["shots_measured"] = sum(len(b.shots) for _, b in shots.values())
    near = []
    vec = lambda r: vectors[rows[unique[r]]]  # noqa: E731
    for keeper, members in found:
        kept, best = shots.get(keeper, (keeper, None))
        if kept != keeper:  # the best shot is kept: the others as verified against the keep rule's first
            near.append((int(unique[kept]), [(int(unique[keeper]), cosine(vec(kept), vec(keeper)),
                                              check.evidence(kept, keeper, traits))] +
                         [(int(unique[m]), cosine(vec(kept), vec(m)), check.evidence(keeper, m, traits),
                           int(unique[keeper])) for m in members if m != kept], best))
            continue
        row = slice(offsets[keeper], offsets[keeper + 1])
        to_keeper = dict(zip(columns[row].tolist(), distances[row].tolist()))
        for m in members:  # claimed through another member (reach): not among the keeper's candidates
            if m not in to_keeper:
                to_keeper[m] = cosine(vec(keeper), vec(m))
        near.append((int(unique[keeper]), [
            (int(unique[m]), to_keeper[m], check.evidence(keeper, m, traits) if check is not None else None)
            for m in members], *([best] if best is not None else [])))
    report.groups = assemble_groups(order, catalog["hash"], near, paths)
    row = {p: i for i, p in enumerate(paths)}
    report.indexed = {p: (int(catalog["size"][row[p]]), int(catalog["mtime_ns"][row[p]]), catalog["hash"][row[p]])
                      for g in report.groups for p in (g.keep, *(d.path for d in g.duplicates))}
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class DuplicateMatches(QueryResult):
    """:class:`QueryResult` of mode ``duplicates``, with the verification of each match by image id
    (none for a one-stage rule or a file with the query's bytes)."""

    evidence: dict[int, geometry.Evidence] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = super().to_dict()
        for row, m in zip(out["results"], self.results):
            if m.id in self.evidence:
                row["evidence"] = {**self.evidence[m.id].to_dict(), "summary": self.evidence[m.id].describe()}
        return out


#: On a collection that is not an index folder (a Milvus collection), the nearest files among which
#: a two-stage rule looks for rotated/flipped copies by their hashes (an index folder: every file).
HASH_POOL = 256


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
    radius or with a matching rotated/flipped hash, each verified against it. On an index folder the
    radius is searched exactly and every file's hashes are compared; on a Milvus collection (no
    request reads every vector) the radius is searched through its vector index and the hashes of
    the :data:`HASH_POOL` nearest files are compared.
    """
    rule = rule if isinstance(rule, Rule) else Rule(float(rule))
    if rule.verified and image is None:
        raise ValueError("a two-stage duplicate rule needs the query image, not only its vector")
    same = {int(i) for i in same}
    hits: dict[int, float] = {i: 0.0 for i in same}
    local = index.collection.local
    _, found, d = index.searcher(approximate=not local).within(vector, rule.radius, METRIC)
    for i, dist in zip(found.tolist(), d.tolist()):
        hits.setdefault(i, dist)
    evidence: dict[int, geometry.Evidence] = {}
    if rule.verified:
        if local:  # every file (the index folder keeps their hashes)
            ids, vectors = index.vectors()
            pooled = None
        else:  # the HASH_POOL nearest (their hashes computed here, kept for this process)
            pooled, ids = index.searcher().nearest(vector, HASH_POOL, METRIC)
            ids, pooled = ids[0][ids[0] >= 0], pooled[0][ids[0] >= 0]
        paths = index.paths(ids.tolist(), missing_ok=True)
        present = [i for i, p in zip(ids.tolist(), paths) if p is not None]
        content = dict(zip(present, index.columns(present)["hash"]))
        table, readable = index.hashes.get([content.get(i, "") for i in ids.tolist()], paths)
        rows, _, _, _ = phash.pairs(table, rule.hash_radius, queries=phash.image_hashes(image)[None])
        for row in set(rows[readable[rows]].tolist()) - set(np.flatnonzero(np.isin(ids, list(hits))).tolist()):
            hits[int(ids[row])] = cosine(vector, vectors[row]) if pooled is None else float(pooled[row])
        where = dict(zip(ids.tolist(), paths))
        others = [i for i in hits if i not in same]
        for i in [i for i in others if where.get(i) is None]:  # removed from the catalog since the vectors were read
            del hits[i]
        others = [i for i in others if where.get(i) is not None]
        with Verifier([image, *(where[i] for i in others)], rule) as check:
            accepted = check.accept(0, np.arange(1, len(others) + 1))
        for row, (i, ok) in enumerate(zip(others, accepted.tolist()), start=1):
            if ok:
                evidence[i] = check.results[0, row]
            else:
                del hits[i]
    ranked = sorted(hits.items(), key=lambda item: (item[1], item[0]))
    paths = index.paths([i for i, _ in ranked])
    matches = [Match(rank, i, p, d) for rank, ((i, d), p) in enumerate(zip(ranked, paths), start=1)]
    return DuplicateMatches(label, "duplicates", METRIC, matches, evidence=evidence)


def _best_shots(found: list[tuple[int, list[int]]], check: Verifier, rule: Rule, paths: list[str],
                visit: np.ndarray) -> dict[int, tuple[int, BestShot]]:
    """For each group of ``found`` (keeper, members): (the row to keep, why), by
    :func:`~lookalike.dedup.keep.best_shot` among all its files in ``visit`` (keep) order; the group
    holds other shots when a member fails :meth:`Rule.one_capture` against the keeper. When another
    file is kept, it is verified against the keeper for its evidence."""
    rank = np.empty(len(paths), np.int64)
    rank[visit] = np.arange(len(visit))
    out = {}
    for keeper, members in found:
        other = any(not rule.one_capture(check.results[keeper, m]) for m in members)
        files = sorted([keeper, *members], key=lambda r: rank[r])
        best = best_shot([paths[r] for r in files], {paths[r]: shot_quality(paths[r]) for r in files}, other)
        kept = files[[paths[r] for r in files].index(best.keep)]
        if kept != keeper:
            check.accept(kept, np.array([keeper]))
        out[keeper] = (kept, best)
    return out


def _likely_copies(offsets: np.ndarray, columns: np.ndarray, distances: np.ndarray, hashed: np.ndarray) -> np.ndarray:
    """Which candidate pairs (CSR entries) are likely copies: hash matches, within :data:`ONWARD`, or
    among the row's :data:`ONWARD_NEAREST` nearest."""
    return hashed | (distances <= ONWARD) | (ranks(offsets, columns, distances) < ONWARD_NEAREST)


def _feature_order(visit: np.ndarray, offsets: np.ndarray, columns: np.ndarray) -> Iterator[int]:
    """Rows in about the order the grouping verifies them: each row with neighbours, then its neighbours."""
    for i in visit.tolist():
        if offsets[i + 1] > offsets[i]:
            yield i
            yield from columns[offsets[i]:offsets[i + 1]].tolist()


def read_catalog(index: Index, ids: Iterable[int]) -> dict:
    """Path, size, mtime, hash, width and height of embedded images, in the order of ``ids``."""
    found = index.columns(ids)
    ints = ("size", "mtime_ns", "width", "height")
    return {key: np.asarray(value, np.int64) if key in ints else value for key, value in found.items()}
