"""Learned whitening (train/whiten.py): what it does to known within-class spreads, and the module
that applies it, against values worked out by hand."""

import numpy as np
import pytest
import torch

from lookalike.train import whiten


def spread_classes(spread, n=4000, seed=0):
    """Three classes around far-apart centres, each spread along the same rotated axes with standard
    deviations ``spread``; the rotation."""
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((len(spread), len(spread))))
    codes = np.repeat(np.arange(3), n)
    x = rng.standard_normal((3, len(spread)))[codes] * 10 + (rng.standard_normal((3 * n, len(spread))) * spread) @ rotation.T
    return x, codes, rotation


def within_class_covariance(x, codes):
    residuals = np.concatenate([x[codes == c] - x[codes == c].mean(0) for c in np.unique(codes)])
    return residuals.T @ residuals / len(residuals)


def test_full_whitening_leaves_the_same_spread_in_every_direction():
    x, codes, _ = spread_classes([0.5, 1.0, 2.0, 4.0])  # variances 0.25 to 16
    _, matrix = whiten.fit(x, codes, 1.0)
    # 12,000 images in 4 dimensions: the shrinkage is slight, the spread the identity within a few %
    assert np.allclose(within_class_covariance(x @ matrix, codes), np.eye(4), atol=0.03)


def test_half_whitening_leaves_the_square_root_of_each_directions_spread():
    x, codes, rotation = spread_classes([0.5, 1.0, 2.0, 4.0])
    _, matrix = whiten.fit(x, codes, 0.5)
    spread = rotation.T @ within_class_covariance(x @ matrix, codes) @ rotation  # back on the class axes
    assert np.allclose(spread, np.diag([0.5, 1.0, 2.0, 4.0]), atol=0.05 * 4)
    assert np.allclose(np.diag(spread) / [0.5, 1.0, 2.0, 4.0], 1, atol=0.05)


def test_power_zero_only_centres_on_the_mean_of_every_image():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [2.0, 4.0], [6.0, 2.0]])
    mean, matrix = whiten.fit(x, np.array([0, 0, 1, 1, 2]), 0.0)
    assert np.allclose(mean, [2.0, 2.0]) and np.allclose(matrix, np.eye(2))


def test_a_class_of_one_image_adds_nothing_to_the_spread():
    x, codes, _ = spread_classes([0.5, 1.0, 2.0], n=50)
    _, without = whiten.fit(x, codes, 1.0)
    mean, with_one = whiten.fit(np.vstack([x, [100.0, -100.0, 50.0]]), np.append(codes, 7), 1.0)
    assert np.allclose(with_one, without) and np.allclose(mean, np.vstack([x, [100.0, -100.0, 50.0]]).mean(0))


@pytest.mark.parametrize("codes", [[0, 1, 2, 3], [0, 0, 1, 2]])  # no class of two; a single pair
def test_fewer_than_two_images_beyond_each_class_first_are_refused_in_one_line(codes):
    with pytest.raises(ValueError) as e:
        whiten.fit(np.eye(4), np.array(codes), 0.5)
    assert str(e.value) == "whitening needs a training class of three images or two classes of two: use --whiten 0"
    with pytest.raises(ValueError):
        whiten.check_classes(np.array(codes))


@pytest.mark.parametrize("codes", [[0, 0, 0, 1], [0, 0, 1, 1], [5, 2, 2, 5]])  # a class of three; two of two
def test_a_class_of_three_or_two_classes_of_two_are_enough(codes):
    whiten.check_classes(np.array(codes))
    x = np.array([[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [5.0, 5.0, 5.0], [5.0, 4.0, 8.0]])  # two directions
    assert np.isfinite(whiten.fit(x, np.array(codes), 0.5)[1]).all()


def test_a_direction_no_image_varied_in_is_kept_not_blown_up():
    rng = np.random.default_rng(1)
    x = np.zeros((40, 3))
    x[:, :2] = rng.standard_normal((40, 2))  # the third coordinate never varies
    _, matrix = whiten.fit(x, np.repeat([0, 1], 20), 1.0)
    assert np.isfinite(matrix).all() and abs(matrix[2, 2]) < 10 * abs(matrix[:2, :2]).max()


def test_the_module_centres_maps_and_normalises():
    module = whiten.Whitening(np.array([1.0, 0.0]), np.diag([2.0, 1.0]))
    got = module(torch.tensor([[1.0, 1.0], [3.0, 0.0], [2.0, 2.0]]))
    # (x - mean) @ matrix: (0, 1), (4, 0), (2, 2); then each to unit length
    assert torch.allclose(got, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.5 ** 0.5, 0.5 ** 0.5]]))
    assert {k: v.dtype for k, v in module.state_dict().items()} == {"matrix": torch.float32, "offset": torch.float32}


def test_float32_embeddings_are_whitened_in_float64():
    x, codes, _ = spread_classes([0.5, 1.0, 2.0, 4.0], n=200)
    x32 = x.astype(np.float32)  # as the training loop embeds them
    mean, matrix = whiten.fit(x32, codes, 0.5)
    want_mean, want_matrix = whiten.fit(x32.astype(np.float64), codes, 0.5)
    assert mean.dtype == matrix.dtype == np.float64
    assert np.array_equal(mean, want_mean) and np.array_equal(matrix, want_matrix)


@pytest.mark.parametrize("x", [
    [[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [5.0, 5.0, 5.0], [7.0, 6.0, 5.0]],  # two pairs, one same step
    [[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [5.0, 5.0, 5.0]],  # two pairs of identical images: none
])
def test_a_spread_in_too_few_directions_to_invert_is_refused_not_made_nan(x):
    # every residual is +-d: the Ledoit-Wolf estimate sees no sampling noise and does not shrink
    # d d^T, whose inverse square root does not exist (steps of other lengths would show noise)
    with pytest.raises(ValueError) as e:
        whiten.fit(np.array(x), np.array([0, 0, 1, 1]), 0.5)
    assert str(e.value) == ("whitening needs more spread within the training classes than they have (identical "
                            "images, or pairs that all differ by one same step, are not enough): use --whiten 0")
    assert np.allclose(whiten.fit(np.array(x), np.array([0, 0, 1, 1]), 0.0)[1], np.eye(3))  # power 0: nothing to invert


def test_a_plane_of_embeddings_whose_pairs_differ_in_one_coordinate_is_refused_at_the_smallest_value():
    # residuals +-(0.5, 0): the covariance is exactly diag(0.25, 0), no shrinkage; of its two values
    # only the smaller, 0, says it cannot be inverted (the larger passes any test against itself)
    x = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [6.0, 5.0]])
    with pytest.raises(ValueError, match="^whitening needs more spread"):
        whiten.fit(x, np.array([0, 0, 1, 1]), 0.5)
    line = np.array([[0.0], [1.0], [5.0], [6.0]])  # one dimension: the same pairs span all of it
    assert np.allclose(whiten.fit(line, np.array([0, 0, 1, 1]), 1.0)[1], [[2.0]])  # 0.25 ** -0.5
