"""The MLLM backbone encoder on a tiny, randomly initialised Qwen2-VL / Qwen2.5-VL built here.

Nothing is downloaded: each test backbone is made from config objects and saved into a tmp
folder (weights, config, tokenizer, image processor) that is then loaded the way a user's
local checkpoint is, through --backbone-path.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, make_tiny_catalog, tiny_records

from moonsearch.encoder.mllm import MLLMEncoder, load_backbone, save_mllm
from moonsearch.encoder.upcycle import UpcycledMoE, select_layers
from moonsearch.errors import MoonsearchError

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>"]
WORDS = ("red blue green black cotton dress dresses tshirt tshirts women men casual solid by for "
         "a the . ,").split()
PREPROCESS = {"min_pixels": 28 * 28, "max_pixels": 84 * 84, "max_text_tokens": 32}


def make_backbone(folder: Path, family: str = "qwen2_vl") -> Path:
    """A tiny random checkpoint folder laid out like a downloaded Qwen2-VL / Qwen2.5-VL one."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2VLConfig, Qwen2VLForConditionalGeneration)
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="<|endoftext|>",
                                        eos_token="<|im_end|>", additional_special_tokens=SPECIALS[1:])
    ids = dict(zip(SPECIALS, tokenizer.convert_tokens_to_ids(SPECIALS)))
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0})
    special = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                   vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(0)
    if family == "qwen2_vl":
        config = Qwen2VLConfig(text_config=text, vision_config=dict(depth=1, embed_dim=32, hidden_size=32,
                                                                    num_heads=2, mlp_ratio=2), **special)
        model = Qwen2VLForConditionalGeneration(config)
    else:
        config = Qwen2_5_VLConfig(text_config=text, vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32, window_size=56,
            fullatt_block_indexes=[1]), **special)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=28 * 28 * 1280).save_pretrained(folder)
    return folder


