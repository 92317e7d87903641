"""`moonsearch explain`: a query's score against one product, split over the product's tokens."""

from moonsearch.explain.explainer import Explanation, ProductInput, explain, product_from_record
from moonsearch.explain.tokens import TokenBreakdown

__all__ = ["Explanation", "ProductInput", "TokenBreakdown", "explain", "product_from_record"]
