"""How a product becomes what an encoder reads: its text and its image, in one place for the
indexer, the live writer, the trainers' caches and the evaluation, so a product is embedded the
same way everywhere.

The image is the first of the product's images that loads (`first_loadable`); the others are
the index's further images.

Titles alone miss what shoppers type ("striped", "formal", "men"): the measured reference on
Myntra is P@10 0.690 for titles vs 0.788 for title + structured attributes. So the product text
is the title followed by short attribute values, most telling first, within a token budget.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from PIL import Image

from moonsearch.catalog.images import ImageError, LoadedImage, first_loadable
from moonsearch.catalog.models import Product
from moonsearch.errors import MoonsearchError

# Fields that say what the product is, in the order a shopper's words usually come.
LEADING_FIELDS = (
    "gender", "baseColour", "colour", "color", "articleType", "category", "subCategory",
    "usage", "season", "brand",
)
# Fields that are bookkeeping, not description.
IGNORED_FIELDS = {
    "id", "split", "image", "images", "image_path", "year", "price", "discountedPrice",
    "descriptors", "masterCategory", "colour1", "colour2", "url", "sku",
}
IGNORED_NESTED = {"Body or Garment Size", "Wash Care", "Warranty", "Multipack Set", "Display"}
MISSING_VALUES = {"", "na", "n/a", "none", "null", "nan", "-"}
MAX_VALUE_CHARS = 40
MAX_TEXT_CHARS = 300


def _clean(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, int, float, dict, list)):
        return None
    text = " ".join(str(value).split())
    if text.lower() in MISSING_VALUES or len(text) > MAX_VALUE_CHARS:
        return None
    return text


def attribute_phrases(attributes: Mapping[str, Any]) -> list[str]:
    """Short descriptive phrases from a product's attributes, leading fields first."""
    phrases: list[str] = []
    keys = [k for k in LEADING_FIELDS if k in attributes]
    keys += [k for k in attributes if k not in LEADING_FIELDS and k not in IGNORED_FIELDS]
    for key in keys:
        value = attributes[key]
        if isinstance(value, Mapping):
            for sub_key, sub_value in value.items():
                text = _clean(sub_value)
                if text and sub_key not in IGNORED_NESTED:
                    phrases.append(f"{sub_key} {text}")
            continue
        text = _clean(value)
        if text:
            phrases.append(text)
    return phrases


def _dedupe(words: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for word in words:
        if word.lower() not in seen:
            seen.add(word.lower())
            kept.append(word)
    return kept


def product_text(title: str, attributes: Mapping[str, Any]) -> str:
    """Title, then attribute phrases not already in the title, cut at MAX_TEXT_CHARS."""
    title_words = {w.lower() for w in title.split()}
    extra = [p for p in _dedupe(attribute_phrases(attributes)) if p.lower() not in title_words]
    text = title.strip()
    if extra:
        text += ". " + ", ".join(extra)
    return text[:MAX_TEXT_CHARS]


# Field weights of the keyword (BM25) half: chosen on myntra-val (docs/shopper-language.md).
KEYWORD_WEIGHTS = {"title": 3, "attributes": 1}
UNWEIGHTED = {"title": 1, "attributes": 1}   # what an index built before field weights used


def keyword_weights(spec: str | Mapping[str, Any] | None) -> dict[str, int]:
    """{"title": w, "attributes": w} from "title=2,attributes=1" or a mapping (None: the
    default); each weight a whole number >= 1, since the product text holds every field once."""
    if spec is None:
        return dict(KEYWORD_WEIGHTS)
    if isinstance(spec, str):
        pairs = [part.split("=", 1) for part in spec.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise MoonsearchError(f"keyword weights: expected title=N,attributes=N, got {spec!r}")
        spec = {k.strip(): v.strip() for k, v in pairs}
    weights = dict(KEYWORD_WEIGHTS)
    for field, value in spec.items():
        if field not in weights:
            raise MoonsearchError(f"keyword weights: unknown field {field!r} (title, attributes)")
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
            raise MoonsearchError(f"keyword weights: {field} must be a whole number >= 1, got {value!r}")
        weights[field] = number
    return weights


def keyword_text(title: str, attributes: Mapping[str, Any], weights: Mapping[str, int] = UNWEIGHTED) -> str:
    """The text the keyword index is built from: the product text with the title repeated
    `title` times and the attribute phrases `attributes` times in all. BM25 over it is BM25F
    with those integer field weights (term frequencies and document length both weighted).
    The embedded text (product_text) never changes, so product vectors do not depend on this."""
    text = product_text(title, attributes)
    head = text[:len(title.strip())]
    tail = text[len(head) + 2:]          # after product_text's ". "
    extra = [head] * (int(weights["title"]) - 1) + ([tail] * (int(weights["attributes"]) - 1) if tail else [])
    return ". ".join([text, *extra]) if extra else text


@dataclass
class ModelInput:
    """One product as the encoder sees it."""
    text: str
    loaded: LoadedImage

    @property
    def image(self) -> Image.Image | None:
        return self.loaded.image


def model_input(product: Product) -> ModelInput:
    return ModelInput(product_text(product.title, product.attributes), first_loadable(product.images))


def image_failure(product: Product, position: int, exc: ImageError) -> dict:
    """The skip-report entry of one of a product's images that could not be embedded."""
    return {"kind": "image", "source": product.source, "id": product.id,
            "reason": f"image {position} not embedded: {exc.reason}", "image": str(product.images[position])}
