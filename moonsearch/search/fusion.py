"""Merging ranked lists from different retrievers (dense vectors, BM25) into one.

Reciprocal rank fusion uses ranks only, so it needs no calibration between a cosine similarity
and a BM25 score, whose scales have nothing in common (Cormack et al., SIGIR 2009).
"""

from __future__ import annotations

from typing import Sequence

RRF_CONSTANT = 60   # the paper's value: damps the weight of the very top ranks


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], constant: int = RRF_CONSTANT) -> list[tuple[int, float]]:
    """(item, sum over rankings of 1 / (constant + rank)) for every item in any ranking, best
    first; ties keep the order in which items were first met (the first ranking leads)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (constant + rank)
    return sorted(scores.items(), key=lambda pair: -pair[1])
