"""`moonsearch explain`: occlusion (the default) and the exact score decomposition, weights that
point at the right token, the heatmap PNG, and the CLI on tiny moon-lite and baseline indexes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from moonsearch.errors import MoonsearchError
from moonsearch.explain import ProductInput, TokenBreakdown, explain
from moonsearch.explain.explainer import (explain_breakdown, explain_occlusion, merge_pieces, occlusion_weights,
                                          product_from_record, token_weights)
from moonsearch.explain.heatmap import letterbox_box, upsample

from conftest import REPO, draw_product, make_tiny_catalog

# ---- without any model: a hand-made breakdown -------------------------------------------------


def unit_rows(n, dim, seed=0):
    states = np.random.default_rng(seed).normal(size=(n, dim))
    return states / np.linalg.norm(states, axis=1, keepdims=True)


def hand_made(image=True):
    kinds = ["special"] + ["text"] * 4 + ["special"] + (["image"] * 12 if image else [])
    return TokenBreakdown(states=unit_rows(len(kinds), 64).astype(np.float32), kinds=kinds,
                          text_pieces=["red", "##dish", "cotton", "dress"], image_grid=(4, 3) if image else None,
                          special_pieces=["[CLS]", "[SEP]"], image_letterbox=(96, 128) if image else None)


@pytest.mark.parametrize("target", [1, 3, 4, 6, 13])
def test_query_equal_to_a_token_gives_it_the_top_weight(target):
    breakdown = hand_made()
    query = breakdown.states[target] / np.linalg.norm(breakdown.states[target])
    result = explain_breakdown(breakdown, query, ProductInput("P1", "t", "reddish cotton dress"))
    assert int(np.argmax(result.weights)) == target
    assert result.weights.sum() == pytest.approx(1.0) and (result.weights >= 0).all()
    assert result.terms.sum() == pytest.approx(result.score, abs=1e-9)
    mean = breakdown.states.astype(np.float64).mean(0)
    assert result.score == pytest.approx(float(query @ mean / np.linalg.norm(mean)))
    assert [w.text for w in result.words] == ["reddish", "cotton", "dress"]
    assert [s["piece"] for s in result.specials] == ["[CLS]", "[SEP]"]
    assert result.image_weights.shape == (4, 3)
    assert sum(result.shares().values()) == pytest.approx(1.0)
    if target >= 6:   # an image token: the grid's hottest cell is that token's, row-major
        assert np.unravel_index(np.argmax(result.image_weights), (4, 3)) == divmod(target - 6, 3)
    if target in (1, 2):
        assert max(result.words, key=lambda w: w.weight).text == "reddish"


def test_a_qwen_style_breakdown_is_explained_too(tmp_path):
    """The MLLM backbone's layout: decoded BPE pieces with leading spaces, vision specials
    around the image tokens, a grid over the image as given (no letterbox)."""
    kinds = ["special", "image", "image", "image", "image", "special", "text", "text", "text", "text"]
    breakdown = TokenBreakdown(states=unit_rows(len(kinds), 32, seed=1).astype(np.float32), kinds=kinds,
                               text_pieces=["Red", " cot", "ton", " dress"], image_grid=(2, 2),
                               special_pieces=["<|vision_start|>", "<|vision_end|>"])
    query = breakdown.states[2] / np.linalg.norm(breakdown.states[2])
    photo = Image.new("RGB", (50, 70), "white")
    result = explain_breakdown(breakdown, query, ProductInput("Q1", "t", "Red cotton dress", photo))
    assert [w.text for w in result.words] == ["Red", "cotton", "dress"] and result.words[1].tokens == [7, 8]
    assert np.unravel_index(np.argmax(result.image_weights), (2, 2)) == (0, 1)
    assert result.weights.sum() == pytest.approx(1.0) and result.image_letterbox is None
    with Image.open(result.save_heatmap(tmp_path / "q.png")) as png:
        assert png.size == (50, 70)


def test_weights_fall_back_when_no_term_is_positive():
    weights, how = token_weights(np.array([-0.1, -0.3, -0.6]))
    assert weights.sum() == pytest.approx(1.0) and weights.argmax() == 2 and how.startswith("absolute")
    weights, how = token_weights(np.array([0.2, -0.5, 0.6]))
    assert np.allclose(weights, [0.25, 0.0, 0.75]) and how.startswith("positive")


def test_word_pieces_merge_into_words():
    assert merge_pieces(["red", "##dish", ",", "dress"]) == [("reddish", [0, 1]), (",", [2]), ("dress", [3])]
    assert merge_pieces(["Red", "dish", "Ġcotton", "Ġdr", "ess"]) == [("Reddish", [0, 1]), ("cotton", [2]), ("dress", [3, 4])]
    assert merge_pieces(["▁red", "▁dress"]) == [("red", [0]), ("dress", [1])]


def test_heatmap_puts_a_hot_cell_on_its_pixels(tmp_path):
    grid = np.zeros((4, 3))
    grid[2, 1] = 1.0
    heat = upsample(grid, (60, 80), (96, 128))      # 3:4 photo: the grid spans it exactly
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert heat.shape == (80, 60) and 40 <= y < 60 and 20 <= x < 40
    # a wide photo is letterboxed into the middle rows: the top row's patches saw only white
    assert letterbox_box((120, 40), (96, 128)) == (0, 48, 96, 80)
    top = np.zeros((4, 3))
    top[0] = 1.0
    assert upsample(top, (120, 40), (96, 128)).max() < 0.05


def test_png_has_the_product_image_size(tmp_path):
    photo = Image.new("RGB", (60, 80), "white")
    result = explain_breakdown(hand_made(), hand_made().states[7], ProductInput("P1", "t", "x", photo))
    path = result.save_heatmap(tmp_path / "h.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size == (60, 80)
    with Image.open(result.save_heatmap(tmp_path / "h4.png", scale=4)) as png:
        assert png.size == (240, 320)
    text_only = explain_breakdown(hand_made(image=False), hand_made(image=False).states[2], ProductInput("P1", "t", "x"))
    assert text_only.image_weights is None and text_only.to_json()["image"] is None
    with pytest.raises(MoonsearchError, match="no image"):
        text_only.save_heatmap(tmp_path / "none.png")


def test_product_whose_image_vanished_is_a_clear_error(tmp_path):
    record = {"id": "P9", "title": "Red dress", "attributes": {}, "images": [str(tmp_path / "gone.jpg")], "has_image": True}
    with pytest.raises(MoonsearchError, match="P9.*cannot be read now"):
        product_from_record(record)
    photo = draw_product(tmp_path / "there.png", "Red", "dress")
    assert product_from_record({**record, "images": [str(photo)]}).image_path == str(photo)
    # indexed text-only (its image failed then): explained text-only, as its vector was made
    assert product_from_record({**record, "images": [str(photo)], "has_image": False}).image is None


def bag_scorer(states, query):
    """A fusion-free model: the product vector is the normalised mean of the kept fixed states."""
    states, query = np.asarray(states, np.float64), np.asarray(query, np.float64)

    def score(masks):
        means = masks.astype(np.float64) @ states / masks.sum(1, keepdims=True)
        return means @ query / np.linalg.norm(means, axis=1)
    return score


@pytest.mark.parametrize("target", [1, 3, 4, 13])
def test_occlusion_points_at_the_token_the_score_depends_on(target, tmp_path):
    breakdown = hand_made()
    query = breakdown.states[target] / np.linalg.norm(breakdown.states[target])
    calls = []

    def scorer(masks):
        calls.append(masks.copy())
        return bag_scorer(breakdown.states, query)(masks)

    photo = Image.new("RGB", (60, 80), "white")
    result = explain_occlusion(breakdown, scorer, ProductInput("P1", "t", "reddish cotton dress", photo))
    assert len(calls) == 1 and calls[0].shape == (1 + 3 + 12 + 2, 18)      # full, 3 words, 12 patches, 2 parts
    assert calls[0][0].all() and not calls[0][1, [1, 2]].any() and calls[0][1, [0, 3, 4, 5]].all()   # "reddish" = 2 pieces
    assert result.method == "occlusion" and result.terms is None
    assert result.score == pytest.approx(float(bag_scorer(breakdown.states, query)(np.ones((1, 18), bool))[0]))
    units = [w.weight for w in result.words] + list(result.image_weights.ravel())
    assert sum(units) == pytest.approx(1.0) and min(units) >= 0
    assert result.weights.sum() == pytest.approx(1.0) and result.weights[[0, 5]].sum() == 0   # [CLS]/[SEP] kept
    assert "special" not in result.shares() and sum(result.shares().values()) == pytest.approx(1.0)
    drops = [w.drop for w in result.words] + list(result.image_drops.ravel())
    best = int(np.argmax(units))
    assert best == int(np.argmax(drops))
    if target >= 6:
        assert np.unravel_index(np.argmax(result.image_weights), (4, 3)) == divmod(target - 6, 3)
    else:
        assert target in result.top_words(1)[0].tokens and result.top_words(1)[0].weight > result.image_weights.max()
    payload = result.to_json()
    assert payload["method"] == "occlusion" and "drop" in payload["words"][0] and "term" not in payload["words"][0]
    assert payload["image"]["drops"] and payload["image"]["heatmap_colours"].startswith("drops")
    assert {"text", "image"} == set(payload["parts"]) and payload["check"]["weights_fallback"] is False
    assert [s["occluded"] for s in payload["special_tokens"]] == [False, False]
    with Image.open(result.save_heatmap(tmp_path / "o.png")) as png:
        assert png.size == (60, 80)


def test_occlusion_weights_fall_back_to_absolute_drops():
    weights, how, fallback = occlusion_weights(np.array([0.02, -0.01, 0.06, 0.0]))
    assert np.allclose(weights, [0.25, 0.0, 0.75, 0.0]) and how.startswith("occlusion, positive") and not fallback
    weights, how, fallback = occlusion_weights(np.array([-0.1, -0.3, -0.6]))
    assert weights.sum() == pytest.approx(1.0) and weights.argmax() == 2 and "absolute" in how and fallback
    # a product where leaving anything out raises the score: recorded, not hidden
    breakdown = hand_made(image=False)
    result = explain_occlusion(breakdown, lambda masks: 0.5 + 0.1 * (~masks).sum(1), ProductInput("P1", "t", "x"))
    assert result.check["weights_fallback"] and "|drop|" in result.note and result.parts is None
    assert sum(w.weight for w in result.words) == pytest.approx(1.0)
    assert all(w.drop == pytest.approx(-0.1 * len(w.tokens)) for w in result.words)


def test_unknown_method_and_encoders_without_occlusion():
    class NoMasks:   # like the MLLM encoder: product_tokens() but no score_with_masks()
        name = "mllm"

        def encode(self, texts, images):
            return np.stack([hand_made().states[2]] * len(texts))

        def product_tokens(self, text, image):
            return hand_made()

    product = ProductInput("P1", "t", "reddish cotton dress")
    result = explain(NoMasks(), product, text="red")
    assert result.method == "decomposition" and "occlusion unsupported" in result.note and "MLLM" in result.note
    assert result.to_json()["note"] == result.note and result.check["abs_error"] < 1e-9
    assert explain(NoMasks(), product, text="red", method="decomposition").note is None
    with pytest.raises(MoonsearchError, match="unknown explain method 'shap'"):
        explain(NoMasks(), product, text="red", method="shap")


def test_baseline_encoder_is_refused_with_the_reason(encoder):
    with pytest.raises(MoonsearchError, match="baseline encoder cannot be explained.*pooled"):
        explain(encoder, ProductInput("P1", "Red dress", "Red dress"), text="red dress")


# ---- a small randomly initialised moon-lite: the real product_tokens path ----------------------


@pytest.fixture(scope="module")
def tiny_moon(tmp_path_factory):
    import torch

    from moonsearch.encoder.moon import MoonEncoder, MoonLite
    from moonsearch.train.report import save_training_outputs

    config = {"dim": 32, "layers": 2, "heads": 4, "experts": 4, "top_k": 2, "ffn_hidden": 64, "dropout": 0.0}
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("moon") / "moon-lite-tiny"
    save_training_outputs(MoonLite(**config).state_dict(), {"model": config}, {"history": []}, out)
    return MoonEncoder.load(out.with_suffix(".safetensors"))


def test_moon_lite_tokens_are_the_product_vector_and_point_at_the_query_token(tiny_moon, tmp_path):
    photo = Image.open(draw_product(tmp_path / "red.png", "Red", "dress")).convert("RGB")
    product = ProductInput("P1", "Red cotton dress", "Red cotton dress", photo)
    breakdown = tiny_moon.product_tokens(product.text, photo)
    assert breakdown.kinds == ["special", "text", "text", "text", "special"] + ["image"] * 12
    assert breakdown.text_pieces == ["red", "cotton", "dress"] and breakdown.special_pieces == ["[CLS]", "[SEP]"]
    assert breakdown.image_grid == (4, 3) and breakdown.image_letterbox == (96, 128)
    mean = breakdown.states.mean(0)
    assert np.allclose(mean / np.linalg.norm(mean), tiny_moon.encode([product.text], [photo])[0], atol=1e-5)

    for target, word in ((2, "cotton"), (13, None)):
        query = breakdown.states[target] / np.linalg.norm(breakdown.states[target])
        result = explain_breakdown(breakdown, query, product)
        assert int(np.argmax(result.weights)) == target
        assert result.weights.sum() == pytest.approx(1.0)
        assert result.check["abs_error"] < 1e-9
        if word:
            assert result.top_words(1)[0].text == word
        else:
            assert np.unravel_index(np.argmax(result.image_weights), (4, 3)) == (2, 2)

    result = explain(tiny_moon, product, text="red dress", image=photo, method="decomposition")
    assert result.method == "decomposition" and result.check["product_vector_max_abs_diff"] < 1e-5
    assert result.terms.sum() == pytest.approx(result.score, abs=1e-6)
    assert result.score == pytest.approx(float(tiny_moon.encode(["red dress"], [photo])[0]
                                               @ tiny_moon.encode([product.text], [photo])[0]), abs=1e-5)


def test_moon_lite_occlusion_reruns_only_the_fusion_model(tiny_moon, tmp_path):
    """score_with_masks on the real model: no mask is the search score, leaving a whole modality
    out is that modality's own vector, and batching does not change the numbers."""
    photo = Image.open(draw_product(tmp_path / "red.png", "Red", "dress")).convert("RGB")
    product = ProductInput("P1", "Red cotton dress", "Red cotton dress, sleeveless", photo)
    query = tiny_moon.encode(["red dress"], [None])[0]
    result = explain(tiny_moon, product, text="red dress")
    assert result.method == "occlusion" and result.check["forward_calls"] == 1
    assert result.check["score_vs_search_abs_diff"] < 1e-5
    assert result.score == pytest.approx(float(query @ tiny_moon.encode([product.text], [photo])[0]), abs=1e-5)
    text_only, image_only = (float(query @ v) for v in (tiny_moon.encode([product.text], [None])[0],
                                                        tiny_moon.encode([None], [photo])[0]))
    assert result.parts["image"]["score_without"] == pytest.approx(text_only, abs=1e-5)
    assert result.parts["text"]["score_without"] == pytest.approx(image_only, abs=1e-5)
    assert [w.text for w in result.words] == ["red", "cotton", "dress", ",", "sleeveless"]
    assert sum(w.weight for w in result.words) + result.image_weights.sum() == pytest.approx(1.0)
    small = explain(tiny_moon, product, text="red dress", batch_size=4)
    assert small.check["forward_calls"] == -(-small.check["masks"] // 4) > 1
    assert np.allclose([w.drop for w in small.words], [w.drop for w in result.words], atol=1e-6)
    assert np.allclose(small.image_drops, result.image_drops, atol=1e-6)
    with Image.open(result.save_heatmap(tmp_path / "o.png", scale=2)) as png:
        assert png.size == (120, 160)
    with pytest.raises(ValueError, match="masks must be"):
        tiny_moon.score_with_masks(query, product.text, photo, np.ones((2, 3), bool))


@pytest.fixture(scope="module")
def isolated_moon():
    """A moon-lite whose tokens do not mix: attention outputs, expert outputs and type embeddings
    are zero, so each token's final state depends on that token alone."""
    import torch

    from moonsearch.encoder.moon import MoonEncoder, MoonLite

    config = {"dim": 32, "layers": 2, "heads": 4, "experts": 4, "top_k": 2, "ffn_hidden": 64, "dropout": 0.0}
    torch.manual_seed(0)
    model = MoonLite(**config)
    with torch.no_grad():
        model.kind.weight.zero_()
        for block in model.blocks:
            block.attention.out_proj.weight.zero_()
            block.attention.out_proj.bias.zero_()
            for expert in block.ffn.experts:
                expert.net[-1].weight.zero_()
                expert.net[-1].bias.zero_()
    return MoonEncoder(model, config)


@pytest.mark.parametrize("target", [1, 3, 7, 12, 20])
def test_occluding_the_query_token_drops_the_moon_lite_score_most(isolated_moon, target, tmp_path):
    """The query is one product token's own final state: leaving that token (its word, or its
    patch) out must lower the score most."""
    photo = Image.open(draw_product(tmp_path / "red.png", "Red", "dress")).convert("RGB")
    text = "Reddish cotton dress for women, sleeveless"
    breakdown = isolated_moon.product_tokens(text, photo)
    assert breakdown.text_pieces == ["reddish", "cotton", "dress", "for", "women", ",", "sleeve", "##less"]
    query = breakdown.states[target] / np.linalg.norm(breakdown.states[target])
    result = explain_occlusion(breakdown, lambda masks: isolated_moon.score_with_masks(query, text, photo, masks),
                               ProductInput("P1", "t", text, photo))
    units = [w.weight for w in result.words] + list(result.image_weights.ravel())
    assert sum(units) == pytest.approx(1.0)
    if breakdown.kinds[target] == "text":
        best = result.top_words(1)[0]
        assert target in best.tokens and best.weight > result.image_weights.max()
        assert best.drop == max(w.drop for w in result.words)
    else:
        first = breakdown.kinds.index("image")
        assert result.image_weights.max() > result.top_words(1)[0].weight
        assert np.unravel_index(np.argmax(result.image_drops), (4, 3)) == divmod(target - first, 3)


# ---- the CLI on tiny indexes --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_indexes(tmp_path_factory):
    from moonsearch.index.builder import build_index

    root = tmp_path_factory.mktemp("explain")
    catalog = make_tiny_catalog(root / "catalog")
    for name in ("moon-lite", "baseline"):
        build_index(catalog, root / name, encoder=name, device="cpu")
    return root


def test_python_api_on_an_index_gives_the_search_score(tiny_indexes):
    from moonsearch.catalog import open_catalog
    from moonsearch.catalog.inputs import product_text
    from moonsearch.search.product_index import ProductIndex

    index = ProductIndex.open(tiny_indexes / "moon-lite", device="cpu")
    try:
        hit = next(h for h in index.search(text="red dress", k=12, hybrid=False) if h.id == "P005")
        result = explain(index, "P005", text="red dress")
        exact = explain(index, "P005", text="red dress", method="decomposition")
    finally:
        index.close()
    assert result.method == "occlusion" and exact.method == "decomposition"
    assert result.score == pytest.approx(hit.score, abs=1e-4) and exact.score == pytest.approx(hit.score, abs=1e-4)
    record = next(p for p in open_catalog(tiny_indexes / "catalog").products() if p.id == "P005")
    assert result.product.text == product_text(record.title, record.attributes)   # as the index made it
    assert result.product.image_path.endswith("P005.png")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "moonsearch.cli", "explain", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)


