"""The metrics' maths on the inputs callers really pass: float32 rows, integer rows, small norms,
zero vectors, identical and opposite vectors (where rounding leaves the [0, 2] range), and
the option checks' messages."""

import numpy as np
import pytest

from lookalike.vectors.metric import METRICS, MetricName, Mode, check_query, get_metric, squared_norms

COSINE, L2 = METRICS["cosine"], METRICS["l2"]


def random_rows(n=200, dim=16, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(dtype)


def test_rows_for_a_backend_are_float32_and_c_contiguous_whatever_they_came_as():
    x = np.arange(12.0).reshape(3, 4)[:, ::2]  # float64, not contiguous
    for metric in (COSINE, L2):
        rows = metric.normalise(x)
        assert rows.dtype == np.float32 and rows.flags.c_contiguous
    np.testing.assert_array_equal(L2.normalise(x), [[0, 2], [4, 6], [8, 10]])


def test_cosine_rows_are_unit_length_small_ones_too_and_zero_rows_stay_zero():
    x = np.array([[0.03, 0.04], [3.0, 4.0], [0.0, 0.0]], np.float32)
    np.testing.assert_allclose(COSINE.normalise(x), [[0.6, 0.8], [0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(COSINE.far_query(x), [[-0.6, -0.8], [-0.6, -0.8], [0.0, 0.0]], rtol=1e-6)


def test_backend_scores_to_distances_by_hand():
    # cosine: inner products of unit rows -> 1 - s; far queries (-q) score -s -> 1 + (-s)
    np.testing.assert_allclose(COSINE.to_distance(np.array([1.0, 0.25, -1.0])), [0.0, 0.75, 2.0])
    np.testing.assert_allclose(COSINE.far_distance(np.array([-1.0, -0.25, 1.0])), [0.0, 0.75, 2.0])
    # l2: squared distances, a rounding below zero read as zero
    np.testing.assert_allclose(L2.to_distance(np.array([0.25, 0.0, 4.0, -1e-7])), [0.5, 0.0, 2.0, 0.0])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_paired_is_float64_precise_on_float32_rows(metric):
    # near-duplicates: b is a rotated by 1e-3 rad, so 1 - cos = 1 - cos(1e-3) ~ 5e-7 and |a - b| ~ 5e-3,
    # both worked out on the float32 values in float64; float32 arithmetic would be off by ~10 %
    a = random_rows(50)
    angle = 1e-3
    b = a.copy()
    b[:, 0], b[:, 1] = (np.cos(angle) * a[:, 0] - np.sin(angle) * a[:, 1],
                        np.sin(angle) * a[:, 0] + np.cos(angle) * a[:, 1])
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        want = 1 - (a64 * b64).sum(1) / np.sqrt((a64 ** 2).sum(1) * (b64 ** 2).sum(1))
    else:
        want = np.sqrt(((a64 - b64) ** 2).sum(1))
    for first, second in ((a, b), (a, b64), (a64, b)):
        got = METRICS[metric].paired(first, second)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    cheap = METRICS[metric].paired(a64, b64, np.float32)  # what range re-scoring uses
    assert cheap.dtype == np.float64
    np.testing.assert_allclose(cheap, want, rtol=1e-5, atol=1e-6)


def test_cosine_of_small_vectors_is_their_angle():
    # norms 0.05 and 0.02: the product 1e-3 must not be floored to a larger constant
    a = np.array([[0.03, 0.04], [0.03, 0.04], [0.0, 0.02]])
    b = np.array([[0.0, 0.02], [-0.03, -0.04], [0.0, 0.02]])
    np.testing.assert_allclose(COSINE.paired(a, b), [0.2, 2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(COSINE.pairwise(a[:1], b), [[0.2, 2.0, 0.2]], atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_stays_within_0_and_2_where_rounding_would_leave_it(dtype):
    # a vector against itself rounds to 1 - cos slightly below 0 for some rows, against its
    # opposite slightly above 2: both are clipped (a negative distance would sort before exact matches)
    x = random_rows(200, dtype=dtype)
    # paired: a row against 3x itself in float32 (the norms no longer cancel exactly: about half round past)
    for got in (COSINE.pairwise(x, x), COSINE.paired(x, x), COSINE.paired(x, 3 * x, np.float32)):
        assert got.min() == 0.0
        np.testing.assert_allclose(np.diagonal(got) if got.ndim == 2 else got, 0.0, atol=1e-6)
    for got in (COSINE.pairwise(x, -x), COSINE.paired(x, -x), COSINE.paired(x, -3 * x, np.float32)):
        assert got.max() == 2.0
        np.testing.assert_allclose(np.diagonal(got) if got.ndim == 2 else got, 2.0, atol=1e-6)


def test_squared_norms_are_float32_and_exact_for_integer_rows():
    # uint8 rows (say, a user's colour histograms): 200^2 + 100^2 = 50000 overflows uint8 arithmetic
    x = np.array([[200, 100], [3, 4], [0, 0]], np.uint8)
    norms = squared_norms(x, chunk_rows=2)
    assert norms.dtype == np.float32
    np.testing.assert_array_equal(norms, [50000.0, 25.0, 0.0])


def test_squared_norms_cover_every_row_over_several_chunks():
    x = np.arange(1, 8, dtype=np.float32)[:, None] * np.array([[3.0, 4.0]], np.float32)  # row k: k * (3, 4)
    np.testing.assert_array_equal(squared_norms(x, chunk_rows=2), 25.0 * np.arange(1, 8) ** 2)  # 4 chunks


def test_metric_by_name_enum_or_instance_and_the_choices_in_errors():
    for name in ("cosine", "l2"):
        assert get_metric(name) is get_metric(MetricName(name)) is get_metric(METRICS[name]) is METRICS[name]
    with pytest.raises(ValueError, match=r"^unknown metric 'dot'; choose from: cosine, l2$"):
        get_metric("dot")
    with pytest.raises(ValueError, match=r"^unknown mode 'middle'; choose from: nearest, farthest, random$"):
        check_query("cosine", "middle", 3)
    assert check_query("l2", "farthest", 1) == (L2, Mode.farthest)  # k = 1 is the smallest valid k
    assert check_query(MetricName.cosine, Mode.random, 2) == (METRICS["cosine"], Mode.random)  # typed: as given
    with pytest.raises(ValueError, match=r"^k must be at least 1, not 0$"):
        check_query("l2", "nearest", 0)
