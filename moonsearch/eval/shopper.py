"""Shopper queries with relevance rules, scored through the real query layer.

A rule `{"articleType": ["Dresses"], "baseColour": ["Red"]}` makes a product relevant when every
field has one of the listed values (`attributes.X` reads the nested attribute X). Rankings come
from `ProductIndex.search` restricted to one split, exactly as a user would filter.
"""

from __future__ import annotations

from pathlib import Path

from moonsearch.shopper import is_relevant, load_queries
from moonsearch.eval.metrics import ndcg_at_k, precision_at_k, ranking_metrics, recall_at_k

K = 100


def per_query_scores(queries: list[dict], rankings: list, relevants: list) -> list[dict]:
    """Each query's P@10, nDCG@10 and R@100 beside its number of relevant products, worst
    first: the means say how good a system is, these say where it fails. A query with no
    relevant product has no scores (None), as the means leave it out."""
    rows = []
    for query, ranked, relevant in zip(queries, rankings, relevants):
        scores = ({"P@10": precision_at_k(ranked, relevant, 10), "nDCG@10": ndcg_at_k(ranked, relevant, 10),
                   "R@100": recall_at_k(ranked, relevant, K)} if relevant else dict.fromkeys(("P@10", "nDCG@10", "R@100")))
        rows.append({"query": query["query"], "relevant": len(relevant),
                     **{k: None if v is None else round(v, 4) for k, v in scores.items()}})
    return sorted(rows, key=lambda r: (r["P@10"] is not None, r["P@10"] or 0.0, r["nDCG@10"] or 0.0))


def evaluate_shopper_queries(index, queries_path: Path, split: str = "test", hybrid: bool | None = None) -> dict:
    """P@10, nDCG@10, R@100 and MRR of `index` on the queries, over products of `split`,
    ranked as `moonsearch query` ranks text queries (`hybrid` True / False: vectors and BM25
    fused / vectors alone, as `query --hybrid` / `--vectors`)."""
    queries = load_queries(queries_path)
    filters = [f"split={split}"]
    products = index.store.products(index.allowed_rows(filters, "mm"))
    ranking = index.ranking(text=queries[0]["query"], hybrid=hybrid)   # every query is text on the mm view
    rankings, relevants = [], []
    for q in queries:
        hits = index.search(text=q["query"], k=K, filters=filters, hybrid=ranking.hybrid)
        rankings.append([h.id for h in hits])
        relevants.append({p["id"] for p in products if is_relevant(p["attributes"], q["match"])})
    metrics = ranking_metrics(rankings, relevants, ks=(10, 100))
    return {
        "queries": len(queries), "split": split, "products": len(products),
        "metrics": {"P@10": metrics["P@10"], "nDCG@10": metrics["nDCG@10"], "R@100": metrics["R@100"],
                    "MRR": metrics["MRR"]},
        "encoder": index.manifest.encoder["id"], "ranking": ranking.name,
        **({"note": ranking.note} if ranking.note else {}),
        "per_query": {"shopper": per_query_scores(queries, rankings, relevants)},
    }
