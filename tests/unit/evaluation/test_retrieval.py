"""Retrieval-quality metrics: hand-computed cases, tie rule, chunking, comparative sets, re-ranking."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import ranking_reference
from lookalike.evaluation.retrieval import RetrievalEvaluation, cmc_curve, evaluate, evaluate_neighbors, sample_comparative_sets

SUMMARY_KEYS = {
    "n_images", "n_classes", "n_queries", "metric", "recall@1", "recall@5", "recall@10",
    "map", "map@r", "median_rank", "comparative",
}

# ---------------------------------------------------------------- hand-computed example

# Six points on a line (metric l2, D = 1), classes A = 0, B = 1, C = 2.
#   id:    0    1    2    3    4    5
#   x:     0    1    2    4    7   20
#   class: A    B    A    A    B    C
LINE_X = np.array([[0], [1], [2], [4], [7], [20]], np.float32)
LINE_LABELS = np.array([0, 1, 0, 0, 1, 2])
# Rankings of the five others ("+" positive, "-" negative, "=" equal distances), P positives:
#   q0 (A): 1- (1), 2+ (2), 3+ (4), 4- (7), 5- (20)      P=2  hits at ranks 2, 3
#           AP = (1/2 + 2/3)/2 = 7/12;  R=2: top-2 has the hit at 2 -> AP@R = (1/2)/2 = 1/4;  first 2
#   q1 (B): 0- = 2- (1), 3- (3), 4+ (6), 5- (19)          P=1  hit at rank 4
#           AP = 1/4;  AP@R = 0 (top-1 is a miss);  first 4
#   q2 (A): 1- (1), 0+ = 3+ (2), 4- (5), 5- (18)          P=2  hits at ranks 2, 3 (a positive-positive tie)
#           AP = 7/12;  AP@R = 1/4;  first 2
#   q3 (A): 2+ (2), 1- = 4- (3), 0+ (4), 5- (16)          P=2  hits at ranks 1, 4
#           AP = (1/1 + 2/4)/2 = 3/4;  AP@R = (1/1)/2 = 1/2;  first 1
#   q4 (B): 3- (3), 2- (5), 1+ (6), 0- (7), 5- (13)       P=1  hit at rank 3
#           AP = 1/3;  AP@R = 0;  first 3
#   q5 (C): only image of its class -> no positive, excluded: n_queries = 5.
# mAP = (7/12 + 3/12 + 7/12 + 9/12 + 4/12)/5 = (30/12)/5 = 1/2;  MAP@R = (1/4 + 0 + 1/4 + 1/2 + 0)/5 = 1/5
# first ranks [2, 4, 2, 1, 3]: median 2, recall@1 = 1/5, recall@5 = 1 (all <= 5),
# recall@10 = 1 (k = 10 > N - 1 = 5 just means the whole ranking).
LINE_AP = [7 / 12, 1 / 4, 7 / 12, 3 / 4, 1 / 3]
LINE_AP_R = [1 / 4, 0, 1 / 4, 1 / 2, 0]
LINE_FIRST = [2, 4, 2, 1, 3]


@pytest.mark.parametrize("chunk_rows", [None, 1, 2, 5])
def test_hand_computed_line_example(chunk_rows):
    ev = evaluate(LINE_X, LINE_LABELS, metric="l2", chunk_rows=chunk_rows)
    np.testing.assert_array_equal(ev.query_ids, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(ev.average_precision, LINE_AP)
    np.testing.assert_allclose(ev.average_precision_at_r, LINE_AP_R)
    np.testing.assert_array_equal(ev.first_positive_rank, LINE_FIRST)
    s = ev.summary()
    assert set(s) == SUMMARY_KEYS
    assert (s["n_images"], s["n_classes"], s["n_queries"], s["metric"]) == (6, 3, 5, "l2")
    assert s["map"] == pytest.approx(0.5)
    assert s["map@r"] == pytest.approx(0.2)
    assert s["median_rank"] == 2
    assert s["recall@1"] == pytest.approx(0.2)
    assert s["recall@5"] == 1.0
    assert s["recall@10"] == 1.0
    assert set(s["comparative"]) == {"median_rank", "recall@1", "recall@5", "recall@10"}


def test_hand_computed_cosine_example():
    # Query 0 = (1, 0).  Cosine distances 1 - cos: id 1 (2, 0) same direction -> 0 (scale is ignored),
    # id 2 (1, 1) -> 1 - 1/sqrt(2) = 0.29, id 3 (0, 1) -> 1, id 4 (-1, 0) -> 2.
    # Classes A A B A B: the ranking of query 0 is +, -, +, -: hits at ranks 1 and 3, P = 2,
    # AP = (1/1 + 2/3)/2 = 5/6, AP@R (R = 2) = (1/1)/2 = 1/2, first positive rank 1.
    X = np.array([[1, 0], [2, 0], [1, 1], [0, 1], [-1, 0]], np.float32)
    ev = evaluate(X, ["A", "A", "B", "A", "B"], metric="cosine")
    assert ev.query_ids[0] == 0
    assert ev.average_precision[0] == pytest.approx(5 / 6)
    assert ev.average_precision_at_r[0] == pytest.approx(1 / 2)
    assert ev.first_positive_rank[0] == 1
    assert ev.n_classes == 2


# Non-unit vectors, classes A B A B:  0 = (1, 0), 1 = (10, 10), 2 = (0.5, 0.1), 3 = (-1, 3).
# Cosine distances 1 - x.y / (|x| |y|), norms 1, sqrt(200), sqrt(0.26), sqrt(10):
#   0-1: 1 - 10/sqrt(200) = 0.2929     0-2: 1 - 0.5/sqrt(0.26) = 0.0194   0-3: 1 + 1/sqrt(10) = 1.3162
#   1-2: 1 - 6/sqrt(52) = 0.1679       1-3: 1 - 20/sqrt(2000) = 0.5528    2-3: 1 + 0.2/sqrt(2.6) = 1.1240
#   q0 (A): 2+ 1- 3-  rank 1, AP 1     q1 (B): 2- 0- 3+  rank 3, AP 1/3
#   q2 (A): 0+ 1- 3-  rank 1, AP 1     q3 (B): 1+ 2- 0-  rank 1, AP 1
# Euclidean distances: 0-1 sqrt(181) = 13.45, 0-2 sqrt(0.26) = 0.51, 0-3 sqrt(13) = 3.61,
#   1-2 sqrt(188.26) = 13.72, 1-3 sqrt(170) = 13.04, 2-3 sqrt(10.66) = 3.27
#   q0: 2+ 3- 1-  rank 1, AP 1   q1: 3+ 0- 2-  rank 1, AP 1   q2: 0+ 3- 1-  rank 1   q3: 2- 0- 1+  rank 3, AP 1/3
# A raw dot product (no division by the stored norms) would rank 1 (10, 10) first for q0.
SCALED_X = np.array([[1, 0], [10, 10], [0.5, 0.1], [-1, 3]], np.float32)


@pytest.mark.parametrize("metric, first, ap", [("cosine", [1, 3, 1, 1], [1, 1 / 3, 1, 1]),
                                               ("l2", [1, 1, 1, 3], [1, 1, 1, 1 / 3])])
@pytest.mark.parametrize("chunk_rows", [None, 1, 3])
def test_hand_computed_non_unit_vectors(metric, first, ap, chunk_rows):
    ev = evaluate(SCALED_X, ["A", "B", "A", "B"], metric=metric, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(ev.query_ids, [0, 1, 2, 3])
    np.testing.assert_array_equal(ev.first_positive_rank, first)
    np.testing.assert_allclose(ev.average_precision, ap)
    np.testing.assert_allclose(ev.average_precision_at_r, [a if a == 1 else 0 for a in ap])
    assert ev.summary()["recall@1"] == 0.75 and ev.summary()["map"] == pytest.approx((3 + 1 / 3) / 4)


def test_recall_at_k_beyond_the_ranking_and_cmc():
    ev = evaluate(LINE_X, LINE_LABELS, metric="l2", ks=(1, 2, 3, 100))
    s = ev.summary()
    assert [s["recall@1"], s["recall@2"], s["recall@3"], s["recall@100"]] == pytest.approx([0.2, 0.6, 0.8, 1.0])
    # first ranks [2, 4, 2, 1, 3]: fraction <= k for k = 1..6
    np.testing.assert_allclose(cmc_curve(ev.first_positive_rank, 6), [0.2, 0.6, 0.8, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(cmc_curve([1, np.inf, 3, 7], 4), [0.25, 0.25, 0.5, 0.5])
    assert np.isnan(cmc_curve([], 3)).all()
    np.testing.assert_allclose(cmc_curve([2.0], 3), [0.0, 1.0, 1.0])  # a single query
    np.testing.assert_allclose(cmc_curve([1, 2, np.inf, 1], 1), [0.5])  # max_k = 1 is the smallest
    with pytest.raises(ValueError, match=r"^max_k must be >= 1$"):
        cmc_curve([1.0], 0)


# ---------------------------------------------------------------- ties


def test_tie_rule_is_pessimistic_and_ignores_index_order():
    # Query at 0 (A) with a negative at +1 (B) and a positive at -1 (A): both at distance 1.
    # Negatives rank before positives at equal distance, so the positive is rank 2 (AP 1/2,
    # not a hit at 1), whichever of the two has the lower index.
    for X, labels, query in [
        (np.array([[0], [1], [-1]], np.float32), [0, 1, 0], 0),
        (np.array([[0], [-1], [1]], np.float32), [0, 0, 1], 0),
        (np.array([[1], [-1], [0]], np.float32), [1, 0, 0], 2),
    ]:
        ev = evaluate(X, labels, metric="l2")
        row = list(ev.query_ids).index(query)
        assert ev.first_positive_rank[row] == 2
        assert ev.average_precision[row] == pytest.approx(1 / 2)
        assert ev.average_precision_at_r[row] == 0
        assert ev.comparative_rank[row] == 2  # same rule within the comparative set


def test_identical_embeddings_score_worst_case():
    # Every distance ties, so each positive ranks after all negatives.  Classes sizes 3, 2, 1:
    # a query of class 0 has 2 positives behind 3 negatives -> ranks 4, 5: AP = (1/4 + 2/5)/2;
    # a query of class 1 has 1 positive behind 4 negatives -> rank 5: AP = 1/5.
    X = np.ones((6, 4), np.float32)
    labels = [0, 1, 0, 1, 0, 2]
    for metric in ("cosine", "l2"):
        ev = evaluate(X, labels, metric=metric)
        np.testing.assert_array_equal(ev.query_ids, [0, 1, 2, 3, 4])
        np.testing.assert_array_equal(ev.first_positive_rank, [4, 5, 4, 5, 4])
        np.testing.assert_allclose(ev.average_precision, [0.325, 0.2, 0.325, 0.2, 0.325])
        np.testing.assert_allclose(ev.average_precision_at_r, 0)


def test_zero_vectors_are_at_cosine_distance_one():
    # A zero vector has no direction: distance 1 from everything, so it ties with orthogonal images.
    X = np.array([[1, 0], [0, 0], [0, 1], [1, 0.1]], np.float32)
    ev = evaluate(X, [0, 0, 1, 1], metric="cosine")
    # Query 1 (zero): others all at distance 1; its positive 0 ties with the 2 negatives -> rank 3.
    assert ev.first_positive_rank[list(ev.query_ids).index(1)] == 3


# ---------------------------------------------------------------- exclusions and edge cases


def test_singleton_classes_are_excluded():
    X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    ev = evaluate(X, [0, 1, 2, 3])
    s = ev.summary()
    assert (s["n_queries"], s["n_classes"], s["n_images"]) == (0, 4, 4)
    assert np.isnan(s["map"]) and np.isnan(s["recall@1"]) and np.isnan(s["comparative"]["median_rank"])

    # Two-image class {0, 1} on a line: x = 0, 3 with intruders at 1 (class 7) and 10 (class 9).
    # q0: 2- (1), 1+ (3), 3- (10) -> rank 2.  q1: 2- (2), 0+ (3), 3- (7) -> rank 2.  2 and 3: excluded.
    X = np.array([[0], [3], [1], [10]], np.float32)
    ev = evaluate(X, [5, 5, 7, 9], metric="l2")
    np.testing.assert_array_equal(ev.query_ids, [0, 1])
    np.testing.assert_array_equal(ev.first_positive_rank, [2, 2])
    np.testing.assert_allclose(ev.average_precision, [0.5, 0.5])
    assert ev.summary()["n_queries"] == 2


def test_input_validation():
    X = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="unknown metric .dot."):
        evaluate(X, [0, 0, 1], metric="dot")
    with pytest.raises(ValueError, match="labels must be 1-D of length 3"):
        evaluate(X, [0, 0])
    with pytest.raises(ValueError, match="NaN or infinite"):
        evaluate(np.array([[np.nan, 0], [0, 0], [1, 1]], np.float32), [0, 0, 1])
    with pytest.raises(ValueError, match="ks must be"):
        evaluate(X, [0, 0, 1], ks=(0,))
    with pytest.raises(ValueError, match="chunk_rows must be >= 1"):
        evaluate(X, [0, 0, 1], chunk_rows=0)
    with pytest.raises(ValueError, match="must be 2-D"):
        evaluate(np.zeros(3, np.float32), [0, 0, 1])


# ---------------------------------------------------------------- chunked path vs brute force


def random_labels(rng, n, n_classes, n_singletons):
    labels = rng.integers(0, n_classes, n)
    labels[rng.choice(n, n_singletons, replace=False)] = np.arange(n_classes, n_classes + n_singletons)
    return labels


@pytest.mark.parametrize("metric,values", [("cosine", "sign"), ("l2", "sign"), ("l2", "small_int")])
def test_chunked_equals_brute_force(metric, values):
    # Random entries in {-1, 1} (all norms 4) or, for l2, in {-2..2}: distances are exact in
    # float32 and float64 alike, so both sides see the same ties (there are many) and must agree
    # exactly.  (Cosines of integer vectors with unequal norms are not exact, hence no such case.)
    rng = np.random.default_rng(1)
    n, d = 300, 16
    X = (rng.choice([-1, 1], (n, d)) if values == "sign" else rng.integers(-2, 3, (n, d))).astype(np.float32)
    labels = random_labels(rng, n, 12, 5)
    ref_ids, ref_ap, ref_apr, ref_first = ranking_reference(X, labels, metric)
    for chunk_rows in (7, None):
        ev = evaluate(X, labels, metric=metric, chunk_rows=chunk_rows)
        np.testing.assert_array_equal(ev.query_ids, ref_ids)
        np.testing.assert_allclose(ev.average_precision, ref_ap, rtol=1e-12)
        np.testing.assert_allclose(ev.average_precision_at_r, ref_apr, rtol=1e-12)
        np.testing.assert_array_equal(ev.first_positive_rank, ref_first)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_chunked_equals_dense_on_gaussian_data(metric):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    labels = random_labels(rng, 300, 10, 3)
    dense = evaluate(X, labels, metric=metric, chunk_rows=300)
    chunked = evaluate(X, labels, metric=metric, chunk_rows=7)
    for name in ("query_ids", "average_precision", "average_precision_at_r", "first_positive_rank",
                 "comparative_rank"):
        np.testing.assert_allclose(getattr(chunked, name), getattr(dense, name), rtol=1e-6, err_msg=name)
    ref = ranking_reference(X, labels, metric)
    np.testing.assert_allclose(dense.average_precision, ref[1], atol=1e-3)  # float32 vs float64 near-ties


# ---------------------------------------------------------------- comparative sets


def test_comparative_sets_are_valid_and_seeded():
    labels = np.concatenate([np.repeat(np.arange(30), 5), [100, 101], np.repeat([200], 3)])
    queries, pos, neg = sample_comparative_sets(labels, n_negatives=99, seed=7)
    assert queries.size == labels.size - 2 and 150 not in queries and 151 not in queries
    for q, p, row in zip(queries, pos, neg):
        assert p != q and labels[p] == labels[q]
        n_avail = int((labels != labels[q]).sum())
        chosen = row[row >= 0]
        assert chosen.size == min(99, n_avail) and (row[chosen.size:] == -1).all()
        assert np.unique(chosen).size == chosen.size
        assert (labels[chosen] != labels[q]).all()
    again = sample_comparative_sets(labels, n_negatives=99, seed=7)
    other = sample_comparative_sets(labels, n_negatives=99, seed=8)
    for a, b in zip((queries, pos, neg), again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(neg, other[2])


def test_comparative_sets_small_population_takes_all_negatives():
    labels = np.array([0, 0, 0, 1, 1, 2])
    queries, pos, neg = sample_comparative_sets(labels, n_negatives=99, seed=0)
    for q, row in zip(queries, neg):
        np.testing.assert_array_equal(np.sort(row[row >= 0]), np.flatnonzero(labels != labels[q]))


def test_comparative_sampling_is_uniform_enough():
    # Class 0 = {0, 1, 2}: the positive of query 0 is 1 or 2, about half the time each;
    # 4 of the 8 negatives: each negative is picked about half the time.
    labels = np.array([0, 0, 0] + [1] * 8)
    hits_pos = np.zeros(3)
    hits_neg = np.zeros(11)
    for seed in range(400):
        _, pos, neg = sample_comparative_sets(labels, n_negatives=4, seed=seed)
        hits_pos[pos[0]] += 1
        hits_neg[neg[0]] += 1
    assert hits_pos[0] == 0 and 160 < hits_pos[1] < 240
    assert (hits_neg[:3] == 0).all() and ((hits_neg[3:] > 150) & (hits_neg[3:] < 250)).all()


def test_comparative_protocol_on_separated_clusters():
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((20, 32)) * 10
    labels = np.repeat(np.arange(20), 8)
    X = (centres[labels] + 0.01 * rng.standard_normal((160, 32))).astype(np.float32)
    for metric in ("cosine", "l2"):
        s = evaluate(X, labels, metric=metric, comparative_seed=11).summary()
        assert s["comparative"] == {"median_rank": 1.0, "recall@1": 1.0, "recall@5": 1.0, "recall@10": 1.0}
        assert s["map"] == 1.0 and s["map@r"] == 1.0 and s["recall@1"] == 1.0 and s["median_rank"] == 1


def test_comparative_protocol_reproducible_and_plausible_on_noise():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((400, 8)).astype(np.float32)
    labels = rng.integers(0, 4, 400)
    a = evaluate(X, labels, comparative_seed=3, chunk_rows=13)
    b = evaluate(X, labels, comparative_seed=3)
    c = evaluate(X, labels, comparative_seed=4)
    np.testing.assert_array_equal(a.comparative_rank, b.comparative_rank)
    assert not np.array_equal(a.comparative_rank, c.comparative_rank)
    # Random embeddings: the positive is uniform among 100 -> median about 50, recall@1 about 1/100.
    s = a.summary()["comparative"]
    assert 35 < s["median_rank"] < 65 and s["recall@1"] < 0.05 and 0.05 < s["recall@10"] < 0.2


def test_comparative_rank_equals_first_rank_when_sets_are_forced():
    # Every class has two images and there are fewer than 99 negatives: the comparative set of a
    # query is its one positive plus all negatives, i.e. the full leave-one-out ranking.
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(20), 2)
    X = rng.standard_normal((40, 5)).astype(np.float32)
    ev = evaluate(X, labels, metric="l2", comparative_seed=9)
    np.testing.assert_array_equal(ev.comparative_rank, ev.first_positive_rank)


# ---------------------------------------------------------------- neighbour lists


def full_rankings_with_self_first(X, labels, metric):
    """Every image's ranking of all images (itself first, as FAISS returns it), pessimistic ties."""
    X64 = X.astype(np.float64)
    if metric == "l2":
        D = np.sqrt(((X64[:, None] - X64[None]) ** 2).sum(-1))
    else:
        Xn = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
        D = 1.0 - Xn @ Xn.T
    rows = []
    for q in range(len(X)):
        others = np.flatnonzero(np.arange(len(X)) != q)
        order = np.lexsort((labels[others] == labels[q], D[q, others]))
        rows.append(np.concatenate([[q], others[order]]))
    return np.array(rows)


