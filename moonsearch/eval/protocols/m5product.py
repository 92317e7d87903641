"""M5Product protocol: category-level retrieval (mAP@K, P@K) and zero-shot classification.

Every usable product (a title, a loadable image and a category) is a query three times, as
text (t2mm), image (i2mm) and both (mm2mm), against all usable products in the mm form. A
result is relevant when it shares the query's category, and the query itself is removed from
its own ranking, as the paper states. Classification picks the category name whose text
embedding is nearest to the product's mm embedding.
"""

from __future__ import annotations

from pathlib import Path

from moonsearch.eval.datasets import Item
from moonsearch.eval.datasets.m5product import M5Product, load_m5product
from moonsearch.eval.protocols import FormVectors, embed_texts, image_counts, split_queries
from moonsearch.eval.retrieval import category_precision, zero_shot_accuracy

KS = (1, 5, 10, 50, 100)


def run(encoder, data: str | Path | M5Product, limit: int | None = None, batch_size: int = 64) -> dict:
    """Score `encoder` on M5Product products (a path, or an already loaded M5Product)."""
    ds = data if isinstance(data, M5Product) else load_m5product(data, limit=limit)
    products = ds.products if limit is None else ds.products[:limit]
    items = [Item(p.title, p.image) for p in products]
    bad: dict = {}
    forms = {form: FormVectors(encoder, items, form, bad, batch_size) for form in ("mm", "t", "i")}
    usable = [n for n, item in enumerate(items) if all(f.index(item) is not None for f in forms.values())]
    labels = [products[n].category for n in usable]
    counts: dict = {
        "products": len(products),
        "skipped_rows": len(ds.skipped),
        "products_without_title": sum(p.title is None for p in products),
        "products_without_image": sum(p.image is None for p in products),
        "usable_products": len(usable),
        "categories": len(set(labels)),
    }
    result: dict = {}
    if usable:
        candidates = forms["mm"].vectors[[forms["mm"].index(items[n]) for n in usable]]
        own = list(range(len(usable)))
        for task, form in (("t2mm", "t"), ("i2mm", "i"), ("mm2mm", "mm")):
            queries = forms[form].vectors[[forms[form].index(items[n]) for n in usable]]
            metrics = category_precision(queries, candidates, labels, labels, KS, exclude=own)
            result[task] = split_queries(metrics, task, counts)
        names = sorted(set(labels))
        index = {name: n for n, name in enumerate(names)}
        acc = zero_shot_accuracy(candidates, embed_texts(encoder, names, batch_size), [index[x] for x in labels])
        result["classification"] = {"acc": acc}
        counts["classification_items"] = len(usable)
    counts.update(image_counts(bad))
    result["counts"] = counts
    return result
