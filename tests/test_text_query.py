"""The text-query head (issue 20): trained beside a moon-lite model on shopper-written queries of
its training products, used by both runtimes for text-only queries only, ignored when stale."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest
import torch

from moonsearch.encoder.moon import MoonEncoder, MoonLite
from moonsearch.encoder.query_heads import head_path
from moonsearch.shopper import is_relevant, text_queries
from moonsearch.train.baseline import load_config
from moonsearch.train.report import save_training_outputs
from moonsearch.train.text_query import default_output, synonym_spellings, train_text_query, write_queries

from conftest import make_tiny_catalog, tiny_records

TINY = {"dim": 32, "layers": 1, "heads": 2, "experts": 2, "top_k": 1, "ffn_hidden": 64, "dropout": 0.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny (untrained) moon-lite base and a text head trained for it on 16 products, the last
    4 held out as its validation."""
    folder = tmp_path_factory.mktemp("text-query")
    records = [{**r, "split": "train", "attributes": {"Neck": "Round Neck"} if r["articleType"] == "Tshirts" else {}}
               for r in tiny_records(16)]
    catalog = make_tiny_catalog(folder / "catalog", records)
    torch.manual_seed(0)
    base = folder / "weights" / "shop"
    training = {"encoder": "moon-lite", "data": {"exclude": [12, 16]}}
    save_training_outputs(MoonLite(**TINY).state_dict(), {"model": TINY, "training": training}, {}, base)
    config = load_config("text-query")
    config.update(base=str(base.with_suffix(".safetensors")))
    config["data"].update(index=None, queries_per_product=3, val_queries=50)
    config["optim"].update(epochs=4, batch_size=8, lr=3e-3)
    out = default_output(config["base"])
    report = train_text_query(catalog, config, out, cache_dir=folder / "cache")
    return {"catalog": catalog, "base": base.with_suffix(".safetensors"), "head": out.with_suffix(".safetensors"),
            "report": report}


def test_the_head_is_written_beside_its_base_and_names_it(trained):
    assert trained["head"] == head_path(trained["base"], "text") and trained["head"].name == "shop-text-query.safetensors"
    saved = json.loads(trained["head"].with_suffix(".json").read_text())
    assert saved["base"] == MoonEncoder.load(trained["base"]).encoder_id == trained["report"]["base"]
    report = trained["report"]
    assert report["data"]["products"] == 12 and report["data"]["held_out_products"] == 4
    assert [h["epoch"] for h in report["history"]] == [0, 1, 2, 3, 4]
    assert 0.0 <= report["history"][-1]["val written P@10"] <= 1.0


def test_training_lowers_the_query_to_product_loss(trained):
    losses = [h["loss"] for h in trained["report"]["history"][1:]]
    assert losses[-1] < losses[0], losses


def test_only_text_only_queries_go_through_the_head(trained):
    """Products, image queries and image+text queries are the base's vectors exactly."""
    from PIL import Image

    encoder = MoonEncoder.load(trained["base"])
    assert set(encoder.head_models) == {"text"}
    image = Image.new("RGB", (60, 80), "red")
    texts, images = ["red dress", None, "blue shirt", "red dress"], [None, image, image, None]
    queries, plain = encoder.encode_queries(texts, images), encoder.encode(texts, images)
    np.testing.assert_allclose(queries[[1, 2]], plain[[1, 2]], atol=1e-5)   # other batch padding: float noise only
    assert np.abs(queries[[0, 3]] - plain[[0, 3]]).max() > 1e-3
    np.testing.assert_allclose(queries[0], queries[3], atol=1e-6)
    views = encoder.encode_views(["red dress"], [image])      # the product side never sees the head
    np.testing.assert_allclose(views.text, encoder.encode(["red dress"], [None]), atol=1e-6)


def test_a_head_trained_for_other_weights_is_not_used(trained, tmp_path):
    other = tmp_path / "shop.safetensors"
    for suffix in (".safetensors", ".json"):
        shutil.copy(trained["base"].with_suffix(suffix), other.with_suffix(suffix))
    shutil.copy(trained["head"], head_path(other, "text"))
    saved = json.loads(trained["head"].with_suffix(".json").read_text())
    head_path(other, "text").with_suffix(".json").write_text(json.dumps({**saved, "base": "shop@0000000000000000"}))
    encoder = MoonEncoder.load(other)
    assert encoder.query_heads == {} and encoder.text_query_id is None
    np.testing.assert_array_equal(encoder.encode_queries(["red dress"], [None]), encoder.encode(["red dress"], [None]))


def test_onnx_runtime_embeds_text_queries_with_the_head_as_torch_does(trained):
    from moonsearch.encoder.onnx_moon import OnnxMoonEncoder

    onnx = OnnxMoonEncoder.load(trained["base"])
    assert onnx.paths["text-query"].is_file() and onnx.text_query_id == MoonEncoder.load(trained["base"]).text_query_id
    texts = ["red dress", "kurta for women", "mens crew neck tees"]
    got = onnx.encode_queries(texts, [None] * 3)
    expected = MoonEncoder.load(trained["base"]).encode_queries(texts, [None] * 3)
    assert ((got * expected).sum(1) > 0.999).all()
    assert not np.allclose(got, onnx.encode(texts, [None] * 3), atol=1e-3)


def test_the_query_writer_adds_attribute_phrases_word_orders_and_spellings():
    product = {"gender": "Women", "baseColour": "Black", "articleType": "Tshirts",
               "attributes": {"Neck": "Round Neck", "Occasion": "Party"}}
    spellings = synonym_spellings()
    assert "tees" in spellings["t-shirt"] and "tshirt" in spellings["tees"]
    written = {q.text: q.match for seed in range(60) for q in text_queries(product, random.Random(seed), 20, spellings)}
    assert all(is_relevant(product, rule) for rule in written.values())
    assert any(t.startswith("round neck ") for t in written) and any(t.startswith("party ") for t in written)
    assert any(" for women" in t for t in written) and any(t.startswith("women's ") for t in written)
    assert any("tee" in t.split() or "tees" in t.split() for t in written)      # "tshirt" respelled
    assert written.get("round neck tshirt", written.get("round neck tshirts")) == {
        "articleType": ["Tshirts"], "attributes.Neck": ["Round Neck"]}


def test_a_query_has_every_product_its_rule_accepts_as_positives():
    from moonsearch.catalog.models import Product

    products = [Product(id=str(i), title=f"T{i % 3}", description=None, images=(),
                        attributes={"articleType": kind, "baseColour": colour}, source="x") for i, (kind, colour) in
                enumerate([("Tshirts", "Red"), ("Tshirts", "Blue"), ("Dresses", "Red"), ("Tshirts", "Red")])]
    texts, positives = write_queries(products, 5, True, 0, 0.0, {})
    by_text = dict(zip(texts, positives))
    assert by_text["red tshirts"].tolist() == [0, 3] or by_text["red tshirt"].tolist() == [0, 3]
    assert by_text["T0"].tolist() == [0, 3]                     # a title: every product with that title
    assert len(set(zip(texts, map(bytes, positives)))) == len(texts)
