"""Retrieval metrics: precision, recall, hit rate, MRR, MAP and nDCG at a cutoff.

The definitions follow sentence-transformers' InformationRetrievalEvaluator (per-query
values averaged over queries) so our numbers can be compared with published ones.

Conventions shared by every function, so that results never depend on the caller:

* ``ranked`` is best-first; ids are any hashables.
* A duplicated id in ``ranked`` counts once, at its first occurrence: duplicates are
  dropped *before* the cutoff, so they neither score twice nor take a slot of the top k.
* ``relevant`` is a collection of ids (set, list, dict keys...); when it is empty every
  metric is 0.0 rather than undefined, and ``ranking_metrics`` leaves such queries out
  of its means.
* ``k`` must be a positive integer; it may exceed ``len(ranked)`` (the missing ranks
  simply hold nothing relevant).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "accuracy",
    "average_precision_at_k",
    "hit_at_k",
    "ndcg_at_k",
    "precision_at_k",
    "ranking_metrics",
    "ranks_from_scores",
    "recall_at_k",
    "reciprocal_rank",
]


def _check_k(k) -> int:
    """Reject k < 1 or non-integers early: a silent k=0 would make every metric 0 or divide by 0."""
    if isinstance(k, bool):
        raise TypeError(f"k must be an integer, not {k!r}")
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer, not {k!r}") from None
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return k


def _top_k(ranked: Iterable, k: int | None) -> list:
    """First k distinct ids of ``ranked`` (all when k is None); duplicates keep their first rank."""
    seen: set = set()
    top: list = []
    for item in ranked:
        if item in seen:
            continue
        seen.add(item)
        top.append(item)
        if k is not None and len(top) == k:
            break
    return top


def _as_set(relevant: Collection) -> set:
    """Relevant ids as a set, for O(1) membership whatever collection the caller passed."""
    return relevant if isinstance(relevant, (set, frozenset)) else set(relevant)


def _hits(ranked: Sequence, relevant: set, k: int) -> int:
    return sum(1 for item in _top_k(ranked, k) if item in relevant)


def precision_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    """Relevant ids in the top k, divided by k.

    The denominator is k even when fewer than k ids were ranked, so a system that returns
    short lists is not rewarded for it.
    """
    k = _check_k(k)
    return _hits(ranked, _as_set(relevant), k) / k


def recall_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    """Share of the relevant ids found in the top k; 0.0 when there is nothing relevant."""
    k = _check_k(k)
    relevant = _as_set(relevant)
    if not relevant:
        return 0.0
    return _hits(ranked, relevant, k) / len(relevant)


def hit_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    """1.0 if any relevant id is in the top k, else 0.0.

    This is the "R@K" reported by benchmarks with one positive per query (where it equals
    recall@k); with several positives it is the hit rate, not recall.
    """
    k = _check_k(k)
    return 1.0 if _hits(ranked, _as_set(relevant), k) else 0.0


def reciprocal_rank(ranked: Sequence, relevant: Collection, k: int | None = None) -> float:
    """1 / rank of the first relevant id (ranks start at 1), or 0.0 if none is in the top k.

    ``k=None`` looks at the whole ranking, which is what "MRR" without a cutoff means.
    """
    if k is not None:
        k = _check_k(k)
    relevant = _as_set(relevant)
    for rank, item in enumerate(_top_k(ranked, k), start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


def average_precision_at_k(ranked: Sequence, relevant: Collection, k: int) -> float:
    """AP@k: mean of precision@i over the ranks i <= k holding a relevant id.

    The sum is divided by min(len(relevant), k), as sentence-transformers does, so a
    perfect top k scores 1.0 even when there are more relevant ids than k.
    """
    k = _check_k(k)
    relevant = _as_set(relevant)
    if not relevant:
        return 0.0
    hits = 0
    total = 0.0
    for rank, item in enumerate(_top_k(ranked, k), start=1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / min(len(relevant), k)


def _dcg(gains: Iterable[float]) -> float:
    """Discounted cumulative gain with the log2(rank + 1) discount, ranks from 1."""
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1))


def ndcg_at_k(
    ranked: Sequence, relevant: Collection, k: int, gains: Mapping | None = None
) -> float:
    """nDCG@k: DCG of the top k divided by the DCG of the best possible top k.

    Without ``gains`` every relevant id has gain 1 and every other id 0. With ``gains``
    (id -> non-negative grade) the grades apply to the relevant ids: a relevant id missing
    from ``gains`` keeps gain 1, and ids outside ``relevant`` have gain 0 whatever
    ``gains`` says, so ``relevant`` alone decides what counts as a hit in every metric.
    The ideal DCG orders the min(len(relevant), k) best gains first. Returns 0.0 when
    nothing relevant (or nothing with positive gain) exists.
    """
    k = _check_k(k)
    relevant = _as_set(relevant)
    if not relevant:
        return 0.0
    if gains is None:
        grade = {item: 1.0 for item in relevant}
    else:
        grade = {}
        for item in relevant:
            g = float(gains.get(item, 1.0))
            if not g >= 0.0 or math.isinf(g):  # also rejects NaN
                raise ValueError(f"gain of {item!r} must be a finite number >= 0, got {g!r}")
            grade[item] = g
    ideal = _dcg(sorted(grade.values(), reverse=True)[:k])
    if ideal == 0.0:
        return 0.0
    return _dcg(grade.get(item, 0.0) for item in _top_k(ranked, k)) / ideal


def accuracy(predicted: Sequence, truth: Sequence) -> float:
    """Share of positions where the prediction equals the truth (e.g. top-1 category).

    Raises ValueError when the lengths differ (a misaligned pair is a bug, not a score);
    returns 0.0 for two empty sequences.
    """
    if len(predicted) != len(truth):
        raise ValueError(
            f"predicted has {len(predicted)} items but truth has {len(truth)}"
        )
    if len(truth) == 0:
        return 0.0
    return sum(1 for p, t in zip(predicted, truth) if p == t) / len(truth)


def ranking_metrics(
    rankings: Sequence[Sequence],
    relevants: Sequence[Collection],
    ks: Iterable[int] = (1, 5, 10, 100),
) -> dict[str, float]:
    """Per-query metrics averaged over the queries, as InformationRetrievalEvaluator reports.

    Keys: "P@k", "R@k", "nDCG@k", "MAP@k" for each k in ``ks`` (duplicates in ``ks``
    dropped), "MRR" (reciprocal rank over the whole ranking, no cutoff), "queries" (all
    queries given) and "queries_without_relevant" (those with an empty relevant set).
    Queries without a relevant id are left out of every mean, since no ranking could score
    on them; if no query has one, every mean is 0.0.
    """
    if len(rankings) != len(relevants):
        raise ValueError(
            f"{len(rankings)} rankings but {len(relevants)} relevant sets: one per query"
        )
    ks = list(dict.fromkeys(_check_k(k) for k in ks))
    if not ks:
        raise ValueError("ks must hold at least one cutoff")

    names = [f"{m}@{k}" for k in ks for m in ("P", "R", "nDCG", "MAP")] + ["MRR"]
    sums = dict.fromkeys(names, 0.0)
    scored = 0
    for ranked, relevant in zip(rankings, relevants):
        relevant = _as_set(relevant)
        if not relevant:
            continue
        scored += 1
        for k in ks:
            sums[f"P@{k}"] += precision_at_k(ranked, relevant, k)
            sums[f"R@{k}"] += recall_at_k(ranked, relevant, k)
            sums[f"nDCG@{k}"] += ndcg_at_k(ranked, relevant, k)
            sums[f"MAP@{k}"] += average_precision_at_k(ranked, relevant, k)
        sums["MRR"] += reciprocal_rank(ranked, relevant)

    result: dict[str, float] = {
        name: (total / scored if scored else 0.0) for name, total in sums.items()
    }
    result["queries"] = len(rankings)
    result["queries_without_relevant"] = len(rankings) - scored
    return result


def ranks_from_scores(
    scores: np.ndarray, ids: Sequence, exclude: Hashable | None = None
) -> list:
    """Ids sorted by descending score; equal scores keep their order in ``ids``.

    The stable tie rule makes rankings (and so every metric) deterministic across runs and
    platforms. ``exclude`` drops every occurrence of one id, typically the query itself
    when a catalog is searched against itself (``None`` means drop nothing). NaN scores
    raise ValueError: they have no place in an order and usually mean a broken encoder.
    """
    scores = np.asarray(scores)
    if scores.ndim != 1:
        raise ValueError(f"scores must be one-dimensional, got shape {scores.shape}")
    if len(scores) != len(ids):
        raise ValueError(f"{len(scores)} scores but {len(ids)} ids")
    if np.issubdtype(scores.dtype, np.inexact) and np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    # Stable ascending sort of the reversed array, then reversed back: descending scores
    # with ties in input order, without negating (which would overflow unsigned ints).
    n = len(scores)
    order = (n - 1) - np.argsort(scores[::-1], kind="stable")[::-1]
    ranked = [ids[i] for i in order.tolist()]
    if exclude is not None:
        ranked = [item for item in ranked if not _same_id(item, exclude)]
    return ranked


def _same_id(item, other) -> bool:
    """Equality that stays a plain bool even for numpy ids (whose == may return arrays)."""
    try:
        return bool(item == other)
    except (TypeError, ValueError):
        return False
