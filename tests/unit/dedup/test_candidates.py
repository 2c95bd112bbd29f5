"""The candidate stage (dedup/candidates.py) on hand-made CSR arrays, hashes and vectors: the pair
limit, the nearest-only filter and the hash pairs' radius (the index-level stage is tested through
find_duplicates in test_find.py)."""

import math
import types

import numpy as np
import pytest

from lookalike.dedup import candidates
from lookalike.dedup.rules import Rule
from lookalike.vectors import Searcher


def _csr(n, pairs):
    """CSR arrays over ``n`` rows of undirected ``pairs`` {(a, b): distance}, columns ascending."""
    rows = [sorted([(b, d) for (a, b), d in pairs.items() if a == i] + [(a, d) for (a, b), d in pairs.items() if b == i])
            for i in range(n)]
    offsets = np.cumsum([0] + [len(r) for r in rows])
    return offsets, np.array([c for r in rows for c, _ in r], np.int64), np.array([d for r in rows for _, d in r])


def test_the_pair_limit_counts_every_chunk_and_allows_exactly_the_limit():
    rng = np.random.default_rng(1)
    unit = rng.standard_normal((30, 8)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    # every cosine distance is at most 2: 30 x 29 ordered pairs, 8 x 29 = 232 of them in the first chunk of 8 rows
    assert len(candidates.neighbours(unit, 2.0, chunk=8, max_pairs=870)[1]) == 870
    with pytest.raises(ValueError) as refused:
        candidates.neighbours(unit, 2.0, chunk=8, max_pairs=800)
    assert str(refused.value) == ("more than 800 pairs of images are within cosine distance 2.0: that is not a "
                                  "duplicate threshold; give a smaller --threshold")


def test_nearest_only_keeps_each_rows_nearest_and_pairs_within_close():
    # row 4 has no pair; 1~2 is neither's nearest (both are nearest 0)
    csr = _csr(5, {(0, 1): 0.01, (0, 2): 0.025, (0, 3): 0.2, (1, 2): 0.05})
    offsets, columns, distances = candidates.nearest_only(csr, 1)  # nothing is close by default
    assert offsets.tolist() == [0, 3, 4, 5, 6, 6] and columns.tolist() == [1, 2, 3, 0, 0, 0]
    assert distances.tolist() == [0.01, 0.025, 0.2, 0.01, 0.025, 0.2]
    offsets, columns, _ = candidates.nearest_only(csr, 0, close=0.025)  # only the close ones, the edge included
    assert offsets.tolist() == [0, 2, 3, 4, 4, 4] and columns.tolist() == [1, 2, 0, 0]


def test_hash_pairs_are_those_within_the_rules_radius():
    rng = np.random.default_rng(7)
    table = rng.integers(0, 256, (4, 8, 8), dtype=np.uint8)  # random hashes: about 32 bits apart
    table[2, 3] = table[0, 0] ^ np.packbits(np.r_[np.ones(10), np.zeros(54)].astype(bool))  # 2 rotated: 10 bits from 0
    unit = np.eye(4, dtype=np.float32)
    empty = (np.zeros(5, np.int64), np.zeros(0, np.int64), np.zeros(0))
    readable = np.ones(4, bool)
    stages = {}
    offsets, columns, distances, hashed = candidates.hash_candidates(empty, table, readable, unit,
                                                                     Rule(0.3, 20, hash_radius=10), stages)
    assert stages == {"hash_pairs": 1}
    assert offsets.tolist() == [0, 1, 1, 2, 2] and columns.tolist() == [2, 0] and distances.tolist() == [1.0, 1.0]
    assert hashed.tolist() == [True, True]
    offsets, columns, *_ = candidates.hash_candidates(empty, table, readable, unit, Rule(0.3, 20, hash_radius=9), stages)
    assert stages == {"hash_pairs": 0} and offsets.tolist() == [0, 0, 0, 0, 0] and columns.size == 0


def test_nearest_only_orders_a_run_of_four_equal_distances_by_column():
    # row 0 lists columns 9, 8, 7, 6 at one distance: its nearest is column 6
    csr = (np.array([0, 4] + [4] * 9), np.array([9, 8, 7, 6]), np.full(4, 0.1))
    offsets, columns, _ = candidates.nearest_only(csr, 1)
    assert columns[offsets[0]:offsets[1]].tolist() == [6]


def test_ranks_order_each_rows_pairs_by_distance_then_column_as_integers():
    # row 0 lists columns 1-4 at 0.3, 0.1, 0.2, 0.1: nearest column 2, then 4 (the tie by column), 3, 1;
    # row 1 lists columns 0 and 2 at 0.5 and 0.4 (a CSR need not be symmetric here)
    offsets = np.array([0, 4, 6])
    got = candidates.ranks(offsets, np.array([1, 2, 3, 4, 0, 2]), np.array([0.3, 0.1, 0.2, 0.1, 0.5, 0.4]))
    assert got.tolist() == [3, 0, 2, 1, 1, 0]
    assert got.dtype.kind == "i"  # positions: they index, as ranks do


def test_hash_candidates_mark_each_hash_pair_both_ways_and_no_other_pair():
    # the hash pair is 1 ~ 3 (3 is 1 rotated), away from row 0, beside the embedding's pair 0 ~ 2
    rng = np.random.default_rng(11)
    table = rng.integers(0, 256, (5, 8, 8), dtype=np.uint8)  # random hashes: about 32 bits apart
    table[3, 2] = table[1, 0]
    unit = rng.standard_normal((5, 64)).astype(np.float32)
    csr = (np.array([0, 1, 1, 2, 2, 2]), np.array([2, 0]), np.array([0.4, 0.4]))
    stages = {}
    offsets, columns, distances, hashed = candidates.hash_candidates(csr, table, np.ones(5, bool), unit,
                                                                     Rule(0.3, 20), stages)
    assert stages == {"hash_pairs": 1}
    rows = np.repeat(np.arange(5), np.diff(offsets))
    assert list(zip(rows.tolist(), columns.tolist(), hashed.tolist())) == [
        (0, 2, False), (1, 3, True), (2, 0, False), (3, 1, True)]
    # the hash pair's distance in float64 (float32 arithmetic is about 1e-7 off)
    a, b = unit[1].astype(np.float64), unit[3].astype(np.float64)
    want = 1 - a @ b / math.sqrt((a @ a) * (b @ b))
    assert distances[[0, 2]].tolist() == [0.4, 0.4] and abs(distances[1] - want) < 1e-12 and distances[3] == distances[1]


def test_candidate_pairs_of_a_one_stage_rule_mark_no_pair_as_hashed_in_a_boolean_mask():
    unit = np.array([[1, 0], [0.999, 0.0447], [0, 1]], np.float32)  # 0 ~ 1: 0.001 apart; 2 far from both
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    ids = np.array([10, 20, 30])
    index = types.SimpleNamespace(searcher=lambda: Searcher(ids, unit))
    stages = {}
    offsets, columns, distances, hashed = candidates.candidate_pairs(
        index, candidates.Rows(unit, np.arange(3)), ids, ["a", "b", "c"], ["/a", "/b", "/c"], Rule(0.01), stages)
    assert offsets.tolist() == [0, 1, 2, 2] and columns.tolist() == [1, 0]
    assert hashed.dtype == bool and columns[~hashed].tolist() == [1, 0]  # a mask: no pair matched by hashes
    assert stages["candidate_pairs"] == 1 and "hash_pairs" not in stages
