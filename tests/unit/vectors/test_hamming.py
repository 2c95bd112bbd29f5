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


@pytest.mark.parametrize("radius, width", [(0, 22), (1, 22), (2, 21), (3, 16), (4, 12)])
def test_a_small_radius_over_few_codes_is_looked_up_as_radius_plus_one_exact_keys(radius, width):
    # Few codes (100): a lookup costs more than the codes it finds, so the fewest lookups win. A chunk
    # searched within r > 0 bits needs 1 + width + ... lookups (> 22); radius + 1 chunks within 0 bits
    # need radius + 1 (pigeonhole: one of them is equal), each as wide as 64 bits allow, at most 22.
    assert hamming._plan(100, 64, radius) == (width, [0] * (radius + 1))


@pytest.mark.parametrize("n", [100, 20_000, 10_000_000])
def test_chunk_radii_sum_to_exactly_what_the_pigeonhole_needs_and_differ_by_at_most_one(n):
    for radius in range(0, 40):
        width, radii = hamming._plan(n, 64, radius)
        m = len(radii)
        assert sum(radii) == max(radius + 1 - m, 0), (radius, radii)  # any more is lookups for nothing
        assert max(radii) - min(radii) <= 1 and radii == sorted(radii, reverse=True) and max(radii) <= width
        assert m * width <= 64


def test_a_radius_as_wide_as_twice_the_code_finds_every_pair_through_the_multi_index(monkeypatch):
    # 127 bits around a 64-bit code: only 64 one-bit chunks, each within 1 bit, leave a chunk within
    # its radius (64 chunks, radii summing to 127 + 1 - 64 = 64); every pair is then found.
    assert hamming._plan(50, 64, 127) == (1, [1] * 64)
    monkeypatch.setattr(hamming, "FLAT_PAIRS", 0)
    codes = np.random.default_rng(5).integers(0, 256, (30, 8), dtype=np.uint8)
    codes[0], codes[1] = 0, 255  # 64 bits apart
    found = hamming.within(codes, codes[:3], 127, workers=1)
    assert len(found[0]) == 90 and found[2][(found[0] == 0) & (found[1] == 1)].tolist() == [64]


def test_bits_constant_one_way_or_the_other_are_left_out_of_every_chunk():
    rng = np.random.default_rng(6)
    bits = np.unpackbits(rng.integers(0, 256, (5000, 8), dtype=np.uint8), axis=1)
    bits[:, [3, 40]] = 0
    bits[:, [5, 62]] = 1
    index = hamming.MultiIndex(np.packbits(bits, axis=1), 4)  # 5 chunks of 12 bits: 60 bits of the 64
    used = np.concatenate([columns for columns, _ in index.chunks]).tolist()
    assert sorted(used) == sorted(set(range(64)) - {3, 40, 5, 62})


def test_probes_with_no_code_near_them_find_nothing_through_the_multi_index(monkeypatch):
    monkeypatch.setattr(hamming, "FLAT_PAIRS", 0)
    base = np.full((50, 8), 255, np.uint8)  # every chunk key all ones: the table's last
    far = np.zeros((3, 8), np.uint8)  # key 0, before every key in the table, and nothing at it
    for a, b in ((base, far), (far, base)):
        found = hamming.within(a, b, 4, workers=1)
        assert [len(x) for x in found] == [0, 0, 0] and all(x.dtype == np.int64 for x in found)


def test_distances_of_codes_longer_than_64_bits_are_int64_through_the_multi_index(monkeypatch):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 256, (300, 16), dtype=np.uint8)
    probes = codes[:16] ^ np.eye(16, dtype=np.uint8)  # code i with bit 7 of its byte i changed
    want = hamming.within(codes, probes, 30, flat=True)
    monkeypatch.setattr(hamming, "FLAT_PAIRS", 0)
    got = hamming.within(codes, probes, 30, workers=1)
    assert all(a.dtype == np.int64 for a in got) and [a.tolist() for a in got] == [a.tolist() for a in want]
    assert got[2][got[0] == got[1]].tolist() == [1] * 16
