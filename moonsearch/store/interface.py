"""What a storage backend provides: a vector store per view and one record store.

`search/` and `index/` speak only these two interfaces, so another backend (issue 11: Milvus)
plugs in without touching the query layer. Products are addressed by a stable int64 key (the
`row`), the same in both stores: vectors are looked up by key, never by position, so deleting
a product leaves every other product's key as it was. Filters reach a backend as parsed
`Filter` values, which it translates safely itself (DuckDB: bound SQL parameters).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from moonsearch.store.filters import Filter


class VectorStore(ABC):
    """One view's vectors, keyed by product key. Scores are inner products of L2-normalised
    vectors (cosines)."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under keys not yet in the store."""

    @abstractmethod
    def remove(self, ids: np.ndarray) -> int:
        """Drop the vectors of these keys (absent keys are ignored); how many went."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, keys) per query, best first, -1 keys padding a short answer; with
        `allowed_ids`, only those keys, and still k whenever k of them are stored."""

    @abstractmethod
    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored vectors of these keys."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every stored key."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the store to one file (the caller makes the write atomic)."""

    @classmethod
    @abstractmethod
    def open(cls, path: Path) -> "VectorStore":
        """Read a store written by `save`."""

    @property
    @abstractmethod
    def size(self) -> int:
        """How many vectors are stored."""


class RecordStore(ABC):
    """Product records by key and by id: what hits show, what filters and keywords match."""

    @abstractmethod
    def upsert(self, rows: Sequence[Any]) -> None:
        """Insert products, replacing any stored under the same key (rows are ProductRow-like)."""

    @abstractmethod
    def delete(self, keys: Sequence[int]) -> None:
        """Remove these products (keys)."""

    @abstractmethod
    def products(self, keys: Sequence[int]) -> list[dict]:
        """Records of these keys, in the order asked."""

    @abstractmethod
    def row_of(self, product_id: str) -> int | None:
        """The key of a product id, None when absent."""

    @abstractmethod
    def keys_of(self, product_ids: Sequence[str]) -> dict[str, int]:
        """Keys of the ids that are stored."""

    @abstractmethod
    def allowed_rows(self, filters: Sequence[Filter]) -> np.ndarray:
        """Sorted keys matching every filter (no filter: every product)."""

    @abstractmethod
    def rows_with_image(self) -> np.ndarray:
        """Keys of products whose image vectors exist."""

    @abstractmethod
    def keyword_rows(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(key, BM25 score) of the k best keyword matches, among `allowed` keys if given."""

    @abstractmethod
    def has_keyword_index(self) -> bool:
        """Whether keyword search is available (indexes older than it have none)."""

    @abstractmethod
    def attribute_keys(self) -> list[tuple[str, int]]:
        """Filterable keys and how many products hold each, most common first."""

    @abstractmethod
    def count(self) -> int:
        """How many products are stored."""

    @abstractmethod
    def content_hashes(self) -> Mapping[str, tuple[int, str]]:
        """product id -> (key, content hash) for every product (hash '' when unknown)."""

    @abstractmethod
    def close(self) -> None:
        """Release files; a writable store commits what it was given first."""
