"""What the HTTP API asks of an index beyond `ProductIndex.search`: pages, price sort, a score
cut-off, facet counts over a query's whole candidate set, and similar products.

Why here and not in the library: each is a view over `search`'s ranking and the record store,
kept beside the server until it settles (the report of issue 19 lists what should move down).

- A page of the relevance ranking is a slice of `search(k=offset+limit)`. Page 1 always ranks
  afresh; later pages extend the list page 1 cached (same query, same index state), appending
  only products not already shown, so paging never repeats or reorders a product.
- Price sort, `min_score` and facets work on the query's candidate set: its top `candidates`
  products (the ranking's own depth, 100 by default at least), or with no query text or image,
  every product the filters allow.
- `min_score` is the library's (`ProductIndex.search(min_score=)`): it cuts on each hit's
  `similarity`, the cosine of the query and product vectors, whatever the ranking (a hybrid
  score is a reciprocal-rank-fusion score, which says nothing about relevance alone); the query
  is encoded once for the ranking and the cut.
"""

from __future__ import annotations

import math
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from moonsearch.errors import MoonsearchError
from moonsearch.search.results import Hit
from moonsearch.store.metadata import flatten_attributes

SORTS = ("relevance", "price_asc", "price_desc")
MAX_FACET_VALUE = 60       # longer values are descriptions, not facets
FACET_VALUES = 12          # values shown per facet
AUTO_FACETS = 8


class QueryError(MoonsearchError):
    """A request the API refuses (bad sort, offset past the candidate set): a 400."""


@dataclass
class Query:
    text: str | None = None
    image: Any = None                 # PIL image, already checked against the server's limits
    image_key: str | None = None      # digest of the upload: what caches key on
    filters: list[str] = field(default_factory=list)
    view: str = "mm"
    hybrid: bool | None = None
    parse: bool = True                # read the text as shoppers write it (False: verbatim)
    sort: str = "relevance"
    min_score: float | None = None
    offset: int = 0
    limit: int = 24

    @property
    def browsing(self) -> bool:
        return not (self.text and self.text.strip()) and self.image is None

    def key(self, generation: int, mode: str) -> tuple:
        return (generation, mode, (self.text or "").strip(), self.image_key, tuple(self.filters), self.view,
                self.hybrid, self.min_score, self.parse)


class RankedLists:
    """Ranked hit lists of recent queries (LRU), keyed by query and index state."""

    def __init__(self, size: int = 128):
        self.size = size
        self._lists: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> Any:
        with self._lock:
            found = self._lists.get(key)
            if found is not None:
                self._lists.move_to_end(key)
            return found

    def put(self, key: tuple, hits: Any) -> None:
        with self._lock:
            self._lists[key] = hits
            self._lists.move_to_end(key)
            while len(self._lists) > self.size:
                self._lists.popitem(last=False)


def _allowed(state, filters, view: str) -> np.ndarray:
    """Every product the filters (and the view) allow, as sorted keys."""
    rows = state.index.allowed_rows(filters, view)
    return state.index.store.allowed_rows([]) if rows is None else rows


def _search(state, query: Query, k: int, filters, min_score: float | None = None) -> list[Hit]:
    return state.index.search(text=query.text, image=query.image, k=k, filters=filters, view=query.view,
                              hybrid=query.hybrid, parse=query.parse, min_score=min_score)


def _browse_hits(state, rows: np.ndarray) -> list[Hit]:
    records = state.index.store.products(rows.tolist())
    return [Hit(rank=i + 1, score=0.0, id=rec["id"], title=rec["title"],
                image=rec["images"][0] if rec["images"] else None, attributes=rec["attributes"], row=int(rec["row"]),
                ranking="browse") for i, rec in enumerate(records)]


def _price(hit_attributes: dict) -> float | None:
    value = hit_attributes.get("price")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def candidates(state, query: Query, filters, depth: int, cache: RankedLists) -> list[Hit]:
    """The query's candidate set (best first), cut by `min_score` in the library's search."""
    key = query.key(state.generation, f"candidates:{depth}")
    found = cache.get(key) if query.offset > 0 else None
    if found is None:
        found = _search(state, query, depth, filters, query.min_score)
        cache.put(key, found)
    return found


def _sorted_by_price(hits: list[Hit], descending: bool) -> list[Hit]:
    """Priced products by price (ties keep relevance order), products without a price last."""
    priced = [h for h in hits if _price(h.attributes) is not None]
    unpriced = [h for h in hits if _price(h.attributes) is None]
    priced.sort(key=lambda h: -_price(h.attributes) if descending else _price(h.attributes))
    return priced + unpriced


def _relevance_window(state, query: Query, filters, cache: RankedLists) -> list[Hit]:
    """At least offset+limit hits of the relevance ranking, stable across pages (see the module).
    The cache holds (hits, exhausted): exhausted when the ranking returned fewer than asked."""
    window = query.offset + query.limit
    key = query.key(state.generation, "relevance")
    cached = cache.get(key) if query.offset > 0 else None
    shown, exhausted = cached if cached is not None else ([], False)
    if cached is not None and (len(shown) >= window or exhausted):
        return shown
    asked = max(window, 2 * len(shown))
    fresh = _search(state, query, asked, filters)
    exhausted = len(fresh) < asked
    if shown:
        seen = {h.row for h in shown}
        fresh = shown + [h for h in fresh if h.row not in seen]
    cache.put(key, (fresh, exhausted))
    return fresh