def in_process(monkeypatch, capsys, *args):
    """The CLI's main() in this process (no interpreter start-up): exit code, stdout, stderr."""
    from moonsearch import cli

    monkeypatch.setattr(sys, "argv", ["moonsearch", "explain", *map(str, args)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def test_cli_explains_a_product_of_a_moon_lite_index(tiny_indexes, tmp_path):
    png = tmp_path / "h.png"
    done = run_cli("red dress", "P001", "--index", tiny_indexes / "moon-lite", "--out", png, "--json",
                   "--method", "decomposition")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["method"] == "decomposition"
    assert payload["product"]["id"] == "P001" and payload["heatmap"] == str(png)
    assert payload["product"]["text"].startswith("Blue cotton dress. Women")   # the text the index encoded
    assert sum(t["weight"] for t in payload["tokens"]) == pytest.approx(1.0, abs=1e-4)
    assert payload["check"]["abs_error"] < 1e-6 and payload["check"]["product_vector_max_abs_diff"] < 1e-4
    assert [s["piece"] for s in payload["special_tokens"]] == ["[CLS]", "[SEP]"]
    assert "dress" in [w["word"] for w in payload["words"]]
    assert payload["image"]["grid"] == [4, 3]
    with Image.open(png) as heatmap:
        assert heatmap.size == (60, 80)       # the drawn product image's size


def test_cli_occlusion_is_the_default_and_method_is_checked(tiny_indexes, tmp_path, monkeypatch, capsys):
    png = tmp_path / "o.png"
    for extra in ((), ("--method", "occlusion")):
        code, out, err = in_process(monkeypatch, capsys, "red dress", "P001", "--index", tiny_indexes / "moon-lite",
                                    "--out", png, "--json", *extra)
        assert code in (0, None), err
        payload = json.loads(out)
        assert payload["method"] == "occlusion" and payload["weighting"].startswith("occlusion")
        assert sum(w["weight"] for w in payload["words"]) + sum(map(sum, payload["image"]["weights"])) == pytest.approx(1.0, abs=1e-4)
        assert sum(t["weight"] for t in payload["tokens"]) == pytest.approx(1.0, abs=1e-4)
        assert all("drop" in w for w in payload["words"]) and len(payload["image"]["drops"]) == 4
        assert payload["check"]["score_vs_search_abs_diff"] < 1e-4
        with Image.open(png) as heatmap:
            assert heatmap.size == (60, 80)
    code, out, err = in_process(monkeypatch, capsys, "red dress", "P001", "--index", tiny_indexes / "moon-lite",
                                "--out", png)
    assert code in (0, None) and "occlusion" in out and "drop" in out and "left out whole" in out, err
    code, out, err = in_process(monkeypatch, capsys, "red dress", "P001", "--index", tiny_indexes / "moon-lite",
                                "--out", png, "--method", "lime")
    assert code == 2 and "unknown explain method 'lime'" in err and "Traceback" not in err


def test_cli_image_query_table_and_errors(tiny_indexes, tmp_path, monkeypatch, capsys):
    query = draw_product(tmp_path / "q.png", "Red", "dress", seed=5)
    code, out, err = in_process(monkeypatch, capsys, "P001", "--image", query, "--index", tiny_indexes / "moon-lite",
                                "--out", tmp_path / "q-h.png")
    assert code in (0, None), err
    assert "score" in out and "dress" in out and "heatmap:" in out and (tmp_path / "q-h.png").exists()

    for args, message in (
        (("red dress", "NOPE", "--index", tiny_indexes / "moon-lite"), "no product with id 'NOPE'"),
        (("P001", "--image", tmp_path / "missing.jpg", "--index", tiny_indexes / "moon-lite"), "cannot use query image"),
        (("red dress", "P001", "--index", tiny_indexes / "baseline"), "baseline encoder cannot be explained"),
    ):
        code, out, err = in_process(monkeypatch, capsys, *args, "--out", tmp_path / "x.png")
        assert code == 2 and message in " ".join(err.split()), err
        assert "Traceback" not in err
