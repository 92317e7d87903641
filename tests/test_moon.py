"""moon-lite: the fused encoder, its inference wrapper, and one training step on a tiny cache."""

import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from moonsearch.encoder.moon import IMAGE, TEXT, MoonEncoder, MoonLite, Segment, pad_tokens
from moonsearch.train.token_cache import TEXT_FIELDS, TokenCache

from conftest import draw_product

CONFIG = json.load(open(__import__("moonsearch.train.moon", fromlist=["x"]).__file__.replace("moon.py", "configs/moon-lite.json")))


def tiny_model(**overrides):
    torch.manual_seed(0)
    return MoonLite(**{**CONFIG["model"], "dim": 32, "ffn_hidden": 64, "dropout": 0.0, **overrides})


def test_forward_handles_each_form_and_missing_modalities():
    model = tiny_model().eval()
    text = Segment(*pad_tokens([np.random.randn(5, 384), None, np.random.randn(3, 384)], 384), TEXT)
    image = Segment(*pad_tokens([None, np.random.randn(12, 1280), np.random.randn(12, 1280)], 1280), IMAGE)
    embeddings, gates = model([text, image])
    assert embeddings.shape == (3, 32) and gates.shape == (3, 4)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose(gates.sum(1), torch.ones(3), atol=1e-5)
    # a row's embedding does not depend on the other rows' padding
    alone, _ = model([Segment(text.tokens[:1, :5], text.mask[:1, :5], TEXT)])
    assert torch.allclose(alone[0], embeddings[0], atol=1e-5)


@pytest.fixture(scope="module")
def moon_encoder(tmp_path_factory):
    from moonsearch.train.report import save_training_outputs

    model = tiny_model()
    out = tmp_path_factory.mktemp("moon") / "moon-lite-tiny"
    save_training_outputs(model.state_dict(), {"model": {**CONFIG["model"], "dim": 32, "ffn_hidden": 64,
                                                        "dropout": 0.0}}, {"history": []}, out)
    return MoonEncoder.load(out.with_suffix(".safetensors"))


def test_encoder_round_trip_and_views(moon_encoder, tmp_path):
    pictures = [Image.open(draw_product(tmp_path / f"{c}.png", c, "dress")).convert("RGB") for c in ("Red", "Blue")]
    assert moon_encoder.name == "moon-lite-tiny" and moon_encoder.encoder_id.startswith("moon-lite-tiny@")
    vectors = moon_encoder.encode(["red dress", None, "blue dress"], [None, pictures[0], pictures[1]])
    assert vectors.shape == (3, 32)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    views = moon_encoder.encode_views(["red dress", "blue dress", "no photo"], [pictures[0], pictures[1], None])
    assert np.allclose(views.mm[:2], moon_encoder.encode(["red dress", "blue dress"], pictures), atol=1e-4)
    assert np.allclose(views.text, moon_encoder.encode(["red dress", "blue dress", "no photo"], [None] * 3), atol=1e-4)
    assert np.allclose(views.image[:2], moon_encoder.encode([None, None], pictures), atol=1e-4)
    assert not views.image[2].any()


def test_shared_tower_memo_gives_the_same_vectors_and_runs_each_input_once(moon_encoder, tmp_path):
    from moonsearch.encoder.moon import TowerTokenMemo

    pictures = [Image.open(draw_product(tmp_path / f"{c}.png", c, "tshirt")).convert("RGB") for c in ("Green", "Black")]
    texts = ["green tshirt", "black tshirt"]
    plain = moon_encoder.encode(texts, pictures)
    calls = {"text": 0, "image": 0}
    real_text, real_image = moon_encoder._text_tokens, moon_encoder._image_tokens

    def count_text(batch):
        calls["text"] += len(batch)
        return real_text(batch)

    def count_image(batch):
        calls["image"] += len(batch)
        return real_image(batch)

    moon_encoder._text_tokens, moon_encoder._image_tokens = count_text, count_image
    moon_encoder.memo = TowerTokenMemo()
    try:
        first = moon_encoder.encode(texts, pictures)
        again = moon_encoder.encode(texts + ["green tshirt"], pictures + [pictures[0].copy()])
    finally:
        moon_encoder.memo = None
        del moon_encoder._text_tokens, moon_encoder._image_tokens
    assert np.allclose(first, plain, atol=1e-5) and np.allclose(again[:2], plain, atol=1e-5)
    assert np.allclose(again[2], plain[0], atol=1e-5)
    assert calls == {"text": 2, "image": 2}    # the repeats (same string, equal pixels) were not re-run


def tiny_cache(n=48, seed=0):
    rng = np.random.default_rng(seed)
    types = ["Dresses", "Tshirts", "Shoes"]
    colours = ["Red", "Blue", "Black", "White"]
    attributes = [{"articleType": types[i % 3], "baseColour": colours[i % 4]} for i in range(n)]
    parts, offsets, cursor = [], [], 0
    for i in range(n):
        row = []
        for _ in TEXT_FIELDS:
            length = int(rng.integers(3, 8))
            parts.append(rng.normal(size=(length, 384)).astype(np.float16))
            row.append((cursor, cursor + length))
            cursor += length
        offsets.append(row)
    return TokenCache(ids=np.array([str(i) for i in range(n)], dtype=object), titles=[f"t{i}" for i in range(n)],
                      attributes=attributes, text_tokens=np.concatenate(parts), text_offsets=np.array(offsets),
                      image=rng.normal(size=(n, 12, 1280)).astype(np.float16),
                      expanded=rng.normal(size=(n, 12, 1280)).astype(np.float16),
                      has_image=np.ones(n, bool), has_expanded=np.ones(n, bool), stats={})


