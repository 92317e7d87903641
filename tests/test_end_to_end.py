"""index -> query on the shipped sample catalog, through the Python API and the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from moonsearch.errors import IndexFormatError
from moonsearch.search.product_index import ProductIndex

from conftest import REPO, SAMPLE_CATALOG


def cli(*args):
    return subprocess.run([sys.executable, "-m", "moonsearch.cli", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def sample_records():
    return [json.loads(line) for line in (SAMPLE_CATALOG / "products.jsonl").read_text().splitlines()]


def test_sample_catalog_is_indexed_whole(sample_index):
    summary, index = sample_index
    records = sample_records()
    without_image = sum(1 for r in records if not r["image"])
    assert (summary.products, summary.text_only, summary.skipped) == (len(records), without_image, 0)
    assert index.manifest.counts["products"] == len(records)
    assert index.manifest.encoder["id"] == index.encoder.encoder_id
    assert set(index.manifest.display_fields) >= {"articleType", "baseColour"}


@pytest.mark.parametrize("query, article", [("jeans", "Jeans"), ("wrist watch", "Watches"),
                                            ("sunglasses", "Sunglasses"), ("handbag", "Handbags")])
def test_text_query_finds_the_article_type(sample_index, query, article):
    _, index = sample_index
    hits = index.search(text=query, k=5)
    assert len(hits) == 5
    assert sum(h.attributes["articleType"] == article for h in hits) >= 4, [h.title for h in hits]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


@pytest.mark.parametrize("view", ["mm", "image"])
def test_image_query_finds_its_own_product_first(sample_index, view):
    _, index = sample_index
    for record in [r for r in sample_records() if r["image"]][::15]:
        hits = index.search(image=SAMPLE_CATALOG / record["image"], k=3, view=view)
        assert hits[0].id == record["id"], (record["id"], [h.id for h in hits])


def test_text_and_image_together(sample_index):
    _, index = sample_index
    record = next(r for r in sample_records() if r["image"] and r["articleType"] == "Dresses")
    hits = index.search(text=record["baseColour"].lower() + " dress", image=SAMPLE_CATALOG / record["image"], k=3)
    assert hits[0].id == record["id"]


def test_filters_return_k_matching_products(sample_index):
    _, index = sample_index
    women = sum(r["gender"] == "Women" for r in sample_records())
    hits = index.search(text="shoes", k=20, filters=["gender=Women"])
    assert len(hits) == min(20, women) and all(h.attributes["gender"] == "Women" for h in hits)
    hits = index.search(text="dress", k=50, filters=["price<1000", "attributes.Pattern=Striped,Checked"])
    expected = [r for r in sample_records()
                if r["price"] < 1000 and r["attributes"].get("Pattern") in ("Striped", "Checked")]
    assert sorted(h.id for h in hits) == sorted(r["id"] for r in expected)


def test_image_view_leaves_out_products_without_image(sample_index):
    _, index = sample_index
    no_image = {r["id"] for r in sample_records() if not r["image"]}
    hits = index.search(text="shirt watch handbag", k=200, view="image")
    assert len(hits) == len(sample_records()) - len(no_image)
    assert not no_image & {h.id for h in hits}
    text_hits = index.search(text="shirt watch handbag", k=200, view="text")
    assert len(text_hits) == len(sample_records())


def test_cli_query_json_and_table_and_info(sample_index):
    summary, _ = sample_index
    result = cli("query", "red dress", "--index", str(summary.out), "--json", "--k", "7", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 7 and all({"id", "score", "title", "rank"} <= set(h) for h in hits)
    table = cli("query", "red dress", "--index", str(summary.out), "--k", "3")
    assert table.returncode == 0 and hits[0]["id"] in table.stdout
    info = cli("info", "--index", str(summary.out), "--json")
    details = json.loads(info.stdout)
    assert details["manifest"]["counts"]["products"] == summary.products
    assert "attributes.Pattern" in {k for k, _ in details["filterable_fields"]}


def test_index_from_another_encoder_is_refused(sample_index, tmp_path, encoder):
    summary, _ = sample_index
    copy = tmp_path / "copy"
    shutil.copytree(summary.out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["encoder"]["id"] = "baseline@0000000000000000"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="baseline@0000000000000000"):
        ProductIndex.open(copy, device="cpu", encoder=encoder)
    result = cli("query", "red dress", "--index", str(copy))
    assert result.returncode == 2 and "Rebuild" in result.stderr and "Traceback" not in result.stderr


def test_bad_query_inputs_are_clear_errors(sample_index, tmp_path):
    from moonsearch.errors import MoonsearchError

    _, index = sample_index
    with pytest.raises(MoonsearchError, match="query text"):
        index.search()
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(MoonsearchError, match="cannot use query image"):
        index.search(image=tmp_path / "broken.jpg")
    with pytest.raises(MoonsearchError, match="unknown view"):
        index.search(text="x", view="audio")


def test_similar_products_are_the_nearest_stored_vectors_without_the_product_itself(sample_index):
    _, index = sample_index
    key = index.search(text="red dress", k=1, hybrid=False)[0].row
    everything = index.store.allowed_rows([])
    vectors = index.stored_vectors(everything)
    cosines = vectors @ index.stored_vectors([key])[0]
    expected = [int(everything[i]) for i in np.argsort(-cosines, kind="stable") if everything[i] != key][:5]
    hits = index.similar(key, k=5)
    assert [h.row for h in hits] == expected and key not in [h.row for h in hits]
    assert [round(h.score, 5) for h in hits] == [round(float(cosines[list(everything).index(r)]), 5) for r in expected]
    women = index.similar(key, k=5, filters=["gender=Women"])
    assert women and all(h.attributes.get("gender") == "Women" for h in women)
