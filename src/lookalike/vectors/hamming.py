"""Hamming-distance search over packed binary codes: the perceptual-hash candidates of dedup
(:mod:`lookalike.dedup.phash`) and ORB descriptor matching (:mod:`lookalike.dedup.geometry`).

Small searches compare every pair (FAISS binary flat indexes; FAISS is imported only here and in
:mod:`lookalike.vectors.faiss_backend`). A range search too large for that is a multi-index hash
search (Norouzi et al., "Fast exact search in Hamming space with multi-index hashing", 2014), still
exact: the codes' bits are split into ``m`` chunks with radii ``r_1..r_m`` summing to at least
``radius - m + 1``, so a pair at most ``radius`` apart is within ``r_c`` bits on some chunk ``c``
(pigeonhole); each query looks up its chunk keys with up to ``r_c`` bits flipped in a table of the
other side's keys, and only the codes found there are compared in full.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: Code pairs (probes x base) up to which a range search compares every pair (FAISS, ~1 ns a pair).
FLAT_PAIRS = 50_000_000
#: Most bits in one chunk key (its table holds 2 ** bits offsets).
MAX_CHUNK_BITS = 22
#: Flipped-key lookups per batch of a chunk's search (bounds the memory of one batch).
LOOKUPS_PER_BATCH = 1 << 22


def single_threaded() -> None:
    """Turn FAISS's OpenMP off in the calling thread (a pool thread that searches small code sets):
    one small search gains nothing from a thread team, and on a busy machine the team's spin-waits
    made each ORB comparison ~50x slower (780 against 10-17 ms a pair, load average 10)."""
    import faiss

    faiss.omp_set_num_threads(1)


def _flat(base: np.ndarray):
    import faiss

    index = faiss.IndexBinaryFlat(8 * base.shape[1])
    index.add(np.ascontiguousarray(base))
    return index


def within(base: np.ndarray, probes: np.ndarray, bits: int, workers: int | None = None, flat: bool = False
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probe row, base row, differing bits) of every pair at most ``bits`` apart, ordered by probe
    row then base row; codes are (N, bytes) uint8 rows. Exact either way: every pair compared when
    ``flat`` or there are at most :data:`FLAT_PAIRS`, else a multi-index hash search over the larger
    side on ``workers`` threads (default: one per CPU)."""
    base, probes = np.ascontiguousarray(base, np.uint8), np.ascontiguousarray(probes, np.uint8)
    if flat or len(base) * len(probes) <= FLAT_PAIRS or base.shape[1] % 8:
        lims, dist, labels = _flat(base).range_search(probes, bits + 1)
        probe = np.repeat(np.arange(len(lims) - 1), np.diff(lims.astype(np.int64)))
        return probe, labels.astype(np.int64), dist.astype(np.int64)
    if len(probes) > len(base):  # index the larger side: fewer lookups, as many codes compared
        probe, row, dist = MultiIndex(probes, bits).search(base, workers)
    else:
        row, probe, dist = MultiIndex(base, bits).search(probes, workers)
    order = np.lexsort((row, probe))
    return probe[order], row[order], dist[order]


