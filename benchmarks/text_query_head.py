"""A text-query head against its base: every Myntra task a text-only query feeds, scored with the
head and without it, on an index's stored product vectors (only the queries are embedded).

    .venv/bin/python benchmarks/text_query_head.py --index indexes/myntra --split myntra-val \\
        --encoder runs/tq-a/moon-lite.safetensors        # a copy of the base with a candidate head beside it
    .venv/bin/python benchmarks/text_query_head.py --index indexes/myntra   # test, the shipped head

The tasks are those of `moonsearch eval myntra` whose queries are text only (the head changes
nothing else: products, photos and image+text queries keep the base's vectors): t2mm and t2i
(title queries against the products' multimodal and image-only vectors), shopper (vectors alone)
and text-shopper / text-attribute / text-variants (the query layer's hybrid ranking). Writes
results/text_query_head[-val].{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def scores(embed_queries, products, mm, image_view, with_image, queries, keyword_texts) -> dict:
    """The text-query tasks of moonsearch.eval.protocols.myntra.run_products, on given vectors."""
    from moonsearch.eval import text_queries
    from moonsearch.eval.protocols.myntra import RECALL_KS, _rounded, _same_title_groups, _shopper
    from moonsearch.eval.retrieval import retrieval_recall

    titles = [p.title for p in products]
    groups = _same_title_groups(titles)
    title_queries = embed_queries(titles)
    position = {row: j for j, row in enumerate(with_image)}
    metrics = {"t2mm": _rounded(retrieval_recall(title_queries, mm, groups, RECALL_KS)),
               "t2i": _rounded(retrieval_recall(title_queries, image_view,
                                                [{position[j] for j in g if j in position} for g in groups], RECALL_KS))}
    order = np.argsort(-(embed_queries([q["query"] for q in queries]) @ mm.T), axis=1, kind="stable")[:, :100]
    metrics["shopper"], _ = _shopper(order.tolist(), products, queries)
    detail = text_queries.run(embed_queries, products, mm, keyword_texts, queries)
    metrics.update(text_queries.flat_metrics(detail))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared/data/myntra")
    parser.add_argument("--queries", type=Path, default=REPO.parent / "shared/data/queries/shopper_queries.jsonl")
    parser.add_argument("--split", choices=("test", "myntra-val"), default="test")
    parser.add_argument("--index", type=Path, required=True, help="An index of the catalog built with the base.")
    parser.add_argument("--encoder", default="default", help="The base (a copy of the index's weights) with its text head beside it.")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--name", help="Result file name (default text_query_head, text_query_head-val).")
    args = parser.parse_args()

    import moonsearch
    from moonsearch.catalog.inputs import KEYWORD_WEIGHTS, keyword_text
    from moonsearch.encoder.registry import load_encoder
    from moonsearch.errors import MoonsearchError
    from moonsearch.eval.protocols.myntra import VALIDATION_SIZE, VALIDATION_SKIP, attribute_queries, load_split
    from moonsearch.eval.retrieval import embed
    from moonsearch.shopper import load_queries

    started = time.time()
    if args.split == "test":
        products, queries = load_split(args.catalog), load_queries(args.queries)
    else:
        products = load_split(args.catalog, split="train", limit=VALIDATION_SKIP + VALIDATION_SIZE)[VALIDATION_SKIP:]
        queries = attribute_queries(products, 100)
    index = moonsearch.open_index(args.index, device="cpu")
    encoder = load_encoder(args.encoder, device="cpu")
    index.manifest.check_encoder(encoder.encoder_id, args.index)
    if encoder.text_query_id is None:
        raise MoonsearchError(f"{args.encoder} has no text-query head beside its weights")
    keys = index.store.keys_of([p.id for p in products])
    missing = [p.id for p in products if p.id not in keys]
    if missing:
        raise MoonsearchError(f"{args.index} lacks {len(missing)} of the products (e.g. {missing[0]})")
    rows = [keys[p.id] for p in products]
    mm = index.stored_vectors(rows)
    with_image = [i for i, p in enumerate(products) if np.any(index.stored_vectors([rows[i]], "image"))]
    image_view = index.stored_vectors([rows[i] for i in with_image], "image")
    keyword_texts = [keyword_text(p.title, p.attributes, KEYWORD_WEIGHTS) for p in products]
    head = encoder.query_heads.pop("text")
    base = scores(lambda texts: embed(encoder, texts, [None] * len(texts), queries=True),
                  products, mm, image_view, with_image, queries, keyword_texts)
    encoder.query_heads["text"] = head
    with_head = scores(lambda texts: embed(encoder, texts, [None] * len(texts), queries=True),
                       products, mm, image_view, with_image, queries, keyword_texts)
    out = {"split": args.split, "encoder": encoder.encoder_id, "text_query": encoder.text_query_id,
           "products": len(products), "shopper_queries": len(queries), "keyword_weights": KEYWORD_WEIGHTS,
           "base": base, "with_head": with_head, "seconds": round(time.time() - started, 1)}
    name = args.name or ("text_query_head" if args.split == "test" else "text_query_head-val")
    lines = [f"# Text-query head `{out['text_query']}` against its base `{out['encoder']}`", "",
             f"Made by `python benchmarks/text_query_head.py --index {args.index}"
             + ("" if args.split == "test" else " --split myntra-val") + f"` on {len(products)} products of "
             f"`{args.split}`, {len(queries)} shopper queries (stored product vectors; only queries embedded).", "",
             "| task | metric | base | with head | change |", "|---|---|---:|---:|---:|"]
    for task, metrics in base.items():
        for metric, value in metrics.items():
            if isinstance(value, float):
                after = with_head[task][metric]
                lines.append(f"| {task} | {metric} | {value:.4f} | {after:.4f} | {after - value:+.4f} |")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(out, indent=2) + "\n"), (".md", "\n".join(lines) + "\n")):
        target = args.results_dir / f"{name}{suffix}"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(target)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