def picture(colour, size=(60, 80)) -> Image.Image:
    image = Image.new("RGB", size, "white")
    image.paste(Image.new("RGB", (size[0] // 2, size[1] // 2), colour), (size[0] // 4, size[1] // 4))
    return image


def tiny_config(**overrides) -> dict:
    """The shipped mllm-qwen2vl config with sizes for a tiny CPU run."""
    config = json.loads((REPO / "moonsearch/train/configs/mllm-qwen2vl.json").read_text())
    config["backbone"].update(PREPROCESS)
    config["moe"] = {"experts": 3, "top_k": 2, "layers": "all"}
    config["data"].update(val_fraction=0.0, max_text_tokens=32)
    config["augment"]["consistency_top"] = None
    config["train"].update(freeze_vision=False, gradient_checkpointing=False, eval_batch_size=4)
    config["optim"].update(epochs=1, batch_size=4, lr=2e-3, lr_new=1e-2, warmup=0.0)
    config["device"] = "cpu"
    for key, value in overrides.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    return config


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {family: make_backbone(root / family, family) for family in ("qwen2_vl", "qwen2_5_vl")}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    records = [{**r, "split": "train"} for r in tiny_records(8)]
    return make_tiny_catalog(tmp_path_factory.mktemp("catalog"), records)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_text_image_and_multimodal_inputs_give_unit_vectors(backbones, family):
    model = load_backbone(backbones[family], {"experts": 2, "top_k": 1, "layers": "last:1"}, PREPROCESS)
    encoder = MLLMEncoder(model, {"weights_sha256": "0" * 64})
    red, blue = picture("red"), picture("blue", (90, 50))
    vectors = encoder.encode(["red cotton dress", None, "blue tshirt for men", None],
                             [None, red, blue, blue])
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)       # text-only != image-only
    # A row is embedded the same alone or in a right-padded mixed batch.
    alone = encoder.encode(["blue tshirt for men"], [blue])
    np.testing.assert_allclose(alone[0], vectors[2], atol=1e-5)
    views = encoder.encode_views(["red cotton dress", "blue tshirt"], [red, None])
    assert views.mm.shape == views.text.shape == views.image.shape == (2, 32)
    assert not views.image[1].any()


def test_product_tokens_break_the_product_vector_into_its_tokens(backbones):
    model = load_backbone(backbones["qwen2_vl"], {"experts": 2, "top_k": 1, "layers": "all"}, PREPROCESS)
    encoder = MLLMEncoder(model, {"weights_sha256": "0" * 64})
    image = picture("green", (84, 56))
    breakdown = encoder.product_tokens("green cotton tshirt", image)
    assert breakdown.kinds.count("text") == len(breakdown.text_pieces) == 3
    assert breakdown.text_pieces == ["green", "cotton", "tshirt"]
    rows, cols = breakdown.image_grid
    assert rows * cols == breakdown.kinds.count("image") and cols > rows    # a landscape photo
    assert breakdown.kinds.count("special") == 2                            # vision start / end
    mean = breakdown.states.mean(0)
    np.testing.assert_allclose(mean / np.linalg.norm(mean), encoder.encode(["green cotton tshirt"], [image])[0],
                               atol=1e-5)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
def test_upcycled_moe_leaves_the_backbone_outputs_unchanged(backbones, family):
    dense = load_backbone(backbones[family], {"layers": "none"}, PREPROCESS)
    moe = load_backbone(backbones[family], {"experts": 4, "top_k": 2, "layers": "all"}, PREPROCESS)
    layers = [layer.mlp for layer in moe.backbone.language_model.layers]
    assert all(isinstance(m, UpcycledMoE) and len(m.experts) == 4 for m in layers)
    assert not any(isinstance(m, UpcycledMoE) for m in dense.modules())
    samples = [([], ["red cotton dress"]), ([picture("red")], []), ([picture("blue", (90, 50))], ["blue tshirt men"])]
    with torch.no_grad():
        h_dense, mask, _ = dense.run(samples)
        h_moe, _, _ = moe.run(samples)
    real = mask.bool()
    torch.testing.assert_close(h_moe[real], h_dense[real], atol=1e-5, rtol=1e-5)
    gates = layers[0].last_gates
    torch.testing.assert_close(gates, torch.full_like(gates, 0.25))            # zero router: uniform


def test_select_layers():
    assert select_layers("all", 4) == [0, 1, 2, 3]
    assert select_layers("last:2", 4) == [2, 3]
    assert select_layers("every:2", 5) == [0, 2, 4]
    assert select_layers([0, -1], 4) == [0, 3]
    with pytest.raises(MoonsearchError):
        select_layers("first:2", 4)
    with pytest.raises(MoonsearchError):
        select_layers([7], 4)


@pytest.fixture(scope="module")
def trained(backbones, catalog):
    """A few optimiser steps on one fixed batch, with moon-lite's train_step; the loss is measured
    before and after with the same random draws (queries, negatives, augmentation)."""
    from moonsearch.train.mllm import MLLMBatcher, build_model, make_optimizer, place, prepare_products
    from moonsearch.train.moon import train_step

    config = tiny_config(train={"gradient_checkpointing": True})  # exercises the GPU memory path on CPU
    products = prepare_products(catalog, config)
    model = place(build_model(backbones["qwen2_vl"], config), "cpu", config)
    batcher = MLLMBatcher(products, config, random.Random(0))
    rows = np.arange(6)
    optimizer = make_optimizer(model, config["optim"])
    model.train()

    def step(learn: bool) -> float:
        batcher.rng = random.Random(1)
        torch.manual_seed(1)
        with torch.set_grad_enabled(learn):
            loss, _ = train_step(model, batcher, rows, config, progress=0.0)
        if learn:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    before = step(learn=False)
    step(learn=True)
    router_grad = model.moe_layers[0].router.weight.grad.abs().sum().item()
    w_star_grad = model.objectives.w_star.grad.abs().sum().item()
    for _ in range(5):
        step(learn=True)
    after = step(learn=False)
    model.eval()
    return {"model": model, "before": before, "after": after, "router_grad": router_grad,
            "w_star_grad": w_star_grad, "products": products}


def test_training_steps_lower_the_loss_on_a_fixed_batch(trained):
    assert np.isfinite(trained["before"]) and np.isfinite(trained["after"])
    assert trained["after"] < trained["before"] - 0.05, (trained["before"], trained["after"])
    # Routers and W* learn through omega and L_aux, also with gradient checkpointing on.
    assert trained["router_grad"] > 0 and trained["w_star_grad"] > 0
    products = trained["products"]
    assert len(products) == 8 and products.has_image.all()
    assert products.texts["enriched"][0].startswith(products.titles[0])


def test_gradient_checkpointing_gives_the_same_gradients(backbones, catalog):
    """The GPU memory saver recomputes layers in the backward pass; the router gates read from
    inside those layers (omega, L_aux) must still get exactly the same gradients."""
    from moonsearch.train.mllm import MLLMBatcher, build_model, place, prepare_products
    from moonsearch.train.moon import train_step

    grads = []
    for checkpointing in (False, True):
        config = tiny_config(train={"gradient_checkpointing": checkpointing})
        model = place(build_model(backbones["qwen2_vl"], config), "cpu", config)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():    # routers away from zero, so the gates shape the output
            for layer in model.moe_layers:
                layer.router.weight.copy_(torch.randn(layer.router.weight.shape, generator=generator))
        model.train()
        batcher = MLLMBatcher(prepare_products(catalog, config), config, random.Random(1))
        torch.manual_seed(1)
        loss, _ = train_step(model, batcher, np.arange(6), config, progress=0.0)
        loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    plain, checkpointed = grads
    assert plain.keys() == checkpointed.keys()
    assert any(".router." in name for name in plain)
    for name, grad in plain.items():
        torch.testing.assert_close(checkpointed[name], grad, atol=1e-6, rtol=1e-5, msg=name)


def test_save_and_load_give_identical_embeddings(trained, tmp_path):
    model = trained["model"]
    before = MLLMEncoder(model, {"weights_sha256": "x" * 64})
    texts, images = ["red cotton dress", None, "blue tshirt"], [None, picture("red"), picture("blue")]
    expected = before.encode(texts, images)
    folder = save_mllm(model, tmp_path / "model", training={"name": "tiny"})
    meta = json.loads((folder / "moonsearch.json").read_text())
    assert meta["kind"] == "mllm" and meta["moe"]["layers"] == [0, 1] and meta["training"] == {"name": "tiny"}
    loaded = MLLMEncoder.load(folder)
    np.testing.assert_allclose(loaded.encode(texts, images), expected, atol=1e-6)
    assert loaded.encoder_id == f"mllm@{meta['weights_sha256'][:16]}"
    # Upcycled experts are no longer identical after training, and that survives the round trip.
    experts = loaded.model.moe_layers[0].experts
    assert not torch.equal(experts[0].up_proj.weight, experts[1].up_proj.weight)


def test_train_index_and_search_end_to_end(backbones, tmp_path):
    """`moonsearch train --config ... --backbone-path ...`, then the real index builder and searcher."""
    from typer.testing import CliRunner

    import moonsearch
    from moonsearch.cli import app
    from moonsearch.index.builder import build_index

    records = [{**r, "split": "train"} for r in tiny_records(6)]
    catalog = make_tiny_catalog(tmp_path / "catalog", records)
    config = tiny_config(augment={"consistency_top": 2})     # the consistency filter's judge runs too
    config_path = tmp_path / "tiny-mllm.json"
    config_path.write_text(json.dumps(config))
    out = tmp_path / "models" / "tiny-mllm"
    result = CliRunner().invoke(app, ["train", "--config", str(config_path), "--backbone-path",
                                      str(backbones["qwen2_vl"]), "--data", str(catalog), "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads((out / "report.json").read_text())
    assert report["history"][0]["epoch"] == 1 and np.isfinite(report["history"][0]["total"])
    assert report["data"]["products"] == 6

    summary = build_index(catalog, tmp_path / "index", encoder=str(out), device="cpu", batch_size=4)
    assert summary.products == 6 and summary.with_image == 6
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "mllm" and Path(manifest["encoder"]["weights"]) == out.resolve()
    index = moonsearch.open_index(tmp_path / "index", device="cpu")   # reloads the model folder
    hits = index.search(text="red cotton dress", k=3)
    assert len(hits) == 3 and {h.id for h in hits} <= {r["id"] for r in records}
    photo = catalog / records[3]["image"]
    same = index.search(image=photo, view="image", k=1)[0]
    assert same.id == records[3]["id"] and same.score > 0.999       # its own image vector
    both = index.search(text="blue", image=photo, k=6, filters=["gender=Men"])
    assert both and all(h.attributes.get("gender") == "Men" for h in both)
    # `moonsearch explain` reads the product's tokens from this encoder: the terms add up to the
    # score, and the tokens' mean is the indexed product vector.
    from moonsearch.explain import explain

    why = explain(index, records[3]["id"], text="blue cotton")
    assert why.check["abs_error"] < 1e-5 and why.check["product_vector_max_abs_diff"] < 1e-4
    assert why.image_weights is not None and {w.text.lower() for w in why.words} >= {"cotton"}
    index.close()


def test_missing_backbone_folder_is_a_clear_error(catalog, tmp_path):
    result = subprocess.run([sys.executable, "-m", "moonsearch.cli", "train", "--config", "mllm-qwen2vl",
                             "--backbone-path", str(tmp_path / "no-such-qwen"), "--data", str(catalog),
                             "--out", str(tmp_path / "out")],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "no model folder at" in result.stderr and "no-such-qwen" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_other_backbone_mistakes_are_clear_errors(catalog, tmp_path):
    from moonsearch.encoder.registry import load_encoder
    from moonsearch.train.mllm import resolve_backbone, train_mllm

    with pytest.raises(MoonsearchError, match="--backbone-path"):
        train_mllm(catalog, tiny_config(), tmp_path / "out")            # no path given anywhere
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoonsearchError, match="no config.json"):
        resolve_backbone(tmp_path / "empty", {})
    with pytest.raises(MoonsearchError, match="folder of a trained model"):
        load_encoder("mllm")
    with pytest.raises(MoonsearchError, match="does not exist"):
        load_encoder("mllm", weights=tmp_path / "gone")
