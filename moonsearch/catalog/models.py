"""Plain records the catalog reader hands out; frozen so they can be shared safely."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Product:
    """One valid catalog record, normalised to the fields the engine needs."""

    id: str
    title: str
    description: str | None
    images: tuple[Path, ...]
    attributes: dict[str, Any]
    source: str


@dataclass(frozen=True)
class Skip:
    """A record left out, with where it is so the user can fix it."""

    source: str
    product_id: str | None
    reason: str


@dataclass
class CatalogScan:
    """Result of a text-only pass: what would be indexed and what would not."""

    rows: int
    products: int
    skips: list[Skip] = field(default_factory=list)
