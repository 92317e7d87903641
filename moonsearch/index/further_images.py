"""A product's images after the one its product vectors use: each is decoded and embedded on
its own (mm and image views), so an image query can match the product through any of them.
One implementation for the builder and the live writer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from moonsearch.catalog import ImageError, Product, load_image
from moonsearch.catalog.inputs import image_failure
from moonsearch.encoder.base import Encoder
from moonsearch.store.files import EXTRA_VIEWS


@dataclass
class FurtherImages:
    """Embedded further images: for each, the product key and image position, and per view the
    vectors (rows in that order); the skip-report entries of those that did not load."""
    keys: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    vectors: dict = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)


def after_first(key: int, text: str, product: Product, position: int | None) -> list[tuple]:
    """The further images of a product whose product vectors used image `position` (None: no
    image loaded, so none follows): (key, product text, product, image position) each."""
    if position is None:
        return []
    return [(key, text, product, p) for p in range(position + 1, len(product.images))]


def embed_further(encoder: Encoder, items: list[tuple]) -> FurtherImages:
    """Decode and embed (key, text, product, position) items, as after_first lists them."""
    found = FurtherImages()
    done = []
    for key, text, product, position in items:
        try:
            done.append((key, text, position, load_image(product.images[position])))
        except ImageError as exc:
            found.failures.append(image_failure(product, position, exc))
    if done:
        views = encoder.encode_views([d[1] for d in done], [d[3] for d in done])
        found.keys = [d[0] for d in done]
        found.positions = [d[2] for d in done]
        extra = EXTRA_VIEWS + (("identity",) if getattr(views, "identity", None) is not None else ())
        found.vectors = {view: np.asarray(views[view], np.float32) for view in extra}
    return found


def embed_batch_further(encoder: Encoder, first_key: int, products: list[Product], inputs: list,
                        batch_size: int) -> list[FurtherImages]:
    """The further images of a batch of products (keys first_key, first_key + 1, ...), whose
    ModelInputs say which image their product vectors used, embedded `batch_size` images at a
    time: what the builder records after the batch's rows, whether it runs here or in a Ray actor."""
    items = [item for i, (product, given) in enumerate(zip(products, inputs))
             for item in after_first(first_key + i, given.text, product, given.loaded.position)]
    return [embed_further(encoder, items[start:start + batch_size]) for start in range(0, len(items), batch_size)]
