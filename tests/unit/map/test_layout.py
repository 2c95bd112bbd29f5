"""The map's layout: separated clusters stay apart, the same vectors give the same map, new points
land among their neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.map import layout

pytest.importorskip("umap", reason="the map needs umap-learn (the map extra)")
# Tests marked slow run UMAP: its first call in a process compiles it (numba), about a minute
# on 2 cores.


def clumps(sizes, dim=64, spread=0.05, seed=0):
    """Tight Gaussian clumps around random directions: (vectors, true clump of each row)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((len(sizes), dim))
    x = np.concatenate([c + spread * rng.standard_normal((n, dim)) for c, n in zip(centres, sizes)])
    return x.astype(np.float32), np.repeat(np.arange(len(sizes)), sizes)


@pytest.mark.slow
def test_separated_clumps_stay_separated():
    x, truth = clumps([40, 30, 30, 20])
    xy = layout.lay_out(x)
    assert xy.shape == (120, 2) and xy.dtype == np.float32
    centroids = np.stack([xy[truth == c].mean(axis=0) for c in range(4)])
    nearest = np.argmin(((xy[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == truth).all()  # every point nearer its own clump's middle than any other's
    gaps = [np.linalg.norm(xy[truth == a][:, None] - xy[truth == b][None], axis=-1).min()
            for a in range(4) for b in range(a + 1, 4)]
    widths = [np.linalg.norm(xy[truth == c][:, None] - xy[truth == c][None], axis=-1).max() for c in range(4)]
    assert min(gaps) > 0.1 * max(widths)


@pytest.mark.slow
def test_a_large_map_keeps_clumps_apart_from_a_pca_start_in_fewer_epochs(monkeypatch):
    """Above SEEDED_UP_TO points (lowered here): PCA fitted on a sample of PCA_FIT_ROWS rows, UMAP on
    every core from the PCA start for LARGE_EPOCHS epochs; the clumps still come out apart."""
    monkeypatch.setattr(layout, "SEEDED_UP_TO", 50)
    monkeypatch.setattr(layout, "PCA_FIT_ROWS", 60)
    x, truth = clumps([40, 30, 30, 20], seed=1)
    xy = layout.lay_out(x)
    centroids = np.stack([xy[truth == c].mean(axis=0) for c in range(4)])
    nearest = np.argmin(((xy[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (nearest == truth).all()


def test_umap_settings_small_and_large(monkeypatch):
    """Up to SEEDED_UP_TO points UMAP is seeded on one thread from its spectral start with its own
    epochs; above, every core, the PCA start and LARGE_EPOCHS; the PCA is fitted on PCA_FIT_ROWS rows
    and applied to all, so every row reaches UMAP in PCA_DIMS numbers."""
    import umap

    seen = []

    class Recorder:
        def __init__(self, **options):
            seen.append(options)

        def fit_transform(self, reduced):
            seen[-1]["rows"] = reduced.shape
            return reduced[:, :2]

    monkeypatch.setattr(umap, "UMAP", Recorder)
    monkeypatch.setattr(layout, "SEEDED_UP_TO", 100)
    monkeypatch.setattr(layout, "PCA_FIT_ROWS", 80)
    for sizes in ([50, 50], [60, 61]):
        layout.lay_out(clumps(sizes, seed=2)[0])
    small, large = seen
    assert (small["n_epochs"], small["init"], small["n_jobs"], small["random_state"]) == (None, "spectral", 1, layout.SEED)
    assert (large["n_epochs"], large["init"], large["n_jobs"], large["random_state"]) == (layout.LARGE_EPOCHS, "pca", -1, None)
    assert small["rows"] == (100, layout.PCA_DIMS) and large["rows"] == (121, layout.PCA_DIMS)


@pytest.mark.slow
def test_same_vectors_same_map_and_scale_free():
    x, _ = clumps([30, 30], seed=3)
    first = layout.lay_out(x)
    assert layout.lay_out(x).tobytes() == first.tobytes()
    # the map is of directions (cosine): rows scaled by powers of two (exact in floating point) map alike
    factors = np.resize(np.array([0.5, 2, 4, 1], np.float32), len(x))[:, None]
    assert layout.lay_out(x * factors).tobytes() == first.tobytes()
    assert first.min() >= 0 and first.max() <= 1 and np.isclose(np.ptp(first, axis=0).max(), 1)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_too_few_points_for_umap(n):
    xy = layout.lay_out(np.eye(3, 8, dtype=np.float32)[:n])
    assert xy.shape == (n, 2)
    if n == 1:
        assert xy.tolist() == [[0.5, 0.5]]
    if n == 3:  # a line through the middle, evenly spaced
        assert xy.tolist() == [[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]]


def test_fit_unit_square_keeps_proportions():
    # worked by hand: the longer side (x: 0..2) becomes 0..1, y (0..1) becomes 0.25..0.75 (centred)
    got = layout.fit_unit_square(np.array([[0, 0], [2, 0], [2, 1]], np.float32))
    assert got.tolist() == [[0.0, 0.25], [1.0, 0.25], [1.0, 0.75]]
    assert layout.fit_unit_square(np.array([[3, 3], [3, 3]])).tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_place_between_equally_near_neighbours():
    laid = np.eye(3, 4, dtype=np.float32)  # e1, e2, e3
    laid_xy = np.array([[0, 0], [1, 0], [0, 1]], np.float32)
    new = np.array([[1, 1, 0, 0], [5, 0, 0, 0]], np.float32)  # between e1 and e2; e1's direction
    got = layout.place(new, laid, laid_xy, k=2)
    # e1 + e2 is 1 - 1/sqrt(2) from both e1 and e2: weighted alike, so half way
    assert got[0] == pytest.approx([0.5, 0.0], abs=1e-6)
    # 5 e1 is e1's direction: weight 1 / 1e-6 against 1 / (1 + 1e-6) for the next (e2, the lower row of the ties)
    w_same, w_next = 1 / 1e-6, 1 / (1 + 1e-6)
    assert got[1] == pytest.approx([w_next / (w_same + w_next), 0.0], abs=1e-6)
    assert layout.place(np.zeros((0, 4), np.float32), laid, laid_xy).shape == (0, 2)


def test_neighbours_exact_and_through_hnsw():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    d2 = ((x[:, None, :] - x[None]) ** 2).sum(-1)  # every pair, by hand
    want = np.argsort(d2, axis=1, kind="stable")[:, :5]
    rows, distances = layout.neighbours(x, 5, exact=True)
    assert rows.dtype == np.int64 and rows.shape == distances.shape == (500, 5)
    assert (rows[:, 0] == np.arange(500)).all() and np.allclose(distances[:, 0], 0, atol=1e-3)
    assert np.allclose(distances, np.sqrt(np.take_along_axis(d2, want, 1)), atol=1e-4)
    approx, _ = layout.neighbours(x, 5, exact=False)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(approx, want)])
    assert recall > 0.9


# found by mutation testing: the edges of UMAP's inputs, read through stand-ins for UMAP and PCA (fast)

@pytest.fixture
def recorded(monkeypatch):
    """UMAP and scikit-learn's PCA replaced by recorders (UMAP returns the first two PCA numbers):
    what each was made with and given."""
    import sklearn.decomposition
    import umap

    seen = {"umap": [], "pca": []}

    class Recorder:
        def __init__(self, **options):
            seen["umap"].append(dict(options))

        def fit_transform(self, reduced):
            seen["umap"][-1]["reduced"] = reduced
            return reduced[:, :2].astype(np.float64)

    class PCA(sklearn.decomposition.PCA):
        def fit(self, x, *args, **kwargs):
            seen["pca"].append({"dims": self.n_components, "solver": self.svd_solver, "seed": self.random_state,
                                "fit": np.array(x)})
            return super().fit(x, *args, **kwargs)

    monkeypatch.setattr(umap, "UMAP", Recorder)
    monkeypatch.setattr(sklearn.decomposition, "PCA", PCA)
    return seen


@pytest.mark.parametrize("n, d, dims, k", [(4, 8, 3, 3), (5, 8, 4, 4), (17, 8, 8, 15), (60, 64, 50, 15)])
def test_umap_gets_pca_of_at_most_n_1_numbers_and_each_rows_exact_nearest(recorded, n, d, dims, k):
    x = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    xy = layout.lay_out(x)  # 4 points: enough for UMAP (fewer make a line)
    assert xy.shape == (n, 2) and xy.dtype == np.float32
    (options,) = recorded["umap"]
    reduced = options["reduced"]
    assert reduced.shape == (n, dims) and reduced.dtype == np.float32 and options["n_neighbors"] == k
    rows, distances = options["precomputed_knn"]
    d2 = ((reduced[:, None, :].astype(np.float64) - reduced[None]) ** 2).sum(-1)
    assert rows.shape == (n, k) and (np.sort(rows, axis=1) == np.sort(np.argsort(d2, axis=1)[:, :k], axis=1)).all()
    assert np.allclose(distances, np.sqrt(np.take_along_axis(d2, rows, 1)), atol=1e-4)


def test_pca_is_exact_up_to_1000_points_and_seeded(recorded):
    rng = np.random.default_rng(0)
    for n, seed in ((1000, 0), (1001, 0), (1001, 7)):
        layout.lay_out(rng.standard_normal((n, 8)).astype(np.float32), seed=seed)
    assert [(p["solver"], p["seed"]) for p in recorded["pca"]] == [("full", 0), ("randomized", 0), ("randomized", 7)]
    assert [u["random_state"] for u in recorded["umap"]] == [0, 0, 7]  # seeded maps: UMAP seeded alike


def test_pca_is_fitted_on_all_rows_up_to_pca_fit_rows_and_on_a_seeded_sample_of_distinct_rows_above(recorded,
                                                                                                   monkeypatch):
    monkeypatch.setattr(layout, "PCA_FIT_ROWS", 30)
    x = np.random.default_rng(1).standard_normal((31, 8)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    layout.lay_out(x[:30])
    assert np.allclose(recorded["pca"][0]["fit"], unit[:30], atol=1e-6)  # exactly PCA_FIT_ROWS: every row
    layout.lay_out(x)
    layout.lay_out(x)
    first, again = recorded["pca"][1]["fit"], recorded["pca"][2]["fit"]
    assert first.shape == (30, 8) and (first == again).all()  # the same sample each time (seeded)
    # rows of the input, each once, in their order
    found = [int(np.argmin(np.abs(unit - row).sum(axis=1))) for row in first]
    assert found == sorted(set(found)) and np.allclose(unit[found], first, atol=1e-6)


def test_without_umap_the_map_is_refused_in_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # import umap fails
    with pytest.raises(layout.LayoutError) as e:
        layout.lay_out(np.eye(4, 8, dtype=np.float32))
    assert str(e.value) == "the map needs the map extra: pip install 'lookalike[map]'"


def test_places_are_float32_as_the_layout_is():
    laid = np.eye(3, 4, dtype=np.float32)
    got = layout.place(np.array([[1, 1, 0, 0]], np.float64), laid, np.array([[0, 0], [1, 0], [0, 1]], np.float64), k=2)
    assert got.dtype == np.float32 and layout.place(np.zeros((0, 4)), laid, laid).dtype == np.float32


def test_fit_unit_square_of_places_anywhere_and_of_any_size():
    # worked by hand: x spans -3..1 (4), y 5..7 (2): x to 0..1, y to 0..0.5, then centred: 0.25..0.75
    got = layout.fit_unit_square(np.array([[-3, 5], [1, 5], [1, 7]], np.float64))
    assert got.dtype == np.float32 and got.tolist() == [[0.0, 0.25], [1.0, 0.25], [1.0, 0.75]]
    # taller than wide, and smaller than 1: y -0.5..-0.25 to 0..1, x 10.1..10.2 (0.1 of 0.25) centred
    got = layout.fit_unit_square(np.array([[10.1, -0.5], [10.2, -0.25]], np.float64))
    assert got == pytest.approx(np.array([[0.3, 0.0], [0.7, 1.0]]), abs=1e-6)
    assert layout.fit_unit_square(np.zeros((0, 2))).dtype == np.float32


def test_a_seeded_map_hands_umap_each_rows_exact_nearest_where_hnsw_would_miss_some(recorded):
    # 400 random directions in 64 dimensions, 50 after PCA: an HNSW graph of 16 links searched with 48
    # candidates misses some of the 15 nearest here; a map this small is seeded and its neighbours exact
    x = np.random.default_rng(11).standard_normal((400, 64)).astype(np.float32)
    layout.lay_out(x)
    (options,) = recorded["umap"]
    reduced = options["reduced"].astype(np.float64)
    rows, distances = options["precomputed_knn"]
    d2 = (reduced**2).sum(1)[:, None] + (reduced**2).sum(1)[None] - 2 * reduced @ reduced.T  # every pair
    kth = np.sqrt(np.maximum(np.sort(d2, axis=1)[:, 14], 0))  # each row's 15th nearest, itself the first
    assert rows.shape == (400, 15) and (rows[:, 0] == np.arange(400)).all()
    assert (distances <= kth[:, None] + 1e-4).all()  # none farther than the 15th nearest
