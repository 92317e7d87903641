"""Exact retrieval shared by every benchmark protocol: embed, rank by inner product, score.

Every protocol (MBE2.0, M5Product, Fashion200k, the Myntra ones) ranks with the same code so
that their numbers differ only by data, never by a different tie rule or cutoff. Rankings are
exact (a full inner product against every candidate, no ANN index) because a benchmark figure
must not depend on index recall.

Conventions:

* vectors are rows of float arrays; the score of a candidate is its inner product with the
  query (cosine for the L2-normalised vectors encoders return);
* equal scores rank the lower candidate index first, as ``metrics.ranks_from_scores`` does;
* ``exclude[i]`` (an int or None) removes one candidate from query i's ranking, typically
  the query itself when a collection is searched against itself;
* queries without any relevant candidate (after exclusion) are left out of the means and
  counted in ``queries_without_relevant``, as ``metrics.ranking_metrics`` does.
"""

from __future__ import annotations

import operator
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from moonsearch.catalog import ImageError, load_image
from moonsearch.encoder.base import query_encoding
from moonsearch.errors import MoonsearchError
from moonsearch.eval.metrics import accuracy, average_precision_at_k, hit_at_k, precision_at_k

__all__ = ["category_precision", "embed", "retrieval_recall", "top_k", "zero_shot_accuracy"]

# Scores are computed for a block of queries at a time; this caps a block at ~128 MB of float32.
_MAX_BLOCK_SCORES = 1 << 25


def _as_image(value, row: int, failures: dict | None) -> Image.Image | None:
    """A PIL image as-is, a path loaded with load_image; a failure is recorded or raised."""
    if value is None or isinstance(value, Image.Image):
        return value
    if not isinstance(value, (str, Path)):
        raise TypeError(f"image {row} must be a path, a PIL image or None, not {type(value).__name__}")
    try:
        return load_image(value)
    except ImageError as exc:
        if failures is None:
            raise MoonsearchError(f"cannot use image {value}: {exc.reason}") from None
        failures[row] = exc.reason
        return None


def embed(
    encoder,
    texts: Sequence[str | None],
    images: Sequence,
    batch_size: int = 64,
    failures: dict[int, str] | None = None,
    queries: bool = False,
) -> np.ndarray:
    """Encode parallel (text, image) pairs in batches into an (N, dim) float32 array.

    `queries`: the pairs are search queries (`Encoder.encode_queries`: a photo-query head embeds
    image-only ones), not products.

    Images may be paths (loaded with ``load_image``, one batch at a time so memory stays
    flat), PIL images or None. An image that cannot be loaded raises MoonsearchError,
    unless ``failures`` is given: then ``failures[row] = reason`` and the row is encoded
    without its image, so the caller decides whether that row still counts. A row with
    neither text nor image is a zero vector (it scores 0 against everything).
    """
    texts, images = list(texts), list(images)
    if len(texts) != len(images):
        raise ValueError(f"{len(texts)} texts but {len(images)} images: the lists must be parallel")
    batch_size = operator.index(batch_size)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    out = np.zeros((len(texts), int(encoder.dim)), np.float32)
    for start in range(0, len(texts), batch_size):
        batch_texts = texts[start : start + batch_size]
        batch_images = [
            _as_image(images[row], row, failures) for row in range(start, start + len(batch_texts))
        ]
        rows = [j for j in range(len(batch_texts)) if batch_texts[j] is not None or batch_images[j] is not None]
        if not rows:
            continue
        encode = query_encoding(encoder) if queries else encoder.encode
        vectors = np.asarray(encode([batch_texts[j] for j in rows], [batch_images[j] for j in rows]), np.float32)
        if vectors.shape != (len(rows), out.shape[1]):
            raise ValueError(f"encoder returned shape {vectors.shape} for {len(rows)} inputs of dim {out.shape[1]}")
        out[[start + j for j in rows]] = vectors
    return out


