"""`moonsearch explain`: a query's score against one product, split over the product's words and
image patches, by occlusion (leave-one-out, the default) or by the exact token decomposition."""

from moonsearch.explain.explainer import DEFAULT_METHOD, METHODS, Explanation, ProductInput, explain, product_from_record
from moonsearch.encoder.tokens import TokenBreakdown

__all__ = ["DEFAULT_METHOD", "METHODS", "Explanation", "ProductInput", "TokenBreakdown", "explain",
           "product_from_record"]
