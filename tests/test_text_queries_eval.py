"""The shopper-language benchmarks (moonsearch.eval.text_queries): attribute queries written by a
stated rule, spelling variants by written rules, and the hybrid ranker they are scored with."""

import numpy as np
import pytest

from moonsearch.catalog.inputs import product_text
from moonsearch.catalog.models import Product
from moonsearch.eval import text_queries as tq
from moonsearch.store.query_language import words


def product(i, article, colour, gender="Men", price=500, **nested):
    title = f"Brand {gender} {colour} {article}"
    attributes = {"articleType": article, "baseColour": colour, "gender": gender, "price": price,
                  "attributes": nested}
    return Product(str(i), title, None, (), attributes, "fixture")


def catalog():
    products = []
    for i in range(12):
        products.append(product(i, "Tshirts", "Black" if i % 2 else "White", Neck="Round Neck" if i < 10 else "V-Neck",
                                price=400 + 100 * i))
    for i in range(12, 24):
        products.append(product(i, "Jeans", "Blue", Fit="Slim Fit" if i < 22 else "Regular Fit", gender="Women"))
    for i in range(24, 30):
        products.append(product(i, "Tshirts", "Red"))   # no Neck: unjudged for neck queries
    return products


def bag_of_words(texts, dim=64):
    """A deterministic stand-in encoder: hashed word counts, normalised (the ranker only needs vectors)."""
    out = np.zeros((len(texts), dim), np.float32)
    for row, text in enumerate(texts):
        for word in words(text):
            out[row, sum(map(ord, word)) % dim] += 1
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-9)


def ranker(products, parse=True):
    texts = [product_text(p.title, p.attributes) for p in products]
    return tq.HybridRanker(bag_of_words, products, bag_of_words(texts), texts, parse=parse)


def test_attribute_queries_follow_the_stated_rule():
    queries = tq.attribute_queries(catalog(), keys=("Neck", "Fit"), min_relevant=10, min_pairs=1)
    assert queries == {"Neck": [{"query": "round neck t-shirt",
                                 "match": {"articleType": ["Tshirts"], "attributes.Neck": ["Round Neck"]}}],
                       "Fit": [{"query": "slim fit jeans",
                                "match": {"articleType": ["Jeans"], "attributes.Fit": ["Slim Fit"]}}]}
    # V-Neck (2 products) and Regular Fit (2) are below min_relevant; a key needs min_pairs pairs
    assert tq.attribute_queries(catalog(), keys=("Neck",), min_relevant=10, min_pairs=2) == {}
    # the per-key cap is a seeded sample: the same every run
    assert tq.attribute_queries(catalog(), min_relevant=2, per_key=1) == tq.attribute_queries(catalog(), min_relevant=2, per_key=1)


def test_attribute_scores_leave_unjudged_products_out():
    products = catalog()
    result = tq.attribute_scores(ranker(products), tq.attribute_queries(products, keys=("Neck",), min_pairs=1))
    neck = result["per_key"]["Neck"]
    assert neck["nDCG@10"] >= neck["nDCG@10_strict"]
    assert result["nDCG@10_macro"] == neck["nDCG@10"] == result["nDCG@10_min_key"]
    assert tq.unjudged(products, "Neck", "Tshirts") == set(range(24, 30))


def test_spelling_variants_are_written_by_rules():
    variants = dict((v, rule) for rule, v in tq.spelling_variants("round neck black tshirt for men"))
    assert variants["round neck black t shirt for men"] == "compound split"
    assert variants["round neck black t-shirt for men"] == "hyphenated"
    assert variants["crew neck black tshirt for men"] == "synonym"
    assert variants["men's round neck black tshirt"] == "possessive"
    assert "round neck black tshirts for men" in variants     # plural
    assert {v for _, v in tq.spelling_variants("blue jeans")} >= {"blue denims"}
    assert all(v != "saree" for _, v in tq.spelling_variants("saree"))


def test_understood_variants_rank_as_their_canonical_query():
    products = catalog()
    queries = [{"query": "black t-shirt", "match": {"articleType": ["Tshirts"], "baseColour": ["Black"]}},
               {"query": "blue jeans for women", "match": {"articleType": ["Jeans"], "gender": ["Women"]}}]
    understood = tq.run(bag_of_words, products, bag_of_words([product_text(p.title, p.attributes) for p in products]),
                        [product_text(p.title, p.attributes) for p in products], queries, attribute_keys=("Neck",))
    verbatim = tq.run(bag_of_words, products, bag_of_words([product_text(p.title, p.attributes) for p in products]),
                      [product_text(p.title, p.attributes) for p in products], queries, parse=False,
                      attribute_keys=("Neck",))
    assert understood["variants"]["overlap@10"] == pytest.approx(1.0)
    assert verbatim["variants"]["overlap@10"] < 1.0
    assert set(understood["shopper"]) >= {"P@10", "P@10_ceiling", "nDCG@10"}
    assert understood["shopper"]["P@10_ceiling"] == pytest.approx((0.6 + 1.0) / 2)
    flat = tq.flat_metrics(understood)
    assert set(flat) == {"text-shopper", "text-variants", "text-attribute"}


def test_a_price_phrase_filters_the_ranking():
    products = catalog()
    ranking = ranker(products).rank(["t-shirt under 700"])[0]
    assert ranking and all(products[i].attributes["price"] <= 700 for i in ranking)
    assert any(products[i].attributes["price"] > 700 for i in ranker(products, parse=False).rank(["t-shirt under 700"])[0])
