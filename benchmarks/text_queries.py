"""Shopper language: shopper queries, attribute queries and spelling variants, ranked as the query
layer ranks text queries, with the query read verbatim (`--no-parse`, main's behaviour before
issue 20) and as understood (moonsearch.store.query_language), side by side.

    .venv/bin/python benchmarks/text_queries.py --index indexes/myntra                     # test
    .venv/bin/python benchmarks/text_queries.py --index indexes/myntra --split myntra-val   # choose here

writes benchmarks/results/text_queries.json (the understood ranking in the issue's shape, the
verbatim one under "baseline") and text_queries.md; `--split myntra-val` writes
text_queries-val.*. `--index` reads the products' vectors from an index built from the catalog
with the same encoder (they are the vectors `moonsearch eval` computes); without it the
products are embedded here (several minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def product_vectors(products, index_path: Path | None, encoder_name: str):
    """(embed_texts, vectors): the products' mm vectors from the index (checked to hold every
    product) or embedded now, and a function embedding query texts with the same encoder."""
    from moonsearch.catalog.images import first_loadable
    from moonsearch.catalog.inputs import product_text
    from moonsearch.errors import MoonsearchError
    from moonsearch.eval.retrieval import embed

    if index_path is not None:
        import moonsearch

        index = moonsearch.open_index(index_path, device="cpu")
        keys = index.store.keys_of([p.id for p in products])
        missing = [p.id for p in products if p.id not in keys]
        if missing:
            raise MoonsearchError(f"{index_path} lacks {len(missing)} of the products (e.g. {missing[0]})")
        vectors = index.stored_vectors([keys[p.id] for p in products])
        encoder = index.encoder
        if encoder_name != "default":   # the same base weights (a candidate query head beside a copy of them)
            from moonsearch.encoder.registry import load_encoder

            encoder = load_encoder(encoder_name, device="cpu")
            index.manifest.check_encoder(encoder.encoder_id, index_path)
    else:
        from moonsearch.encoder.registry import load_encoder

        encoder = load_encoder(encoder_name, device="cpu")
        texts = [product_text(p.title, p.attributes) for p in products]
        vectors = embed(encoder, texts, [first_loadable(p.images).image for p in products])
    # text queries as the query layer embeds them (a text-query head, when the encoder has one)
    return (lambda texts: embed(encoder, texts, [None] * len(texts), queries=True)), vectors, encoder


def table(results: dict[str, dict]) -> str:
    lines = ["| query reading | shopper P@10 | P@10 ceiling | shopper nDCG@10 | attribute nDCG@10 macro | "
             "lowest key | variants overlap@10 | variants P@10 |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        a = r["attribute"]
        low = min(a["per_key"], key=lambda k: a["per_key"][k]["nDCG@10"]) if a["per_key"] else "-"
        lines.append(f"| {name} | {r['shopper']['P@10']:.3f} | {r['shopper']['P@10_ceiling']:.3f} | "
                     f"{r['shopper']['nDCG@10']:.3f} | {a['nDCG@10_macro']:.3f} | {low} {a['nDCG@10_min_key']:.3f} | "
                     f"{r['variants']['overlap@10']:.3f} | {r['variants']['P@10']:.3f} |")
    keys = list(next(iter(results.values()))["attribute"]["per_key"])
    lines += ["", "| attribute key | " + " | ".join(results) + " | queries |", "|---|" + "---|" * (len(results) + 1)]
    for key in keys:
        values = " | ".join(f"{r['attribute']['per_key'][key]['nDCG@10']:.3f}" for r in results.values())
        queries = ", ".join(next(iter(results.values()))["attribute"]["per_key"][key]["queries"])
        lines.append(f"| {key} | {values} | {queries} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared/data/myntra")
    parser.add_argument("--queries", type=Path, default=REPO.parent / "shared/data/queries/shopper_queries.jsonl")
    parser.add_argument("--split", choices=("test", "myntra-val"), default="test")
    parser.add_argument("--index", type=Path, help="An index of the catalog (its vectors are reused).")
    parser.add_argument("--encoder", default="default", help="The encoder to embed with (with --index: one with "
                        "the index's weights, e.g. a copy beside a candidate text-query head).")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--name", help="Result file name (default text_queries, text_queries-val).")
    parser.add_argument("--keyword-weights", help="BM25 field weights, e.g. title=2,attributes=1 "
                        "(default: moonsearch's, catalog.inputs.KEYWORD_WEIGHTS).")
    args = parser.parse_args()

    from moonsearch.catalog.inputs import keyword_text, keyword_weights
    from moonsearch.eval import text_queries
    from moonsearch.eval.protocols.myntra import (VALIDATION_SIZE, VALIDATION_SKIP, attribute_queries,
                                                  load_split)
    from moonsearch.shopper import load_queries

    started = time.time()
    if args.split == "test":
        products = load_split(args.catalog)
        queries = load_queries(args.queries)
    else:
        products = load_split(args.catalog, split="train", limit=VALIDATION_SKIP + VALIDATION_SIZE)[VALIDATION_SKIP:]
        queries = attribute_queries(products, 100)   # the queries `eval myntra-val` scores
    embed_texts, vectors, encoder = product_vectors(products, args.index, args.encoder)
    encoder_id = encoder.encoder_id
    weights = keyword_weights(args.keyword_weights)
    texts = [keyword_text(p.title, p.attributes, weights) for p in products]   # what the keyword half reads
    results = {}
    for name, parse in (("verbatim (--no-parse)", False), ("understood", True)):
        results[name] = text_queries.run(embed_texts, products, vectors, texts, queries, parse=parse)
    after, before = results["understood"], results["verbatim (--no-parse)"]
    out = {**{k: after[k] for k in ("shopper", "attribute", "variants")},
           "baseline": {k: before[k] for k in ("shopper", "attribute", "variants")},
           "split": args.split, "products": len(products), "shopper_queries": len(queries),
           "encoder": encoder_id, "text_query": encoder.text_query_id, "keyword_weights": weights, "seconds": round(time.time() - started, 1)}
    name = args.name or ("text_queries" if args.split == "test" else "text_queries-val")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    command = "python benchmarks/text_queries.py" + (f" --index {args.index}" if args.index else "") + \
        ("" if args.split == "test" else " --split myntra-val") + \
        (f" --keyword-weights {args.keyword_weights}" if args.keyword_weights else "")
    (args.results_dir / f"{name}.md").write_text(
        f"# Shopper language: text queries as shoppers write them\n\nMade by `{command}` on `{encoder_id}`, "
        f"{len(products)} products of `{args.split}`, {len(queries)} shopper queries; hybrid ranking (vectors + "
        f"BM25, field weights {weights}) as `moonsearch query` ranks text. See benchmarks/README.md, \"Shopper language\".\n\n"
        + table(results))
    print(table(results))


if __name__ == "__main__":
    main()
