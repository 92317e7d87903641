"""moonsearch's search parts beside embedded peers, on the same vectors and texts.

    python benchmarks/speed/peers.py --index indexes/myntra [--repeat 20] [--json out.json]

Why: a query's latency is the encoder plus the search part (filters, vector search, keyword
search, fusion, hit records). Every system would call an encoder, so it is left out here: the
query vectors are made once by the index's own encoder, and moonsearch's `search` is timed with
them handed in (its `embed_query` answers from that table), so what is timed is exactly what
LanceDB and the others do. The same product vectors (the index's mm view, read back from FAISS)
and the same product texts (what the encoder and BM25 read) go into each peer.

Cases, p50/p95 in ms over `--repeat` passes of the 10 query texts, k = 10:
  hybrid            vectors + BM25 fused by reciprocal rank (moonsearch hybrid=True; LanceDB
                    hybrid query, RRF, its native FTS index)
  filtered vector   gender=Men, price<1000, then exact vector search (LanceDB prefilter)
  filtered hybrid   both
  vector, keyword   the halves alone (LanceDB brute force / FTS)

Top-10 agreement: the mean share of moonsearch's 10 ids that a peer returns too. Qdrant
(local, in-memory) runs the vector cases when qdrant-client is installed; milvus-lite is left
out (its server process alone outweighs this comparison on 2 cores). Peers come from the
`bench` extra: pip install -e ".[bench]".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from query_latency import TEXT_QUERIES, percentile  # noqa: E402

FILTERS = ["gender=Men", "price<1000"]
LANCE_FILTER = "gender = 'Men' AND price < 1000"
K = 10


def timed(fn, queries: list[str], repeat: int) -> tuple[list[float], dict[str, list[str]]]:
    """Milliseconds per call over `repeat` passes, and each query's top ids from the warm-up."""
    top = {q: fn(q) for q in queries}            # warm-up pass, and the ids for agreement
    times = []
    for _ in range(repeat):
        for q in queries:
            start = time.perf_counter()
            fn(q)
            times.append((time.perf_counter() - start) * 1000)
    return times, top


def stats(times: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(times), 3), "p95_ms": round(percentile(times, 0.95), 3)}


def agreement(a: dict[str, list[str]], b: dict[str, list[str]]) -> float:
    shares = [len(set(a[q][:K]) & set(b[q][:K])) / max(1, min(K, len(a[q]))) for q in a]
    return round(float(np.mean(shares)), 3)


def load_products(index_folder: Path):
    """Row-ordered ids, texts, gender and numeric price from the index's DuckDB store."""
    import duckdb

    con = duckdb.connect(str(index_folder / "metadata.duckdb"), read_only=True)
    try:
        rows = con.execute("SELECT row, id, text, attributes FROM products ORDER BY row").fetchall()
    finally:
        con.close()
    ids, texts, gender, price = [], [], [], []
    for row, pid, text, attributes in rows:
        attrs = json.loads(attributes) if isinstance(attributes, str) else (attributes or {})
        ids.append(pid)
        texts.append(text or "")
        gender.append(str(attrs.get("gender", "")))
        try:
            price.append(float(attrs.get("price")))
        except (TypeError, ValueError):
            price.append(float("nan"))
    return ids, texts, gender, np.array(price)


def product_vectors(index_folder: Path) -> np.ndarray:
    import faiss

    from moonsearch.store.files import view_file

    flat = faiss.read_index(str(index_folder / view_file("mm")))
    return flat.reconstruct_n(0, flat.ntotal).astype(np.float32)


def moonsearch_cases(index_folder: Path, queries: list[str], repeat: int):
    import moonsearch

    index = moonsearch.open_index(index_folder, device="cpu")
    # The encoder left out: each text search embeds (the query as the query layer reads it, e.g.
    # "kurta for women" -> "women kurta") is encoded once, in a warm-up pass, and looked up after.
    # The peers get the same vector for the query (query_vectors, by the query as given).
    encode, vectors, embedded = index.embed_query, {}, []

    def embed_once(text=None, image=None):
        key = text.strip()
        embedded.append(key)
        if key not in vectors:
            vectors[key] = encode(key)
        return vectors[key]

    index.embed_query = embed_once
    query_vectors = {}
    for q in queries:
        index.search(text=q, k=K)
        query_vectors[q] = vectors[embedded[-1]][0]

    def ids(**kwargs):
        return lambda q: [h.id for h in index.search(text=q, k=K, **kwargs)]

    cases = {"hybrid": ids(hybrid=True), "filtered_vector": ids(hybrid=False, filters=FILTERS),
             "filtered_hybrid": ids(hybrid=True, filters=FILTERS), "vector": ids(hybrid=False)}
    out, tops = {}, {}
    for name, fn in cases.items():
        times, tops[name] = timed(fn, queries, repeat)
        out[name] = stats(times)
    return out, tops, query_vectors