def _matrix(value, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (one vector per row), got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
    return array


def _check_pair(queries, candidates) -> tuple[np.ndarray, np.ndarray]:
    q, c = _matrix(queries, "queries"), _matrix(candidates, "candidates")
    if q.shape[1] != c.shape[1]:
        raise ValueError(f"queries have dim {q.shape[1]} but candidates have dim {c.shape[1]}")
    return q, c


def _exclusions(exclude, n_queries: int, n_candidates: int) -> np.ndarray:
    """One candidate index per query, -1 for none; wrong lengths or indices are caller bugs."""
    if exclude is None:
        return np.full(n_queries, -1, np.int64)
    exclude = list(exclude)
    if len(exclude) != n_queries:
        raise ValueError(f"exclude has {len(exclude)} entries but there are {n_queries} queries")
    out = np.full(n_queries, -1, np.int64)
    for i, value in enumerate(exclude):
        if value is None:
            continue
        index = operator.index(value)
        if not 0 <= index < n_candidates:
            raise ValueError(f"exclude[{i}] = {index} is not a candidate index (0..{n_candidates - 1})")
        out[i] = index
    return out


def _check_ks(ks: Iterable[int]) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool):
            raise TypeError(f"k must be an integer, not {k!r}")
        k = operator.index(k)
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        out.append(k)
    if not out:
        raise ValueError("ks must hold at least one cutoff")
    return list(dict.fromkeys(out))


