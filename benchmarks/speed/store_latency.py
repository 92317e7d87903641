"""The store's per-search work by SQL (DuckDB) and from memory, side by side in one run.

    python benchmarks/speed/store_latency.py indexes/myntra                 # an index folder
    python benchmarks/speed/store_latency.py /tmp/store40k --split all      # built if absent

Keyword search (BM25, top 100 as hybrid ranking asks; alone and among filtered rows), each
filter form, and the records of 10 hits (`products`), each timed by its SQL reference
(`*_sql`) and by the in-memory path, alternately on the same inputs, so load on a shared
machine hits both alike. Every in-memory answer is checked against the SQL one in the same run.
A folder without an index gets only the store (metadata.duckdb) of the first N products of the
catalog, written as the indexer writes it: the vectors play no part here. Prints the machine
block, a markdown table and the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import default_data, machine_block, markdown_table, repo_root  # noqa: E402
from query_latency import TEXT_QUERIES, percentile  # noqa: E402

K = 100          # keyword depth the searcher asks for (HYBRID_DEPTH)
HITS = 10        # records fetched per search
FILTER_FORMS = {
    "=": ["gender=Men"],
    "= several": ["baseColour=Red,Blue,Black"],
    "!=": ["gender!=Men"],
    "!= several": ["articleType!=Tshirts,Shirts"],
    "<": ["price<1000"],
    "<=": ["price<=999"],
    ">": ["price>2000"],
    ">=": ["price>=2000"],
    "two filters": ["gender=Men", "price<1000"],
    "three filters": ["gender=Women", "baseColour!=Black", "price>=500"],
}


def build_store(catalog: Path, folder: Path, split: str, limit: int | None) -> int:
    """Write the store of the first `limit` products of `split` ("all": every product)."""
    from moonsearch.catalog.reader import open_catalog
    from moonsearch.catalog.inputs import product_text
    from moonsearch.store.metadata import MetadataWriter, ProductRow

    folder.mkdir(parents=True, exist_ok=True)
    writer, batch, count = MetadataWriter(folder), [], 0
    for product in open_catalog(catalog).products():
        if split != "all" and product.attributes.get("split") != split:
            continue
        batch.append(ProductRow(row=count, id=product.id, title=product.title, description=product.description,
                                images=[str(p) for p in product.images], has_image=bool(product.images),
                                attributes=product.attributes, source=product.source,
                                text=product_text(product.title, product.attributes)))
        count += 1
        if len(batch) == 2000:
            writer.add(batch)
            batch = []
        if limit is not None and count >= limit:
            break
    writer.add(batch)
    writer.close()
    return count


def shopper_queries() -> list[str]:
    path = repo_root().parent / "shared" / "data" / "queries" / "shopper_queries.jsonl"
    if not path.exists():
        return TEXT_QUERIES
    return [json.loads(line)["query"] for line in path.read_text().splitlines() if line.strip()]


def stats(times: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(times), 4), "p95_ms": round(percentile(times, 0.95), 4)}


def side_by_side(sql, memory, inputs: list, repeat: int, same) -> dict:
    """Both paths on every input, alternately, `repeat` passes after a warm-up pass that also
    checks each in-memory answer against the SQL one with `same`."""
    agree = all(same(sql(x), memory(x)) for x in inputs)
    times = {"sql": [], "memory": []}
    for _ in range(repeat):
        for x in inputs:
            for name, fn in (("sql", sql), ("memory", memory)):
                start = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - start) * 1000)
    out = {name: stats(values) for name, values in times.items()}
    out["ratio_p50"] = round(out["sql"]["p50_ms"] / max(out["memory"]["p50_ms"], 1e-9), 1)
    out["same"] = agree
    out["calls"] = len(inputs) * repeat
    return out


def same_keywords(reference: list, mine: list, tol: float = 1e-12) -> bool:
    """Same scores position by position (to 1e-12) and the same rows in each run of near-tied
    scores, but the last run, where the cut at k may keep different near-tied rows (DuckDB's
    own order of those changes with its thread count; see tests/test_store_memory.py)."""
    close = lambda a, b: abs(a - b) <= tol * max(1.0, abs(a))  # noqa: E731
    if len(reference) != len(mine) or not all(close(a, b) for (_, a), (_, b) in zip(reference, mine)):
        return False
    start = 0
    for end in range(1, len(mine) + 1):
        if end == len(mine) or not close(mine[start][1], mine[end][1]):
            if end < len(mine) and {r for r, _ in reference[start:end]} != {r for r, _ in mine[start:end]}:
                return False
            start = end
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path, help="an index folder (or any folder with metadata.duckdb); "
                                                 "built from the catalog when it has none")
    parser.add_argument("--catalog", type=Path, default=default_data())
    parser.add_argument("--split", default="test", help="catalog split to build from, or 'all' [test]")
    parser.add_argument("--products", type=int, help="build from the first N products [all of the split]")
    parser.add_argument("--repeat", type=int, default=5, help="passes over the inputs [5]")
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    import numpy as np

    from moonsearch.store.filters import parse_filters
    from moonsearch.store.metadata import DB_FILE, MetadataStore

    built = None
    if not (args.index / DB_FILE).exists():
        start = time.perf_counter()
        count = build_store(args.catalog, args.index, args.split, args.products)
        built = {"products": count, "split": args.split, "seconds": round(time.perf_counter() - start, 1)}
        print(f"built the store of {count} products ({args.split}) in {built['seconds']} s at {args.index}")

    store = MetadataStore(args.index)
    store.memory_after = 0
    products = store.count()
    queries = shopper_queries()

    load_ms = {}
    start = time.perf_counter()
    store.keyword_rows(queries[0], K)
    load_ms["keyword postings"] = round((time.perf_counter() - start) * 1000, 1)
    start = time.perf_counter()
    store.products([0])
    load_ms["records"] = round((time.perf_counter() - start) * 1000, 1)
    start = time.perf_counter()
    store.allowed_rows(parse_filters(["gender=Men"]))
    load_ms["filters (first key, with the key list)"] = round((time.perf_counter() - start) * 1000, 1)
    assert store._postings, "the keyword index is not scored in memory (see KeywordIndexMismatch)"

    cases = {}
    cases["keywords, top 100"] = side_by_side(
        lambda q: store.keyword_rows_sql(q, K), lambda q: store.keyword_rows(q, K), queries, args.repeat, same_keywords)
    allowed = store.allowed_rows(parse_filters(FILTER_FORMS["two filters"]))
    cases["keywords, top 100 among gender=Men & price<1000"] = side_by_side(
        lambda q: store.keyword_rows_sql(q, K, allowed), lambda q: store.keyword_rows(q, K, allowed),
        queries, args.repeat, same_keywords)
    for name, texts in FILTER_FORMS.items():
        filters = parse_filters(texts)
        for f in filters:
            store.allowed_rows([f])   # its key's values are read here, outside the timer
        cases[f"filter {name}: {' & '.join(texts)}"] = side_by_side(
            lambda _: store.allowed_rows_sql(filters), lambda _: store.allowed_rows(filters),
            list(range(10)), args.repeat, lambda a, b: a.dtype == b.dtype and np.array_equal(a, b))
    rng = random.Random(17)
    hits = [rng.sample(range(products), min(HITS, products)) for _ in range(50)]
    cases[f"products(), {HITS} hits"] = side_by_side(
        store.products_sql, store.products, hits, args.repeat, lambda a, b: a == b)

    result = {"index": str(args.index), "products": products, "built": built, "queries": len(queries),
              "load_average": [round(x, 2) for x in os.getloadavg()], "load_ms": load_ms, "cases": cases}
    print(machine_block())
    print(f"Store latency on {products} products ({args.index}); {len(queries)} shopper queries; "
          f"load average {result['load_average']}; each row alternates SQL and memory on the same inputs.\n")
    rows = [[name, c["sql"]["p50_ms"], c["sql"]["p95_ms"], c["memory"]["p50_ms"], c["memory"]["p95_ms"],
             f"{c['ratio_p50']}x", "yes" if c["same"] else "NO"] for name, c in cases.items()]
    print(markdown_table(["case", "SQL p50 ms", "SQL p95 ms", "memory p50 ms", "memory p95 ms",
                          "SQL/memory p50", "same answers"], rows))
    print("One-time loads (ms): " + ", ".join(f"{k} {v}" for k, v in load_ms.items()) + "\n")
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    store.close()


if __name__ == "__main__":
    main()
