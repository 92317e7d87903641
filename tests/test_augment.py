import random

import numpy as np
from PIL import Image

from moonsearch.shopper import shopper_queries, singular
from moonsearch.train.augment import (EntityEnricher, consistent_rows, crop_subject, expand_image, extract_entities,
                                      recolour_background, rescale, subject_box)

ATTRS = {"brand": "Acme", "articleType": "Dresses", "baseColour": "Red", "gender": "Women", "usage": "Party",
         "attributes": {"Pattern": "Striped", "Fabric": "Cotton", "Fit": "Slim Fit"}}


def product_photo():
    image = Image.new("RGB", (60, 80), "white")
    image.paste((200, 0, 0), (20, 30, 40, 70))
    return image


def test_entities_come_from_fields_and_text():
    e = extract_entities("Acme Red Party Dress", "A soft silk blend dress", ATTRS)
    assert (e.brand, e.category, e.gender) == ("Acme", "Dresses", "Women")
    assert e.colours[0] == "Red" and e.patterns == ["Striped"]
    assert e.materials[0] == "Cotton" and "silk" in e.materials
    assert "Party" in e.styles and "Slim Fit" in e.styles


def test_enriched_title_keeps_the_title_and_adds_entities():
    text = EntityEnricher().enrich("Acme Party Dress", None, ATTRS)
    assert text.startswith("Acme Party Dress. ")
    for word in ("Red", "Striped", "Cotton", "Dresses", "by Acme", "for Women"):
        assert word in text


def test_shopper_queries_are_short_and_about_the_product():
    rng = random.Random(0)
    queries = {q for _ in range(50) for q in shopper_queries(ATTRS, rng)}
    assert all(len(q.split()) <= 4 for q in queries)
    assert all(q.endswith("dress") or q.endswith("dresses") for q in queries)
    assert "red dress" in queries or "red dresses" in queries
    assert shopper_queries({"title": "x"}, rng) == []
    assert singular("Dresses") == "dress" and singular("Tshirts") == "tshirt" and singular("Jeans") == "jeans"


def test_visual_expansion_variants():
    photo = product_photo()
    assert subject_box(photo) == (20, 30, 40, 70)
    assert crop_subject(photo, margin=0).size == (20, 40)
    recoloured = np.asarray(recolour_background(photo, (10, 20, 30)))
    assert tuple(recoloured[0, 0]) == (10, 20, 30) and tuple(recoloured[50, 30]) == (200, 0, 0)
    zoomed_out = rescale(photo, 0.5)
    assert zoomed_out.size == photo.size and subject_box(zoomed_out)[2] - subject_box(zoomed_out)[0] <= 12
    for variant in ("crop", "background", "flip", "zoom_out", "zoom_in"):
        image, name = expand_image(photo, random.Random(1), variant)
        assert name == variant and image.mode == "RGB"
    assert subject_box(Image.new("RGB", (5, 5), "white")) is None


def test_consistency_filter_keeps_variants_that_still_match_their_own_title():
    similarity = np.array([[0.9, 0.1, 0.2],    # matches its own title best: kept
                           [0.5, 0.3, 0.4],    # own title third of three: dropped at top=2
                           [0.1, 0.2, 0.25]])  # own title best: kept
    assert consistent_rows(similarity, top=2).tolist() == [True, False, True]
    assert consistent_rows(similarity, top=3).all()


def test_a_shopper_query_carries_the_rule_that_its_product_meets():
    from moonsearch.eval.shopper import is_relevant
    from moonsearch.shopper import shopper_query

    rng = random.Random(1)
    queries = [shopper_query(ATTRS, rng) for _ in range(200)]
    assert all(is_relevant(ATTRS, q.match) for q in queries)
    assert all(q.match["articleType"] == ["Dresses"] for q in queries)
    by_text = {q.text: q.match for q in queries}
    red = by_text.get("red dress") or by_text["red dresses"]
    assert red == {"articleType": ["Dresses"], "baseColour": ["Red"]}
    striped = by_text.get("striped dress") or by_text["striped dresses"]
    assert striped == {"articleType": ["Dresses"], "attributes.Pattern": ["Striped"]}
    blue = {**ATTRS, "baseColour": "Blue"}
    assert not is_relevant(blue, red) and is_relevant(blue, striped)
    assert shopper_query({"title": "x"}, rng) is None