def _score_blocks(q: np.ndarray, c: np.ndarray, excl: np.ndarray):
    """Yield (first query row, scores) per block; excluded candidates score -inf."""
    block = max(1, _MAX_BLOCK_SCORES // max(1, c.shape[0]))
    for start in range(0, q.shape[0], block):
        scores = q[start : start + block] @ c.T
        if not np.isfinite(scores).all():
            raise ValueError("scores contain NaN or inf: check the vectors (a broken encoder?)")
        rows = np.nonzero(excl[start : start + block] >= 0)[0]
        scores[rows, excl[start + rows]] = -np.inf
        yield start, scores


def _block_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Top k columns per row, best first, equal scores by lower column (k <= finite per row)."""
    n = scores.shape[1]
    if k == 0:
        return np.empty((scores.shape[0], 0), np.int64)
    kth = np.partition(scores, n - k, axis=1)[:, n - k]  # k-th largest score of each row
    rows, cols = np.nonzero(scores >= kth[:, None])  # row-major, columns ascending
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    starts = np.searchsorted(rows, np.arange(scores.shape[0]))
    return cols[starts[:, None] + np.arange(k)]


def _effective_k(k: int, n_candidates: int, excl: np.ndarray) -> int:
    """k clamped to the candidates every query can see, so all rows have the same length."""
    return min(k, n_candidates - (1 if (excl >= 0).any() else 0))


def top_k(queries, candidates, k: int, exclude: Sequence[int | None] | None = None) -> np.ndarray:
    """Indices of each query's k best candidates by inner product, best first.

    Returns an int64 array (n_queries, k'), where k' = k clamped to the number of
    candidates (minus one when any query has an exclusion). Equal scores rank the lower
    index first, so rankings are identical across runs.
    """
    q, c = _check_pair(queries, candidates)
    (k,) = _check_ks([k])
    excl = _exclusions(exclude, q.shape[0], c.shape[0])
    k = _effective_k(k, c.shape[0], excl)
    out = np.empty((q.shape[0], max(k, 0)), np.int64)
    if k <= 0:
        return out
    for start, scores in _score_blocks(q, c, excl):
        out[start : start + len(scores)] = _block_top_k(scores, k)
    return out


def _rankings(q: np.ndarray, c: np.ndarray, excl: np.ndarray, k: int):
    """Yield (query row, its scores, its top-k candidate list) with the row's own exclusion.

    Unlike ``top_k`` the lists are not clamped to a common length: a query without an
    exclusion still sees every candidate, so its metrics match ``metrics`` on a full ranking.
    """
    width = min(k + 1, c.shape[0])  # one spare slot for the excluded candidate
    for start, scores in _score_blocks(q, c, excl):
        top = _block_top_k(scores, width)
        for j in range(len(scores)):
            skip = excl[start + j]
            yield start + j, scores[j], [x for x in top[j].tolist() if x != skip][:k]


def _first_relevant_rank(scores: np.ndarray, relevant: set[int]) -> int:
    """1-based rank of the best relevant candidate under the tie rule, without a full sort."""
    index = np.fromiter(relevant, np.int64, len(relevant))
    values = scores[index]
    best = values.max()
    first = index[values == best].min()
    return int((scores > best).sum() + (scores[:first] == best).sum() + 1)


def retrieval_recall(
    queries,
    candidates,
    positives: Sequence[Iterable[int]],
    ks: Iterable[int] = (1, 5, 10),
    exclude: Sequence[int | None] | None = None,
) -> dict:
    """R@k (share of queries with a positive in the top k) and MRR, over exact rankings.

    R@k is the hit rate ``metrics.hit_at_k``, which is what benchmarks with one ground
    truth per query call recall. MRR uses the rank of the first positive in the whole
    ranking (no cutoff), equal to ``metrics.reciprocal_rank`` over the full sorted list
    but computed by counting better-scored candidates instead of sorting them all.
    Keys: "R@k" per k, "MRR", "queries" (scored) and "queries_without_relevant".
    """
    q, c = _check_pair(queries, candidates)
    ks = _check_ks(ks)
    if len(positives) != q.shape[0]:
        raise ValueError(f"{len(positives)} positive sets but {q.shape[0]} queries: one per query")
    excl = _exclusions(exclude, q.shape[0], c.shape[0])
    relevant = []
    for i, pos in enumerate(positives):
        pos = {operator.index(p) for p in pos}
        if any(not 0 <= p < c.shape[0] for p in pos):
            raise ValueError(f"positives[{i}] holds an index outside 0..{c.shape[0] - 1}")
        pos.discard(int(excl[i]))
        relevant.append(pos)
    sums = dict.fromkeys([f"R@{k}" for k in ks] + ["MRR"], 0.0)
    scored = 0
    for i, scores, ranked in _rankings(q, c, excl, max(ks)):
        rel = relevant[i]
        if not rel:
            continue
        scored += 1
        for k in ks:
            sums[f"R@{k}"] += hit_at_k(ranked, rel, k)
        sums["MRR"] += 1.0 / _first_relevant_rank(scores, rel)
    result = {name: (total / scored if scored else 0.0) for name, total in sums.items()}
    result["queries"] = scored
    result["queries_without_relevant"] = q.shape[0] - scored
    return result


def category_precision(
    queries,
    candidates,
    query_labels: Sequence[Hashable],
    candidate_labels: Sequence[Hashable],
    ks: Iterable[int] = (1, 5, 10, 50, 100),
    exclude: Sequence[int | None] | None = None,
) -> dict:
    """mAP@k and P@k where a candidate is relevant when its label equals the query's.

    This is the M5Product protocol (relevant = same category). AP@k divides by
    min(number relevant, k) as ``metrics.average_precision_at_k`` does, and P@k by k.
    Keys: "mAP@k" and "P@k" per k, "queries" (scored) and "queries_without_relevant".
    """
    q, c = _check_pair(queries, candidates)
    ks = _check_ks(ks)
    if len(query_labels) != q.shape[0]:
        raise ValueError(f"{len(query_labels)} query labels but {q.shape[0]} queries")
    if len(candidate_labels) != c.shape[0]:
        raise ValueError(f"{len(candidate_labels)} candidate labels but {c.shape[0]} candidates")
    excl = _exclusions(exclude, q.shape[0], c.shape[0])
    members: dict = {}
    for index, label in enumerate(candidate_labels):
        members.setdefault(label, []).append(index)
    sums = dict.fromkeys([f"{m}@{k}" for k in ks for m in ("mAP", "P")], 0.0)
    scored = 0
    for i, _, ranked in _rankings(q, c, excl, max(ks)):
        rel = set(members.get(query_labels[i], ()))
        rel.discard(int(excl[i]))
        if not rel:
            continue
        scored += 1
        for k in ks:
            sums[f"mAP@{k}"] += average_precision_at_k(ranked, rel, k)
            sums[f"P@{k}"] += precision_at_k(ranked, rel, k)
    result = {name: (total / scored if scored else 0.0) for name, total in sums.items()}
    result["queries"] = scored
    result["queries_without_relevant"] = q.shape[0] - scored
    return result


def zero_shot_accuracy(item_vectors, label_vectors, truth: Sequence[int]) -> float:
    """Share of items whose nearest label embedding is the true label (index into labels).

    Zero-shot classification as MOON2.0 reports it: no classifier is trained, the label
    texts are embedded by the same encoder. 0.0 when there are no items.
    """
    items, labels = _check_pair(item_vectors, label_vectors)
    if len(truth) != items.shape[0]:
        raise ValueError(f"{len(truth)} true labels but {items.shape[0]} items")
    if items.shape[0] == 0:
        return 0.0
    if labels.shape[0] == 0:
        raise ValueError("no label vectors to choose from")
    predicted = top_k(items, labels, 1)[:, 0]
    return accuracy(predicted.tolist(), [operator.index(t) for t in truth])
