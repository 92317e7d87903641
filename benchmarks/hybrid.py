"""Vectors alone against hybrid search (vectors + BM25, reciprocal rank fusion), through an index.

Two workloads, both over one split of the index (the `test` split of ../shared/data/myntra by
default) and both ranked by `ProductIndex.search` exactly as `moonsearch query --vectors` / `--hybrid` do
(hybrid is the default of text queries, chosen with this script on held-out products):
- shopper queries with relevance rules (`moonsearch eval shopper`): P@10, nDCG@10, R@100;
- exact-title lookup: every product's title as the query; the product and every product with
  the identical title are the right answers (the t2mm task of benchmarks/README.md): hit@1 (the
  first result is one of them, as t2mm's R@1 counts), MRR.
Writes benchmarks/results/hybrid.md and .json:

    .venv/bin/python benchmarks/hybrid.py --index indexes/myntra-moon
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def title_lookup(index, split: str, hybrid: bool, limit: int | None) -> dict:
    from moonsearch.eval.metrics import ranking_metrics

    filters = [f"split={split}"]
    products = index.store.products(index.allowed_rows(filters, "mm"))
    ids_by_title: dict[str, set] = {}
    for p in products:
        ids_by_title.setdefault(p["title"].strip(), set()).add(p["id"])
    queries = products[:limit] if limit else products
    rankings = [[h.id for h in index.search(text=p["title"], k=10, filters=filters, hybrid=hybrid)] for p in queries]
    relevants = [ids_by_title[p["title"].strip()] for p in queries]
    hits = [bool(ranked) and ranked[0] in relevant for ranked, relevant in zip(rankings, relevants)]
    return {"queries": len(queries), "hit@1": sum(hits) / len(hits),
            "MRR": ranking_metrics(rankings, relevants, ks=(1,))["MRR"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--queries", type=Path, default=REPO.parent / "shared/data/queries/shopper_queries.jsonl")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N titles (quick runs).")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks/results")
    parser.add_argument("--name", default="hybrid", help="Result file name: NAME.md and NAME.json.")
    args = parser.parse_args()

    from moonsearch.eval.shopper import evaluate_shopper_queries
    from moonsearch.search.product_index import ProductIndex

    index = ProductIndex.open(args.index, device="cpu")
    rows = []
    for hybrid in (False, True):
        started = time.time()
        shopper = evaluate_shopper_queries(index, args.queries, split=args.split, hybrid=hybrid)
        titles = title_lookup(index, args.split, hybrid, args.limit)
        rows.append({"ranking": shopper["ranking"], "shopper": shopper["metrics"], "title_lookup": titles,
                     "seconds": round(time.time() - started, 1)})
        print(json.dumps(rows[-1]), flush=True)
    given = {"--limit": args.limit, "--split": args.split != "test" and args.split,
             "--queries": args.queries != parser.get_default("queries") and args.queries,
             "--name": args.name != "hybrid" and args.name}
    made_by = " ".join([f"python benchmarks/hybrid.py --index {args.index}"] + [f"{k} {v}" for k, v in given.items() if v])
    result = {"index": str(args.index), "encoder": index.manifest.encoder["id"], "split": args.split,
              "made_by": made_by, "rows": rows}
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Vectors alone vs hybrid (vectors + BM25) through the query layer", "",
             f"Made by `{made_by}` on `{result['encoder']}`, products of the `{args.split}` split "
             f"(shopper queries: {args.queries.name}; title lookup: {rows[0]['title_lookup']['queries']} titles).", "",
             "| ranking | shopper P@10 | shopper nDCG@10 | shopper R@100 | title hit@1 | title MRR | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s, t = r["shopper"], r["title_lookup"]
        lines.append(f"| {r['ranking']} | {s['P@10']:.3f} | {s['nDCG@10']:.3f} | {s['R@100']:.3f} | "
                     f"{t['hit@1']:.3f} | {t['MRR']:.3f} | {r['seconds']} |")
    (args.results_dir / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
