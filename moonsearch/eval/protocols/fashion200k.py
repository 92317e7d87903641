"""Fashion200k protocol: text->image and image->text retrieval, zero-shot category.

On the test split, each distinct (product, description) pair is a text query whose ground
truth is every image of that product (t2i); each image is a query whose ground truth is its
product's description (i2t) among all distinct descriptions. Identical descriptions are one
candidate, so products sharing a text do not tie with each other. R@1, R@10 and MRR, as the
paper reports. Classification: each image against the five category prompts.
"""

from __future__ import annotations

from pathlib import Path

from moonsearch.eval.datasets import Item
from moonsearch.eval.datasets.fashion200k import CATEGORIES, Fashion200k, first_products, load_fashion200k
from moonsearch.eval.protocols import FormVectors, embed_texts, image_counts, split_queries
from moonsearch.eval.retrieval import retrieval_recall, zero_shot_accuracy

KS = (1, 10)
LABEL_TEXTS = {
    "dress": "a photo of a dress",
    "jacket": "a photo of a jacket",
    "pants": "a photo of pants",
    "skirt": "a photo of a skirt",
    "top": "a photo of a top",
}


def run(encoder, data: str | Path | Fashion200k, limit: int | None = None, batch_size: int = 64) -> dict:
    """Score `encoder` on the Fashion200k test split (a root folder, or a loaded Fashion200k);
    `limit` counts products, taken in turn from each category."""
    if isinstance(data, Fashion200k):
        ds = data if limit is None else first_products(data, limit)
    else:
        ds = load_fashion200k(data, split="test", limit=limit)
    bad: dict = {}
    image_vectors = FormVectors(encoder, [Item(None, im.path) for im in ds.images], "i", bad, batch_size)
    first = {}  # path -> its first annotation line
    for image in ds.images:
        first.setdefault(image.path, image)
    pool = [path for path in first if image_vectors.index(Item(None, path)) is not None]
    images = image_vectors.vectors[[image_vectors.row[path] for path in pool]]
    descriptions: dict[str, dict[str, None]] = {}  # product -> its distinct descriptions, in order
    for image in ds.images:
        descriptions.setdefault(image.product, {})[image.description] = None
    texts = list(dict.fromkeys(d for own in descriptions.values() for d in own))
    text_index = {text: n for n, text in enumerate(texts)}
    text_vectors = embed_texts(encoder, texts, batch_size)
    product_images: dict[str, set[int]] = {}
    for n, path in enumerate(pool):
        product_images.setdefault(first[path].product, set()).add(n)

    counts: dict = {
        "images": len(first),
        "products": len(descriptions),
        "descriptions": len(texts),
        "usable_images": len(pool),
        "skipped_lines": len(ds.skipped),
        "missing_label_files": len(ds.missing_files),
    }
    result: dict = {}
    queries = [(p, d) for p, own in descriptions.items() for d in own]
    counts["t2i_candidates"] = len(pool)
    metrics = retrieval_recall(
        text_vectors[[text_index[d] for _, d in queries]], images, [product_images.get(p, set()) for p, _ in queries], KS
    )
    t2i = split_queries(metrics, "t2i", counts)
    if counts["t2i_queries"]:
        result["t2i"] = t2i
    counts["i2t_candidates"] = len(texts)
    if pool:
        positives = [{text_index[d] for d in descriptions[first[path].product]} for path in pool]
        result["i2t"] = split_queries(retrieval_recall(images, text_vectors, positives, KS), "i2t", counts)
        labels = embed_texts(encoder, [LABEL_TEXTS[c] for c in CATEGORIES], batch_size)
        truth = [CATEGORIES.index(first[path].category) for path in pool]
        result["classification"] = {"acc": zero_shot_accuracy(images, labels, truth)}
        counts["classification_items"] = len(pool)
    else:
        counts["i2t_queries"] = 0
    counts.update(image_counts(bad))
    result["counts"] = counts
    return result
