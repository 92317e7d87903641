"""MBE2.0 protocol: R@1/5/10 in five query->candidate directions, plus zero-shot labels.

For each direction (t2mm, i2mm, mm2mm, t2i, i2t) every triplet whose query has the query
form and whose positive has the candidate form is one query. The candidates are all the
distinct positives and negatives of the split in the candidate form (so every query also
competes against the other queries' products); the query's own positive is its only ground
truth. Classification and attribute prediction, when their label files are present, pick the
label text nearest to the product as given; attribute values are embedded as
"<attribute>: <value>" (our choice, the paper does not say) and compete only with the
values of the same attribute.
"""

from __future__ import annotations

from pathlib import Path

from moonsearch.eval.datasets.mbe2 import MBE2, load_mbe2
from moonsearch.eval.protocols import FormVectors, embed_texts, image_counts, split_queries
from moonsearch.eval.retrieval import retrieval_recall, zero_shot_accuracy

DIRECTIONS = {"t2mm": ("t", "mm"), "i2mm": ("i", "mm"), "mm2mm": ("mm", "mm"), "t2i": ("t", "i"), "i2t": ("i", "t")}
KS = (1, 5, 10)


def run(encoder, data: str | Path | MBE2, limit: int | None = None, batch_size: int = 64) -> dict:
    """Score `encoder` on an MBE2.0 split (a path, or an already loaded MBE2)."""
    ds = data if isinstance(data, MBE2) else load_mbe2(data, limit=limit)
    triplets = ds.triplets if limit is None else ds.triplets[:limit]
    bad: dict = {}
    elements = [e for t in triplets for e in (t.query, t.positive, t.negative)]
    forms = {form: FormVectors(encoder, elements, form, bad, batch_size) for form in ("t", "i", "mm")}
    counts: dict = {"triplets": len(triplets), "skipped_rows": len(ds.skipped)}
    result: dict = {}
    for task, (query_form, candidate_form) in DIRECTIONS.items():
        queries, candidates = forms[query_form], forms[candidate_form]
        rows = (candidates.index(e) for t in triplets for e in (t.positive, t.negative))
        pool = {row: n for n, row in enumerate(dict.fromkeys(r for r in rows if r is not None))}
        query_rows, positives = [], []
        for t in triplets:
            q, p = queries.index(t.query), candidates.index(t.positive)
            if q is not None and p is not None:
                query_rows.append(q)
                positives.append({pool[p]})
        counts[f"{task}_candidates"] = len(pool)
        counts[f"{task}_queries"] = len(query_rows)
        if query_rows:
            metrics = retrieval_recall(queries.vectors[query_rows], candidates.vectors[list(pool)], positives, KS)
            result[task] = split_queries(metrics, task, counts)
    if ds.classification is not None:
        result.update(_classification(encoder, ds.classification, bad, counts, batch_size, limit))
    if ds.attributes is not None:
        result.update(_attributes(encoder, ds.attributes, bad, counts, batch_size, limit))
    counts.update(image_counts(bad))
    result["counts"] = counts
    return result


def _classification(encoder, rows, bad, counts, batch_size, limit) -> dict:
    rows = rows if limit is None else rows[:limit]
    products = FormVectors(encoder, [p for p, _ in rows], "any", bad, batch_size)
    labels = sorted({label for _, label in rows})
    label_index = {label: n for n, label in enumerate(labels)}
    kept = [(products.index(p), label_index[label]) for p, label in rows if products.index(p) is not None]
    counts["classification_items"] = len(kept)
    counts["classification_labels"] = len(labels)
    if not kept:
        return {}
    vectors = products.vectors[[r for r, _ in kept]]
    acc = zero_shot_accuracy(vectors, embed_texts(encoder, labels, batch_size), [t for _, t in kept])
    return {"classification": {"acc": acc}}


def _attributes(encoder, rows, bad, counts, batch_size, limit) -> dict:
    rows = rows if limit is None else rows[:limit]
    products = FormVectors(encoder, [p for p, _, _ in rows], "any", bad, batch_size)
    pairs = sorted({(attribute, value) for _, attribute, value in rows})
    label_vectors = embed_texts(encoder, [f"{a}: {v}" for a, v in pairs], batch_size)
    by_attribute: dict[str, list[tuple[int, tuple[str, str]]]] = {}
    for product, attribute, value in rows:
        row = products.index(product)
        if row is not None:
            by_attribute.setdefault(attribute, []).append((row, (attribute, value)))
    correct = total = 0
    for attribute, items in by_attribute.items():
        choices = [n for n, (a, _) in enumerate(pairs) if a == attribute]
        local = {pairs[n]: j for j, n in enumerate(choices)}
        acc = zero_shot_accuracy(
            products.vectors[[r for r, _ in items]], label_vectors[choices], [local[pair] for _, pair in items]
        )
        correct += round(acc * len(items))
        total += len(items)
    counts["attribute_items"] = total
    counts["attribute_names"] = len({a for a, _ in pairs})
    return {"attribute": {"acc": correct / total}} if total else {}
