"""The photo-query head (issue 16): trained beside a moon-lite model for image-only queries, used
by both runtimes for those queries only, and ignored when it belongs to other weights."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from moonsearch.encoder.moon import MoonEncoder
from moonsearch.encoder.query_heads import head_path
from moonsearch.train.baseline import load_config
from moonsearch.train.moon import train_moon
from moonsearch.train.photo_query import default_output, mirrored_grid, train_photo_query

from conftest import make_tiny_catalog, tiny_records


def tiny_base_config() -> dict:
    config = load_config("moon-lite")
    config["model"].update(dim=32, layers=1, heads=2, experts=2, top_k=1, ffn_hidden=64, dropout=0.0)
    config["data"].update(limit=None, val_fraction=0.25)
    config["optim"].update(epochs=1, batch_size=4)
    return config


def head_config(base, epochs: int = 15, lr: float = 3e-3) -> dict:
    config = load_config("photo-query")
    config.update(base=str(base))
    config["data"].update(val_fraction=0.25)
    config["optim"].update(epochs=epochs, batch_size=4, lr=lr)
    return config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny base model and its head, trained on a 16-product catalog with real images."""
    folder = tmp_path_factory.mktemp("photo-query")
    records = [{**r, "split": "train"} for r in tiny_records(16)]
    catalog = make_tiny_catalog(folder / "catalog", records)
    cache = folder / "cache"
    base = folder / "weights" / "shop"
    train_moon(catalog, tiny_base_config(), base, cache_dir=cache)
    base_weights = base.with_suffix(".safetensors")
    out = default_output(str(base_weights))
    report = train_photo_query(catalog, head_config(base_weights), out, cache_dir=cache)
    return {"catalog": catalog, "base": base_weights, "head": out.with_suffix(".safetensors"),
            "report": report, "cache": cache}


def catalog_images(catalog):
    from moonsearch.catalog import open_catalog
    from moonsearch.catalog.inputs import model_input

    inputs = [model_input(p) for p in open_catalog(catalog).products()]
    return [i.text for i in inputs], [i.image for i in inputs]


def test_the_head_is_written_beside_its_base_and_names_it(trained):
    head = trained["head"]
    assert head == head_path(trained["base"], "photo") and head.name == "shop-photo-query.safetensors"
    saved = json.loads(head.with_suffix(".json").read_text())
    encoder = MoonEncoder.load(trained["base"])
    assert saved["base"] == encoder.encoder_id == trained["report"]["base"]
    history = trained["report"]["history"]
    assert [h["epoch"] for h in history] == list(range(16))    # epoch 0: the base itself, before training
    assert all(0.0 <= h["val photo->mm hit@1"] <= 1.0 for h in history)
    assert trained["report"]["wall_seconds"]["total"] > 0


def test_only_image_only_queries_go_through_the_head(trained):
    """Products, text queries and image+text queries are the base's vectors exactly; photos are not."""
    texts, images = catalog_images(trained["catalog"])
    encoder = MoonEncoder.load(trained["base"])
    assert "photo" in encoder.head_models
    n = len(texts)
    mixed_texts = [texts[0], None, texts[2], None]
    mixed_images = [None, images[1], images[2], images[3]]
    queries = encoder.encode_queries(mixed_texts, mixed_images)
    plain = encoder.encode(mixed_texts, mixed_images)
    np.testing.assert_array_equal(queries[[0, 2]], plain[[0, 2]])
    assert np.abs(queries[[1, 3]] - plain[[1, 3]]).max() > 1e-3
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    # the product side never sees the head
    views = encoder.encode_views(texts[:n], images[:n])
    np.testing.assert_allclose(views.image, encoder.encode([None] * n, images), atol=1e-6)


def test_training_lowers_the_photo_to_product_loss(trained):
    """The tiny catalog repeats four looks, so no instance metric means much here (the Myntra
    benchmarks carry that); the objective itself must fall."""
    losses = [h["loss"] for h in trained["report"]["history"][1:]]
    assert losses[-1] < 0.8 * losses[0], losses


def test_a_head_trained_for_other_weights_is_not_used(trained, tmp_path):
    other = tmp_path / "shop.safetensors"
    shutil.copy(trained["base"], other)
    shutil.copy(trained["base"].with_suffix(".json"), other.with_suffix(".json"))
    shutil.copy(trained["head"], head_path(other, "photo"))
    saved = json.loads(trained["head"].with_suffix(".json").read_text())
    head_path(other, "photo").with_suffix(".json").write_text(json.dumps({**saved, "base": "shop@0000000000000000"}))
    encoder = MoonEncoder.load(other)
    assert "photo" not in encoder.head_models
    _, images = catalog_images(trained["catalog"])
    np.testing.assert_array_equal(encoder.encode_queries([None], images[:1]), encoder.encode([None], images[:1]))


def test_onnx_runtime_embeds_photo_queries_with_the_head_as_torch_does(trained):
    from moonsearch.encoder.onnx_moon import OnnxMoonEncoder

    texts, images = catalog_images(trained["catalog"])
    onnx = OnnxMoonEncoder.load(trained["base"])
    assert onnx.paths["photo-query"].is_file()                          # exported once, cached
    torch_encoder = MoonEncoder.load(trained["base"])
    mixed_texts, mixed_images = [None, texts[1], None], [images[0], None, images[2]]
    got, expected = onnx.encode_queries(mixed_texts, mixed_images), torch_encoder.encode_queries(mixed_texts, mixed_images)
    assert ((got * expected).sum(1) > 0.999).all()


def test_mirrored_grid_reverses_columns_only():
    tokens = np.arange(12 * 2, dtype=np.float32).reshape(12, 2)
    flipped = mirrored_grid(tokens)
    assert flipped[0].tolist() == tokens[2].tolist() and flipped[3].tolist() == tokens[5].tolist()
    np.testing.assert_array_equal(mirrored_grid(flipped), tokens)


def test_a_head_needs_a_moon_lite_base(tmp_path):
    from moonsearch.encoder.registry import weights_path
    from moonsearch.errors import MoonsearchError

    with pytest.raises(MoonsearchError, match="not a moon-lite model"):
        train_photo_query(tmp_path, head_config(weights_path("baseline")), tmp_path / "head")
    with pytest.raises(MoonsearchError, match="no weights at"):
        train_photo_query(tmp_path, head_config(tmp_path / "absent.safetensors"), tmp_path / "head")
