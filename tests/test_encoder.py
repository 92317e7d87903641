import numpy as np
import pytest
from PIL import Image

from moonsearch.encoder.registry import available_encoders, load_encoder
from moonsearch.errors import MoonsearchError

from conftest import draw_product


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pics")
    return [Image.open(draw_product(folder / f"{c}.png", c, "dress")).convert("RGB") for c in ("Red", "Blue")]


def test_shipped_encoders_are_listed_and_moon_lite_is_the_default():
    assert {"baseline", "moon-lite"} <= set(available_encoders())
    enc = load_encoder("default")
    assert enc.name == "moon-lite"
    assert enc.encoder_id.startswith("moon-lite@") and len(enc.encoder_id) == len("moon-lite@") + 16
    assert load_encoder("baseline").encoder_id.startswith("baseline@")   # still selectable


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(MoonsearchError, match="no weights"):
        load_encoder("nonexistent")


def test_every_input_form_gives_unit_vectors_in_one_space(encoder, pictures):
    vectors = encoder.encode(["red dress", None, "blue dress"], [None, pictures[0], pictures[1]])
    assert vectors.shape == (3, encoder.dim) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len({tuple(np.round(v, 4)) for v in vectors}) == 3


def test_product_views_match_single_form_encodings(encoder, pictures):
    texts = ["red dress", "blue dress", "text only product"]
    images = [pictures[0], pictures[1], None]
    views = encoder.encode_views(texts, images)
    assert np.allclose(views.mm[:2], encoder.encode(texts[:2], images[:2]), atol=1e-5)
    assert np.allclose(views.text, encoder.encode(texts, [None] * 3), atol=1e-5)
    assert np.allclose(views.image[:2], encoder.encode([None, None], images[:2]), atol=1e-5)
    # a product without an image is embedded from its text, and has no image-view vector
    assert np.allclose(views.mm[2], views.text[2], atol=1e-5)
    assert not views.image[2].any()


def test_encoding_is_deterministic(encoder, pictures):
    a = encoder.encode(["red dress"], [pictures[0]])
    b = encoder.encode(["red dress"], [pictures[0]])
    assert np.array_equal(a, b)
