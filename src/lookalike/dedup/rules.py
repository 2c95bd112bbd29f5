"""Duplicate rules: one stage (a cosine radius) or two (candidates, then verification), and the
presets calibrated per model by ``benchmarks/dedup_calibrate.py``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lookalike.dedup import phash

if TYPE_CHECKING:
    from lookalike.dedup.geometry import Evidence

METRIC = "cosine"
DEFAULT_PRESET = "near"
PRESET_NAMES = ("exact", "near", "similar", "shots")


@dataclass(frozen=True)
class Rule:
    """When two images are duplicates. With ``min_inliers`` 0, one stage: within ``radius`` cosine
    distance. Otherwise two: candidates within ``radius`` (loose; with ``nearest``, only pairs where
    one file is among the other's ``nearest`` closest or within ``close``) or with a rotated or flipped perceptual hash
    within ``hash_radius`` bits, each confirmed by at least ``min_inliers`` ORB matches consistent
    with one similarity transform (:mod:`lookalike.dedup.geometry`) under which the two pictures agree on at
    least ``min_agreement`` of their overlap and differ by a displacement of a few pixels (parallax,
    motion) on at most ``max_shifted`` of it and by one of under a pixel or two on at most
    ``max_displaced`` (:mod:`lookalike.dedup.capture`: one capture, not another shot of the same
    scene). With ``shots`` above 0, another shot of the scene is a duplicate too (a series, a burst,
    a step aside): a fitted pair is accepted when the aligned pictures are alike on at least
    ``min_agreement`` of their overlap whatever the displacement, or when at least ``shots`` of it
    differs by the same thing displaced a few pixels (an object replaced by another, or a drawing of
    the picture, differs without that); the group's kept file is then its best shot
    (:func:`lookalike.dedup.keep.best_shot`)."""

    radius: float
    min_inliers: int = 0
    hash_radius: int = phash.RADIUS
    nearest: int = 0
    close: float = 0.0
    min_agreement: float = 0.0
    max_shifted: float = 1.0
    max_displaced: float = 1.0
    shots: float = 0.0

    @property
    def verified(self) -> bool:
        return self.min_inliers > 0

    def accepts(self, evidence: Evidence) -> bool:
        """Whether a verification's :class:`~lookalike.dedup.geometry.Evidence` confirms a candidate pair."""
        if evidence.inliers < self.min_inliers:
            return False
        if self.shots:
            return evidence.agreement >= self.min_agreement or evidence.shifted >= self.shots
        return self.one_capture(evidence)

    def one_capture(self, evidence: Evidence) -> bool:
        """Whether a fitted pair passes the capture check: one capture (a copy), not another shot."""
        return (evidence.agreement >= self.min_agreement and evidence.shifted <= self.max_shifted
                and evidence.displaced <= self.max_displaced)

    def describe(self) -> str:
        if not self.verified:
            return f"cosine distance <= {self.radius}"
        among = f" (among either file's {self.nearest} nearest, or <= {self.close})" if self.nearest else ""
        agree = (f", the aligned pictures alike on >= {self.min_agreement:.0%}, shifted on <= "
                 f"{self.max_shifted:.1%} and displaced on <= {self.max_displaced:.0%}" if self.min_agreement else "")
        if self.shots:
            agree = (f", the aligned pictures alike on >= {self.min_agreement:.0%} or shifted on >= {self.shots:.1%} "
                     f"(other shots too; the best shot kept)")
        return (f"cosine distance <= {self.radius}{among} or a rotated/flipped hash within {self.hash_radius} "
                f"bits, then >= {self.min_inliers} ORB inliers{agree}")

    def to_dict(self) -> dict:
        out = {"radius": self.radius, "min_inliers": self.min_inliers,
                "min_agreement": self.min_agreement if self.verified else None,
                "max_shifted": self.max_shifted if self.verified else None,
                "max_displaced": self.max_displaced if self.verified else None,
                "hash_radius": self.hash_radius if self.verified else None,
                "nearest": self.nearest or None, "close": self.close if self.nearest else None}
        if self.shots:  # only for a rule that groups other shots: the other rules' JSON is as it was
            out["shots"] = self.shots
        return out


#: Presets per model (name, layer), chosen by the rules of benchmarks/dedup_calibrate.py ``suggest`` from its
#: figures (2,088 distinct photos incl. 40 per flowers51 class, 200 of them with 18 edits each):
#:   exact    one stage, cosine 0.025          P 1.000  R 0.21  byte copies, PNG, JPEG q90 re-saves
#:   near     cosine 0.3 (32 nearest) or hash, >= 20 inliers  P 0.998  R 0.937 (0.950 rotations aside)
#:            rot90 0.82, flip 0.965 (ORB at 256 px, 300 features: geometry.SIDE, N_FEATURES; hashes
#:            within 8 bits)
#:   similar  the same candidates, >= 12 inliers                P 0.997  R 0.936 (looser, for review)
#: (``suggest`` now names >= 12 for near too, 0.7 % fewer pairs; near keeps 20: higher precision,
#: the same recall.) The capture check (agreement >= 0.9, shifted <= 0.025) was set on flowers51's
#: eye-checked same-capture and series pairs and checked pair by pair by benchmarks/dedup_pairs.py;
#: its displacement limit (displaced <= 0.25) on those pairs and dedup_pairs.py's (copies at most
#: 0.21, a sub-pixel parallax 0.49); the figures above are from before the check. With it, on the
#: same collection plus its hard negatives (19 series pairs, 120 built pairs): near P 0.9998, R 0.955
#: (0.953 rotations aside), rot90 0.995, flip 0.995, no series pair, 5 built "moved part" pairs grouped.
#:   shots    near's candidates and inliers; a pair also passes when at least 2.5 % of the overlap
#:            shows the same thing displaced (near's shifted limit, as a minimum), or is alike on >= 0.9
#:            whatever its sub-pixel displacement: other shots grouped, other objects and drawings not
#:            (docs/dedup.md, "Similar shots")
PRESETS: dict[tuple[str, str], dict[str, Rule]] = {
    ("efficientnet-lite0", "pool"): {
        "exact": Rule(0.025),
        "near": Rule(0.3, 20, nearest=32, close=0.025, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25),
        "similar": Rule(0.3, 12, nearest=32, close=0.025, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25),
        "shots": Rule(0.3, 20, nearest=32, close=0.025, min_agreement=0.9, max_shifted=0.025, max_displaced=0.25,
                      shots=0.025)},
}


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
