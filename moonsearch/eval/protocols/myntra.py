"""The paper's protocols on the real catalog: the `test` split of ../shared/data/myntra.

Derivations (documented in benchmarks/README.md):
- t2mm: a product's title as the query, its product (multimodal) as the positive; products
  sharing the identical title are positives too.
- i2mm: a held-out view of the product's image (fixed horizontal flip + 90% centre crop) as
  the query, its own product as the positive.
- mm2mm: each product (multimodal) as the query, products of the same articleType relevant,
  the query removed from its own ranking (M5Product style): P@K and mAP@K.
- t2i / i2t: title -> image-only vectors; image -> text-only vectors (same-title positives).
- classification: nearest articleType name; attribute: nearest baseColour name, and nearest
  Pattern value (products that have one); `acc` is the mean of the two.
- shopper: the 50 shopper queries, P@10, nDCG@10 (binary gain), R@100 over test products.
- text-shopper / text-attribute / text-variants: text queries as shoppers write them, ranked as
  the query layer ranks them (hybrid, the query understood): moonsearch.eval.text_queries.

`myntra-val` runs the same tasks on held-out *train* products with attribute-written shopper
queries (`run_validation`): the numbers to choose a model or a setting by.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from moonsearch.catalog import open_catalog
from moonsearch.catalog.images import first_loadable
from moonsearch.catalog.inputs import KEYWORD_WEIGHTS, keyword_text
from moonsearch.errors import MoonsearchError
from moonsearch.encoder import photo_identity
from moonsearch.eval import robustness, text_queries
from moonsearch.eval.metrics import ranking_metrics
from moonsearch.eval.references import BM25Index, System
from moonsearch.eval.retrieval import category_precision, embed, retrieval_recall, zero_shot_accuracy
from moonsearch.eval.shopper import per_query_scores
from moonsearch.shopper import field_value, is_relevant, load_queries, shopper_query

SPLIT = "test"
VALIDATION_SKIP = 20000   # the training configs' data.limit: train products after these are unseen
VALIDATION_SIZE = 4500    # about the size of the test split
MM2MM_KS = (1, 5, 10, 50, 100)
RECALL_KS = (1, 5, 10)


def held_out_view(image: Image.Image) -> Image.Image:
    """A fixed second view of a product photo: mirrored, 90% centre crop, original size."""
    w, h = image.size
    crop = ImageOps.mirror(image).crop((round(w * 0.05), round(h * 0.05), round(w * 0.95), round(h * 0.95)))
    return crop.resize((w, h), Image.BILINEAR)


def load_split(root: Path, split: str = SPLIT, limit: int | None = None) -> list:
    products = [p for p in open_catalog(root).products() if str(p.attributes.get("split")) == split]
    if not products:
        raise MoonsearchError(f"no '{split}' products in {root}")
    return products[:limit] if limit else products


def _same_title_groups(titles: list[str]) -> list[set[int]]:
    members: dict[str, set[int]] = defaultdict(set)
    for i, title in enumerate(titles):
        members[title].add(i)
    return [members[t] for t in titles]


def _rounded(metrics: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
            if k not in ("queries", "queries_without_relevant")}


def _label_task(system: System, item_vectors: np.ndarray, values: list) -> float | None:
    rows = [i for i, v in enumerate(values) if v not in (None, "", "NA")]
    if not rows:
        return None
    labels = sorted({str(values[i]) for i in rows})
    label_vectors = embed(system.encoder, labels, [None] * len(labels))
    truth = [labels.index(str(values[i])) for i in rows]
    return round(zero_shot_accuracy(item_vectors[rows], label_vectors, truth), 4)


def _shopper(rankings: list[list[int]], products, queries) -> tuple[dict, list[dict]]:
    """The shopper task's means, and its per-query scores (worst first)."""
    relevants = [{i for i, p in enumerate(products) if is_relevant(p.attributes, q["match"])} for q in queries]
    metrics = ranking_metrics(rankings, relevants, ks=(10, 100))
    means = {name: round(metrics[name], 4) for name in ("P@10", "nDCG@10", "R@100", "MRR")}
    return means, per_query_scores(queries, rankings, relevants)


