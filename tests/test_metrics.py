"""Hand-computed checks of the retrieval metrics; each expected value shows its arithmetic."""

import math

import numpy as np
import pytest

from moonsearch.eval import (
    accuracy,
    average_precision_at_k,
    hit_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_metrics,
    ranks_from_scores,
    recall_at_k,
    reciprocal_rank,
)

L3 = math.log2(3)  # discount at rank 2; rank 1 -> log2(2) = 1, rank 3 -> log2(4) = 2
RANKED = ["a", "x", "b", "y", "c"]
REL = {"a", "b", "c"}


# --- precision ---------------------------------------------------------------------


def test_precision_several_positives():
    assert precision_at_k(RANKED, REL, 1) == 1.0  # [a] -> 1/1
    assert precision_at_k(RANKED, REL, 3) == pytest.approx(2 / 3)  # [a,x,b] -> 2/3
    assert precision_at_k(RANKED, REL, 5) == pytest.approx(3 / 5)  # a,b,c in 5 -> 3/5


def test_precision_k_larger_than_ranking_divides_by_k():
    assert precision_at_k(RANKED, REL, 10) == pytest.approx(3 / 10)  # 3 hits / k=10, not /5
    assert precision_at_k([], REL, 5) == 0.0


def test_precision_no_positives():
    assert precision_at_k(RANKED, set(), 3) == 0.0
    assert precision_at_k(["x", "y"], {"a"}, 2) == 0.0


def test_precision_duplicates_count_once():
    # [a,a,b] dedupes to [a,b]: top 2 = [a,b], 1 relevant hit (a) -> 1/2, not 2/2
    assert precision_at_k(["a", "a", "b"], {"a"}, 2) == pytest.approx(1 / 2)


# --- recall ------------------------------------------------------------------------


def test_recall_several_positives():
    assert recall_at_k(RANKED, REL, 1) == pytest.approx(1 / 3)  # a / {a,b,c}
    assert recall_at_k(RANKED, REL, 3) == pytest.approx(2 / 3)  # a,b / 3
    assert recall_at_k(RANKED, REL, 5) == 1.0  # a,b,c / 3
    assert recall_at_k(RANKED, REL, 100) == 1.0  # k > len(ranked)


def test_recall_no_positives_is_zero():
    assert recall_at_k(RANKED, set(), 5) == 0.0
    assert recall_at_k(RANKED, [], 5) == 0.0


def test_recall_duplicates_count_once():
    # [a,a,x] -> [a,x]: 1 of {a,b} -> 1/2 (a duplicated a cannot stand in for b)
    assert recall_at_k(["a", "a", "x"], {"a", "b"}, 3) == pytest.approx(1 / 2)


def test_recall_accepts_any_collection():
    assert recall_at_k(RANKED, ["a", "b", "c"], 3) == pytest.approx(2 / 3)
    assert recall_at_k(RANKED, {"a": 1, "b": 1, "c": 1}.keys(), 3) == pytest.approx(2 / 3)


# --- hit ---------------------------------------------------------------------------


def test_hit():
    assert hit_at_k(["x", "a"], {"a"}, 1) == 0.0  # [x]
    assert hit_at_k(["x", "a"], {"a"}, 2) == 1.0  # [x,a]
    assert hit_at_k(["x", "a"], {"a"}, 50) == 1.0  # k > len(ranked)
    assert hit_at_k(RANKED, REL, 5) == 1.0  # several positives still 1.0
    assert hit_at_k(RANKED, set(), 5) == 0.0
    # [x,x,a] -> [x,a]: the duplicate does not push a out of the top 2
    assert hit_at_k(["x", "x", "a"], {"a"}, 2) == 1.0


def test_hit_equals_recall_with_one_positive():
    for k in (1, 2, 3):
        assert hit_at_k(["x", "y", "a"], {"a"}, k) == recall_at_k(["x", "y", "a"], {"a"}, k)


# --- reciprocal rank ---------------------------------------------------------------


def test_reciprocal_rank():
    assert reciprocal_rank(["x", "y", "a"], {"a"}) == pytest.approx(1 / 3)  # first hit rank 3
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=3) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a"}, k=2) == 0.0  # hit beyond the cutoff
    assert reciprocal_rank(["x", "b", "a"], {"a", "b"}) == pytest.approx(1 / 2)  # first of two
    assert reciprocal_rank(["x", "y"], {"a"}) == 0.0
    assert reciprocal_rank(["x", "y"], set()) == 0.0
    assert reciprocal_rank(["a"], {"a"}, k=10) == 1.0  # k > len(ranked)


def test_reciprocal_rank_duplicates():
    # [x,x,a] -> [x,a]: a is at rank 2 -> 1/2
    assert reciprocal_rank(["x", "x", "a"], {"a"}) == pytest.approx(1 / 2)


