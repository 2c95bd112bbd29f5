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


def test_two_nearest_worked_by_hand_with_minus_one_past_the_base():
    base = np.array([[0b0000_0000], [0b0000_0111], [0b1111_1111]], np.uint8)
    queries = np.array([[0b0000_0001], [0b1111_1110]], np.uint8)
    distances, rows = hamming.two_nearest(base, queries)
    assert distances.tolist() == [[1, 2], [1, 6]] and rows.tolist() == [[0, 1], [2, 1]]  # 11111110 ^ 00000111: 6 bits
    distances, rows = hamming.two_nearest(base[:1], queries)
    assert rows.tolist() == [[0, -1], [0, -1]] and distances[:, 0].tolist() == [1, 7]


def test_codes_of_any_integer_type_are_searched_as_bytes_and_answered_as_int64(monkeypatch):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    probes = np.concatenate([base[:5], rng.integers(0, 256, (5, 8), dtype=np.uint8)])
    want = hamming.within(base, probes, 20, flat=True)
    for flat_pairs in (hamming.FLAT_PAIRS, 0):  # every pair compared, and the multi-index search
        monkeypatch.setattr(hamming, "FLAT_PAIRS", flat_pairs)
        got = hamming.within(base.astype(np.int64), probes.astype(np.int64), 20, workers=1)
        assert all(a.dtype == np.int64 for a in got)
        assert [a.tolist() for a in got] == [a.tolist() for a in want]
        got = hamming.within(probes.astype(np.int32), base.astype(np.int32), 20, workers=1)  # more base than probes
        assert _as_set(got) == {(b, p, d) for p, b, d in zip(*(a.tolist() for a in want))}


def test_every_pair_is_compared_up_to_exactly_flat_pairs_and_for_codes_not_a_multiple_of_8_bytes(monkeypatch):
    made = []

    class Counted(hamming.MultiIndex):
        def __init__(self, codes, radius):
            made.append(len(codes))
            super().__init__(codes, radius)

    monkeypatch.setattr(hamming, "MultiIndex", Counted)
    monkeypatch.setattr(hamming, "FLAT_PAIRS", 8)
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    hamming.within(codes[:4], codes[:2], 64)  # 8 pairs: compared
    hamming.within(codes[:8], codes[:1], 64, flat=True)
    assert made == []
    assert len(hamming.within(codes[:3], codes[:3], 64)[0]) == 9 and made == [3]  # 9 pairs: the multi-index
    odd = rng.integers(0, 256, (20, 9), dtype=np.uint8)  # 72-bit codes: no 64-bit words to index
    found = hamming.within(odd, odd, 72)
    assert len(found[0]) == 400 and made == [3] and (found[2][found[0] == found[1]] == 0).all()


def test_a_pool_thread_made_single_threaded_runs_faiss_on_one_thread():
    import threading

    import faiss

    seen = []

    def work():
        faiss.omp_set_num_threads(4)
        hamming.single_threaded()
        seen.append(faiss.omp_get_max_threads())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [1]