def run_bm25(products, queries) -> tuple[dict, list[dict]]:
    """BM25 over titles: the text tasks only (it has no vectors and no images); -> metrics and
    the shopper task's per-query scores."""
    titles = [p.title for p in products]
    bm25 = BM25Index(titles)
    groups = _same_title_groups(titles)
    t2mm = [bm25.rank(t, 100) for t in titles]
    t2mm_metrics = ranking_metrics(t2mm, groups, ks=RECALL_KS)
    mm2mm = [[j for j in ranking if j != i][:100] for i, ranking in enumerate(bm25.rank(t, 101) for t in titles)]
    types = [p.attributes.get("articleType") for p in products]
    by_type = defaultdict(set)
    for i, t in enumerate(types):
        by_type[t].add(i)
    mm2mm_rel = [by_type[t] - {i} for i, t in enumerate(types)]
    mm2mm_metrics = ranking_metrics(mm2mm, mm2mm_rel, ks=MM2MM_KS)
    shopper, per_query = _shopper([bm25.rank(q["query"], 100) for q in queries], products, queries)
    return {
        # hit rate: one-positive benchmarks call it recall; with several same-title positives
        # any of them in the top k is a hit, as retrieval_recall counts it
        "t2mm": {**{f"R@{k}": round(float(np.mean([any(j in g for j in r[:k]) for r, g in zip(t2mm, groups)])), 4)
                    for k in RECALL_KS}, "MRR": round(t2mm_metrics["MRR"], 4)},
        "mm2mm": {**{f"P@{k}": round(mm2mm_metrics[f"P@{k}"], 4) for k in MM2MM_KS},
                  **{f"mAP@{k}": round(mm2mm_metrics[f"MAP@{k}"], 4) for k in MM2MM_KS}},
        "shopper": shopper,
    }, per_query


def run(system: System, root: Path, queries_path: Path | None = None, limit: int | None = None) -> dict:
    """Every task the system can do on the real catalog's test split."""
    products = load_split(Path(root), limit=limit)
    queries = load_queries(queries_path) if queries_path else []   # a path given must exist
    return run_products(system, products, queries)


def run_validation(system: System, root: Path, skip: int = VALIDATION_SKIP, size: int = VALIDATION_SIZE,
                   query_count: int = 100) -> dict:
    """The same tasks on held-out *train* products, to choose models by without touching `test`.

    The products are train-split products after the first `skip` (a model trained with
    `data.limit` = `skip`, or with `data.exclude` = [skip, skip + size], never saw them); the
    shopper queries are written from their attributes by the trainer's query writer, each with
    its relevance rule, keeping rules that at least 10 products meet (as a real shopper query has
    many answers)."""
    products = load_split(Path(root), split="train", limit=skip + size)[skip:]
    if len(products) < 50:
        raise MoonsearchError(f"only {len(products)} train products after the first {skip}: too few to validate on")
    result = run_products(system, products, attribute_queries(products, query_count))
    return {**result, "dataset": "myntra-val"}


def attribute_queries(products, count: int, min_relevant: int = 10, seed: int = 0) -> list[dict]:
    """Up to `count` distinct shopper-style queries with rules, drawn from the products' attributes."""
    import random


    rng = random.Random(seed)
    by_rule: dict[str, dict] = {}
    for product in products:
        query = shopper_query(product.attributes, rng)
        if query is not None:
            by_rule.setdefault(json.dumps(query.match, sort_keys=True), {"query": query.text, "match": query.match})
    candidates = [q for q in by_rule.values()
                  if sum(is_relevant(p.attributes, q["match"]) for p in products) >= min_relevant]
    return random.Random(seed).sample(candidates, min(count, len(candidates)))


ROBUSTNESS_QUERIES = 1000   # changed photos per transform in `eval`; benchmarks/robustness.py runs them all


