"""Query layer: ProductIndex.search for text, image and text+image queries with filters."""

from moonsearch.store.filters import Filter, parse_filter, parse_filters
from moonsearch.search.product_index import ProductIndex
from moonsearch.search.results import Hit

__all__ = ["Filter", "Hit", "ProductIndex", "parse_filter", "parse_filters"]