@pytest.mark.parametrize("components", [
    {"moe": True, "dual_level": True, "co_augmentation": True, "filtering": True},
    {"moe": False, "dual_level": False, "co_augmentation": False, "filtering": False},
])
def test_training_steps_lower_the_loss_on_a_fixed_batch(components):
    from moonsearch.train.moon import Batcher, train_step

    config = {**CONFIG, "components": components}
    model = tiny_model(experts=4 if components["moe"] else 1)
    cache = tiny_cache()
    rows = np.arange(16)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        batcher = Batcher(cache, config, random.Random(0))   # same negatives and queries each step
        torch.manual_seed(0)
        loss, parts = train_step(model, batcher, rows, config, progress=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    assert ("intra" in parts) == components["dual_level"]
    if components["moe"]:
        assert abs(sum(v for k, v in parts.items() if k.startswith("omega:")) - 1.0) < 1e-4


def test_info_nce_counts_every_positive_and_reduces_to_cross_entropy_with_one():
    from moonsearch.train.moon import info_nce

    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    one = torch.zeros(4, 6, dtype=torch.bool)
    one[torch.arange(4), torch.arange(4)] = True
    plain = torch.nn.functional.cross_entropy(q @ c.T / 0.1, torch.arange(4), reduction="none")
    assert torch.allclose(info_nce(q, c, one, 0.1), plain, atol=1e-5)
    more = one.clone()
    more[0, 5] = True                      # candidate 5 also answers query 0: no longer a negative
    loss = info_nce(q, c, more, 0.1)
    assert loss[0] < plain[0] and torch.allclose(loss[1:], plain[1:], atol=1e-5)
    blocked = torch.zeros(4, 6, dtype=torch.bool)
    blocked[1, 4] = True                   # candidate 4 leaves query 1's denominator
    assert info_nce(q, c, one, 0.1, blocked)[1] < plain[1]


def test_live_shopper_queries_make_every_matching_candidate_a_positive():
    from moonsearch.shopper import is_relevant
    from moonsearch.train.moon import Batcher

    cache = tiny_cache()
    config = {**CONFIG, "data": {**CONFIG["data"], "shopper_queries": "live"},
              "augment": {**CONFIG["augment"], "p_shopper_query": 1.0}}
    batcher = Batcher(cache, config, random.Random(0))
    rows = np.arange(8)
    segment, rules = batcher.text_query(rows)
    assert len(rules) == 8 and all(r is not None for r in rules)
    assert segment.tokens.shape[0] == 8 and segment.mask.sum(1).min() > 0
    cand_rows = np.arange(24)
    positive = batcher.positives(rules, cand_rows)
    for i, rule in enumerate(rules):
        expected = [j == i or is_relevant(cache.attributes[r], rule) for j, r in enumerate(cand_rows)]
        assert positive[i].tolist() == expected
        assert positive[i].sum() > 1          # 24 candidates over 3 types and 4 colours repeat every rule
    cached = Batcher(cache, CONFIG | {"data": {**CONFIG["data"], "shopper_queries": "cached"}}, random.Random(0))
    assert all(r is None for r in cached.text_query(rows)[1])   # a cached query has no rule


def test_capped_precision_counts_right_answers_out_of_what_was_possible():
    from moonsearch.train.moon import capped_precision

    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.3, 0.9]])
    relevant = torch.tensor([[True, False, True, False], [False, False, False, True]])
    # query 0: top 2 = {0, 1}, one of its 2 relevant; query 1: its single relevant is ranked first
    assert capped_precision(scores, relevant, 2) == (0.5 + 1.0) / 2


def test_filter_weights_skip_relevant_negatives_and_focus_keeps_the_batch_scale():
    from moonsearch.train.moon import triplet_weights

    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    pos = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [0.0, 1.0]])   # s_qp 1, 0.6, 0, 0
    neg = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])   # s_qn 0, 0, 1, 1
    relevant = torch.tensor([False, False, False, True])
    valid = torch.ones(4, dtype=torch.bool)
    cfg = {"kappa": 10.0, "tau": 0.6}
    plain = triplet_weights(q, pos, neg, relevant, valid, 0.2, cfg)
    assert plain[0] == 1.0 and plain[1] == 1.0              # confident triplets keep full weight
    assert plain[2] < 0.01                                  # negative far closer than positive
    assert plain[3] == 1.0                                  # ... unless that negative is relevant
    focused = triplet_weights(q, pos, neg, relevant, valid, 0.2, {**cfg, "filter_focus": True})
    assert torch.allclose(focused.mean(), torch.tensor(1.0))
    assert torch.allclose(focused / focused[0], plain / plain[0])   # same focus, batch scale kept
