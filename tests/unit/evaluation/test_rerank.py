"""k-reciprocal re-ranking: a hand-built case, a dense reference implementation, candidates kept."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.evaluation.retrieval import evaluate, evaluate_neighbors
from lookalike.evaluation.rerank import rerank


def test_rerank_fixes_a_hand_built_ordering():
    # Points on a line (l2), class A = {a0, a1, a2}, class B = {b1, b2, b3}:
    #   a2 = -1.2, a1 = -1.0, a0 = 0, b1 = 0.9, b2 = 1.05, b3 = 1.25   (no tied distances)
    # The nearest neighbour of a0 is b1 (0.9 < 1.0): a wrong-class top-1.  With k1 = 2 (top-3
    # lists, oneself included) and k2 = 1 (no query expansion):
    #   top-3(a0) = {a0, b1, a1};  top-3(b1) = {b1, b2, b3} lacks a0, so b1 is not k-reciprocal
    #   to a0;  top-3(a1) = {a1, a2, a0} contains a0, so R(a0) = {a0, a1}.
    #   Expansion (k1/2 = 1): R(a1, 1) = {a1, a2} has only 1 of its 2 members in R(a0), not more
    #   than 2/3, so nothing is added; R(a0, 1) = {a0} adds nothing new.
    #   R(b1) = {b1, b2, b3} (top-3 of b2 and of b3 both hold b1), so V_b1 lives on class B only,
    #   disjoint from V_a0 on {a0, a1}: Jaccard(a0, b1) = 1.
    #   R(a1) = {a1, a2, a0} (a2's and a0's top-3 hold a1): V_a1 overlaps V_a0 on {a0, a1}.
    # Scale s = 2.45 (largest retrieved distance, a2 to b3); weights exp(-d / s), rows sum to 1:
    #   V_a0 = [a0: 1, a1: e^(-1/s)] / sum = [0.6006, 0.3994]
    #   V_a1 = [a1: 1, a2: e^(-0.2/s), a0: e^(-1/s)] / sum = [0.3866, 0.3563, 0.2571]
    #   sum of minima = 0.2571 (a0) + 0.3866 (a1) = 0.6437 -> Jaccard(a0, a1) = 1 - 0.6437/1.3563 = 0.5254
    # final = 0.7 * Jaccard + 0.3 * d / s:
    #   a1: 0.7 * 0.5254 + 0.3 * 1.0/2.45 = 0.4902    b1: 0.7 * 1 + 0.3 * 0.9/2.45 = 0.8102
    # so a1 moves ahead of b1 and a0's top-1 becomes correct (a2 comes second, at 0.67).
    x = np.array([0.0, -1.0, -1.2, 0.9, 1.05, 1.25], np.float32)[:, None]  # a0 a1 a2 b1 b2 b3
    labels = np.array([0, 0, 0, 1, 1, 1])
    before = evaluate(x, labels, metric="l2")
    assert before.first_positive_rank[0] == 2  # b1 first
    idx, dist = rerank(x, k=5, k1=2, k2=1, lambda_=0.3, metric="l2")
    assert idx.shape == dist.shape == (6, 5)
    np.testing.assert_array_equal(idx[0], [1, 2, 3, 4, 5])
    assert dist[0, 0] == pytest.approx(0.4902, abs=1e-4)
    assert dist[0, 2] == pytest.approx(0.8102, abs=1e-4)
    after = evaluate_neighbors(idx, labels, metric="l2+rerank")
    assert after.summary()["recall@1"] == 1.0 > before.summary()["recall@1"]


def dense_rerank(X, k, k1, k2, lam, metric):
    """Zhong et al.'s reference algorithm on a full N x N matrix, with this module's conventions
    (metric distance divided by its global maximum; self first, ties by index)."""
    X64 = X.astype(np.float64)
    n = len(X)
    if metric == "l2":
        D = np.sqrt(((X64[:, None] - X64[None]) ** 2).sum(-1))
    else:
        Xn = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
        D = 1.0 - Xn @ Xn.T
    np.fill_diagonal(D, 0.0)
    D = D / D.max()
    initial_rank = np.argsort(D, axis=1, kind="stable")
    half = int(np.around(k1 / 2))
    V = np.zeros((n, n))
    for i in range(n):
        fwd = initial_rank[i, : k1 + 1]
        bwd = initial_rank[fwd, : k1 + 1]
        recip = fwd[np.where(bwd == i)[0]]
        expanded = recip
        for c in recip:
            c_fwd = initial_rank[c, : half + 1]
            c_bwd = initial_rank[c_fwd, : half + 1]
            c_recip = c_fwd[np.where(c_bwd == c)[0]]
            if len(np.intersect1d(c_recip, recip)) > 2 / 3 * len(c_recip):
                expanded = np.append(expanded, c_recip)
        expanded = np.unique(expanded)
        weight = np.exp(-D[i, expanded])
        V[i, expanded] = weight / weight.sum()
    if k2 != 1:
        V = np.stack([V[initial_rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.empty((n, n))
    for i in range(n):
        overlap = np.minimum(V[i], V).sum(axis=1)
        jaccard[i] = 1 - overlap / (2 - overlap)
    final = (1 - lam) * jaccard + lam * D
    cand = initial_rank[:, 1 : k + 1]
    vals = np.take_along_axis(final, cand, axis=1)
    order = np.argsort(vals, axis=1, kind="stable")
    return np.take_along_axis(cand, order, axis=1), np.take_along_axis(vals, order, axis=1)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("k1,k2,lam", [(6, 3, 0.3), (20, 6, 0.3), (4, 1, 0.1)])
def test_rerank_matches_dense_reference(metric, k1, k2, lam):
    rng = np.random.default_rng(8)
    centres = rng.standard_normal((8, 6)) * 2
    labels = np.repeat(np.arange(8), 10)
    X = (centres[labels] + rng.standard_normal((80, 6))).astype(np.float32)
    idx, dist = rerank(X, k=79, k1=k1, k2=k2, lambda_=lam, metric=metric)
    ref_idx, ref_dist = dense_rerank(X, 79, k1, k2, lam, metric)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    np.testing.assert_array_equal(idx, ref_idx)


def test_rerank_reorders_only_the_original_candidates():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((200, 10)).astype(np.float32)
    idx, dist = rerank(X, k=15)
    assert idx.shape == (200, 15) and dist.dtype == np.float32
    assert (idx != np.arange(200)[:, None]).all()
    assert (np.diff(dist, axis=1) >= 0).all()
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    S = Xn @ Xn.T
    np.fill_diagonal(S, -np.inf)
    top = np.argsort(-S, axis=1)[:, :15]
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(top, axis=1))
    # k beyond N - 1 is clipped; l2 re-ranking ignores a global scale of the embeddings.
    idx_l2, _ = rerank(X[:10], k=50, k1=20, metric="l2")
    idx_l2_scaled, _ = rerank(X[:10] * 8, k=50, k1=20, metric="l2")
    assert idx_l2.shape == (10, 9)
    np.testing.assert_array_equal(idx_l2, idx_l2_scaled)


def test_the_defaults_are_the_papers_over_the_top_100():
    """k1 = 20, k2 = 6, lambda = 0.3 (Zhong et al. 2017), checked against the dense reference on 80 images
    (k clipped to the 79 others); and each image's 100 nearest are re-ranked where there are more."""
    rng = np.random.default_rng(12)
    centres = rng.standard_normal((8, 6)) * 2
    X = (centres[np.repeat(np.arange(8), 10)] + rng.standard_normal((80, 6))).astype(np.float32)
    idx, dist = rerank(X)
    ref_idx, ref_dist = dense_rerank(X, 79, 20, 6, 0.3, "cosine")
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    np.testing.assert_array_equal(idx, ref_idx)
    assert rerank(rng.standard_normal((130, 6)).astype(np.float32))[0].shape == (130, 100)


