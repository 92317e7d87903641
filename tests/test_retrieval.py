"""Hand-computed checks of the exact-retrieval core shared by every benchmark protocol."""

import numpy as np
import pytest
from PIL import Image

from moonsearch.errors import MoonsearchError
from moonsearch.eval.metrics import average_precision_at_k, hit_at_k, precision_at_k, ranks_from_scores, reciprocal_rank
from moonsearch.eval.retrieval import category_precision, embed, retrieval_recall, top_k, zero_shot_accuracy

# Candidates on the unit circle's axes and diagonals; scores against Q are easy to read off.
C = np.array(
    [
        [1.0, 0.0],  # 0
        [0.0, 1.0],  # 1
        [1.0, 0.0],  # 2 (same as 0: a tie)
        [0.5, 0.5],  # 3
        [-1.0, 0.0],  # 4
    ],
    np.float32,
)
Q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
# Query 0 scores: [1, 0, 1, .5, -1] -> ranking 0, 2, 3, 1, 4 (0 before 2: lower index wins the tie)
# Query 1 scores: [0, 1, 0, .5, 0]  -> ranking 1, 3, 0, 2, 4


class StubEncoder:
    """Text -> (len(text), 0, 0), image -> (0, red, green) of its top-left pixel; records batches."""

    name = "stub"
    dim = 3
    encoder_id = "stub"

    def __init__(self):
        self.batches = []

    def encode(self, texts, images):
        self.batches.append(len(texts))
        out = np.zeros((len(texts), 3), np.float32)
        for row, (text, image) in enumerate(zip(texts, images)):
            if text is not None:
                out[row, 0] = len(text)
            if image is not None:
                red, green, _ = image.getpixel((0, 0))
                out[row, 1:] = red, green
        return out


# --- top_k ---------------------------------------------------------------------------


def test_top_k_orders_by_score_and_breaks_ties_by_lower_index():
    assert top_k(Q, C, 5).tolist() == [[0, 2, 3, 1, 4], [1, 3, 0, 2, 4]]
    assert top_k(Q, C, 2).tolist() == [[0, 2], [1, 3]]


def test_top_k_tie_at_the_cutoff_keeps_the_lower_index():
    # Query 1 ties 0, 2 and 4 at score 0 for the third slot: index 0 takes it.
    assert top_k(Q[1:], C, 3).tolist() == [[1, 3, 0]]


def test_top_k_exclusion_removes_one_candidate_per_query():
    # Query 0 without candidate 0: 2, 3, 1, 4; query 1 excludes nothing.
    assert top_k(Q, C, 3, exclude=[0, None]).tolist() == [[2, 3, 1], [1, 3, 0]]


def test_top_k_clamps_k_to_the_candidates_left():
    assert top_k(Q, C, 50).shape == (2, 5)
    assert top_k(Q, C, 50, exclude=[4, None]).shape == (2, 4)  # one excluded -> 4 per row
    assert top_k(Q, np.zeros((0, 2), np.float32), 3).shape == (2, 0)


def test_top_k_rejects_bad_input():
    with pytest.raises(ValueError):
        top_k(Q, C, 0)
    with pytest.raises(ValueError):
        top_k(Q, C[:, :1], 1)  # dims differ
    with pytest.raises(ValueError):
        top_k(Q, C, 1, exclude=[0])  # one entry per query
    with pytest.raises(ValueError):
        top_k(Q, C, 1, exclude=[5, None])  # not a candidate
    with pytest.raises(ValueError):
        top_k(np.array([[np.nan, 0.0]]), C, 1)


def test_top_k_matches_metrics_ranks_from_scores_on_random_ties():
    rng = np.random.default_rng(7)
    q = rng.integers(-2, 3, (20, 3)).astype(np.float32)  # small integers: many exact ties
    c = rng.integers(-2, 3, (40, 3)).astype(np.float32)
    exclude = [int(i) if i % 3 else None for i in range(20)]
    top = top_k(q, c, 39, exclude=exclude)
    for i in range(20):
        assert top[i].tolist() == ranks_from_scores(q[i] @ c.T, list(range(40)), exclude=exclude[i])[:39]


