"""Map one raw record (any format) to a Product, or say why it cannot be one."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import unquote, urlparse

from moonsearch.catalog.images import is_url
from moonsearch.catalog.models import Product, Skip

# Lower-case aliases, best first: a record may carry several (e.g. id and sku);
# the first wins and the others stay in attributes.
ID_KEYS = ("id", "product_id", "sku")
TITLE_KEYS = ("title", "name", "productdisplayname")
DESCRIPTION_KEYS = ("description",)
IMAGE_KEYS = ("image", "images", "image_path")
DESCRIPTORS_KEY = "descriptors"


@dataclass(frozen=True)
class RecordContext:
    """What differs between formats when a record is mapped."""

    root: Path
    derive_image: bool = False  # Kaggle layout: images/<id>.jpg when there is no image column


class _Invalid(ValueError):
    """A value of a type that cannot stand for text (dict, list, bool)."""


def _text(value: Any) -> str | None:
    """Scalar to stripped text; None when empty. Ints (and whole floats) become digits."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool):
        raise _Invalid(type(value).__name__)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral_value() else str(value)
    raise _Invalid(type(value).__name__)


def _find(keys: Iterable[Any], aliases: tuple[str, ...]) -> Any | None:
    """The record key matching the best alias, case-insensitively."""
    found: dict[str, Any] = {}
    for key in keys:
        if isinstance(key, str):
            found.setdefault(key.lower(), key)
    for alias in aliases:
        if alias in found:
            return found[alias]
    return None


def _one_path(text: str, root: Path) -> Path:
    """Resolve against the catalog dir without touching the disk; URLs stay recognisable."""
    if text.lower().startswith("file://"):
        return Path(unquote(urlparse(text).path))
    if is_url(text):
        return Path(text)  # kept unresolved so load_image can report "not a local file (URL)"
    path = Path(text)
    if not path.is_absolute():
        path = root / path
    return Path(os.path.normpath(path))


def image_paths(value: Any, ctx: RecordContext) -> tuple[Path, ...]:
    """One path, a list of paths, or nothing; raises _Invalid for other shapes."""
    if value is None:
        items: list[Any] = []
    elif isinstance(value, str):
        items = value.split("|")   # "a.jpg|b.jpg": several paths in any format (a CSV cell holds no list)
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _Invalid(type(value).__name__)
    paths: list[Path] = []
    for item in items:
        if item is None:
            continue
        if not isinstance(item, str):
            raise _Invalid(f"list of {type(item).__name__}")
        text = item.strip()
        if text:
            path = _one_path(text, ctx.root)
            if path not in paths:
                paths.append(path)
    return tuple(paths)


def _nested_description(record: Mapping[str, Any]) -> str | None:
    """descriptors.description, the shape of the Myntra export."""
    key = _find(record.keys(), (DESCRIPTORS_KEY,))
    nested = record.get(key) if key is not None else None
    if not isinstance(nested, Mapping):
        return None
    inner = _find(nested.keys(), DESCRIPTION_KEYS)
    try:
        return _text(nested.get(inner)) if inner is not None else None
    except _Invalid:
        return None


def build_product(record: Mapping[str, Any], source: str, ctx: RecordContext) -> Product | Skip:
    """A Product, or a Skip naming the first problem; never raises for bad data."""
    keys = list(record.keys())
    id_key = _find(keys, ID_KEYS)
    title_key = _find(keys, TITLE_KEYS)
    desc_key = _find(keys, DESCRIPTION_KEYS)
    image_key = _find(keys, IMAGE_KEYS)

    try:
        pid = _text(record.get(id_key)) if id_key is not None else None
    except _Invalid as exc:
        return Skip(source, None, f"invalid id ({exc})")
    if pid is None:
        return Skip(source, None, "missing id")

    try:
        title = _text(record.get(title_key)) if title_key is not None else None
    except _Invalid as exc:
        return Skip(source, pid, f"invalid title ({exc})")
    if title is None:
        return Skip(source, pid, "missing title")

    used = {id_key, title_key, image_key}
    description = None
    if desc_key is not None:
        try:
            description = _text(record.get(desc_key))
            used.add(desc_key)
        except _Invalid:
            description = None  # odd shape: leave it in attributes untouched
    if description is None:
        description = _nested_description(record)

    if image_key is not None:
        try:
            images = image_paths(record.get(image_key), ctx)
        except _Invalid as exc:
            return Skip(source, pid, f"invalid image field ({exc})")
    elif ctx.derive_image:
        images = (Path(os.path.normpath(ctx.root / "images" / f"{pid}.jpg")),)
    else:
        images = ()

    attributes = {k: v for k, v in record.items() if k not in used and v is not None}
    return Product(pid, title, description, images, attributes, source)
