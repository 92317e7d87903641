"""`moonsearch explain`: exact score decomposition, weights that point at the right token, the
heatmap PNG, and the CLI on tiny moon-lite and baseline indexes."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from moonsearch.errors import MoonsearchError
from moonsearch.explain import ProductInput, TokenBreakdown, explain
from moonsearch.explain.explainer import explain_breakdown, merge_pieces, product_from_record, token_weights
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

    result = explain(tiny_moon, product, text="red dress", image=photo)
    assert result.check["product_vector_max_abs_diff"] < 1e-5
    assert result.terms.sum() == pytest.approx(result.score, abs=1e-6)
    assert result.score == pytest.approx(float(tiny_moon.encode(["red dress"], [photo])[0]
                                               @ tiny_moon.encode([product.text], [photo])[0]), abs=1e-5)


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
    from moonsearch.encoder.text import product_text
    from moonsearch.search.searcher import ProductIndex

    index = ProductIndex.open(tiny_indexes / "moon-lite", device="cpu")
    try:
        hit = next(h for h in index.search(text="red dress", k=12) if h.id == "P005")
        result = explain(index, "P005", text="red dress")
    finally:
        index.close()
    assert result.score == pytest.approx(hit.score, abs=1e-4)
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
    done = run_cli("red dress", "P001", "--index", tiny_indexes / "moon-lite", "--out", png, "--json")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["product"]["id"] == "P001" and payload["heatmap"] == str(png)
    assert payload["product"]["text"].startswith("Blue cotton dress. Women")   # the text the index encoded
    assert sum(t["weight"] for t in payload["tokens"]) == pytest.approx(1.0, abs=1e-4)
    assert payload["check"]["abs_error"] < 1e-6 and payload["check"]["product_vector_max_abs_diff"] < 1e-4
    assert [s["piece"] for s in payload["special_tokens"]] == ["[CLS]", "[SEP]"]
    assert "dress" in [w["word"] for w in payload["words"]]
    assert payload["image"]["grid"] == [4, 3]
    with Image.open(png) as heatmap:
        assert heatmap.size == (60, 80)       # the drawn product image's size


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