# --- retrieval_recall ----------------------------------------------------------------


def test_retrieval_recall_one_positive_each():
    # Query 0's positive 3 is at rank 3; query 1's positive 1 is at rank 1.
    result = retrieval_recall(Q, C, [{3}, {1}], ks=(1, 2, 3))
    assert result["R@1"] == pytest.approx(0.5)  # only query 1
    assert result["R@2"] == pytest.approx(0.5)
    assert result["R@3"] == pytest.approx(1.0)
    assert result["MRR"] == pytest.approx((1 / 3 + 1) / 2)
    assert result["queries"] == 2 and result["queries_without_relevant"] == 0


def test_retrieval_recall_several_positives_counts_the_first_found():
    # Query 0 positives {4, 2}: 2 is at rank 2 -> R@1 0, R@2 1, RR 1/2.
    result = retrieval_recall(Q[:1], C, [{4, 2}], ks=(1, 2))
    assert (result["R@1"], result["R@2"], result["MRR"]) == (0.0, 1.0, pytest.approx(0.5))


def test_retrieval_recall_tie_between_positive_and_negative():
    # Query 0 with positive 2: candidate 0 has the same score and the lower index -> rank 2.
    result = retrieval_recall(Q[:1], C, [{2}], ks=(1,))
    assert result["R@1"] == 0.0 and result["MRR"] == pytest.approx(0.5)


def test_retrieval_recall_exclusion_promotes_the_next_candidate():
    # Without candidate 0, query 0's positive 2 comes first.
    result = retrieval_recall(Q[:1], C, [{2}], ks=(1,), exclude=[0])
    assert result["R@1"] == 1.0 and result["MRR"] == 1.0


def test_retrieval_recall_query_whose_only_positive_is_excluded_is_left_out():
    result = retrieval_recall(Q, C, [{0}, {1}], ks=(1,), exclude=[0, None])
    assert result["queries"] == 1 and result["queries_without_relevant"] == 1
    assert result["R@1"] == 1.0  # the mean is over query 1 only


def test_retrieval_recall_matches_metrics_on_full_rankings():
    rng = np.random.default_rng(3)
    q = rng.integers(-2, 3, (15, 4)).astype(np.float32)
    c = rng.integers(-2, 3, (30, 4)).astype(np.float32)
    positives = [set(rng.choice(30, 1 + i % 3, replace=False).tolist()) for i in range(15)]
    exclude = [i if i % 2 else None for i in range(15)]
    result = retrieval_recall(q, c, positives, ks=(1, 5, 10), exclude=exclude)
    rankings = [ranks_from_scores(q[i] @ c.T, list(range(30)), exclude=exclude[i]) for i in range(15)]
    relevant = [positives[i] - {exclude[i]} for i in range(15)]
    kept = [i for i in range(15) if relevant[i]]
    assert result["queries"] == len(kept)
    assert result["MRR"] == pytest.approx(np.mean([reciprocal_rank(rankings[i], relevant[i]) for i in kept]))
    for k in (1, 5, 10):
        assert result[f"R@{k}"] == pytest.approx(np.mean([hit_at_k(rankings[i], relevant[i], k) for i in kept]))


# --- category_precision --------------------------------------------------------------


def test_category_precision_hand_computed():
    # Labels of C: a b a b c. Query 0 (label a): ranking 0 2 3 1 4 -> hits at ranks 1, 2.
    # Query 1 (label b): ranking 1 3 0 2 4 -> hits at ranks 1, 2.
    labels = ["a", "b", "a", "b", "c"]
    result = category_precision(Q, C, ["a", "b"], labels, ks=(1, 2, 3))
    assert result["P@1"] == 1.0
    assert result["P@2"] == 1.0
    assert result["P@3"] == pytest.approx(2 / 3)
    assert result["mAP@3"] == pytest.approx(1.0)  # (1/1 + 2/2) / min(2, 3)