# --- average precision -------------------------------------------------------------


def test_average_precision_example_from_brief():
    # [a,x,b], {a,b}: (P@1 + P@3) / min(2,3) = (1/1 + 2/3) / 2 = 5/6
    assert average_precision_at_k(["a", "x", "b"], {"a", "b"}, 3) == pytest.approx(5 / 6)


def test_average_precision_several_positives():
    # [x,a,b,c], {a,b,c}, k=10: (1/2 + 2/3 + 3/4) / min(3,10) = (6+8+9)/12/3 = 23/36
    got = average_precision_at_k(["x", "a", "b", "c"], {"a", "b", "c"}, 10)
    assert got == pytest.approx(23 / 36)


def test_average_precision_denominator_is_min_of_relevant_and_k():
    # [a,b,x], {a,b,c,d}, k=2: (1/1 + 2/2) / min(4,2) = 2/2 = 1.0
    assert average_precision_at_k(["a", "b", "x"], {"a", "b", "c", "d"}, 2) == 1.0
    # [a], {a,b}, k=5 (k > len(ranked)): (1/1) / min(2,5) = 1/2
    assert average_precision_at_k(["a"], {"a", "b"}, 5) == pytest.approx(1 / 2)


def test_average_precision_no_positives():
    assert average_precision_at_k(RANKED, set(), 5) == 0.0
    assert average_precision_at_k(["x", "y"], {"a"}, 2) == 0.0


def test_average_precision_duplicates():
    # [a,a,b] -> [a,b], {a,b}: (1/1 + 2/2) / 2 = 1.0 (the copy neither scores nor takes rank 2)
    assert average_precision_at_k(["a", "a", "b"], {"a", "b"}, 3) == 1.0


# --- nDCG --------------------------------------------------------------------------


def test_ndcg_binary():
    # [x,a,b], {a,b}, k=3: DCG = 0 + 1/log2(3) + 1/log2(4); IDCG = 1/log2(2) + 1/log2(3)
    expected = (1 / L3 + 1 / 2) / (1 + 1 / L3)
    assert ndcg_at_k(["x", "a", "b"], {"a", "b"}, 3) == pytest.approx(expected)
    assert ndcg_at_k(["a", "b", "x"], {"a", "b"}, 3) == pytest.approx(1.0)  # ideal order


def test_ndcg_ideal_uses_min_of_relevant_and_k():
    # [a,x], {a,b,c}, k=2: DCG = 1; IDCG over min(3,2)=2 items = 1 + 1/log2(3)
    assert ndcg_at_k(["a", "x"], {"a", "b", "c"}, 2) == pytest.approx(1 / (1 + 1 / L3))
    # [a,b], {a,b,c}, k=2: the best possible top 2 -> 1.0 even though c is missing
    assert ndcg_at_k(["a", "b"], {"a", "b", "c"}, 2) == pytest.approx(1.0)


def test_ndcg_k_larger_than_ranking():
    # [x,a], {a}, k=10: DCG = 1/log2(3); IDCG = 1 (one relevant item)
    assert ndcg_at_k(["x", "a"], {"a"}, 10) == pytest.approx(1 / L3)


def test_ndcg_no_positives():
    assert ndcg_at_k(RANKED, set(), 5) == 0.0
    assert ndcg_at_k(["x", "y"], {"a"}, 2) == 0.0


def test_ndcg_duplicates():
    # [a,a] -> [a], {a,b}, k=2: DCG = 1; IDCG = 1 + 1/log2(3)
    assert ndcg_at_k(["a", "a"], {"a", "b"}, 2) == pytest.approx(1 / (1 + 1 / L3))


def test_ndcg_graded():
    gains = {"a": 3, "b": 1, "c": 2}
    # [b,a,c], k=3: DCG = 1/1 + 3/log2(3) + 2/2; IDCG (3,2,1) = 3/1 + 2/log2(3) + 1/2
    expected = (1 + 3 / L3 + 1) / (3 + 2 / L3 + 1 / 2)
    assert ndcg_at_k(["b", "a", "c"], {"a", "b", "c"}, 3, gains=gains) == pytest.approx(expected)
    # k=2: DCG = 1 + 3/log2(3); IDCG from the top-2 gains (3,2) = 3 + 2/log2(3)
    expected = (1 + 3 / L3) / (3 + 2 / L3)
    assert ndcg_at_k(["b", "a", "c"], {"a", "b", "c"}, 2, gains=gains) == pytest.approx(expected)
    assert ndcg_at_k(["a", "c", "b"], {"a", "b", "c"}, 3, gains=gains) == pytest.approx(1.0)


