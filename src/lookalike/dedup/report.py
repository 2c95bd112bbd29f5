"""What dedup reports: groups around the kept file, each duplicate with its distance and evidence,
the ``dedup --json`` shape and the to-remove list."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from lookalike import atomic
from lookalike.dedup import geometry, ondisk
from lookalike.dedup.rules import METRIC, Rule


@dataclass(frozen=True)
class Shot:
    """How good a shot is (:func:`lookalike.dedup.keep.shot_quality`): ``sharpness`` (variance of the
    Laplacian over that of the gray levels, at one size) and ``clipped`` (share of blown or crushed pixels)."""

    sharpness: float
    clipped: float

    def to_dict(self) -> dict:
        return {"sharpness": round(self.sharpness, 3), "clipped": round(self.clipped, 4)}


@dataclass(frozen=True)
class BestShot:
    """Why a group keeps ``keep`` by a rule that groups other shots (:func:`lookalike.dedup.keep.best_shot`):
    ``reason`` for people, the ``shots`` compared (path -> :class:`Shot`), and ``other_shots``: whether
    the group holds another shot of the scene, not only copies of one capture."""

    keep: str
    reason: str
    shots: dict[str, Shot]
    other_shots: bool = True


@dataclass(frozen=True)
class Duplicate:
    """A file that duplicates its group's kept file, at ``distance`` (cosine) from it.

    ``match`` is ``"exact"`` (the kept file's bytes) or ``"near"``; ``copy_of`` names the near
    duplicate whose bytes this file has (it is then listed with that file's distance and evidence);
    ``evidence`` is the verification of a two-stage rule (None for one stage and exact copies), of
    this file against the kept file or, when ``compared_with`` names another, against that one (a
    group of other shots keeps its best shot, and its members were verified against the file the
    keep rule ranks first).
    """

    path: str
    distance: float
    match: str = "near"
    copy_of: str | None = None
    evidence: geometry.Evidence | None = None
    compared_with: str | None = None

    def to_dict(self) -> dict:
        out = {"path": self.path, "distance": round(self.distance, 6), "match": self.match}
        if self.copy_of is not None:
            out["copy_of"] = self.copy_of
        if self.compared_with is not None:
            out["compared_with"] = self.compared_with
        if self.evidence is not None:
            out["evidence"] = {**self.evidence.to_dict(), "summary": self.evidence.describe()}
        return out


@dataclass(frozen=True)
class Group:
    """The file to keep and its duplicates; ``kind`` is ``"exact"`` (all of them the kept file's
    bytes), ``"near"`` or ``"shots"`` (other shots of one scene among them). By a rule with
    :attr:`~lookalike.dedup.rules.Rule.shots`, ``best`` says why the kept file is kept."""

    kind: str
    keep: str
    duplicates: list[Duplicate]
    best: BestShot | None = None

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "keep": self.keep, "duplicates": [d.to_dict() for d in self.duplicates]}
        if self.best is not None:
            out["keep_reason"] = self.best.reason
            out["shots"] = [{"path": p, **q.to_dict()} for p, q in self.best.shots.items()]
        return out


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
    #: (size, mtime_ns, content hash) of each grouped file as the index holds it, by path.
    indexed: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    _confirmed: bool = field(default=False, repr=False)

    @property
    def threshold(self) -> float:
        return self.rule.radius

    def to_remove(self) -> list[str]:
        """Every grouped file except the one kept per group (lookalike never deletes anything).

        The first call checks every grouped file against the disk (:func:`ondisk.confirm`:
        :class:`ondisk.StaleIndex` when one is not what :attr:`indexed` holds). RuntimeError if a
        file would be listed twice, is some group's kept file, or is a kept name's file or a link
        on the way to it: groups are disjoint by construction (:func:`assemble_groups`) and a file
        ranks before its links (:func:`keep_order`); this re-checks both on what is listed.
        """
        if not self._confirmed:
            ondisk.confirm(self.indexed)
            self._confirmed = True
        listed = [d.path for g in self.groups for d in g.duplicates]
        kept = {g.keep for g in self.groups}
        if len(kept) != len(self.groups) or len(set(listed)) != len(listed) or not kept.isdisjoint(listed):
            raise RuntimeError("duplicate groups overlap; refusing to write a list of files to remove")
        lost = ondisk.lost_by_removal(sorted(kept), listed)
        if lost:
            raise RuntimeError(f"removing the listed files would leave {lost[0]} without its file; "
                               "refusing to write a list of files to remove")
        return listed

    def why(self, d: Duplicate) -> str:
        """One line on why ``d`` is listed: the same bytes, or its evidence (marked "another shot"
        when a rule that groups other shots accepted a pair that fails the capture check), the file it
        was verified against when not the kept one, and the file whose bytes it has."""
        why = "same bytes" if d.match == "exact" else d.evidence.describe() if d.evidence else ""
        if d.evidence is not None and self.rule.shots and not self.rule.one_capture(d.evidence):
            why = f"another shot: {why}"
        if d.compared_with is not None:
            why += f" (against {os.path.basename(d.compared_with)})"
        if d.copy_of is not None:
            why = f"same bytes as {os.path.basename(d.copy_of)}" + (f"; {why}" if why else "")
        return why

    def to_dict(self) -> dict:
        return {"metric": METRIC, "threshold": self.threshold, "preset": self.preset, "n_images": self.n_images,
                "search": self.search, "rule": self.rule.to_dict(), "stages": self.stages,
                "groups": [g.to_dict() for g in self.groups],
                "to_remove": self.to_remove(),
                "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
                "seconds": round(self.seconds, 3)}


def write_paths(paths: list[str], out: str | os.PathLike, null: bool = False) -> None:
    """Write ``paths`` to ``out`` whole or not at all (:mod:`lookalike.atomic`), one per line, or
    NUL-terminated with ``null`` (names as bytes, as the file system has them).

    ValueError, writing nothing, when a name holds a line break and ``null`` is off: such a list
    could not be read back unambiguously.
    """
    if not null:
        broken = next((p for p in paths if "\n" in p or "\r" in p), None)
        if broken is not None:
            raise ValueError(f"a file name holds a line break ({broken!r}): a one-per-line list would be "
                             "ambiguous; use -0 (NUL-separated) or --json")
    end = b"\0" if null else b"\n"
    atomic.write(out, b"".join(os.fsencode(p) + end for p in paths))