def test_evaluate_neighbors_on_full_lists_matches_evaluate():
    rng = np.random.default_rng(7)
    X = rng.choice([-1.0, 1.0], (120, 16)).astype(np.float32)  # norms 4: exact cosines
    labels = random_labels(rng, 120, 6, 4)
    for metric in ("l2", "cosine"):
        full = evaluate(X, labels, metric=metric)
        listed = evaluate_neighbors(full_rankings_with_self_first(X, labels, metric), labels, metric=metric)
        for name in ("query_ids", "average_precision", "average_precision_at_r", "first_positive_rank"):
            np.testing.assert_allclose(getattr(listed, name), getattr(full, name), rtol=1e-12, err_msg=name)
        assert listed.comparative_rank is None and listed.summary()["comparative"] is None


def test_evaluate_neighbors_counts_positives_outside_the_list_as_missed():
    # Line example, top-2 lists (self and -1 padding skipped).  q0's list [1-, 2+] holds 1 of 2
    # positives: AP = (1/2)/2 = 1/4, AP@R = 1/4, first rank 2.  q1's list [0-, 2-]: no positive:
    # AP 0, first rank inf.  q3's list [2+, 1-]: AP = (1/1)/2 = 1/2.
    lists = np.array([[0, 1, 2], [-1, 0, 2], [1, 0, 3], [2, 1, 3], [3, 2, 1], [4, 3, -1]])
    ev = evaluate_neighbors(lists, LINE_LABELS, metric="l2")
    np.testing.assert_allclose(ev.average_precision, [1 / 4, 0, 7 / 12, 1 / 2, 1 / 3])
    np.testing.assert_allclose(ev.average_precision_at_r, [1 / 4, 0, 1 / 4, 1 / 2, 0])
    np.testing.assert_array_equal(ev.first_positive_rank, [2, np.inf, 2, 1, 3])
    s = ev.summary()
    assert s["recall@10"] == pytest.approx(0.8) and s["median_rank"] == 2
    with pytest.raises(ValueError, match="same image twice"):
        evaluate_neighbors(np.array([[1, 1], [0, 2], [0, 1]]), [0, 0, 1])
    with pytest.raises(ValueError, match=r"shape \(3, K\)"):
        evaluate_neighbors(np.array([[1], [0]]), [0, 0, 1])
    with pytest.raises(ValueError, match=r"^indices must lie in \[-1, N\)$"):
        evaluate_neighbors(np.array([[1], [3], [0]]), [0, 0, 1])


