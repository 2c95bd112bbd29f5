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


def _gradient(width=200, height=120):
    """Red = column, green = row (scaled to 0..255): a crop's pixels tell where in the image they came from."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, np.zeros_like(x)], -1).round().astype(np.uint8))


def test_augment_crops_within_the_scale_and_aspect_asked_and_flips_about_half_the_time():
    """Each output is a crop of the image (found from its gradient) covering ``scale`` of the area at
    an aspect ratio within 3/4..4/3, some portrait and some landscape; about half are mirrored."""
    img, rng = _gradient(), np.random.default_rng(5)
    flips, aspects, areas = 0, [], []
    for _ in range(200):
        out = np.asarray(data.augment(img, 24, rng, scale=(0.5, 0.8)), float)
        red, green = out[..., 0].mean(0), out[..., 1].mean(1)
        flipped = red[0] > red[-1]
        flips += flipped
        left, right = sorted((red[0], red[-1]))
        top, bottom = green[0], green[-1]
        assert top < bottom  # never upside down
        w, h = (right - left) / 255 * 200, (bottom - top) / 255 * 120  # the crop's size in pixels, to a pixel
        areas.append(w * h / (200 * 120))
        aspects.append(w / h)
    assert 70 <= flips <= 130
    assert 0.45 <= min(areas) and max(areas) <= 0.85  # 0.5..0.8 of the area, give or take the edge pixels
    assert 0.7 <= min(aspects) < 0.95 and 1.05 < max(aspects) <= 1.4


def test_a_crop_box_lies_inside_the_image_at_an_aspect_within_the_ratio():
    rng = np.random.default_rng(0)
    boxes = [data.crop_box(rng, 300, 200, scale=(0.6, 1.0)) for _ in range(300)]
    for left, top, right, bottom in boxes:
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1
        assert 0.6 - 1e-9 <= (right - left) * (bottom - top) <= 1
        if (left, top, right, bottom) == (0.0, 0.0, 1.0, 1.0):
            continue  # nothing fitted in ten draws: the whole image, whatever its aspect
        assert 3 / 4 - 1e-9 <= (right - left) * 300 / ((bottom - top) * 200) <= 4 / 3 + 1e-9
    square = [data.crop_box(rng, 200, 200, scale=(0.3, 0.7)) for _ in range(100)]  # every aspect fits
    aspects = [(r - le) / (b - t) for le, t, r, b in square]
    assert 3 / 4 - 1e-9 <= min(aspects) < 0.85 and 1.2 < max(aspects) <= 4 / 3 + 1e-9  # both ends are drawn


def test_a_crop_that_cannot_fit_falls_back_to_the_whole_image_after_ten_draws():
    rng, again = np.random.default_rng(3), np.random.default_rng(3)
    assert data.crop_box(rng, 100, 100, scale=(1.0, 1.0), ratio=(2.0, 2.0)) == (0.0, 0.0, 1.0, 1.0)
    again.uniform(size=20)  # ten draws of an area and a ratio
    assert rng.random() == again.random()


def test_a_class_of_exactly_per_class_images_gives_each_once_per_batch():
    codes = np.array([0] * 4 + [1] * 4 + [2] * 9)
    for batch in data.balanced_batches(codes, 8, 4, np.random.default_rng(1)):
        for c in np.unique(codes[batch]):
            drawn = batch[codes[batch] == c]
            assert drawn.size == 4 and np.unique(drawn).size == 4  # no image twice
    batches = list(data.balanced_batches(codes, 4, 4, np.random.default_rng(2)))  # one class a batch
    assert len(batches) == 5 and all(b.size == 4 and np.unique(codes[b]).size == 1 for b in batches)


def test_per_class_of_no_images_is_an_empty_position_array():
    picked = data.per_class(np.zeros(0, np.int64), 3, np.random.default_rng(0))
    assert picked.dtype == np.int64 and picked.shape == (0,)


def test_validation_fractions_at_and_past_the_ends():
    codes = np.repeat(np.arange(6), 5)
    train, val = data.split(codes, "images", 0)
    assert train.tolist() == list(range(30)) and val.size == 0
    for fraction in (1, 1.5, -0.0 + 1.0):
        with pytest.raises(ValueError, match=rf"^validation fraction must be in \[0, 1\), not {fraction}$"):
            data.split(codes, "classes", fraction)
    assert [a.tolist() for a in data.split(codes)] == [a.tolist() for a in data.split(codes, "classes", 0.2, 0)]


def test_the_advice_counts_one_image_classes_and_says_one_class():
    def images(sizes):
        codes = np.repeat(np.arange(len(sizes)), sizes)
        return data.LabelledImages("/r", [f"/r/{c}/{i}" for i, c in enumerate(codes)], codes,
                                   [str(c) for c in range(len(sizes))])

    # sizes 1, 1, 5, 9: median 3 (a class of one image counts); split by images: the 5 lends 1, the 9 lends 2
    said = data.below_advice(images([1, 1, 5, 9]), "images")
    assert said.startswith("4 classes of 3 images (the median), of which 2 classes (3 images) held out")
    one = data.below_advice(images([4, 4, 4, 4, 1]), "images", fraction=0.25, seed=0)
    assert one.startswith("5 classes of 4 images (the median), of which 4 classes (4 images) held out")
    # held out by classes, with the seed given: the classes drawn are those split draws with that seed
    many = images([1] * 10 + [30] * 10)
    for seed in (1, 2, 3):
        _, val = data.split(many.codes, "classes", 0.2, seed)
        n_classes = np.unique(many.codes[val]).size
        want = "1 class" if n_classes == 1 else f"{n_classes} classes"
        assert f"of which {want} ({val.size} images) held out" in data.below_advice(many, "classes", 0.2, seed)
    assert len({data.below_advice(many, "classes", 0.2, s) for s in range(8)}) > 1  # the seed changes what is held


def test_labels_keep_the_root_through_a_subset(tmp_path):
    _tree(tmp_path, ["a/1.png", "a/2.png", "b/1.png", "c/1.png"])
    images = data.scan(tmp_path)
    assert images.root == str(tmp_path) and images.subset([0, 3]).root == str(tmp_path)
    assert images.subset([0, 3]).classes == ["a", "c"] and images.subset([0, 3]).codes.tolist() == [0, 1]


def test_one_class_folder_is_refused_without_a_left_out_clause_when_nothing_was_left_out(tmp_path):
    _tree(tmp_path, ["a/1.png", "a/2.png"])
    with pytest.raises(ValueError) as caught:
        data.scan(tmp_path)
    assert str(caught.value) == (f"{tmp_path} needs at least two class folders of images (DATA/<class>/*.jpg); "
                                 "found 1")


def test_split_limits_hold_exactly_at_their_edges():
    # by images: a class of exactly 3 lends one image, a class of 2 none; 0.3 of 5 is 1.5, rounded to 2 (even)
    codes = np.array([0] * 3 + [1] * 2 + [2] * 5)
    _, val = data.split(codes, "images", 0.3, seed=0)
    assert np.bincount(codes[val], minlength=3).tolist() == [1, 0, 2]
    # by classes: 4 classes hold out 2 and keep exactly the 2 training needs; 3 classes cannot
    _, val = data.split(np.repeat(np.arange(4), 2), "classes", 0.2, seed=0)
    assert np.unique(np.repeat(np.arange(4), 2)[val]).size == 2
    with pytest.raises(ValueError, match=r"^3 classes are too few to hold out 2 for validation"):
        data.split(np.repeat(np.arange(3), 2), "classes", 0.2)
    # 0.25 of 10 classes is 2.5: rounded to 2 (even), and 0.35 of 10 to 4
    codes = np.repeat(np.arange(10), 2)
    assert [np.unique(codes[data.split(codes, "classes", f, 1)[1]]).size for f in (0.25, 0.35)] == [2, 4]


def test_a_split_holds_out_as_many_different_classes_and_images_as_it_says():
    """Drawn without replacement: exactly round(fraction x N) different classes (at least 2), or
    images of each class, whatever the seed."""
    codes = np.repeat(np.arange(10), 6)
    for seed in range(30):
        _, val = data.split(codes, "classes", 0.3, seed)
        assert np.unique(codes[val]).size == 3 and val.size == 18
        _, val = data.split(codes, "images", 0.5, seed)
        assert np.bincount(codes[val], minlength=10).tolist() == [3] * 10
    with pytest.raises(ValueError) as caught:
        data.split(np.repeat(np.arange(3), 2), "classes", 0.2)
    assert str(caught.value) == "3 classes are too few to hold out 2 for validation (use --val-split images or none)"


def test_the_advice_names_one_class_in_the_singular():
    def images(sizes):
        codes = np.repeat(np.arange(len(sizes)), sizes)
        return data.LabelledImages("/r", [f"/r/{c}/{i}" for i, c in enumerate(codes)], codes,
                                   [str(c) for c in range(len(sizes))])

    assert data.below_advice(images([1, 1, 1, 5]), "images").startswith(
        "4 classes of 1 images (the median), of which 1 class (1 image) held out for validation: less")
    assert data.below_advice(images([5]), "none").startswith("1 class of 5 images (the median): less")