def test_category_precision_excludes_the_query_itself():
    # Query 0 is candidate 0 (label a); without it the ranking is 2 3 1 4 and only 2 is an "a".
    labels = ["a", "b", "a", "b", "c"]
    result = category_precision(Q[:1], C, ["a"], labels, ks=(1, 2), exclude=[0])
    assert result["P@1"] == 1.0 and result["P@2"] == pytest.approx(0.5)
    assert result["mAP@2"] == pytest.approx(1.0)  # 1/1 over min(1 relevant, 2)
    # Candidate 4 is the only "c": as its own query nothing relevant is left.
    alone = category_precision(C[4:], C, ["c"], labels, ks=(1,), exclude=[4])
    assert alone["queries"] == 0 and alone["queries_without_relevant"] == 1 and alone["P@1"] == 0.0


def test_category_precision_matches_metrics_on_full_rankings():
    rng = np.random.default_rng(5)
    c = rng.integers(-2, 3, (25, 3)).astype(np.float32)
    labels = rng.integers(0, 4, 25).tolist()
    result = category_precision(c, c, labels, labels, ks=(1, 5, 50), exclude=list(range(25)))
    expected = {f"{m}@{k}": [] for k in (1, 5, 50) for m in ("mAP", "P")}
    for i in range(25):
        ranked = ranks_from_scores(c[i] @ c.T, list(range(25)), exclude=i)
        relevant = {j for j in range(25) if labels[j] == labels[i] and j != i}
        if relevant:
            for k in (1, 5, 50):
                expected[f"mAP@{k}"].append(average_precision_at_k(ranked, relevant, k))
                expected[f"P@{k}"].append(precision_at_k(ranked, relevant, k))
    for name, values in expected.items():
        assert result[name] == pytest.approx(np.mean(values))


# --- zero_shot_accuracy --------------------------------------------------------------


def test_zero_shot_accuracy_nearest_label():
    labels = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    items = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], np.float32)
    # Nearest: 0, 1, 0, and 0 for the tie (lower index). Truth 0, 1, 1, 0 -> 3/4.
    assert zero_shot_accuracy(items, labels, [0, 1, 1, 0]) == pytest.approx(0.75)
    assert zero_shot_accuracy(items[:0], labels, []) == 0.0
    with pytest.raises(ValueError):
        zero_shot_accuracy(items, labels, [0])


# --- embed ---------------------------------------------------------------------------


def _png(path, colour):
    Image.new("RGB", (8, 8), colour).save(path)
    return path


def test_embed_batches_paths_pil_images_and_missing_pairs(tmp_path):
    encoder = StubEncoder()
    red = _png(tmp_path / "red.png", (200, 0, 0))
    texts = ["ab", None, "abcd", None, "x"]
    images = [None, red, Image.new("RGB", (4, 4), (0, 90, 0)), None, str(red)]
    out = embed(encoder, texts, images, batch_size=2)
    assert out.dtype == np.float32 and out.shape == (5, 3)
    assert out.tolist() == [[2, 0, 0], [0, 200, 0], [4, 0, 90], [0, 0, 0], [1, 200, 0]]
    # Batches of 2: [0, 1], [2, 3] (row 3 has nothing, so only 1 is encoded), [4].
    assert encoder.batches == [2, 1, 1]


def test_embed_bad_image_is_recorded_or_raised(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    failures = {}
    out = embed(StubEncoder(), ["abc", None], [tmp_path / "missing.png", broken], failures=failures)
    assert failures == {0: "missing file", 1: "corrupt or truncated image"}
    assert out.tolist() == [[3, 0, 0], [0, 0, 0]]  # row 0 keeps its text, row 1 has nothing left
    with pytest.raises(MoonsearchError, match="missing file"):
        embed(StubEncoder(), [None], [tmp_path / "missing.png"])


def test_embed_checks_its_arguments():
    with pytest.raises(ValueError):
        embed(StubEncoder(), ["a"], [])
    with pytest.raises(ValueError):
        embed(StubEncoder(), ["a"], [None], batch_size=0)
    assert embed(StubEncoder(), [], []).shape == (0, 3)
