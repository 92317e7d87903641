"""MBE2.0 test triplets and label files, in the layout we *read* the benchmark to have.

MBE2.0 (the MOON2.0 paper's benchmark, Taobao search logs) has no public file layout we can
check, so what follows is our reading of the paper, not an official format:

* ``data`` is a triplet file, or a folder holding ``test.jsonl`` (or ``triplets.jsonl``;
  ``.parquet`` and ``.csv`` work too). One (query, positive, negative) triplet per row, either
  nested ``{"query": {"text": .., "image": ..}, "positive": {..}, "negative": {..}}`` (an
  element may also be a bare string, meaning text only) or flat ``query_text, query_image,
  positive_text, positive_image, negative_text, negative_image``. Any element may lack its
  text or its image, as the paper's elements are text, image or image+text.
* optional ``classification.jsonl`` next to it: one product per row (``text``/``title``,
  ``image``, or a nested ``product`` object) with its ``label``;
* optional ``attributes.jsonl``: a product with ``attribute`` (e.g. "colour") and ``value``.

Image paths are relative to the file that names them. Rows that cannot be used are skipped
with a reason (``MBE2.skipped``); images are not opened here.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from pathlib import Path
from typing import Any, Mapping

from moonsearch.errors import MoonsearchError
from moonsearch.eval.datasets import (
    Item,
    clean_text,
    find_table,
    image_path,
    item_from,
    optional_table,
    read_rows,
)

ROLES = ("query", "positive", "negative")


@dataclass(frozen=True)
class Triplet:
    query: Item
    positive: Item
    negative: Item


@dataclass
class MBE2:
    """The loaded split: triplets, optional labelled products, and the rows skipped."""

    source: Path
    triplets: list[Triplet]
    classification: list[tuple[Item, str]] | None = None  # None: no label file
    attributes: list[tuple[Item, str, str]] | None = None
    skipped: list[tuple[str, str]] = dataclass_field(default_factory=list)  # (file:line, reason)


def _triplet(row: Mapping[str, Any], base: Path) -> Triplet | str:
    """A triplet from a nested or a flat row, or the reason it is unusable."""
    elements = []
    for role in ROLES:
        if role in row and row[role] is not None:
            element = item_from(row[role], base)
        else:
            element = Item(
                clean_text(row.get(f"{role}_text")), image_path(row.get(f"{role}_image"), base)
            )
        if element is None or (element.text is None and element.image is None):
            return f"{role} has neither text nor image"
        elements.append(element)
    return Triplet(*elements)


def _product(row: Mapping[str, Any], base: Path) -> Item | None:
    nested = row.get("product")
    if nested is not None:
        return item_from(nested, base)
    return item_from(row, base)


def _label_rows(path: Path, keys: tuple[str, ...], limit: int | None, skipped: list) -> list:
    """(product, key values...) per usable row of a label file."""
    out: list = []
    for where, row in read_rows(path):
        if limit is not None and len(out) >= limit:
            break
        if isinstance(row, str):
            skipped.append((where, row))
            continue
        product = _product(row, path.parent)
        values = [clean_text(row.get(k)) for k in keys]
        if product is None:
            skipped.append((where, "product has neither text nor image"))
        elif any(v is None for v in values):
            skipped.append((where, f"missing {' or '.join(keys)}"))
        else:
            out.append((product, *values))
    return out


def load_mbe2(data: str | Path, limit: int | None = None) -> MBE2:
    """Read the triplets (the first `limit` usable ones) and any label files beside them."""
    path = find_table(Path(data), ("test", "triplets"), "MBE2.0 triplet file")
    skipped: list[tuple[str, str]] = []
    triplets: list[Triplet] = []
    for where, row in read_rows(path):
        if limit is not None and len(triplets) >= limit:
            break
        result = row if isinstance(row, str) else _triplet(row, path.parent)
        if isinstance(result, str):
            skipped.append((where, result))
        else:
            triplets.append(result)
    if not triplets:
        raise MoonsearchError(
            f"{path}: no usable triplet ({len(skipped)} rows skipped"
            + (f", first: {skipped[0][0]}: {skipped[0][1]}" if skipped else "")
            + ")"
        )
    root = Path(data)
    classification = attributes = None
    label_file = optional_table(root, "classification")
    if label_file is not None:
        classification = _label_rows(label_file, ("label",), limit, skipped)
    attribute_file = optional_table(root, "attributes")
    if attribute_file is not None:
        attributes = _label_rows(attribute_file, ("attribute", "value"), limit, skipped)
    return MBE2(path, triplets, classification, attributes, skipped)


load = load_mbe2  # the name every benchmark module shares (used by moonsearch.eval.runner)
