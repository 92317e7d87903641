"""Field weights of the keyword half (issue 20): BM25F with integer weights is BM25 over a keyword
text in which each field is repeated; the embedded text, and so every vector, does not change."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest

from conftest import make_tiny_catalog, tiny_records
from moonsearch.catalog.inputs import KEYWORD_WEIGHTS, keyword_text, keyword_weights, product_text
from moonsearch.errors import MoonsearchError
from moonsearch.store.keywords import memory_keyword_index

TITLE_SILK = ("Silk Shirt", {"gender": "Men", "baseColour": "Red", "attributes": {"Fabric": "Linen"}})
ATTRIBUTE_SILK = ("Linen Shirt", {"gender": "Men", "baseColour": "Red", "attributes": {"Fabric": "Silk"}})


def test_keyword_text_repeats_each_field_by_its_weight():
    title, attributes = TITLE_SILK
    text = product_text(title, attributes)
    assert keyword_text(title, attributes) == text                     # unweighted: the product text itself
    weighted = keyword_text(title, attributes, {"title": 3, "attributes": 2})
    tail = text[len(title) + 2:]
    assert weighted.startswith(text) and weighted.count(title) == 3 and weighted.count(tail) == 2
    assert keyword_text("Plain", {}, {"title": 2, "attributes": 3}) == "Plain. Plain"   # no attributes: nothing to repeat


@pytest.mark.parametrize("bad", ["title=0", "title=x", "colour=2", "title2", {"title": 1.5}, {"title": True}, {"title": -1}])
def test_bad_weights_are_one_line_errors(bad):
    with pytest.raises(MoonsearchError) as error:
        keyword_weights(bad)
    assert "\n" not in str(error.value) and str(error.value).startswith("keyword weights")


def test_weights_parse():
    assert keyword_weights(None) == KEYWORD_WEIGHTS
    assert keyword_weights("title=3") == {"title": 3, "attributes": KEYWORD_WEIGHTS["attributes"]}
    assert keyword_weights(" title = 2 , attributes = 4 ") == {"title": 2, "attributes": 4}


def ranking(weights, query="silk"):
    postings = memory_keyword_index([keyword_text(t, a, weights) for t, a in (TITLE_SILK, ATTRIBUTE_SILK)])
    return postings.search(query, None)


def test_title_weight_ranks_a_title_match_over_an_attribute_match():
    """'silk' once in each product: a title weight puts the title match first, an attribute weight
    the attribute match, as BM25F over the two fields does."""
    assert [row for row, _ in ranking({"title": 3, "attributes": 1})] == [0, 1]
    assert [row for row, _ in ranking({"title": 1, "attributes": 3})] == [1, 0]
    (_, a), (_, b) = ranking({"title": 1, "attributes": 1})
    assert a == b     # same words, same length: unweighted BM25 cannot tell a title from an attribute
    heavy = dict(ranking({"title": 3, "attributes": 1}))
    assert heavy[0] > heavy[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    """One tiny catalog indexed twice: unweighted and with the title weighted 3."""
    from moonsearch.index.builder import build_index

    folder = tmp_path_factory.mktemp("kw")
    records = tiny_records()
    records[0].update(title="Red silk shirt", attributes={"Fabric": "Cotton"})
    records[2].update(title="Green cotton shirt", attributes={"Fabric": "Silk"})
    catalog = make_tiny_catalog(folder / "catalog", records)
    out = {}
    for name, weights in (("plain", "title=1,attributes=1"), ("titled", {"title": 3, "attributes": 1})):
        build_index(catalog, folder / name, encoder=encoder, device="cpu", keyword_weights=weights)
        out[name] = folder / name
    return out


def test_index_weights_change_keywords_not_vectors(built, encoder):
    from moonsearch.search.product_index import ProductIndex

    plain, titled = (ProductIndex.open(built[n], device="cpu", encoder=encoder) for n in ("plain", "titled"))
    try:
        assert json.loads((built["titled"] / "manifest.json").read_text())["keyword_weights"] == {"title": 3, "attributes": 1}
        keys = list(range(12))
        for view in ("mm", "image", "text"):
            assert np.array_equal(plain.stored_vectors(keys, view), titled.stored_vectors(keys, view))
        sql = titled.store.keyword_rows_sql("silk", 5)
        assert [r for r, _ in sql] == [0, 2] and sql[0][1] > sql[1][1]
        assert titled.store.keyword_rows_sql("silk", 5) == titled.store.keyword_rows("silk", 5) == titled.store.keyword_rows("silk", 5)
        assert plain.store.keyword_rows_sql("silk", 5) != sql
    finally:
        plain.close()
        titled.close()


def test_live_writes_weight_new_products_as_the_index_was_built(built, encoder):
    from moonsearch.index.live import open_writer

    with open_writer(built["titled"], encoder=encoder, device="cpu") as writer:
        writer.upsert([{"id": "NEW", "title": "Velvet scarf", "articleType": "Scarves"}])
    manifest = json.loads((built["titled"] / "manifest.json").read_text())
    con = duckdb.connect(str(built["titled"] / manifest["snapshot"] / "metadata.duckdb"), read_only=True)
    try:
        keywords = con.execute("SELECT keywords FROM products WHERE id = 'NEW'").fetchone()[0]
    finally:
        con.close()
    assert manifest["keyword_weights"] == {"title": 3, "attributes": 1} and keywords.count("Velvet scarf") == 3


def test_an_index_built_before_field_weights_still_searches_and_writes(built, encoder, tmp_path):
    """No keywords column and no weights in the manifest: its keyword index reads the text, and a
    write rebuilds it over the text."""
    import shutil

    from moonsearch.index.live import open_writer
    from moonsearch.search.product_index import ProductIndex
    from moonsearch.store.keywords import create_keyword_index

    old = tmp_path / "old"
    shutil.copytree(built["plain"], old)
    con = duckdb.connect(str(old / "metadata.duckdb"))
    con.execute("DROP SCHEMA fts_main_products CASCADE")
    con.execute("ALTER TABLE products DROP COLUMN keywords")
    create_keyword_index(con)
    con.close()
    manifest = json.loads((old / "manifest.json").read_text())
    manifest.pop("keyword_weights")
    (old / "manifest.json").write_text(json.dumps({**manifest, "files": None}))
    index = ProductIndex.open(old, device="cpu", encoder=encoder)
    try:
        assert [r for r, _ in index.store.keyword_rows_sql("silk", 5)] == [0, 2]
    finally:
        index.close()
    with open_writer(old, encoder=encoder, device="cpu") as writer:
        writer.upsert([{"id": "NEW", "title": "Silk scarf", "articleType": "Scarves"}])
    index = ProductIndex.open(old, device="cpu", encoder=encoder)
    try:
        assert {index.store.products([r])[0]["id"] for r, _ in index.store.keyword_rows_sql("silk", 5)} == {"P000", "P002", "NEW"}
    finally:
        index.close()
