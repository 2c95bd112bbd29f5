"""Near-duplicate groups: exact copies by content hash, near copies by feature distance.

How groups are formed (see :func:`find_duplicates`; modules: :mod:`.rules`, :mod:`.candidates`,
:mod:`.verifier`, :mod:`.keep`, :mod:`.report`, :mod:`.find`, :mod:`.ondisk`):

1. Files with the same content hash are *exact* duplicates; each such set is one group.
2. One file per distinct content is kept for the near search. Its neighbours within the
   threshold (cosine distance) come from a range query of the index's searcher
   (:meth:`lookalike.vectors.Searcher.within`), run in chunks of queries, so memory grows with the
   number of close pairs, never with all pairs (and a threshold that would hold more than
   :data:`MAX_PAIRS` is refused). Without an approximate structure that is an exact scan. With one
   (HNSW or IVF-PQ, see :mod:`lookalike.index.approximate`), each file's nearest come from it instead
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
5. Before a list is made, every grouped file is checked against the disk (:mod:`.ondisk`): one
   changed since it was indexed stops it, and a file ranks before any symbolic link to it, so no
   listed name is the file a kept name leads to.

Two-stage rules (the ``near`` and ``similar`` presets, :class:`Rule`): step 2's pairs are only
*candidates*, taken at a loose radius (among each file's nearest) and unioned with pairs whose
perceptual hashes match under a rotation or flip (:mod:`lookalike.dedup.phash`); in step 3 a file claims a
candidate only when ORB + RANSAC verification against the kept file itself confirms it
(:mod:`lookalike.dedup.geometry`), and the fitted transform is the duplicate's evidence. The presets are
measured for one model by ``benchmarks/dedup_calibrate.py`` (edited copies of real photos against distinct
photos, other photos of the same flower class among them); its printed figures justify the values
below.

The ``shots`` preset (:attr:`Rule.shots`) groups other shots of one scene too (series, bursts, a
step aside): a fitted pair whose aligned pictures are alike, or differ by the same thing displaced
a few pixels. Its groups keep their best shot (:func:`best_shot`: the best exposed, then the
sharpest, then the keep rule between files alike in quality), and the other members are listed as
verified against the file the keep rule ranks first (``compared_with``).
"""

_HOME = {  # name -> the module that defines it, imported on first use (PEP 562)
    **dict.fromkeys((
        "ANN_NEIGHBOURS", "ANN_SLACK", "ANN_WIDEST", "MAX_PAIRS", "ann_neighbours",
        "candidate_pairs", "embedding_candidates", "embedding_pairs", "hash_candidates",
        "neighbours"), "candidates"),
    **dict.fromkeys(("DuplicateMatches", "duplicates_of", "duplicates_of_vector", "find_duplicates"), "find"),
    **dict.fromkeys((
        "LOSSLESS", "OTHER_LOSSY", "Traits", "assemble_groups", "best_shot", "file_traits",
        "group_around_keepers", "keep_order", "shot_quality"), "keep"),
    **dict.fromkeys(("StaleIndex",), "ondisk"),
    **dict.fromkeys(("BestShot", "DedupReport", "Duplicate", "Group", "Shot", "write_paths"), "report"),
    **dict.fromkeys((
        "DEFAULT_PRESET", "METRIC", "PRESET_NAMES", "PRESETS", "Rule", "presets",
        "resolve_threshold"), "rules"),
    **dict.fromkeys(("FEATURE_CACHE", "Verifier"), "verifier"),
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    """The public names, each imported from its module on first use: importing :mod:`lookalike.dedup`
    (for :mod:`.phash`, which the indexer uses) does not import the rest of dedup."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f"{__name__}.{_HOME[name]}"), name)