def run_products(system: System, products: list, queries: list[dict],
                 robustness_queries: int | None = ROBUSTNESS_QUERIES) -> dict:
    """Every task the system can do on these products (and shopper queries, when given).
    `robustness_queries`: how many of the products' photos (the first ones) are changed into
    queries for the robustness task; None: all, 0: no robustness task."""
    counts = {"products": len(products), "with_image": sum(1 for p in products if p.images),
              "shopper_queries": len(queries)}
    if system.encoder is None:
        metrics, per_query = run_bm25(products, queries)
        if not queries:
            metrics.pop("shopper")
        return {"dataset": "myntra", "encoder": system.name, "metrics": metrics, "counts": counts,
                "per_query": {"shopper": per_query}}

    encoder = system.encoder
    n = len(products)
    titles = [p.title for p in products]
    texts = [system.product_text(p.title, p.attributes) for p in products]
    groups = _same_title_groups(titles)
    metrics: dict = {}
    failures: dict[int, str] = {}
    robustness_detail = None
    identity = photo_identity.default_model() if system.sees_images else None
    if system.sees_images:
        images = [None] * n
        for i, product in enumerate(products):   # the image the index embeds (catalog.inputs)
            loaded = first_loadable(product.images)
            images[i] = loaded.image
            if loaded.image is None and loaded.failures:   # counted, never fatal: the product stays text-only
                failures[i] = loaded.failures[0][1].reason
        views = [encoder.encode_views(texts[i:i + 64], images[i:i + 64]) for i in range(0, n, 64)]
        products_mm = np.concatenate([v.mm for v in views])
        text_view = np.concatenate([v.text for v in views])
        with_image = [i for i in range(n) if images[i] is not None]
        image_view = np.concatenate([v.image for v in views])[with_image]
        held_out_photos = [held_out_view(images[i]) for i in with_image]
        # image-only queries as an index built now answers them: by the photo identity channel
        channel = robustness.PhotoChannel.of(identity, images) if identity is not None else None
        if channel is None:
            held_out = embed(encoder, [None] * len(held_out_photos), held_out_photos, queries=True)
    else:
        products_mm = embed(encoder, texts, [None] * n)
        with_image = []
    title_queries = embed(encoder, titles, [None] * n, queries=True)   # a text-query head embeds them

    metrics["t2mm"] = _rounded(retrieval_recall(title_queries, products_mm, groups, RECALL_KS))
    if with_image:
        position = {row: j for j, row in enumerate(with_image)}
        if channel is not None:
            metrics["i2mm"] = _rounded(channel.metrics(encoder, held_out_photos, products_mm, with_image, RECALL_KS))
        else:
            metrics["i2mm"] = _rounded(retrieval_recall(held_out, products_mm, [{i} for i in with_image], RECALL_KS))
        metrics["t2i"] = _rounded(retrieval_recall(
            title_queries, image_view, [{position[j] for j in g if j in position} for g in groups], RECALL_KS))
        metrics["i2t"] = _rounded(retrieval_recall(image_view, text_view, [groups[i] for i in with_image], RECALL_KS))
        if robustness_queries != 0:
            rows = with_image[:robustness_queries]
            detail = robustness.run(encoder, [images[i] for i in rows], [str(products[i].id) for i in rows],
                                    products_mm, rows, channel=channel)
            metrics["robustness"] = robustness.flat_metrics(detail)
            robustness_detail = detail
    types = [p.attributes.get("articleType") for p in products]
    mm2mm = category_precision(products_mm, products_mm, types, types, MM2MM_KS, exclude=list(range(n)))
    metrics["mm2mm"] = _rounded(mm2mm)
    metrics["classification"] = {"acc": _label_task(system, products_mm, types)}
    colour = _label_task(system, products_mm, [field_value(p.attributes, "baseColour") for p in products])
    pattern = _label_task(system, products_mm, [field_value(p.attributes, "attributes.Pattern") for p in products])
    known = [a for a in (colour, pattern) if a is not None]   # a catalog may lack Pattern (or colour)
    if known:
        metrics["attribute"] = {"acc": round(sum(known) / len(known), 4), "acc:baseColour": colour, "acc:Pattern": pattern}
    per_query: list[dict] = []
    if queries:
        query_vectors = embed(encoder, [q["query"] for q in queries], [None] * len(queries), queries=True)
        order = np.argsort(-(query_vectors @ products_mm.T), axis=1, kind="stable")[:, :100]
        metrics["shopper"], per_query = _shopper(order.tolist(), products, queries)
    # The query layer's ranking of shopper-written text, on the product vectors computed above:
    # only the queries are embedded (a few seconds), within CI's budget.
    # The keyword half reads what an index's keyword index holds: the product text, fields weighted.
    keyword_texts = texts if system.text_of == "title" else [
        keyword_text(p.title, p.attributes, KEYWORD_WEIGHTS) for p in products]
    text_detail = text_queries.run(lambda batch: embed(encoder, batch, [None] * len(batch), queries=True),
                                   products, products_mm,
                                   keyword_texts, queries)
    metrics.update(text_queries.flat_metrics(text_detail))
    counts["image_failures"] = len(failures)
    result = {"dataset": "myntra", "encoder": system.name, "encoder_id": encoder.encoder_id,
              "metrics": metrics, "counts": counts, "per_query": {"shopper": per_query}}
    if identity is not None:
        result["identity"] = identity.id
    result["text_queries"] = text_detail
    if robustness_detail is not None:
        result["robustness"] = robustness_detail
    return result
