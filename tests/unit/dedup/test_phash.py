"""Dihedral perceptual hashes: one decode, eight transforms, candidate pairs and the cache."""

import os

import cv2
import numpy as np
from PIL import Image, ImageOps

from helpers import sample_photo
from lookalike.dedup import phash


def test_hashes_match_the_dct_of_each_transformed_thumbnail():
    thumbs = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32) * 255
    table = phash.hashes(thumbs)
    assert table.shape == (3, 8, 8) and table.dtype == np.uint8
    for n in range(3):
        for t in range(8):
            view = np.rot90(thumbs[n], t % 4)
            view = np.ascontiguousarray(view[:, ::-1] if t >= 4 else view)
            low = cv2.dct(view)[:8, :8]
            assert (np.packbits(low > np.median(low)) == table[n, t]).all()


def _bits(a, b):
    return int(np.unpackbits(a ^ b).sum())


def test_a_rotated_or_flipped_copy_matches_under_its_transform(tmp_path):
    img = sample_photo("astronaut")
    original = phash.image_hashes(img)
    for edit, t in [(lambda i: i.transpose(Image.Transpose.ROTATE_90), 3), (ImageOps.mirror, 4),
                    (lambda i: i.transpose(Image.Transpose.ROTATE_180), 2)]:
        edit(img).save(tmp_path / "v.jpg", quality=85)
        copy = phash.image_hashes(str(tmp_path / "v.jpg"))
        assert _bits(copy[t], original[0]) <= 6
        assert _bits(copy[0], original[0]) > 20  # untransformed, the copy does not match
    other = phash.image_hashes(sample_photo("coffee"))
    assert min(_bits(other[t], original[0]) for t in range(8)) > phash.RADIUS


def test_pairs_each_once_at_the_closest_transform():
    photos = [sample_photo(n) for n in ("astronaut", "coffee", "rocket")]
    thumbs = np.stack([phash.thumbnail(p) for p in photos] + [phash.thumbnail(photos[0].transpose(Image.Transpose.ROTATE_90))])
    table = phash.hashes(thumbs)
    i, j, t, bits = phash.pairs(table)
    assert sorted(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist())) == [(0, 3)]
    assert phash.TRANSFORMS[t[0]].startswith("rotated") and bits[0] <= 6
    rows, query, _, _ = phash.pairs(table[:3], queries=table[3:])
    assert rows.tolist() == [0] and query.tolist() == [0]


def test_hash_store_computes_once_and_survives_a_read_only_folder(tmp_path):
    photo = tmp_path / "a.jpg"
    sample_photo("rocket").save(photo)
    store = phash.HashStore(tmp_path)
    first, ok = store.get(["c7"], [str(photo)])
    assert ok.tolist() == [True] and (tmp_path / "hashes.sqlite").exists()
    assert (first[0] == phash.image_hashes(str(photo))).all()
    os.remove(photo)  # from now on only the cache can answer
    again, ok = phash.HashStore(tmp_path).get(["c7", "c7"], [str(photo), None])
    assert ok.tolist() == [True, True] and (again == first).all()
    gone, ok = phash.HashStore(tmp_path).get(["c8"], [str(photo)])
    assert ok.tolist() == [False] and not gone.any()
    broken = tmp_path / "cannot-write"
    (broken / "hashes.sqlite").mkdir(parents=True)  # not a database (like a read-only index: no writes)
    store = phash.HashStore(broken)
    sample_photo("rocket").save(tmp_path / "b.jpg")
    hashes, ok = store.get(["c1"], [str(tmp_path / "b.jpg")])
    assert ok.tolist() == [True] and (hashes == first).all() and "c1" in store.memory
    assert (store.get(["c1"], [None])[0] == first).all()  # from memory now
    phash.store_for(str(broken)).get(["c2"], [str(tmp_path / "b.jpg")])
    assert phash.store_for(str(broken)).get(["c2"], [None])[1].tolist() == [True]  # the process keeps it


def test_indexing_hashes_every_new_file_from_the_bytes_it_reads(tmp_path):
    from lookalike.api import Index

    root = tmp_path / "photos"
    root.mkdir()
    for name in ("rocket", "coffee"):
        sample_photo(name).save(root / f"{name}.jpg")
    want = {name: phash.image_hashes(str(root / f"{name}.jpg")) for name in ("rocket", "coffee")}
    with Index.open(tmp_path / "ix", create=True) as idx:
        idx.index(root)
        ids, _ = idx.vectors()
        catalog = idx.collection.store.columns(ids)
    for name in want:
        os.remove(root / f"{name}.jpg")  # only what indexing stored can answer now
    table, ok = phash.HashStore(tmp_path / "ix").get(catalog["hash"], [None] * len(ids))
    assert ok.all()
    for row, path in zip(table, catalog["path"]):
        assert (row == want[os.path.basename(path)[:-4]]).all()


