"""Hamming range search: the multi-index hash search finds exactly what comparing every pair finds."""

import numpy as np
import pytest

from lookalike.vectors import hamming


def _planted(rng, n, n_bytes, radius):
    """n random codes, then copies of some of them at every distance from 0 to radius + 2 bits, and
    a skewed bit layout (one constant bit, a few nearly constant) like a perceptual hash's."""
    codes = rng.integers(0, 256, (n, n_bytes), dtype=np.uint8)
    bits = np.unpackbits(codes, axis=1)
    bits[:, 0] = 1
    bits[:, 1:4] = rng.random((n, 3)) < 0.9
    copies = []
    for k in range(radius + 3):
        for source in rng.choice(n, 6, replace=False):
            copy = bits[source].copy()
            copy[rng.choice(len(copy), k, replace=False)] ^= 1
            copies.append(copy)
    return np.packbits(np.concatenate([bits, np.array(copies)]), axis=1)


def _as_set(found):
    return set(zip(*(a.tolist() for a in found)))


@pytest.mark.parametrize("n, n_bytes, radius", [(3000, 8, 10), (3000, 8, 8), (400, 8, 4), (3000, 8, 0),
                                                (1500, 16, 12)])
def test_multi_index_search_finds_every_pair_within_the_radius(monkeypatch, n, n_bytes, radius):
    rng = np.random.default_rng(radius + n_bytes)
    base = _planted(rng, n, n_bytes, radius)
    probes = np.concatenate([base[rng.choice(len(base), 300, replace=False)], _planted(rng, 200, n_bytes, radius)])
    brute = hamming.within(base, base, radius, flat=True)
    assert set(brute[2].tolist()) == set(range(radius + 1))  # planted pairs at every distance up to the radius
    monkeypatch.setattr(hamming, "FLAT_PAIRS", 0)
    for a, b in ((base, base), (base, probes), (probes, base)):  # the larger or the smaller side indexed
        want = hamming.within(a, b, radius, flat=True)
        got = hamming.within(a, b, radius, workers=2)
        assert _as_set(got) == _as_set(want)
        assert np.lexsort((got[1], got[0])).tolist() == list(range(len(got[0])))  # by probe row, then base row


def test_chunks_leave_out_the_most_constant_bits_and_cover_the_radius():
    rng = np.random.default_rng(0)
    codes = _planted(rng, 20_000, 8, 10)
    index = hamming.MultiIndex(codes, 10)
    used = np.concatenate([columns for columns, _ in index.chunks])
    radii = [r for _, r in index.chunks]
    assert sum(r + 1 for r in radii) > 10  # pigeonhole: some chunk is within its radius
    assert len(set(used.tolist())) == len(used) and (0 not in used or len(used) == 64)
