"""End to end on 1,000 real Myntra products (skipped when ../shared/data is absent)."""

import collections
import json
import subprocess
import sys

import pytest

from moonsearch.index.builder import build_index
from moonsearch.search.product_index import ProductIndex

from conftest import REPO

SLICE = 1000


@pytest.fixture(scope="module")
def myntra_slice(myntra_available, tmp_path_factory, encoder):
    """The first 1,000 test-split products, image paths pointing into the shared folder."""
    records = []
    with open(myntra_available / "products.jsonl", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["split"] != "test":
                continue
            if record["image"]:
                record["image"] = str(myntra_available / record["image"])
            records.append(record)
            if len(records) == SLICE:
                break
    folder = tmp_path_factory.mktemp("myntra-slice")
    (folder / "products.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = folder / "index"
    summary = build_index(folder, out, encoder=encoder, device="cpu")
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    yield records, summary, index
    index.close()


def test_every_product_is_indexed(myntra_slice):
    records, summary, _ = myntra_slice
    assert summary.products == SLICE and summary.skipped == 0
    assert summary.text_only == sum(1 for r in records if not r["image"])


def test_type_and_colour_queries_return_mostly_that_type_and_colour(myntra_slice):
    records, _, index = myntra_slice
    combos = collections.Counter((r["baseColour"], r["articleType"]) for r in records)
    frequent = [c for c, n in combos.most_common() if n >= 10][:8]
    assert len(frequent) >= 5
    type_share, both_share = [], []
    for colour, article in frequent:
        hits = index.search(text=f"{colour} {article}".lower(), k=10)
        type_share.append(sum(h.attributes["articleType"] == article for h in hits) / 10)
        both_share.append(sum(h.attributes["articleType"] == article and h.attributes["baseColour"] == colour
                              for h in hits) / 10)
    assert sum(type_share) / len(type_share) >= 0.8, (frequent, type_share)
    assert sum(both_share) / len(both_share) >= 0.5, (frequent, both_share)


@pytest.mark.parametrize("view", ["mm", "image"])
def test_image_query_returns_its_own_product_first(myntra_slice, view):
    records, _, index = myntra_slice
    with_image = [r for r in records if r["image"]][:: 40][:20]
    firsts = [index.search(image=r["image"], k=1, view=view)[0].id == str(r["id"]) for r in with_image]
    assert sum(firsts) >= 0.9 * len(firsts), firsts


def test_text_plus_image_query_and_filters(myntra_slice):
    records, _, index = myntra_slice
    shirt = next(r for r in records if r["articleType"] == "Shirts" and r["image"])
    hits = index.search(text=shirt["baseColour"].lower(), image=shirt["image"], k=5)
    assert hits[0].id == str(shirt["id"])
    hits = index.search(text="shirt", k=20, filters=["gender=Men", "price<1000"])
    assert len(hits) == 20
    assert all(h.attributes["gender"] == "Men" and h.attributes["price"] < 1000 for h in hits)


def test_cli_eval_shopper_ranks_as_asked(myntra_slice):
    """`eval shopper --vectors` scores the encoder's own ranking, as the API's hybrid=False does."""
    from moonsearch.eval.shopper import evaluate_shopper_queries

    from conftest import SHOPPER_QUERIES

    _, summary, index = myntra_slice
    result = subprocess.run([sys.executable, "-m", "moonsearch.cli", "eval", "shopper", "--index", str(summary.out),
                             "--queries", str(SHOPPER_QUERIES), "--vectors", "--json", "--device", "cpu"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    scored = json.loads(result.stdout)
    assert scored["ranking"] == "vectors"
    assert scored["metrics"] == evaluate_shopper_queries(index, SHOPPER_QUERIES, hybrid=False)["metrics"]


def test_cli_json_query_on_real_products(myntra_slice):
    _, summary, _ = myntra_slice
    result = subprocess.run([sys.executable, "-m", "moonsearch.cli", "query", "black watch", "--index",
                             str(summary.out), "--k", "5", "--json", "--filter", "gender=Men"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 5 and {"id", "score", "title"} <= set(hits[0])
    assert all(h["attributes"]["gender"] == "Men" for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_shopper_evaluation_through_the_index(myntra_slice):
    from moonsearch.eval.shopper import evaluate_shopper_queries, is_relevant

    from conftest import SHOPPER_QUERIES

    records, _, index = myntra_slice
    result = evaluate_shopper_queries(index, SHOPPER_QUERIES, hybrid=False)
    assert result["queries"] == 50 and result["products"] == SLICE
    assert all(0.0 <= v <= 1.0 for v in result["metrics"].values())
    assert len(result["per_query"]["shopper"]) == 50          # each query's own scores, worst first
    # the relevance rule reads nested attributes, and a missing attribute does not match
    assert is_relevant({"attributes": {"Pattern": "Striped"}}, {"attributes.Pattern": ["Striped"]})
    assert not is_relevant({"attributes": {}}, {"attributes.Pattern": ["Striped"]})
    # "red dress"-style queries find relevant products near the top when the slice has them
    assert result["metrics"]["MRR"] > 0.5
    hybrid = evaluate_shopper_queries(index, SHOPPER_QUERIES, hybrid=True)
    assert hybrid["ranking"].startswith("hybrid") and result["ranking"] == "vectors"
    assert hybrid["products"] == SLICE and hybrid["metrics"]["MRR"] > 0.5
    # by default the queries are ranked as `moonsearch query` ranks text: hybrid
    assert {k: v for k, v in evaluate_shopper_queries(index, SHOPPER_QUERIES).items() if k != "per_query"} == \
        {k: v for k, v in hybrid.items() if k != "per_query"}
