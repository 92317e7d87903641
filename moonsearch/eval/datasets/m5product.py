"""M5Product evaluation products, in the shapes a local copy plausibly has.

M5Product (6M products, ~6k categories) is distributed by its authors on request; we have not
seen its exact public file layout, so this loader accepts the obvious tabular shapes rather
than claiming the official one:

* ``data`` is a table file, or a folder holding ``test.jsonl`` (or ``products.jsonl``;
  ``.csv`` and ``.parquet`` are read the same way);
* one product per row with ``id`` (also ``product_id``/``item_id``; the row number if
  absent), ``title`` (or ``text``), ``image`` (or ``image_path``; relative to the table's
  folder) and ``category`` (or ``label``).

A row without a category is skipped with a reason; rows without a title or an image are
kept here and dropped (and counted) by the protocol, which needs both.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dataclass_field
from pathlib import Path

from moonsearch.errors import MoonsearchError
from moonsearch.eval.datasets import clean_text, field, find_table, image_path, read_rows


@dataclass(frozen=True)
class M5Record:
    id: str
    title: str | None
    image: Path | None
    category: str


@dataclass
class M5Product:
    source: Path
    products: list[M5Record]
    skipped: list[tuple[str, str]] = dataclass_field(default_factory=list)  # (file:line, reason)


def load_m5product(data: str | Path, limit: int | None = None) -> M5Product:
    """Read the first `limit` usable products (all of them by default)."""
    path = find_table(Path(data), ("test", "products"), "M5Product product table")
    products: list[M5Record] = []
    skipped: list[tuple[str, str]] = []
    for number, (where, row) in enumerate(read_rows(path)):
        if limit is not None and len(products) >= limit:
            break
        if isinstance(row, str):
            skipped.append((where, row))
            continue
        category = clean_text(field(row, "category", "label"))
        if category is None:
            skipped.append((where, "no category"))
            continue
        product_id = clean_text(field(row, "id", "product_id", "item_id")) or f"row{number}"
        products.append(
            M5Record(
                product_id,
                clean_text(field(row, "title", "text")),
                image_path(field(row, "image", "image_path"), path.parent),
                category,
            )
        )
    if not products:
        raise MoonsearchError(f"{path}: no product with a category ({len(skipped)} rows skipped)")
    return M5Product(path, products, skipped)


load = load_m5product  # the name every benchmark module shares (used by moonsearch.eval.runner)
