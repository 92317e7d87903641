from moonsearch.catalog.inputs import MAX_TEXT_CHARS, attribute_phrases, product_text


def test_title_then_descriptive_attributes_leading_fields_first():
    attrs = {"brand": "Acme", "price": 999, "split": "train", "articleType": "Dresses", "baseColour": "Red",
             "gender": "Women", "attributes": {"Pattern": "Solid", "Wash Care": "cold"}, "colour1": "NA"}
    text = product_text("Acme Red Party Dress", attrs)
    assert text.startswith("Acme Red Party Dress. ")
    assert text.index("Women") < text.index("Dresses") < text.index("Pattern Solid")
    for absent in ("999", "train", "Wash Care", "NA", "Red,"):
        assert absent not in text


def test_missing_and_long_values_are_dropped():
    phrases = attribute_phrases({"usage": "", "season": None, "note": "x" * 200, "fit": "Slim"})
    assert phrases == ["Slim"]


def test_length_is_capped():
    attrs = {f"k{i}": f"value number {i}" for i in range(100)}
    assert len(product_text("t", attrs)) <= MAX_TEXT_CHARS