def test_ndcg_graded_relevant_missing_from_gains_gets_one():
    # {a,b}, gains {a:2}: b has gain 1. [b,a], k=2: DCG = 1 + 2/log2(3); IDCG = 2 + 1/log2(3)
    got = ndcg_at_k(["b", "a"], {"a", "b"}, 2, gains={"a": 2})
    assert got == pytest.approx((1 + 2 / L3) / (2 + 1 / L3))


def test_ndcg_graded_ignores_gains_outside_relevant():
    # {a}, gains {a:1, z:5}: z is not relevant -> gain 0. [z,a]: DCG = 1/log2(3); IDCG = 1
    got = ndcg_at_k(["z", "a"], {"a"}, 2, gains={"a": 1, "z": 5})
    assert got == pytest.approx(1 / L3)


def test_ndcg_graded_all_zero_gains_is_zero():
    assert ndcg_at_k(["a"], {"a"}, 1, gains={"a": 0}) == 0.0  # IDCG = 0 -> 0.0, not NaN


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_ndcg_rejects_bad_gains(bad):
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], {"a"}, 1, gains={"a": bad})


# --- k validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn", [precision_at_k, recall_at_k, hit_at_k, average_precision_at_k, ndcg_at_k]
)
def test_k_must_be_positive_integer(fn):
    with pytest.raises(ValueError):
        fn(RANKED, REL, 0)
    with pytest.raises(TypeError):
        fn(RANKED, REL, 1.5)
    assert fn(RANKED, REL, np.int64(3)) == fn(RANKED, REL, 3)


def test_reciprocal_rank_rejects_bad_k():
    with pytest.raises(ValueError):
        reciprocal_rank(RANKED, REL, k=0)


# --- accuracy ----------------------------------------------------------------------


def test_accuracy():
    assert accuracy([1, 2, 3, 4], [1, 0, 3, 0]) == pytest.approx(2 / 4)  # positions 0 and 2
    assert accuracy(["shoe", "bag"], ["shoe", "bag"]) == 1.0
    assert accuracy(np.array([1, 2, 3]), np.array([0, 0, 3])) == pytest.approx(1 / 3)
    assert accuracy([], []) == 0.0


def test_accuracy_length_mismatch():
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])


# --- ranking_metrics ---------------------------------------------------------------


def test_ranking_metrics_means_and_excluded_queries():
    rankings = [["a", "x", "b"], ["y", "c"], ["z"]]
    relevants = [{"a", "b"}, {"c"}, set()]  # query 3 has no relevant item -> excluded
    m = ranking_metrics(rankings, relevants, ks=(1, 3))
    # q1: P@1=1, P@3=2/3, R@1=1/2, R@3=1, nDCG@1=1, nDCG@3=(1+1/2)/(1+1/log2 3),
    #     MAP@1=1/min(2,1)=1, MAP@3=(1+2/3)/2=5/6, RR=1
    # q2: P@1=0, P@3=1/3, R@1=0, R@3=1, nDCG@1=0, nDCG@3=(1/log2 3)/1,
    #     MAP@1=0, MAP@3=(1/2)/1=1/2, RR=1/2
    assert m["P@1"] == pytest.approx(0.5)  # (1+0)/2
    assert m["P@3"] == pytest.approx(0.5)  # (2/3+1/3)/2
    assert m["R@1"] == pytest.approx(0.25)  # (1/2+0)/2
    assert m["R@3"] == pytest.approx(1.0)  # (1+1)/2
    assert m["nDCG@1"] == pytest.approx(0.5)  # (1+0)/2
    assert m["nDCG@3"] == pytest.approx((1.5 / (1 + 1 / L3) + 1 / L3) / 2)
    assert m["MAP@1"] == pytest.approx(0.5)  # (1+0)/2
    assert m["MAP@3"] == pytest.approx(2 / 3)  # (5/6+1/2)/2
    assert m["MRR"] == pytest.approx(0.75)  # (1+1/2)/2
    assert m["queries"] == 3
    assert m["queries_without_relevant"] == 1


def test_ranking_metrics_default_keys():
    m = ranking_metrics([["a"]], [{"a"}])
    expected = {f"{name}@{k}" for k in (1, 5, 10, 100) for name in ("P", "R", "nDCG", "MAP")}
    assert set(m) == expected | {"MRR", "queries", "queries_without_relevant"}
    assert m["P@5"] == pytest.approx(1 / 5)  # 1 hit / k=5
    assert m["R@100"] == m["nDCG@100"] == m["MAP@100"] == m["MRR"] == 1.0