def lancedb_cases(folder: Path, vectors: np.ndarray, products, query_vectors: dict, queries, repeat: int):
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("RUST_LOG", "error")
    import lancedb
    import pyarrow as pa

    ids, texts, gender, price = products
    dim = vectors.shape[1]
    table = pa.table({"id": ids, "text": texts, "gender": gender, "price": price,
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)})
    db = lancedb.connect(str(folder))
    start = time.perf_counter()
    tbl = db.create_table("products", table)
    with warnings.catch_warnings():   # create_fts_index is deprecated in 0.40 but still its plain way
        warnings.simplefilter("ignore")
        tbl.create_fts_index("text")
    built = time.perf_counter() - start
    columns = ["id"]

    def run(query):
        return [r["id"] for r in query.limit(K).select(columns).to_list()]

    cases = {
        "hybrid": lambda q: run(tbl.search(query_type="hybrid").vector(query_vectors[q]).text(q)),
        "filtered_vector": lambda q: run(tbl.search(query_vectors[q]).distance_type("dot")
                                         .where(LANCE_FILTER, prefilter=True)),
        "filtered_hybrid": lambda q: run(tbl.search(query_type="hybrid").vector(query_vectors[q]).text(q)
                                         .where(LANCE_FILTER, prefilter=True)),
        "vector": lambda q: run(tbl.search(query_vectors[q]).distance_type("dot")),
        "keyword": lambda q: run(tbl.search(q, query_type="fts")),
    }
    out, tops = {}, {}
    for name, fn in cases.items():
        times, tops[name] = timed(fn, queries, repeat)
        out[name] = stats(times)
    return out, tops, {"version": lancedb.__version__, "build_s": round(built, 1),
                       "index": "brute force (no vector index), native FTS index on text"}


def qdrant_cases(vectors: np.ndarray, products, query_vectors: dict, queries, repeat: int):
    try:
        from qdrant_client import QdrantClient, models
    except ImportError:
        return None, None, {"skipped": "qdrant-client not installed (pip install -e '.[bench]')"}
    ids, _, gender, price = products
    client = QdrantClient(":memory:")
    client.create_collection("p", vectors_config=models.VectorParams(size=vectors.shape[1],
                                                                     distance=models.Distance.DOT))
    client.upload_collection("p", vectors=vectors, ids=list(range(len(ids))),
                             payload=[{"gender": g, "price": None if np.isnan(p) else float(p)}
                                      for g, p in zip(gender, price)])
    flt = models.Filter(must=[models.FieldCondition(key="gender", match=models.MatchValue(value="Men")),
                              models.FieldCondition(key="price", range=models.Range(lt=1000))])

    def run(q, query_filter=None):
        points = client.query_points("p", query=query_vectors[q].tolist(), limit=K, query_filter=query_filter).points
        return [ids[p.id] for p in points]

    out, tops = {}, {}
    for name, fn in {"vector": run, "filtered_vector": lambda q: run(q, flt)}.items():
        times, tops[name] = timed(fn, queries, repeat)
        out[name] = stats(times)
    return out, tops, {"mode": "local, in-memory"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the 10 queries per case")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    queries = TEXT_QUERIES
    ours, our_tops, query_vectors = moonsearch_cases(args.index, queries, args.repeat)
    vectors = product_vectors(args.index)
    products = load_products(args.index)
    result = {"products": len(vectors), "k": K, "repeat": args.repeat, "filters": FILTERS,
              "load_average": [round(x, 2) for x in os.getloadavg()], "moonsearch": ours, "peers": {}}
    with tempfile.TemporaryDirectory(prefix="moonsearch-peers-") as tmp:
        try:
            lance, lance_tops, lance_info = lancedb_cases(Path(tmp), vectors, products, query_vectors, queries,
                                                          args.repeat)
        except ImportError:
            lance, lance_tops, lance_info = None, None, {"skipped": "lancedb not installed (pip install -e '.[bench]')"}
    peers = {"lancedb": (lance, lance_tops, lance_info),
             "qdrant": qdrant_cases(vectors, products, query_vectors, queries, args.repeat)}
    for name, (cases, tops, info) in peers.items():
        entry = dict(info)
        if cases is not None:
            entry["cases"] = cases
            entry["top10_agreement"] = {c: agreement(our_tops[c], tops[c]) for c in cases if c in our_tops}
            entry["speedup"] = {c: round(cases[c]["p50_ms"] / ours[c]["p50_ms"], 2) for c in cases if c in ours}
        result["peers"][name] = entry
    lance_entry = result["peers"]["lancedb"]
    if "speedup" in lance_entry:
        # the targets: moonsearch's hybrid and filtered search parts each >= 5x faster than LanceDB's
        result["ratios"] = {"hybrid_vs_lancedb": lance_entry["speedup"]["hybrid"],
                            "filtered_vector_vs_lancedb": lance_entry["speedup"]["filtered_vector"],
                            "filtered_hybrid_vs_lancedb": lance_entry["speedup"]["filtered_hybrid"]}
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


def markdown(result: dict) -> str:
    ours = result["moonsearch"]
    lines = [f"### Search parts beside embedded peers ({result['products']:,} products, k={K}, encoder left out; "
             f"load average {', '.join(map(str, result['load_average']))})", "",
             "| case | system | p50 ms | p95 ms | moonsearch faster by | top-10 agreement |",
             "|---|---|---|---|---|---|"]
    for case, numbers in ours.items():
        lines.append(f"| {case} | moonsearch | {numbers['p50_ms']:.2f} | {numbers['p95_ms']:.2f} | | |")
    for name, entry in result["peers"].items():
        if "cases" not in entry:
            lines.append(f"| - | {name} | skipped: {entry.get('skipped', '')} | | | |")
            continue
        for case, numbers in entry["cases"].items():
            lines.append(f"| {case} | {name} | {numbers['p50_ms']:.2f} | {numbers['p95_ms']:.2f} | "
                         f"{str(entry['speedup'][case]) + 'x' if case in entry['speedup'] else '-'} | {entry['top10_agreement'].get(case, '-')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
