"""Shopper language (issue 20): spellings read as one, price phrases as a filter the result
names, gender phrases as a boost, `--no-parse` / `parse=False` to read a query verbatim."""

import json

import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.store.query_language import Synonyms, understand, words

from test_end_to_end import cli


@pytest.mark.parametrize("variant", ["tshirt", "t shirt", "T-Shirts", "tee", "tees", "Tee shirt"])
def test_variant_spellings_are_read_as_one_phrase(variant):
    canonical = understand("t-shirt")
    read = understand(variant)
    assert (read.text, read.keywords) == (canonical.text, canonical.keywords)
    assert not canonical.applied
    if words(variant) != ["t", "shirt"]:
        assert f"read as 't-shirt'" in read.applied[0]


def test_possessives_and_gender_words():
    for query in ("men's jeans", "mens jeans", "jeans for men", "Men’s Jeans"):
        read = understand(query)
        assert [str(b.values) for b in read.boosts] == ["('Men',)"], query
    assert understand("kids t-shirt").boosts[0].values == ("Boys", "Girls")
    assert understand("men and women watch").boosts == ()   # asks for nothing in particular


@pytest.mark.parametrize("query, bounds", [
    ("shirt under 1000", [("<=", "1000")]), ("shirt below rs. 1,000", [("<=", "1000")]),
    ("shirt under 1k", [("<=", "1000")]), ("shirt above 2000", [(">=", "2000")]),
    ("shirt between 1500 and 500", [(">=", "500"), ("<=", "1500")]),
    ("shirt rs 500 to 1000", [(">=", "500"), ("<=", "1000")]),
])
def test_price_phrases_become_a_price_filter(query, bounds):
    read = understand(query)
    assert [(f.key, f.op, f.values[0]) for f in read.filters] == [("price", op, v) for op, v in bounds]
    assert read.text == "shirt" and any("filter price" in line for line in read.applied)


def test_price_phrase_kept_when_the_index_has_no_price():
    read = understand("shirt under 1000", known_fields={"gender"})
    assert read.filters == () and "1000" in read.text and "no price field" in read.applied[0]


@pytest.mark.parametrize("query", ["kurta for women", "women's kurta", "womens kurta", "Kurta for Women under 999"])
def test_a_gender_after_the_noun_is_read_in_front(query):
    """"kurta for women" and "women's kurta" embed as one text (overlap@10 was 0.3 on test)."""
    read = understand(query)
    assert read.text == "women kurta" and [b.values for b in read.boosts] == [("Women",)]
    assert ("for women" in query.lower()) == any("read as 'women kurta'" in line for line in read.applied)
    assert understand("for men").text == "for men"      # nothing to move in front of


def test_a_bad_synonym_list_is_a_one_line_error(tmp_path):
    bad = tmp_path / "synonyms.tsv"
    bad.write_text("# comment\nno tab on this line\n")
    with pytest.raises(MoonsearchError, match="line 2"):
        Synonyms.read(bad)
    with pytest.raises(MoonsearchError, match="cannot read"):
        Synonyms.read(tmp_path / "missing.tsv")
    good = tmp_path / "good.tsv"
    good.write_text("jeans\tdenims | jean\n")
    assert Synonyms.read(good).rewrite(["blue", "denims"])[0] == ["blue", "jeans"]


def test_tee_and_t_shirt_return_the_same_products(sample_index):
    _, index = sample_index
    top = [h.id for h in index.search(text="t-shirt", k=5)]
    for variant in ("tee", "tees", "tshirt", "t shirt"):
        hits = index.search(text=variant, k=5)
        assert [h.id for h in hits] == top, variant
        assert any("read as 't-shirt'" in line for line in hits.applied) or variant == "t shirt"
    # verbatim, "tee" matches no product word and ranks otherwise
    verbatim = index.search(text="tee", k=5, parse=False)
    assert verbatim.applied == [] and verbatim.query.parsed is False


def test_under_a_price_filters_and_says_so(sample_index):
    _, index = sample_index
    hits = index.search(text="t-shirt under 1000", k=10)
    assert hits and all(h.attributes["price"] <= 1000 for h in hits)
    assert any(line.startswith("filter price <= 1000") for line in hits.applied)
    verbatim = index.search(text="t-shirt under 1000", k=10, parse=False)
    assert any(h.attributes["price"] > 1000 for h in verbatim) and verbatim.applied == []


def test_for_men_boosts_men_products(sample_index):
    _, index = sample_index
    boosted = index.search(text="shirt for men", k=10)
    plain = index.search(text="shirt for men", k=10, parse=False)
    assert any(line.startswith("boost gender = Men") for line in boosted.applied)
    men = lambda hits: sum(h.attributes["gender"] == "Men" for h in hits)
    assert men(boosted) >= men(plain) and men(boosted[:5]) == 5


def test_words_matching_nothing_say_so(sample_index):
    _, index = sample_index
    hits = index.search(text="qwertyuiop zxcvb", k=3)
    assert len(hits) == 3 and any("no product's text has any of the words" in n for n in hits.notes)


def test_cli_says_what_it_applied_and_no_parse_turns_it_off(sample_index):
    summary, _ = sample_index
    result = cli("query", "tees under 1000", "--index", str(summary.out), "--json", "--k", "5", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["query"]["filters"] == ["price <= 1000"] and out["query"]["text"] == "t-shirt"
    assert any("read as 't-shirt'" in line for line in out["applied"])
    assert all(h["attributes"]["price"] <= 1000 for h in out["hits"])
    table = cli("query", "tees under 1000", "--index", str(summary.out), "--k", "5", "--device", "cpu")
    assert table.returncode == 0 and "applied: filter price <= 1000" in table.stdout
    verbatim = cli("query", "tees under 1000", "--index", str(summary.out), "--json", "--no-parse", "--device", "cpu")
    out = json.loads(verbatim.stdout)
    assert out["applied"] == [] and out["query"]["parsed"] is False and out["query"]["filters"] == []


def test_attribute_words_become_boosts_of_their_values():
    from moonsearch.store.query_language import AttributeWords

    vocabulary = AttributeWords.from_values({"attributes.Neck": {"Round Neck": 40, "V-Neck": 9, "Boat Neck": 2},
                                             "articleType": {"Tshirts": 50}, "gender": {"Men": 30}})
    read = understand("crew neck tees", attribute_words=vocabulary)
    assert [(b.key, b.values) for b in read.boosts] == [("attributes.Neck", ("Round Neck",)),
                                                        ("articleType", ("Tshirts",))]
    assert understand("boat neck top", attribute_words=vocabulary).boosts == ()   # too few products
    assert understand("crew neck tees", attribute_words=vocabulary).applied[-1].startswith("boost articleType")


def test_an_attribute_word_lifts_the_products_having_it(sample_index):
    _, index = sample_index
    slim = [h for h in index.search(text="slim fit shirt", k=5)]
    applied = index.search(text="slim fit shirt", k=5).applied
    assert any(line.startswith("boost attributes.Fit = Slim Fit") for line in applied)
    assert all(h.attributes["attributes"].get("Fit") == "Slim Fit" for h in slim[:3])


def test_a_price_alone_or_no_words_still_ranks_and_says_how(sample_index):
    _, index = sample_index
    hits = index.search(text="under 1000", k=5)
    assert len(hits) == 5 and all(h.attributes["price"] <= 1000 for h in hits)
    assert any("no words left to match by keyword" in n for n in hits.notes)
    assert index.search(text="???", k=2).notes