def search_page(state, query: Query, cache: RankedLists, depth: int) -> dict:
    """One page of results, with what the page needs to ask for the next."""
    if query.sort not in SORTS:
        raise QueryError(f"unknown sort '{query.sort}' (use {', '.join(SORTS)})")
    filters = state.prepare_filters(query.filters)
    total: int | None = None
    if query.browsing:
        rows = _allowed(state, filters, query.view)
        total = len(rows)
        if query.sort == "relevance":
            hits = _browse_hits(state, rows[query.offset: query.offset + query.limit])
            page = hits
        else:
            hits = _browse_hits(state, rows)
            page = _sorted_by_price(hits, query.sort == "price_desc")[query.offset: query.offset + query.limit]
    elif query.sort == "relevance" and query.min_score is None:
        hits = _relevance_window(state, query, filters, cache)
        page = hits[query.offset: query.offset + query.limit]
    else:
        hits = candidates(state, query, filters, depth, cache)
        total = len(hits)
        if query.sort != "relevance":
            hits = _sorted_by_price(hits, query.sort == "price_desc")
        page = hits[query.offset: query.offset + query.limit]
    ranking = None if query.browsing else state.index.ranking(query.text, query.image, query.view, query.hybrid)
    results = []
    for position, hit in enumerate(page, query.offset + 1):
        entry = hit.to_json()
        entry["position"] = position
        entry["image_url"] = f"/products/{hit.id}/image" if hit.image else None
        results.append(entry)
    more = (query.offset + len(page) < total) if total is not None else len(page) == query.limit
    return {
        "query": {"text": query.text, "image": query.image is not None, "filters": query.filters,
                  "view": query.view, "sort": query.sort, "min_score": query.min_score},
        "ranking": None if ranking is None else {"kind": ranking.kind, "name": ranking.name, "note": ranking.note},
        "offset": query.offset, "limit": query.limit, "total": total,
        "next_offset": query.offset + len(page) if more else None,
        "generation": state.generation,
        "results": results,
    }


def _facet_keys(pairs: list[list[tuple[str, str]]], preferred: list[str], chosen: list[str] | None,
                filtered: set[str] = frozenset()) -> list[str]:
    """The keys to count: those asked for, else the keys most candidates hold that look like
    categories (few distinct short values, not numbers), the index's display fields first. A
    key the query filters on stays even with one value left, so the page can show the choice."""
    if chosen:
        return chosen
    holders: Counter = Counter()
    values: dict[str, set] = {}
    numeric: Counter = Counter()
    for row_pairs in pairs:
        for key in {k for k, _ in row_pairs}:
            holders[key] += 1
        for key, value in row_pairs:
            values.setdefault(key, set()).add(value)
            try:
                float(value)
                numeric[key] += 1
            except ValueError:
                pass
    total = max(len(pairs), 1)
    keys = [k for k, n in holders.items()
            if n >= 0.3 * total and len(values[k]) <= 50 and numeric[k] < 0.5 * n
            and all(len(v) <= MAX_FACET_VALUE for v in values[k]) and (len(values[k]) > 1 or total == 1 or k in filtered)]
    keys.sort(key=lambda k: (k not in preferred, preferred.index(k) if k in preferred else 0, -holders[k], k))
    return keys[:AUTO_FACETS]


def facets(state, query: Query, cache: RankedLists, depth: int, fields: list[str] | None) -> dict:
    """Value counts per attribute over the query's whole candidate set (not one page)."""
    filters = state.prepare_filters(query.filters)
    if fields:
        unknown = [f for f in fields if f not in state.known_keys]
        if unknown:
            raise QueryError(f"no attribute '{unknown[0]}' in this index; GET /info lists the filterable fields")
    if query.browsing:
        rows = _allowed(state, filters, query.view)
    else:
        query.offset = 0
        hits = candidates(state, query, filters, depth, cache)
        rows = np.array([h.row for h in hits], np.int64)
    pairs = state.facet_pairs(rows, flatten_attributes)
    keys = _facet_keys(pairs, list(state.index.manifest.display_fields), fields, {f.key for f in filters})
    counts = {key: Counter() for key in keys}
    prices = []
    for row_pairs in pairs:
        seen = set()
        for key, value in row_pairs:
            if key in counts and (key, value.lower()) not in seen:
                counts[key][value] += 1
                seen.add((key, value.lower()))
            if key == "price":
                try:
                    prices.append(float(value))
                except ValueError:
                    pass
    out = [{"field": key, "values": [{"value": v, "count": n} for v, n in counts[key].most_common(FACET_VALUES)],
            "distinct": len(counts[key])} for key in keys]
    price = {"min": min(prices), "max": max(prices)} if prices else None
    return {"candidates": int(len(rows)), "browsing": query.browsing, "facets": out, "price": price,
            "generation": state.generation}


def similar(state, product_id: str, k: int, filters) -> list[Hit]:
    """Products nearest to a product's own stored vector (mm view), the product left out."""
    row = state.row_of(product_id)
    if row is None:
        raise NotFound(f"no product with id '{product_id}'")
    return state.index.similar(row, k, filters)


class NotFound(MoonsearchError):
    """An id or file the index does not have: a 404."""