class MultiIndex:
    """Codes (N, bytes) uint8, a multiple of 8 bytes each, indexed for exact range search within
    ``radius`` bits: one table per chunk of bits, the chunk count and widths chosen for N (fewest
    lookups plus codes compared per query); the bits left out of every chunk are the most constant."""

    def __init__(self, codes: np.ndarray, radius: int) -> None:
        self.codes = np.ascontiguousarray(codes, np.uint8)
        self.words = self.codes.view(np.uint64)
        self.radius = radius
        bits = np.unpackbits(self.codes, axis=1)
        width, radii = _plan(len(codes), bits.shape[1], radius)
        balance = np.abs(bits.mean(axis=0) - 0.5)
        used = np.sort(np.argsort(balance, kind="stable")[:width * len(radii)])  # most varied bits
        self.chunks = [(used[c * width:(c + 1) * width], r) for c, r in enumerate(radii)]
        self.tables = []  # per chunk: each key's (first position << 32 | count) in the key-sorted rows, those rows
        for columns, _ in self.chunks:
            keys = _keys(bits, columns)
            counts = np.bincount(keys, minlength=1 << width)
            self.tables.append((((np.cumsum(counts) - counts) << 32) | counts, np.argsort(keys, kind="stable")))
        self.flips = {r: _flip_masks(width, r) for r in set(radii)}

    def search(self, queries: np.ndarray, workers: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indexed row, query row, differing bits) of every pair within the radius, each once."""
        queries = np.ascontiguousarray(queries, np.uint8)
        q_words, bits = queries.view(np.uint64), np.unpackbits(queries, axis=1)
        jobs = []
        for (columns, r), (spans, order) in zip(self.chunks, self.tables):
            keys, flips = _keys(bits, columns), self.flips[r]
            step = max(1, LOOKUPS_PER_BATCH // len(flips))
            jobs += [(keys[s:s + step], s, flips, spans, order, q_words) for s in range(0, len(queries), step)]
        with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
            found = list(pool.map(lambda job: self._lookup(*job), jobs))
        row, query, dist = (np.concatenate([np.zeros(0, np.int64), *(f[k] for f in found)]) for k in range(3))
        _, first = np.unique(query * len(self.codes) + row, return_index=True)  # found on several chunks
        return row[first], query[first], dist[first]

    def _lookup(self, keys, start, flips, spans, order, q_words):
        """Pairs within the radius of queries ``start, start + 1, ...`` (chunk ``keys``) found on one chunk."""
        span = spans.take(keys[:, None] ^ flips[None, :]).ravel()
        hit = np.flatnonzero(span)
        span = span[hit]
        begin, count = span >> 32, span & 0xFFFFFFFF
        query = np.repeat(start + hit // len(flips), count)
        ends = np.cumsum(count)
        row = order.take(np.arange(ends[-1] if len(ends) else 0) + np.repeat(begin - ends + count, count))
        dist = np.bitwise_count(self.words.take(row, axis=0) ^ q_words.take(query, axis=0))
        dist = dist[:, 0].astype(np.int64) if dist.shape[1] == 1 else dist.sum(axis=1, dtype=np.int64)
        near = dist <= self.radius
        return row[near], query[near], dist[near]


def _plan(n: int, n_bits: int, radius: int) -> tuple[int, list[int]]:
    """(chunk width, per-chunk radii) of least estimated cost per query for ``n`` indexed codes:
    lookups (flipped keys) plus codes found in them."""
    best = None
    for m in range(1, n_bits + 1):
        width = min(n_bits // m, MAX_CHUNK_BITS)
        spare = max(radius + 1 - m, 0)  # radii summing to this leave a chunk within its radius
        radii = [spare // m + (c < spare % m) for c in range(m)]
        if max(radii) > width:
            continue
        lookups = sum(sum(math.comb(width, k) for k in range(r + 1)) for r in radii)
        cost = lookups * (1 + n / (1 << width))
        if best is None or cost < best[0]:
            best = (cost, width, radii)
    return best[1], best[2]


def _keys(bits: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """The chunk key of each row of unpacked ``bits``: its bits at ``columns`` (at most 64) as an integer."""
    packed = np.packbits(bits[:, columns], axis=1, bitorder="little")
    wide = np.zeros((len(bits), 8), np.uint8)
    wide[:, :packed.shape[1]] = packed
    return wide.view("<u8")[:, 0].astype(np.int64)


def _flip_masks(width: int, r: int) -> np.ndarray:
    """Every ``width``-bit mask of at most ``r`` set bits (the keys within ``r`` bits of a key are its XORs)."""
    return np.array([sum(1 << b for b in bits) for k in range(r + 1)
                     for bits in itertools.combinations(range(width), k)], np.int64)


def two_nearest(base: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distances, rows), each (M, 2): the two base codes nearest to each query (row -1 where the
    base has fewer)."""
    return _flat(base).search(np.ascontiguousarray(queries), 2)
