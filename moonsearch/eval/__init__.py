"""Evaluation of retrieval quality: per-query metrics and their means over a query set."""

from moonsearch.eval.metrics import (
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