@pytest.mark.parametrize("bad", [{"k": 0}, {"k1": 0}, {"k2": 0}, {"lambda_": -0.1}, {"lambda_": 1.1}])
def test_each_setting_out_of_range_is_refused(bad):
    with pytest.raises(ValueError) as caught:
        rerank(np.eye(4, dtype=np.float32), **bad)
    assert str(caught.value) == ("lambda_ must lie in [0, 1]" if "lambda_" in bad else "k, k1 and k2 must be >= 1")


def clustered(n_per=10, classes=8, seed=8):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, 6)) * 2
    labels = np.repeat(np.arange(classes), n_per)
    return (centres[labels] + rng.standard_normal((len(labels), 6))).astype(np.float32)


@pytest.mark.parametrize("k1, k2, lam", [(1, 1, 0.3), (1, 2, 0.3), (1, 3, 0.3), (6, 2, 0.3), (6, 3, 1.0)])
def test_the_smallest_settings_and_lambda_1_match_the_dense_reference(k1, k2, lam):
    """k = 1, k1 = 1, k2 = 1 or 2 (expansion over the nearest other image) and lambda 1 (the original
    order) are allowed and computed as the reference does; so is k1 = 1 with k2 = 3, an expansion over
    more images than any expanded set holds (with k1 = 1 a set is at most the image and its nearest)."""
    X = clustered()
    idx, dist = rerank(X, k=79, k1=k1, k2=k2, lambda_=lam)
    ref_idx, ref_dist = dense_rerank(X, 79, k1, k2, lam, "cosine")
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    np.testing.assert_array_equal(idx, ref_idx)
    assert rerank(X, k=1, k1=k1, k2=k2, lambda_=lam)[0].shape == (80, 1)


