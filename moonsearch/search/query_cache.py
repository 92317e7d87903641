"""A small LRU of text query vectors, so a repeated query skips the text encoder.

Why: the encoder is ~4 of a warm text query's ~6 ms, and its MiniLM pass is bound by memory
bandwidth (its 42 MB of weights stream from RAM on every query), so it cannot be made much
faster without changing the vectors. Shoppers repeat queries ("red dress", a server's
autocomplete-driven traffic), and a text's vector depends only on the text and the encoder, so
a cached vector is the very array the encoder gave (results identical, tested).

Each opened ProductIndex has its own cache; `refresh` (which every write through the index
calls) gives it a new, empty one, so nothing cached outlives the state it was made for. Keys are
the text the encoder embeds (after the query parser's rewriting). Only text-only queries are
cached: an image query's bytes would have to be hashed, and image queries repeat less.
Size: QUERY_CACHE_SIZE entries (1 KB each at 256 dimensions), or MOONSEARCH_QUERY_CACHE in the
environment; 0 turns it off.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Callable

import numpy as np

QUERY_CACHE_SIZE = 1024
ENV_SIZE = "MOONSEARCH_QUERY_CACHE"


def default_size() -> int:
    """QUERY_CACHE_SIZE unless the environment names another count (0: no cache)."""
    value = os.environ.get(ENV_SIZE, "").strip()
    if not value:
        return QUERY_CACHE_SIZE
    try:
        size = int(value)
    except ValueError:
        size = -1
    if size < 0:
        from moonsearch.errors import MoonsearchError

        raise MoonsearchError(f"{ENV_SIZE} must be a whole number of cached queries >= 0 (0: off), not {value!r}")
    return size


class QueryVectorCache:
    """text -> query vector, least recently used dropped first; safe to share between threads
    (a server's request threads). Hands out copies, so a caller that changes its array does not
    change what the next query gets."""

    def __init__(self, size: int | None = None):
        self.size = default_size() if size is None else max(0, int(size))
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def vector(self, text: str, encode: Callable[[str], np.ndarray]) -> np.ndarray:
        """The cached vector of `text`, or `encode(text)` (kept for next time)."""
        if self.size <= 0:
            return encode(text)
        with self._lock:
            found = self._vectors.get(text)
            if found is not None:
                self._vectors.move_to_end(text)
                self.hits += 1
                return found.copy()
            self.misses += 1
        vector = encode(text)   # outside the lock: two threads may both encode a new text, harmlessly
        with self._lock:
            self._vectors[text] = vector.copy()
            self._vectors.move_to_end(text)
            while len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vector

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()
            self.hits = self.misses = 0
