import numpy as np
import pytest

from moonsearch.store import faiss_vectors as vectors


def clustered(n=3000, dim=32, clusters=20, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_each_index_type_finds_stored_vectors_and_round_trips(kind, tmp_path):
    x = clustered()
    index = vectors.build(x, kind)
    path = tmp_path / f"{kind}.faiss"
    vectors.save(index, path)
    loaded = vectors.load(path)
    scores, rows = vectors.search(loaded, x[:50], 5)
    assert (rows[:, 0] == np.arange(50)).mean() >= 0.95
    assert np.allclose(scores[:, 0][rows[:, 0] == np.arange(50)], 1.0, atol=1e-4)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
@pytest.mark.parametrize("exact_limit", [50_000, 10])
def test_filtered_search_returns_k_allowed_rows(kind, exact_limit, monkeypatch):
    # exact_limit=10 forces the FAISS ID-selector path; the default takes the exact path.
    monkeypatch.setattr(vectors, "EXACT_FILTER_LIMIT", exact_limit)
    x = clustered()
    index = vectors.build(x, kind)
    allowed = np.arange(1, 3000, 97)  # 31 scattered rows, none near the query's cluster on purpose
    scores, rows = vectors.search(index, x[:3], 20, allowed)
    assert rows.shape == (3, 20)
    assert set(rows.ravel()) <= set(allowed)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # the filtered top-20 is the exact top-20 among allowed rows
    exact = np.argsort(-(x[:3] @ x[allowed].T), axis=1)[:, :20]
    assert all(set(rows[i]) == set(allowed[exact[i]]) for i in range(3))


def test_filter_with_fewer_matches_than_k_and_with_none():
    x = clustered(n=500)
    index = vectors.build(x, "flat")
    _, rows = vectors.search(index, x[:1], 10, np.array([3, 7]))
    assert sorted(rows[0]) == [3, 7]
    scores, rows = vectors.search(index, x[:1], 10, np.array([], dtype=np.int64))
    assert rows.shape == (1, 0)


def test_auto_index_type():
    assert vectors.resolve_index_type("auto", 1000) == "flat"
    assert vectors.resolve_index_type("auto", 2_000_000) == "ivf"
    assert vectors.resolve_index_type("hnsw", 10) == "hnsw"
    assert vectors.ivf_lists(100_000) == int(4 * np.sqrt(100_000))
    assert vectors.ivf_lists(100) == 2
