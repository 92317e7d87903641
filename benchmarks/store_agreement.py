"""Flat search through Milvus (milvus-lite) against FAISS on the Myntra `test` split (issue 21.2).

    python benchmarks/store_agreement.py                       # indexes/myntra, all three query sets
    python benchmarks/store_agreement.py --index indexes/myntra --titles 1000

The product vectors (mm view) of the `test` products are read from a built FAISS index (the
default encoder's index of ../shared/data/myntra: build it with `moonsearch index
../shared/data/myntra --out indexes/myntra`), then put into a FAISS flat store and a Milvus flat
store (a fresh milvus-lite file in a temporary folder) through the same VectorStore interface
(moonsearch.store.backends.create_vectors), saved as a build saves them and opened as a query opens
them. Three query sets, each searched top-10 by both:
the 50 shopper queries and test products' titles (embedded by the index's encoder as search
embeds queries), and the test products' own image vectors (an image query without encoding).
A query agrees when both return the same 10 products in the same order; `same set` ignores the
order, and `up to ties` lets a rank hold another product where both lists' scores at that rank
differ by under 1e-5 (products with the same vector: Myntra repeats about 5k titles, and the
10th and 11th product can tie too).

Latency: one query per search call, p50 over the shopper queries, alternating FAISS and Milvus
on the same query, so load on a shared machine hits both alike; a filtered search (allowed keys
of the `gender=Men` products, as ProductIndex passes them) is timed the same way. Compare the
two within one run only.

Filters at catalog scale (`--no-catalog` skips it): every product's filterable values go into a
Milvus records collection and its mm vectors into a Milvus collection, as a milvus index holds
them; each filter form of benchmarks/speed/store_latency.py is checked to select exactly the
products DuckDB selects, and a filtered search end to end (allowed keys, then top-10) is timed
for both backends. Writes benchmarks/results/store_agreement.json and .md. Exits 0 with a
message where ../shared/data or the index is absent, or without the `[scale]` extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "speed"))
from machine import machine_block, markdown_table, repo_root  # noqa: E402

K = 10
TIE = 1e-5
RESULTS = repo_root() / "benchmarks" / "results"


def _skip(reason: str) -> None:
    print(f"store_agreement skipped: {reason}")
    raise SystemExit(0)


def agreement(a_keys: np.ndarray, b_keys: np.ndarray, a_scores: np.ndarray, b_scores: np.ndarray) -> dict:
    """Shares of queries whose top-k agree exactly, as sets, and up to tied scores at a rank."""
    exact = (a_keys == b_keys).all(axis=1)
    same_set = np.array([set(a) == set(b) for a, b in zip(a_keys, b_keys)])
    ties = np.array([all(x == y or abs(p - q) < TIE for x, y, p, q in zip(ka, kb, sa, sb))
                     for ka, kb, sa, sb in zip(a_keys, b_keys, a_scores, b_scores)])
    score_gap = float(np.abs(np.sort(a_scores, axis=1) - np.sort(b_scores, axis=1)).max())
    return {"queries": int(len(a_keys)), "exact": round(float(exact.mean()), 4), "same_set": round(float(same_set.mean()), 4),
            "up_to_ties": round(float(ties.mean()), 4), "max_score_difference": score_gap}


def p50_ms(store, queries: np.ndarray, allowed=None, repeat: int = 3) -> list[float]:
    times = []
    for _ in range(repeat):
        for q in queries:
            started = time.perf_counter()
            store.search(q[None, :], K, allowed)
            times.append((time.perf_counter() - started) * 1000)
    return times


def filtered_at_scale(index, location: dict, repeat: int = 3) -> dict:
    """Every product of the index (40k for Myntra): its filterable values in a Milvus records
    collection and its mm vectors in a Milvus FLAT collection, as a milvus index holds them. For
    each filter form of benchmarks/speed/store_latency.py: whether Milvus' expression selects
    exactly the products DuckDB's SQL selects, and the p50 of a filtered search end to end (the
    allowed keys, then the top-10 among them), FAISS + DuckDB against Milvus, alternating."""
    from moonsearch.store.backends import FAISS_DUCKDB, MILVUS, create_vectors
    from moonsearch.store.filters import parse_filters
    from moonsearch.store.metadata import ProductRow
    from moonsearch.store.milvus import RECORD_FIELDS, RECORDS_DIM, Versions, expression, filter_entity
    from store_latency import FILTER_FORMS

    keys = index.store.allowed_rows([])
    records = index.store.products(keys.tolist())
    started = time.perf_counter()
    filters = Versions.create(location["uri"], location["collection"] + "_all", "flat", RECORD_FIELDS, RECORDS_DIM, 0)
    filters.insert([filter_entity(ProductRow(row=r["row"], id=r["id"], title=r["title"], description=None, images=[],
                                             has_image=r["has_image"], attributes=r["attributes"], source=""))
                    for r in records])
    filters.pointer()   # flushed, as a build leaves it
    vectors = index.stored_vectors(keys, "mm").astype(np.float32)
    milvus_vectors = create_vectors(vectors, keys, "flat", backend=MILVUS, location=location)
    milvus_vectors.versions.pointer()
    load_s = time.perf_counter() - started
    faiss_vectors = index._view("mm")
    query = vectors[:1]
    forms = {}
    for name, texts in FILTER_FORMS.items():
        parsed = parse_filters(texts)
        duck = index.store.allowed_rows(parsed)
        milvus = filters.keys(expression(parsed))
        times = {FAISS_DUCKDB: [], MILVUS: [], "milvus_keys": []}
        for _ in range(repeat):
            for backend, allowed_of, store in ((FAISS_DUCKDB, lambda: index.store.allowed_rows(parsed), faiss_vectors),
                                               (MILVUS, lambda: filters.keys(expression(parsed)), milvus_vectors)):
                started = time.perf_counter()
                allowed = allowed_of()
                keyed = time.perf_counter()
                store.search(query, K, allowed)
                times[backend].append((time.perf_counter() - started) * 1000)
                if backend == MILVUS:
                    times["milvus_keys"].append((keyed - started) * 1000)
        forms[name] = {"filters": texts, "products": int(len(duck)), "same_products": bool(np.array_equal(duck, milvus)),
                       "p50_ms": {b: round(statistics.median(t), 1) for b, t in times.items()}}
    return {"products": int(len(keys)), "load_s": round(load_s, 1), "forms": forms}


def catalog_text(found: dict | None) -> str:
    if not found:
        return ""
    rows = [[name, " ".join(f["filters"]), f["products"], "yes" if f["same_products"] else "**no**",
             f["p50_ms"]["faiss+duckdb"], f["p50_ms"]["milvus"], f["p50_ms"]["milvus_keys"]]
            for name, f in found["forms"].items()]
    return (f"\n\nFiltered search over all {found['products']:,} products (the allowed keys, then the top-10 among "
            "them; p50 ms, alternating): does Milvus' expression select exactly DuckDB's products?\n\n"
            + markdown_table(["form", "filters", "products", "same products", "FAISS + DuckDB", "Milvus",
                              "of which Milvus' allowed keys"], rows))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=repo_root() / "indexes" / "myntra")
    parser.add_argument("--queries", type=Path,
                        default=repo_root().parent / "shared" / "data" / "queries" / "shopper_queries.jsonl")
    parser.add_argument("--titles", type=int, default=None, help="test titles as queries [default: all]")
    parser.add_argument("--out", type=Path, default=RESULTS / "store_agreement")
    parser.add_argument("--no-catalog", action="store_true", help="skip the filtered searches over every product")
    args = parser.parse_args(argv)
    if not args.queries.exists():
        _skip(f"{args.queries} not found (../shared/data is absent)")
    if not (args.index / "manifest.json").exists():
        _skip(f"no index at {args.index}: build it with `moonsearch index ../shared/data/myntra --out {args.index}`")
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError:
        _skip("the milvus backend needs the [scale] extra: pip install -e '.[scale]'")

    from moonsearch.encoder.base import query_encoding
    from moonsearch.search.product_index import ProductIndex
    from moonsearch.store.backends import FAISS_DUCKDB, MILVUS, backend_location, create_vectors, open_vectors
    from moonsearch.store.filters import parse_filters

    index = ProductIndex.open(args.index, device="cpu")
    if index.manifest.backend != FAISS_DUCKDB:
        _skip(f"{args.index} is a {index.manifest.backend} index; this reads vectors from a FAISS one")
    keys = index.store.allowed_rows(parse_filters(["split=test"]))
    if not len(keys):
        _skip(f"{args.index} has no products with split=test")
    vectors = index.stored_vectors(keys, "mm").astype(np.float32)
    men = np.intersect1d(keys, index.store.allowed_rows(parse_filters(["gender=Men"])))
    records = index.store.products(keys.tolist())
    titles = [r["title"] for r in records][: args.titles]
    shopper = [json.loads(line)["query"] for line in args.queries.read_text().splitlines() if line.strip()]
    encode = query_encoding(index.encoder)
    started = time.perf_counter()
    embedded = {}
    for name, texts in (("shopper", shopper), ("titles", titles)):
        embedded[name] = np.concatenate([np.asarray(encode(texts[s:s + 256], [None] * len(texts[s:s + 256])), np.float32)
                                         for s in range(0, len(texts), 256)])
    encode_s = time.perf_counter() - started
    with_image = np.array([r["has_image"] for r in records])
    embedded["images"] = index.stored_vectors(keys[with_image], "image").astype(np.float32)

    with tempfile.TemporaryDirectory(prefix="store-agreement-") as tmp:
        location = backend_location(MILVUS, str(Path(tmp) / "agreement.db"), Path(tmp) / "myntra-test")
        built, stores = {}, {}
        for backend in (FAISS_DUCKDB, MILVUS):   # built and saved as a build does, opened as a query does
            started = time.perf_counter()
            made = create_vectors(vectors, keys, "flat", backend=backend, location=location)
            made.save(Path(tmp) / f"{backend}.store")
            built[backend] = time.perf_counter() - started
            stores[backend] = open_vectors(Path(tmp), f"{backend}.store", backend)
        faiss_store, milvus_store = stores[FAISS_DUCKDB], stores[MILVUS]
        faiss_build, milvus_build = built[FAISS_DUCKDB], built[MILVUS]
        sets = {}
        for name, queries in embedded.items():
            fs, fk = faiss_store.search(queries, K)
            ms, mk = milvus_store.search(queries, K)
            sets[name] = agreement(fk, mk, fs, ms)
        latency = {"faiss": [], "milvus": [], "faiss_filtered": [], "milvus_filtered": []}
        for q in embedded["shopper"]:   # alternating, query by query
            for label, allowed in (("", None), ("_filtered", men)):
                latency["faiss" + label] += p50_ms(faiss_store, q[None, :], allowed)
                latency["milvus" + label] += p50_ms(milvus_store, q[None, :], allowed)
        catalog_filters = filtered_at_scale(index, location) if not args.no_catalog else None
    p50 = {name: round(statistics.median(times), 3) for name, times in latency.items()}
    all_queries = sum(s["queries"] for s in sets.values())
    overall = {key: round(sum(s[key] * s["queries"] for s in sets.values()) / all_queries, 4)
               for key in ("exact", "same_set", "up_to_ties")}
    result = {
        "index": str(args.index), "encoder": index.manifest.encoder["id"], "split": "test", "products": int(len(keys)),
        "k": K, "store": "flat (FAISS IndexFlatIP in an IndexIDMap2; Milvus FLAT, metric IP, milvus-lite)",
        "agreement": sets, "overall": {"queries": all_queries, **overall},
        "p50_ms": p50, "ratio_milvus_to_faiss": round(p50["milvus"] / p50["faiss"], 1),
        "ratio_milvus_to_faiss_filtered": round(p50["milvus_filtered"] / p50["faiss_filtered"], 1),
        "filtered_by": f"gender=Men ({len(men)} of the test products' keys as allowed_ids)",
        "build_s": {"faiss": round(faiss_build, 2), "milvus": round(milvus_build, 2)},
        "query_encoding_s": round(encode_s, 1),
        "filtered_over_the_catalog": catalog_filters,
        "versions": {"pymilvus": pymilvus.__version__, "milvus_lite": getattr(milvus_lite, "__version__", "?")},
    }
    shown = args.index.resolve().relative_to(repo_root()) if args.index.resolve().is_relative_to(repo_root()) \
        else args.index
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    rows = [[name, s["queries"], s["exact"], s["same_set"], s["up_to_ties"], f"{s['max_score_difference']:.1e}"]
            for name, s in sets.items()]
    rows.append(["all", all_queries, overall["exact"], overall["same_set"], overall["up_to_ties"], ""])
    text = (f"# Milvus vs FAISS flat search on Myntra `test` ({len(keys):,} products, top-{K})\n\n"
            f"`python benchmarks/store_agreement.py --index {shown}`; encoder {result['encoder']}; "
            f"pymilvus {result['versions']['pymilvus']}, milvus-lite {result['versions']['milvus_lite']}.\n\n"
            + markdown_table(["queries", "n", "same top-10, same order", "same set", "same up to ties",
                              "largest score difference"], rows)
            + "\n\np50 latency of one query (ms, alternating on the same queries in one run):\n\n"
            + markdown_table(["search", "FAISS", "Milvus", "Milvus / FAISS"],
                             [["unfiltered", p50["faiss"], p50["milvus"], result["ratio_milvus_to_faiss"]],
                              [f"allowed keys ({len(men)}, gender=Men)", p50["faiss_filtered"], p50["milvus_filtered"],
                               result["ratio_milvus_to_faiss_filtered"]]])
            + catalog_text(catalog_filters)
            + "\n\n" + machine_block())
    args.out.with_suffix(".md").write_text(text)
    print(text)
    index.close()


if __name__ == "__main__":
    main()
