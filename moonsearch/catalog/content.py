"""A product's content hash: what `moonsearch update` compares to skip unchanged products.

It covers the record's text (id, title, description, attributes) and the bytes of every image
in order, not the images' paths: a photo replaced under the same file name counts as a change,
while a catalog moved to another folder (or its images renamed) does not, and a product whose
hash is unchanged needs no encoding (its stored record, image paths included, stays as it was).
An image that cannot be read hashes as missing.
"""

from __future__ import annotations

import hashlib
import json

from moonsearch.catalog.models import Product

_CHUNK = 1 << 20


def product_hash(product: Product) -> str:
    digest = hashlib.sha256()
    record = [product.id, product.title, product.description, product.attributes, len(product.images)]
    digest.update(json.dumps(record, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8"))
    for path in product.images:
        digest.update(b"\0image\0")
        try:
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(_CHUNK), b""):
                    digest.update(block)
        except OSError:
            digest.update(b"\0missing\0")
    return digest.hexdigest()