def test_ranking_metrics_no_query_with_relevant():
    m = ranking_metrics([["a"], ["b"]], [set(), []], ks=(1,))
    assert m["P@1"] == m["R@1"] == m["nDCG@1"] == m["MAP@1"] == m["MRR"] == 0.0
    assert m["queries"] == 2
    assert m["queries_without_relevant"] == 2


def test_ranking_metrics_empty_input():
    m = ranking_metrics([], [], ks=(1,))
    assert m["MRR"] == 0.0 and m["queries"] == 0 and m["queries_without_relevant"] == 0


def test_ranking_metrics_checks_inputs():
    with pytest.raises(ValueError):
        ranking_metrics([["a"]], [{"a"}, {"b"}])
    with pytest.raises(ValueError):
        ranking_metrics([["a"]], [{"a"}], ks=(0,))
    with pytest.raises(ValueError):
        ranking_metrics([["a"]], [{"a"}], ks=())


def test_ranking_metrics_duplicate_ks_once():
    m = ranking_metrics([["a"]], [{"a"}], ks=(1, 1))
    assert sorted(m) == sorted(
        ["P@1", "R@1", "nDCG@1", "MAP@1", "MRR", "queries", "queries_without_relevant"]
    )


# --- ranks_from_scores -------------------------------------------------------------


def test_ranks_from_scores_descending():
    assert ranks_from_scores(np.array([0.1, 0.9, 0.5]), ["p", "q", "r"]) == ["q", "r", "p"]


def test_ranks_from_scores_ties_keep_input_order():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    ids = ["p", "q", "r", "s", "t"]
    # 0.9: q before s; 0.5: p before r (input order), then t
    assert ranks_from_scores(scores, ids) == ["q", "s", "p", "r", "t"]
    assert ranks_from_scores(np.zeros(4), ["d", "c", "b", "a"]) == ["d", "c", "b", "a"]


def test_ties_make_metrics_follow_input_order():
    # Equal scores: the id listed first ranks first, so the same data always scores the same.
    assert reciprocal_rank(ranks_from_scores(np.array([1.0, 1.0]), ["x", "a"]), {"a"}) == 0.5
    assert reciprocal_rank(ranks_from_scores(np.array([1.0, 1.0]), ["a", "x"]), {"a"}) == 1.0


def test_ranks_from_scores_exclude_query():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    ids = ["p", "q", "r", "s", "t"]
    assert ranks_from_scores(scores, ids, exclude="q") == ["s", "p", "r", "t"]
    assert ranks_from_scores(scores, ids, exclude="absent") == ["q", "s", "p", "r", "t"]


def test_ranks_from_scores_numpy_ids_and_int_scores():
    ids = np.array([10, 11, 12])
    scores = np.array([0, 255, 3], dtype=np.uint8)  # negating would overflow uint8
    assert ranks_from_scores(scores, ids) == [11, 12, 10]
    assert ranks_from_scores(scores, ids, exclude=11) == [12, 10]
    assert ranks_from_scores(np.array([2, 1, 2]), (7, 8, 9)) == [7, 9, 8]  # int ties


def test_ranks_from_scores_rejects_bad_input():
    with pytest.raises(ValueError):
        ranks_from_scores(np.array([0.1, np.nan]), ["a", "b"])
    with pytest.raises(ValueError):
        ranks_from_scores(np.array([0.1, 0.2]), ["a"])
    with pytest.raises(ValueError):
        ranks_from_scores(np.zeros((2, 2)), ["a", "b"])
    assert ranks_from_scores(np.array([]), []) == []


def test_per_query_shopper_scores_are_hand_computed_and_worst_first():
    from moonsearch.eval.shopper import per_query_scores

    queries = [{"query": "good"}, {"query": "bad"}, {"query": "nothing relevant"}]
    rankings = [["a", "b", "x"], ["x", "y", "a"], ["a"]]
    relevants = [{"a", "b"}, {"a", "b", "c", "d"}, set()]
    rows = per_query_scores(queries, rankings, relevants)
    assert [r["query"] for r in rows] == ["nothing relevant", "bad", "good"]
    empty, bad, good = rows
    assert empty == {"query": "nothing relevant", "relevant": 0, "P@10": None, "nDCG@10": None, "R@100": None}
    assert good["relevant"] == 2 and good["P@10"] == 0.2 and good["nDCG@10"] == 1.0 and good["R@100"] == 1.0
    # one of four relevant at rank 3: P@10 0.1, recall 0.25, nDCG (1/log2 4) / (1 + 1/log2 3 + 1/2 + 1/log2 5)
    ideal = 1 + 1 / math.log2(3) + 1 / 2 + 1 / math.log2(5)
    assert bad["P@10"] == 0.1 and bad["R@100"] == 0.25 and bad["nDCG@10"] == round(0.5 / ideal, 4)
