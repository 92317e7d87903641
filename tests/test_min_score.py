"""The score cut-off (`search(min_score=)`, `moonsearch query --min-score`, the server's
`min_score`): it cuts on each hit's cosine similarity whatever the ranking, keeps the order of
what is left, encodes the query once, and the server's cut is the library's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import SAMPLE_CATALOG
from moonsearch.errors import MoonsearchError
from moonsearch.search.product_index import ProductIndex
from test_end_to_end import cli

PHOTO = SAMPLE_CATALOG / "images" / "S0001.jpg"


class CountingEncoder:
    """The shared encoder, counting the query encodings a search makes."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.queries = 0

    def encode_queries(self, texts, images):
        self.queries += 1
        return self._encoder.encode_queries(texts, images)

    def __getattr__(self, name):
        return getattr(self._encoder, name)


def expected_cut(hits, threshold: float) -> list[str]:
    return [h.id for h in hits if h.similarity >= threshold]


def middle(hits) -> float:
    """A threshold that keeps some hits and cuts others."""
    values = sorted(h.similarity for h in hits)
    return values[len(values) // 2]


@pytest.mark.parametrize("query", [
    {"text": "red dress", "hybrid": True},
    {"text": "red dress", "hybrid": False},
    {"text": "red dress", "view": "text"},
    {"image": PHOTO},
    {"image": PHOTO, "view": "image"},
    {"text": "blue", "image": PHOTO},
], ids=["hybrid", "text-vectors", "text-view", "image", "image-view", "text+image"])
def test_cut_removes_exactly_the_hits_below_and_keeps_the_order(sample_index, query):
    _, index = sample_index
    full = index.search(k=40, **query)
    assert len(full) == 40 and all(h.similarity is not None for h in full)
    threshold = middle(full)
    cut = index.search(k=40, min_score=threshold, **query)
    assert [h.id for h in cut] == expected_cut(full, threshold)
    assert 0 < len(cut) < len(full)
    assert [h.rank for h in cut] == list(range(1, len(cut) + 1))
    assert len({h.id for h in cut}) == len(cut)   # one row per product
    before = {h.id: h for h in full}
    for h in cut:
        assert h.similarity == pytest.approx(before[h.id].similarity) and h.score == pytest.approx(before[h.id].score)
    assert not cut.notes or all("min_score" not in n for n in cut.notes)


def test_the_similarity_is_the_query_product_cosine_under_hybrid_ranking(sample_index):
    """Fusion scores are not cosines; `similarity` is, for vector-half hits and keyword-only ones."""
    _, index = sample_index
    hybrid = index.search(text="wayfarer sunglasses", k=30, hybrid=True)
    assert {h.ranking for h in hybrid} == {"hybrid"}
    query = index.embed_query(hybrid.query.text)[0]
    stored = index.stored_vectors([h.row for h in hybrid]).astype(np.float32) @ query
    assert [h.similarity for h in hybrid] == pytest.approx(stored.tolist(), abs=1e-5)
    vectors = {h.id: h.score for h in index.search(text="wayfarer sunglasses", k=120, hybrid=False)}
    assert [h.similarity for h in hybrid] == pytest.approx([vectors[h.id] for h in hybrid], abs=1e-5)
    plain = index.search(text="wayfarer sunglasses", k=10, hybrid=False)
    assert all(h.similarity == h.score for h in plain)


def test_everything_cut_says_so_in_one_note(sample_index):
    _, index = sample_index
    best = max(h.similarity for h in index.search(text="red dress", k=10))
    nothing = index.search(text="red dress", k=10, min_score=min(1.0, best + 0.01))
    assert list(nothing) == []
    notes = [n for n in nothing.notes if "min_score" in n]
    assert len(notes) == 1 and "\n" not in notes[0] and f"{best:.3f}" in notes[0]
    assert index.search(text="red dress", k=10, min_score=-1) == index.search(text="red dress", k=10)


@pytest.mark.parametrize("bad", [1.5, -1.01, float("nan"), "high", [0.5], True])
def test_bad_min_score_is_a_one_line_error(sample_index, bad):
    _, index = sample_index
    with pytest.raises(MoonsearchError, match="min_score must be a number from -1 to 1") as err:
        index.search(text="red dress", min_score=bad)
    assert "\n" not in str(err.value)


def test_the_query_is_encoded_once(sample_index, encoder):
    summary, _ = sample_index
    counting = CountingEncoder(encoder)
    index = ProductIndex.open(summary.out, device="cpu", encoder=counting)
    index.query_cache.size = 0   # the repeated text would come from the cache, encoded 0 times
    try:
        for query in ({"text": "red dress", "hybrid": True}, {"text": "red dress", "hybrid": False},
                      {"image": PHOTO}):
            before = counting.queries
            index.search(k=20, min_score=0.1, **query)
            assert counting.queries == before + 1, query
    finally:
        index.close()


def test_json_hits_carry_the_similarity(sample_index):
    _, index = sample_index
    hits = index.search(text="red dress", k=5).to_json()["hits"]
    assert all(isinstance(h["similarity"], float) and -1 <= h["similarity"] <= 1 for h in hits)


# ---- CLI -----------------------------------------------------------------------------------

def test_cli_min_score(sample_index):
    summary, index = sample_index
    full = index.search(text="red dress", k=20)
    threshold = round(middle(full), 3)
    result = cli("query", "red dress", "--index", str(summary.out), "--k", "20", "--json", "--device", "cpu",
                 "--min-score", str(threshold))
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert [h["id"] for h in hits] == expected_cut(full, threshold) and hits
    assert all(h["similarity"] >= threshold for h in hits)
    table = cli("query", "red dress", "--index", str(summary.out), "--k", "20", "--device", "cpu",
                "--min-score", str(threshold))
    assert table.returncode == 0, table.stderr
    assert "--min-score" in table.stdout and "cosine" in table.stdout and expected_cut(full, threshold)[0] in table.stdout


@pytest.mark.parametrize("bad", ["abc", "1.5", "nan"])
def test_cli_rejects_bad_min_score_in_one_line(sample_index, bad):
    summary, _ = sample_index
    result = cli("query", "red dress", "--index", str(summary.out), "--device", "cpu", f"--min-score={bad}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "--min-score must be a number from -1 to 1" in result.stderr and bad in result.stderr


# ---- server --------------------------------------------------------------------------------

@pytest.mark.parametrize("params", [{"q": "red dress"}, {"q": "red dress", "hybrid": "false"},
                                    {"q": "red dress", "view": "text"}], ids=["hybrid", "vectors", "text-view"])
def test_server_min_score_is_the_librarys(sample_index, encoder, params):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from moonsearch.serve import ServeConfig, create_app
    from moonsearch.serve.state import ServedIndex

    summary, index = sample_index
    counting = CountingEncoder(encoder)
    served = ServedIndex(summary.out, device="cpu", encoder=counting)
    app = create_app(ServeConfig(index=summary.out, candidates=200), served)
    hybrid = {"false": False}.get(params.get("hybrid"))
    library = dict(text=params["q"], view=params.get("view", "mm"), hybrid=hybrid)
    threshold = middle(index.search(k=200, **library))
    expected = index.search(k=200, min_score=threshold, **library)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            before = counting.queries
            body = client.get("/search", params={**params, "limit": 100, "min_score": threshold}).json()
            assert counting.queries == before + 1   # one encoding for the ranking and the cut
    finally:
        served.close()
    assert [r["id"] for r in body["results"]] == [h.id for h in expected][:100] and body["results"]
    assert body["total"] == len(expected)
    assert [r["similarity"] for r in body["results"]] == pytest.approx([h.similarity for h in expected][:100], abs=1e-6)
