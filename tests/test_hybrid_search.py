"""Hybrid search: the vectors' ranking fused with BM25 keyword matches (reciprocal rank fusion),
the default ranking of text-only product queries."""

import json
import shutil

import duckdb
import pytest

from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.search.fusion import RRF_CONSTANT, reciprocal_rank_fusion
from moonsearch.search.product_index import ProductIndex

from conftest import SAMPLE_CATALOG
from test_end_to_end import cli


def records_with_word(word):
    records = [json.loads(line) for line in (SAMPLE_CATALOG / "products.jsonl").read_text().splitlines()]
    return [r for r in records if word in json.dumps(r).lower()]


def test_fusion_rewards_agreement_and_keeps_first_met_order_on_ties():
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4]])
    assert [item for item, _ in fused] == [3, 1, 2, 4]
    assert dict(fused)[3] == pytest.approx(1 / (RRF_CONSTANT + 3) + 1 / (RRF_CONSTANT + 1))
    assert reciprocal_rank_fusion([[], []]) == []


def test_hybrid_puts_every_product_with_a_rare_query_word_first(sample_index):
    _, index = sample_index
    wanted = {r["id"] for r in records_with_word("wayfarer")}
    assert len(wanted) >= 2
    hits = index.search(text="wayfarer", k=len(wanted), hybrid=True)
    assert {h.id for h in hits} == wanted
    assert [h.rank for h in hits] == list(range(1, len(wanted) + 1))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_hybrid_keeps_filters_on_both_rankings(sample_index):
    _, index = sample_index
    men = {r["id"] for r in records_with_word("wayfarer") if r["gender"] == "Men"}
    hits = index.search(text="wayfarer", k=20, filters=["gender=Men"], hybrid=True)
    assert {h.id for h in hits[:len(men)]} == men
    assert hits and all(h.attributes["gender"] == "Men" for h in hits)


def test_keyword_search_reads_the_stored_product_text(sample_index):
    _, index = sample_index
    rows = [row for row, _ in index.store.keyword_rows("wayfarer", 10)]
    assert sorted(p["id"] for p in index.store.products(rows)) == sorted(r["id"] for r in records_with_word("wayfarer"))
    assert index.store.keyword_rows("qwertyuiop", 10) == []


def test_hybrid_needs_query_text(sample_index):
    _, index = sample_index
    image = next(SAMPLE_CATALOG.glob("images/*.jpg"))
    with pytest.raises(MoonsearchError, match="needs a query text"):
        index.search(image=image, hybrid=True)
    with pytest.raises(MoonsearchError, match="needs a query text"):
        index.search(text="  ", image=image, hybrid=True)


def test_text_only_product_queries_rank_hybrid_by_default(sample_index):
    _, index = sample_index
    default = index.search(text="wayfarer", k=10)
    assert [(h.id, h.score) for h in default] == [(h.id, h.score) for h in index.search(text="wayfarer", k=10, hybrid=True)]
    assert {h.ranking for h in default} == {"hybrid"}
    vectors = index.search(text="wayfarer", k=10, hybrid=False)
    assert {h.ranking for h in vectors} == {"vectors"}
    # cosines of unit vectors against fusion scores, which are at most 2 / (RRF_CONSTANT + 1)
    assert vectors[0].score > 2 / (RRF_CONSTANT + 1) >= default[0].score


def test_image_queries_and_named_views_rank_by_vectors_by_default(sample_index):
    _, index = sample_index
    image = next(SAMPLE_CATALOG.glob("images/*.jpg"))
    assert index.ranking(text="wayfarer").kind == "hybrid" and index.ranking(text="wayfarer").note is None
    for query in [dict(image=image), dict(text="wayfarer", image=image), dict(text="wayfarer", view="text"),
                  dict(text="wayfarer", view="image")]:
        assert index.ranking(**query).kind == "vectors", query
        hits = index.search(k=5, **query)
        assert {h.ranking for h in hits} == {"vectors"}
        assert [h.id for h in hits] == [h.id for h in index.search(k=5, hybrid=False, **query)]


def test_cli_hybrid_query(sample_index):
    summary, _ = sample_index
    result = cli("query", "wayfarer", "--index", str(summary.out), "--hybrid", "--json", "--k", "3", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert {h["id"] for h in json.loads(result.stdout)["hits"]} == {r["id"] for r in records_with_word("wayfarer")}
    assert {h["ranking"] for h in json.loads(result.stdout)["hits"]} == {"hybrid"}


def test_cli_says_what_the_scores_are(sample_index):
    summary, _ = sample_index
    default = cli("query", "wayfarer", "--index", str(summary.out), "--k", "3", "--device", "cpu")
    assert default.returncode == 0 and "reciprocal-rank fusion" in default.stdout, default.stderr
    vectors = cli("query", "wayfarer", "--index", str(summary.out), "--vectors", "--json", "--k", "3", "--device", "cpu")
    assert {h["ranking"] for h in json.loads(vectors.stdout)["hits"]} == {"vectors"}
    table = cli("query", "wayfarer", "--index", str(summary.out), "--vectors", "--k", "3", "--device", "cpu")
    assert table.returncode == 0 and "cosine similarities" in table.stdout


def test_index_without_keyword_index_is_a_clear_error(sample_index, tmp_path, encoder):
    """An index written before keyword search existed still answers vector queries; --hybrid says
    to rebuild it instead of failing inside DuckDB."""
    summary, _ = sample_index
    old = tmp_path / "old"
    shutil.copytree(summary.out, old)
    con = duckdb.connect(str(old / "metadata.duckdb"))
    con.execute("DROP SCHEMA fts_main_products CASCADE")
    con.close()
    index = ProductIndex.open(old, device="cpu", encoder=encoder)
    assert not index.info()["keyword_index"] and sample_index[1].info()["keyword_index"]
    fallback = index.ranking(text="wayfarer")
    assert fallback.kind == "vectors" and "rebuild" in fallback.note
    assert [h.id for h in index.search(text="wayfarer", k=3)] == [h.id for h in index.search(text="wayfarer", k=3, hybrid=False)]
    with pytest.raises(IndexFormatError, match="no keyword index"):
        index.search(text="wayfarer", k=3, hybrid=True)
    index.close()
    result = cli("query", "wayfarer", "--index", str(old), "--hybrid")
    assert result.returncode == 2 and "rebuild" in result.stderr and "Traceback" not in result.stderr
    result = cli("query", "wayfarer", "--index", str(old), "--json")     # the default says it fell back
    assert result.returncode == 0 and "no keyword index" in result.stderr
    assert {h["ranking"] for h in json.loads(result.stdout)["hits"]} == {"vectors"}