def test_evaluate_neighbors_records_its_inputs_and_refuses_every_repeat_and_bad_padding():
    lists = np.array([[1, 2], [0, 2], [0, 1]])
    s = evaluate_neighbors(lists, ["a", "a", "b"]).summary()
    assert (s["metric"], s["n_images"], s["n_classes"], s["n_queries"], s["comparative"]) == ("neighbors", 3, 2, 2, None)
    # a repeat anywhere in a list (not only of its smallest id), image 0 repeated, padding below -1
    for bad in ([[1, 2, 2], [0, 2, -1], [0, 1, -1]], [[1, 2, -1], [0, 0, 2], [0, 1, -1]]):
        with pytest.raises(ValueError, match=r"^a neighbour list contains the same image twice$"):
            evaluate_neighbors(np.array(bad), [0, 0, 1])
    with pytest.raises(ValueError, match=r"^indices must lie in \[-1, N\)$"):
        evaluate_neighbors(np.array([[1], [-2], [0]]), [0, 0, 1])


def test_summary_aggregates_per_query_results():
    # Built by hand, not by evaluate(): ranks 1, 3, inf (missed) and 2; APs 1, 1/3, 0, 1/2.
    ev = RetrievalEvaluation(metric="l2", n_images=6, n_classes=2, ks=(1, 2, 5), query_ids=np.array([0, 2, 3, 5]),
                             average_precision=np.array([1, 1 / 3, 0, 1 / 2]),
                             average_precision_at_r=np.array([1, 0, 0, 1 / 2]),
                             first_positive_rank=np.array([1, 3, np.inf, 2]),
                             comparative_rank=np.array([1, 1, 4, 2]))
    s = ev.summary()
    assert (s["n_images"], s["n_classes"], s["n_queries"], s["metric"]) == (6, 2, 4, "l2")
    assert (s["recall@1"], s["recall@2"], s["recall@5"]) == (0.25, 0.5, 0.75)
    assert s["map"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 2) / 4) and s["map@r"] == pytest.approx(1.5 / 4)
    assert s["median_rank"] == 2.5  # median of 1, 2, 3, inf
    assert s["comparative"] == {"median_rank": 1.5, "recall@1": 0.5, "recall@2": 0.75, "recall@5": 1.0}