def test_lambda_0_ranks_by_jaccard_alone_and_ties_keep_their_original_order():
    """Candidates sharing no weight with the query tie at exactly 1: there are dozens a row, more than
    NumPy's default sort keeps in order (it is stable only up to 16 elements)."""
    X = clustered()
    idx, dist = rerank(X, k=79, k1=6, k2=3, lambda_=0.0)
    np.testing.assert_allclose(dist, dense_rerank(X, 79, 6, 3, 0.0, "cosine")[1], atol=1e-5)
    Xn = X.astype(np.float64) / np.linalg.norm(X, axis=1, keepdims=True)
    original = np.argsort(1.0 - Xn @ Xn.T, axis=1, kind="stable")[:, 1:]
    assert (dist == 1.0).sum(axis=1).min() > 16
    for row in range(80):
        tied = idx[row][dist[row] == 1.0]
        assert tied.tolist() == [c for c in original[row] if c in set(tied)]


def test_k_and_k1_beyond_n_minus_1_are_clipped_to_it():
    X = clustered(n_per=3, classes=4)
    idx, dist = rerank(X, k=50, k1=40, k2=3)
    ref_idx, ref_dist = dense_rerank(X, 11, 11, 3, 0.3, "cosine")
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    np.testing.assert_array_equal(idx, ref_idx)


def test_fewer_than_two_images_have_no_neighbours_and_two_have_each_other():
    for n in (0, 1):
        idx, dist = rerank(np.ones((n, 4), np.float32))
        assert (idx.shape, idx.dtype, dist.shape, dist.dtype) == ((n, 0), np.int64, (n, 0), np.float32)
    idx, dist = rerank(np.array([[1.0, 0.0], [1.0, 1.0]], np.float32))
    assert idx.tolist() == [[1], [0]] and dist.shape == (2, 1)


@pytest.mark.parametrize("chunk", [1, 7, 300])
def test_re_ranking_in_small_chunks_matches_the_dense_reference(monkeypatch, chunk):
    """Every chunked loop (pair distances, reciprocal sets, their expansion, query expansion, Jaccard
    distances) cut into pieces of a few rows or elements: the same answer as the dense reference."""
    from lookalike.evaluation import rerank as module

    monkeypatch.setattr(module, "_RERANK_CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(module, "_PAIR_CHUNK_BYTES", chunk)
    rng = np.random.default_rng(21)
    centres = rng.standard_normal((6, 5)) * 2
    X = (centres[np.repeat(np.arange(6), 7)] + rng.standard_normal((42, 5))).astype(np.float32)
    for metric in ("cosine", "l2"):  # k = 41: every other image, so the distance scale is the reference's
        idx, dist = rerank(X, k=41, k1=8, k2=3, lambda_=0.3, metric=metric)
        ref_idx, ref_dist = dense_rerank(X, 41, 8, 3, 0.3, metric)
        np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
        np.testing.assert_array_equal(idx, ref_idx)


@pytest.mark.parametrize("chunk", [1, 7])
def test_small_chunks_change_nothing_when_each_list_holds_a_few_of_the_images(monkeypatch, chunk):
    """Lists of 6 of 42 images (k = 5): chunks of a few rows must still cover all 42 rows, not the
    lists' width."""
    from lookalike.evaluation import rerank as module

    rng = np.random.default_rng(5)
    X = rng.standard_normal((42, 5)).astype(np.float32)
    whole = rerank(X, k=5, k1=4, k2=3)
    monkeypatch.setattr(module, "_RERANK_CHUNK_ELEMENTS", chunk)
    monkeypatch.setattr(module, "_PAIR_CHUNK_BYTES", chunk)
    chunked = rerank(X, k=5, k1=4, k2=3)
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_array_equal(chunked[1], whole[1])


def test_image_0_as_a_candidate_is_expanded_like_any_other():
    """Image 0 is an id like the others, not the padding (-1): on unclustered points, where most
    reciprocal sets grow by their candidates' half sets, the answer is the dense reference's, and
    numbering the images in another order re-numbers the answer and changes nothing else."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 4)).astype(np.float32)
    idx, dist = rerank(X, k=29, k1=8, k2=1, lambda_=0.3)
    ref_idx, ref_dist = dense_rerank(X, 29, 8, 1, 0.3, "cosine")
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    np.testing.assert_array_equal(idx, ref_idx)
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(30)  # new image j is old image perm[j]
        p_idx, p_dist = rerank(X[perm], k=29, k1=8, k2=1, lambda_=0.3)
        np.testing.assert_array_equal(perm[p_idx], idx[perm])
        np.testing.assert_allclose(p_dist, dist[perm], atol=1e-6)
