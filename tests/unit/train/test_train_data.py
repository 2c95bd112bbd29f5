"""Folder labels, splits, class-balanced batches and augmentation of the training data."""

import numpy as np
import pytest
from PIL import Image

from lookalike.train import data


def _tree(root, layout):
    for rel in layout:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (len(rel) * 9 % 255, 0, 0)).save(path)


def test_labels_are_parent_folders_relative_to_the_root(tmp_path):
    _tree(tmp_path, ["roses/a.jpg", "roses/b.png", "tulips/c.jpg", "wild/daisy/d.jpg", "loose.jpg",
                     ".lookalike/e.jpg"])
    found = data.scan(tmp_path)
    assert found.classes == ["roses", "tulips", "wild/daisy"]
    assert [p.split("/")[-1] for p in found.paths] == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    assert found.labels == ["roses", "roses", "tulips", "wild/daisy"]
    assert found.unlabelled == 1  # loose.jpg sits in the root; hidden folders are never scanned


def test_scan_needs_two_classes(tmp_path):
    _tree(tmp_path, ["only/a.jpg", "only/b.jpg"])
    with pytest.raises(ValueError, match="two class folders"):
        data.scan(tmp_path)


def test_a_split_of_linked_class_folders_says_how_to_include_them_and_is_labelled_by_the_links(tmp_path):
    import os

    _tree(tmp_path / "all", ["r/a.jpg", "r/b.jpg", "t/c.jpg", "d/e.jpg"])
    (tmp_path / "split").mkdir()
    os.symlink(tmp_path / "all" / "r", tmp_path / "split" / "roses")
    os.symlink(tmp_path / "all" / "t", tmp_path / "split" / "tulips")
    with pytest.raises(ValueError) as e:
        data.scan(tmp_path / "split")
    assert str(e.value).endswith("found 0; left out: 2 symbolic links to outside the folder "
                                 "(--follow-links includes them)")
    found = data.scan(tmp_path / "split", follow_links=True)
    assert found.classes == ["roses", "tulips"] and found.labels == ["roses", "roses", "tulips"]
    assert found.paths[0] == str(tmp_path / "split" / "roses" / "a.jpg")


def test_data_below_the_documented_advice_is_described():
    def classes(n, per_class):
        return data.LabelledImages("/r", [f"/r/{c}/{i}" for c in range(n) for i in range(per_class)],
                                   np.repeat(np.arange(n), per_class), [str(c) for c in range(n)])

    assert data.below_advice(classes(25, 12)) == (
        "25 classes of 12 images (the median), of which 5 classes (60 images) held out for validation: less than "
        "the advice of 20 or more classes of 20-40 images (docs/training.md); expect validation scores too coarse "
        "to tell settings apart, and little gain")
    assert data.below_advice(classes(12, 30), "none").startswith("12 classes of 30 images (the median): less")
    assert data.below_advice(classes(20, 20), "images") is None and data.below_advice(classes(60, 40)) is None
    assert data.below_advice(classes(19, 40)) is not None and data.below_advice(classes(40, 19)) is not None


def test_subset_renumbers_classes():
    full = data.LabelledImages("/r", ["/r/a/1", "/r/b/2", "/r/c/3", "/r/c/4"], np.array([0, 1, 2, 2]), ["a", "b", "c"])
    sub = full.subset(np.array([1, 3]))
    assert sub.classes == ["b", "c"] and sub.codes.tolist() == [0, 1] and sub.paths == ["/r/b/2", "/r/c/4"]


def test_split_by_classes_holds_out_whole_classes():
    codes = np.repeat(np.arange(10), 5)
    train, val = data.split(codes, "classes", 0.2, seed=3)
    assert len(set(codes[val])) == 2 and not set(codes[train]) & set(codes[val])
    assert sorted([*train, *val]) == list(range(50))
    assert data.split(codes, "classes", 0.2, seed=3)[1].tolist() == val.tolist()  # seeded


def test_split_by_images_keeps_every_class_in_training():
    codes = np.array([0] * 10 + [1] * 5 + [2] * 2)
    train, val = data.split(codes, "images", 0.2, seed=0)
    assert np.bincount(codes[val], minlength=3).tolist() == [2, 1, 0]
    assert set(codes[train]) == {0, 1, 2}


def test_split_none_and_errors():
    codes = np.repeat(np.arange(3), 4)
    train, val = data.split(codes, "none")
    assert train.size == 12 and val.size == 0
    with pytest.raises(ValueError, match="too few"):
        data.split(codes, "classes", 0.5)
    with pytest.raises(ValueError, match="unknown validation split"):
        data.split(codes, "pixels", 0.2)


def test_balanced_batches_draw_equal_images_per_class():
    codes = np.array([0] * 50 + [1] * 3 + [2] * 10 + [3] * 10)
    batches = list(data.balanced_batches(codes, 8, 4, np.random.default_rng(0)))
    assert len(batches) == 10  # ceil(73 / 8)
    for b in batches:
        counts = np.bincount(codes[b], minlength=4)
        assert sorted(counts.tolist()) == [0, 0, 4, 4]
        big = [c for c in range(4) if counts[c] and np.bincount(codes, minlength=4)[c] >= 4]
        assert all(len(set(b[codes[b] == c].tolist())) == 4 for c in big)  # no repeats when a class has enough
    seen = np.bincount(codes[np.concatenate(batches)], minlength=4)
    assert seen.min() > 0 and seen[1] > 3  # the 3-image class is drawn as often as the others


def test_crop_box_and_augment():
    rng = np.random.default_rng(0)
    for _ in range(200):
        left, top, right, bottom = data.crop_box(rng, 300, 200, (0.3, 1.0))
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        area = (right - left) * (bottom - top)
        assert 0.3 - 1e-9 <= area <= 1 + 1e-9
        aspect = (right - left) * 300 / ((bottom - top) * 200)
        assert 3 / 4 - 1e-9 <= aspect <= 4 / 3 + 1e-9
    img = Image.fromarray(np.arange(300 * 200 * 3, dtype=np.uint8).reshape(200, 300, 3))
    out = data.augment(img, 64, rng)
    assert out.size == (64, 64) and out.mode == "RGB"


def test_per_class_sample_takes_up_to_k_of_every_class():
    codes = np.array([0] * 10 + [1] * 2 + [2] * 5)
    picked = data.per_class(codes, 3, np.random.default_rng(0))
    assert picked.tolist() == sorted(picked.tolist())
    assert np.bincount(codes[picked]).tolist() == [3, 2, 3] and len(set(picked.tolist())) == 8