# ---------------------------------------------------------------- found by mutation testing


def test_every_refusal_says_what_was_wrong_in_full():
    X = np.zeros((3, 2), np.float32)
    cases = [
        (lambda: sample_comparative_sets(np.zeros((2, 2))), r"^labels must be 1-D of length N, got shape \(2, 2\)$"),
        (lambda: evaluate(X, [0, 0]), r"^labels must be 1-D of length 3, got shape \(2,\)$"),
        (lambda: evaluate(X, [0, 0, 1], ks=(0,)), r"^ks must be a non-empty sequence of integers >= 1$"),
        (lambda: evaluate(X, [0, 0, 1], chunk_rows=0), r"^chunk_rows must be >= 1$"),
        (lambda: evaluate(np.array([[np.inf, 0], [0, 0], [1, 1]]), [0, 0, 1]),
         r"^embeddings contain NaN or infinite values$"),
        (lambda: sample_comparative_sets([0, 0, 1], n_negatives=-1), r"^n_negatives must be >= 0$"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


def test_a_non_finite_row_past_the_first_chunk_of_a_large_array_is_found():
    from lookalike.evaluation.retrieval import _PAIR_CHUNK_BYTES, as_embeddings

    rows = _PAIR_CHUNK_BYTES // 4 + 1  # one-column rows: the last one is in the second 32 MiB chunk
    X = np.zeros((rows, 1), np.float32)
    X[-1, 0] = np.nan
    with pytest.raises(ValueError, match=r"^embeddings contain NaN or infinite values$"):
        as_embeddings(X)


def test_embeddings_are_float32_whatever_they_came_as():
    from lookalike.evaluation.retrieval import as_embeddings

    out = as_embeddings(np.array([[0.5, 1.0], [2.0, 3.0]], np.float64))
    assert out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, [[0.5, 1.0], [2.0, 3.0]])


def test_comparative_sets_query_classes_of_two_allow_no_negatives_and_pad_with_minus_one():
    # a pair class: each of its images has one positive, so both are queries
    queries, positives, negatives = sample_comparative_sets(["a", "a", "b", "b", "b"], n_negatives=0)
    np.testing.assert_array_equal(queries, [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(positives[:2], [1, 0])
    assert negatives.shape == (5, 0)
    # 2 other-class images for the "a" queries, 3 asked: padded with exactly -1
    _, _, negatives = sample_comparative_sets(["a", "a", "b", "b", "c"], n_negatives=3)
    assert sorted(negatives[0].tolist()) == [2, 3, 4] and sorted(negatives[2].tolist()) == [0, 1, 4]
    _, _, padded = sample_comparative_sets(["a", "a", "a", "b", "b"], n_negatives=3)
    assert sorted(padded[0].tolist()) == [-1, 3, 4] and sorted(padded[3].tolist()) == [0, 1, 2]
    empty = sample_comparative_sets([], n_negatives=4)
    assert [a.shape for a in empty] == [(0,), (0,), (0, 4)]


def test_comparative_sets_are_drawn_right_over_many_classes_and_seeded_by_zero_by_default():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 3000)  # enough images that an unstable class sort would reorder ids
    queries, positives, negatives = sample_comparative_sets(labels, n_negatives=50)
    assert len(queries) == 3000
    assert np.all(labels[positives] == labels[queries]) and np.all(positives != queries)
    assert np.all(negatives >= 0) and np.all(labels[negatives] != labels[queries, None])
    assert all(len(set(row)) == 50 for row in negatives.tolist())
    again = sample_comparative_sets(labels, n_negatives=50, seed=0)
    other = sample_comparative_sets(labels, n_negatives=50, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((queries, positives, negatives), again))
    assert not np.array_equal(positives, other[1])
    X = rng.normal(size=(60, 4)).astype(np.float32)
    small = labels[:60]
    assert np.array_equal(evaluate(X, small).comparative_rank, evaluate(X, small, comparative_seed=0).comparative_rank)
    assert not np.array_equal(evaluate(X, small).comparative_rank, evaluate(X, small, comparative_seed=1).comparative_rank)


def test_a_last_query_with_no_positive_in_its_list_scores_zero_and_rank_inf():
    # q0's list [1+]: AP 1/1, rank 1; q1's list [2-]: nothing found (the last query with positives)
    ev = evaluate_neighbors(np.array([[1], [2], [0]]), ["a", "a", "b"])
    np.testing.assert_array_equal(ev.query_ids, [0, 1])
    np.testing.assert_array_equal(ev.average_precision, [1.0, 0.0])
    np.testing.assert_array_equal(ev.average_precision_at_r, [1.0, 0.0])
    np.testing.assert_array_equal(ev.first_positive_rank, [1.0, np.inf])


def test_no_queries_give_nan_figures_without_warnings():
    import warnings

    ev = evaluate(np.eye(3, dtype=np.float32), ["a", "b", "c"])  # no image has a same-class other
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ev.summary()
    assert ev.n_queries == 0
    assert all(np.isnan(s[k]) for k in ("recall@1", "map", "map@r", "median_rank"))
    assert np.isnan(s["comparative"]["median_rank"]) and np.isnan(s["comparative"]["recall@1"])


def test_map_by_class_splits_map_into_its_classes_by_hand():
    # points on a line; by hand: a0 finds b0 then a1 (AP 1/2), a1 finds b0 then a0 (1/2),
    # b0 finds a0, a1, then b1 (1/3), b1 finds a1 then b0 (1/2)
    x = np.array([[0.0], [1.0], [0.4], [3.0]])
    result = evaluate(x, ["a", "a", "b", "b"], "l2")
    assert result.summary()["map"] == pytest.approx(11 / 24)
    by_class = result.map_by_class(["a", "a", "b", "b"])
    assert by_class.keys() == {"a", "b"} and all(c["queries"] == 2 for c in by_class.values())
    assert by_class["a"]["map"] == pytest.approx(1 / 2) and by_class["b"]["map"] == pytest.approx(5 / 12)