def test_pairs_equal_comparing_every_hash_with_copies_under_every_transform(monkeypatch):
    # 600 random pictures' hash sets, then 160 copies: each a picture seen under one of the eight
    # transforms (its transform-t hash is the source's untransformed one) with 0-12 bits changed.
    rng = np.random.default_rng(4)
    table = rng.integers(0, 256, (760, 8, 8), dtype=np.uint8)
    for k, copy in enumerate(range(600, 760)):
        bits = np.unpackbits(table[k * 3, 0])
        bits[rng.choice(64, k % 13, replace=False)] ^= 1
        table[copy, k % 8] = np.packbits(bits)
    words = table.view(np.uint64)[..., 0]  # (image, transform)
    apart = np.bitwise_count(words[:, :, None] ^ words[None, None, :, 0]).astype(np.int64)  # (image, transform, image)
    closest = apart.min(axis=1)
    np.fill_diagonal(closest, 99)
    lo, hi = np.nonzero(np.triu(np.minimum(closest, closest.T) <= phash.RADIUS))
    monkeypatch.setattr(phash.hamming, "FLAT_PAIRS", 0)  # the multi-index search, not every pair compared
    i, j, t, bits = phash.pairs(table)
    assert set(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist())) == set(zip(lo.tolist(), hi.tolist()))
    assert len(lo) >= 8 * 8  # copies under every transform, up to the radius
    assert set(t.tolist()) == set(range(8))
    assert (apart[j, t, i] == bits).all() and (bits == np.minimum(closest, closest.T)[i, j]).all()


def test_the_dct_rows_are_the_orthonormal_dct_ii_basis_as_opencv_computes_it():
    for n, keep in ((32, 8), (16, 4)):
        basis = cv2.dct(np.eye(n, dtype=np.float32), flags=cv2.DCT_ROWS).T  # row k: the k-th basis vector
        rows = phash._dct_rows(n, keep)
        assert rows.shape == (keep, n) and rows.dtype == np.float32
        np.testing.assert_allclose(rows, basis[:keep], atol=1e-6)


def test_three_copies_under_other_transforms_make_each_of_their_pairs_once():
    thumbs = np.random.default_rng(5).random((1, 32, 32)).astype(np.float32) * 255
    thumbs = np.concatenate([thumbs, np.rot90(thumbs, 1, axes=(1, 2)), thumbs[:, :, ::-1]])  # rotated, mirrored
    table = phash.hashes(thumbs)
    i, j, t, bits = phash.pairs(table)
    assert sorted(zip(np.minimum(i, j).tolist(), np.maximum(i, j).tolist())) == [(0, 1), (0, 2), (1, 2)]
    assert bits.tolist() == [0, 0, 0]
    for a, b, how in zip(i, j, t):  # transform `how` of image b is image a
        assert (table[b, how] == table[a, 0]).all()


def test_hashes_stored_by_an_index_built_before_are_read_from_their_table(tmp_path):
    # hashes.sqlite as indexes already on disk hold it: table dihedral, key column content, 64 bytes a file
    import sqlite3

    bits = bytes(range(64))
    with sqlite3.connect(tmp_path / "hashes.sqlite") as conn:
        conn.execute("CREATE TABLE dihedral (content TEXT PRIMARY KEY, bits BLOB NOT NULL)")
        conn.execute("INSERT INTO dihedral VALUES ('c9', ?)", (bits,))
    conn.close()
    table, ok = phash.HashStore(tmp_path).get(["c9"], [None])
    assert ok.tolist() == [True] and table[0].tobytes() == bits and table.shape == (1, 8, 8)


def test_no_files_give_empty_hashes_of_the_same_types(tmp_path):
    table, ok = phash.HashStore(tmp_path).get([], [])
    assert (table.shape, table.dtype, ok.shape, ok.dtype) == ((0, 8, 8), np.uint8, (0,), np.bool_)


def test_a_store_decodes_only_the_files_it_has_no_hashes_for(tmp_path, monkeypatch):
    photo = tmp_path / "a.jpg"
    sample_photo("rocket").save(photo)
    decoded = []
    real = phash._thumbnail_or_none
    monkeypatch.setattr(phash, "_thumbnail_or_none", lambda path: decoded.append(path) or real(path))
    store = phash.HashStore(None)  # no folder: in memory only
    first, ok = store.get(["c1"], [str(photo)])
    assert ok.tolist() == [True] and decoded == [str(photo)] and store.table is None and "c1" in store.memory
    again, ok = store.get(["c1", "c2"], [str(photo), None])  # known; no path and unknown: nothing to decode
    assert decoded == [str(photo)] and ok.tolist() == [True, False]
    assert (again[0] == first[0]).all() and not again[1].any()


def test_a_thumbnail_is_32_by_32_float32_gray_and_the_dct_keeps_8_of_32_frequencies():
    thumb = phash.thumbnail(sample_photo("rocket"))
    assert thumb.shape == (32, 32) and thumb.dtype == np.float32 and 0 <= thumb.min() < thumb.max() <= 255
    assert phash._dct_rows().shape == (8, 32) and np.allclose(phash._dct_rows(), phash._DCT)
