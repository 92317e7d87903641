"""FAISS at catalog scale: build time, queries/s and recall@10 of Flat, IVF, HNSW and IVF-PQ.

    python benchmarks/speed/faiss_scale.py [--vectors 1000000] [--queries 1000] [--dim D]

The vectors are synthetic (no catalog this size exists here): unit vectors at the default
encoder's dimension, drawn in two levels of overlapping clusters (topics, then sub-topics), as
embeddings of a product catalog cluster by category and then by kind. Queries are data points
moved by noise, so every query lands near the data, as a real query near the products it is
looking for, without being one of them. Recall depends on this made-up distribution (the
spreads are flags): read it as the IVF/HNSW settings' recall on clustered data, not as
moonsearch's recall on a real catalog.

Every index is built with moonsearch's own `vectors.build` (so IVF has moonsearch's nlist and
nprobe, HNSW its M/efConstruction/efSearch) and searched with its `vectors.search`; IVF-PQ, not one of moonsearch's index types, is
`build_ivfpq` below (docs/scale.md: what 100M vectors in memory need). Recall@10 is
measured against Flat's exact results. When `placement_for` says FAISS can use a GPU, the Flat
and IVF builds and searches are also timed on it (FAISS has no GPU HNSW).

Memory: N x dim float32 is held once as data and once inside each index (1M x 256 = 1 GiB
each); indexes are built one at a time and freed before the next. The script refuses a size
that would not fit in the memory available at start.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import available_memory_bytes, machine_block, markdown_table  # noqa: E402

TYPES = ("flat", "ivf", "hnsw", "ivfpq")
PQ_DIMS_PER_CODE = 4      # IVF-PQ: one byte per 4 dimensions, 16x smaller than float32
QUICK = {"vectors": 20_000, "queries": 200}
CHUNK = 100_000           # rows generated at a time, so no float64 copy of the whole set exists
SUBTOPICS_PER_TOPIC = 10


def clustered_unit_vectors(n: int, dim: int, topics: int, seed: int,
                           topic_spread: float = 1.0, point_spread: float = 1.5) -> np.ndarray:
    """(n, dim) float32 unit vectors: topic centres -> sub-topic centres -> points.

    The spreads are noise norms relative to a unit centre. With the defaults a point's cosine
    to another point of its sub-topic is about 0.3, of its topic about 0.15, of another topic
    about 0: neighbourhoods overlap, as real embeddings' do, so ANN recall is not trivially 1.
    (With tighter clusters, 0.6/1.0, IVF and HNSW both score 1.000 at 50k vectors; with looser
    ones, 1.5/2.0, about 0.73 and 0.83: recall here is a property of this data as much as of
    the index settings.)
    """
    rng = np.random.default_rng(seed)
    centres = _normalize(rng.standard_normal((topics, dim), dtype=np.float32))
    subs = np.repeat(centres, SUBTOPICS_PER_TOPIC, axis=0)
    subs = _normalize(subs + rng.standard_normal(subs.shape, dtype=np.float32) * (topic_spread / np.sqrt(dim)))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        which = rng.integers(len(subs), size=stop - start)
        block = subs[which]
        block += rng.standard_normal(block.shape, dtype=np.float32) * np.float32(point_spread / np.sqrt(dim))
        out[start:stop] = _normalize(block)
    return out


def queries_near(data: np.ndarray, count: int, seed: int, spread: float = 0.75) -> np.ndarray:
    """Data points plus noise: each query has true neighbours, but is not itself in the data.

    With the default spreads the exact top-1 scores about 0.8 and the 10th about 0.3, the range
    of real query-to-product cosines, not the near-1.0 of a duplicate.
    """
    rng = np.random.default_rng(seed + 1)
    picked = data[rng.choice(len(data), size=count, replace=False)]
    noise = rng.standard_normal(picked.shape, dtype=np.float32) * np.float32(spread / np.sqrt(data.shape[1]))
    return _normalize(picked + noise)


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32, copy=False)


def build_ivfpq(data: np.ndarray):
    """IVF-PQ with moonsearch's IVF lists and nprobe, each vector stored as dim/4 one-byte codes
    (8-bit product quantisation), no reranking: the memory floor of an in-memory index."""
    import faiss

    from moonsearch.store import faiss_vectors as vectors

    n, dim = data.shape
    nlist = vectors.ivf_lists(n)
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, dim // PQ_DIMS_PER_CODE, 8,
                             faiss.METRIC_INNER_PRODUCT)
    index.train(data)
    index.add(data)
    index.nprobe = min(vectors.IVF_NPROBE, nlist)
    return index


def index_bytes(index) -> int | None:
    """Memory held by a CPU index, from its own arrays (RSS deltas hide reused malloc pages)."""
    import faiss

    n = index.ntotal
    if isinstance(index, faiss.IndexFlat):
        return n * index.code_size
    if isinstance(index, faiss.IndexIVF):
        direct_map = n * 8 if index.direct_map.type != faiss.DirectMap.NoMap else 0
        return n * (index.code_size + 8) + index.nlist * index.d * 4 + direct_map
    if isinstance(index, faiss.IndexHNSW):
        graph = index.hnsw
        return (n * index.storage.sa_code_size() + graph.neighbors.size() * 4 + graph.levels.size() * 4
                + graph.offsets.size() * 8)
    return None


def estimated_peak_bytes(n: int, dim: int, types: list[str], queries: int) -> int:
    """Data + the largest single index (HNSW adds its graph: ~2M int32 neighbours at level 0)."""
    from moonsearch.store import faiss_vectors as vectors

    data = n * dim * 4
    index = data
    if "hnsw" in types:
        index += int(n * vectors.HNSW_M * 2 * 4 * 1.1)
    if "ivf" in types:
        index = max(index, data + n * 8 * 2)  # ids + direct map
    return int((data + index + queries * dim * 4) * 1.1)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    hits = sum(len(set(f[f >= 0].tolist()) & set(e.tolist())) for f, e in zip(found, exact))
    return hits / (k * len(exact))


def time_queries(index, queries: np.ndarray, k: int, single: int):
    """Batch search of every query at once, then `single` queries one call each, as an app would."""
    from moonsearch.store import faiss_vectors as vectors

    vectors.search(index, queries[:2], k)  # warm-up: first-touch allocations, OpenMP pool
    start = time.perf_counter()
    _, rows = vectors.search(index, queries, k)
    batch_seconds = time.perf_counter() - start
    latencies = []
    for i in range(single):
        start = time.perf_counter()
        vectors.search(index, queries[i:i + 1], k)
        latencies.append(time.perf_counter() - start)
    return rows, batch_seconds, latencies


def measure(name: str, build, data, queries, k, single, exact, to_search=None) -> tuple[dict, np.ndarray]:
    """Build (timed), then search; `to_search` moves the built index first (untimed: GPU upload)."""
    gc.collect()
    start = time.perf_counter()
    index = build(data)
    build_seconds = time.perf_counter() - start
    size, settings = index_bytes(index), describe(index)
    if to_search is not None:
        index = to_search(index)
    rows, batch_seconds, latencies = time_queries(index, queries, k, single)
    result = {
        "index": name,
        "build_s": build_seconds,
        "batch_qps": len(queries) / batch_seconds,
        "single_qps": len(latencies) / sum(latencies) if latencies else float("nan"),
        "single_p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan"),
        "recall": 1.0 if exact is None else recall_at_k(rows, exact),
        "index_mib": None if size is None else size / 2 ** 20,
        "settings": settings,
    }
    del index
    gc.collect()
    return result, rows


def describe(index) -> str:
    import faiss

    if isinstance(index, faiss.IndexIVFPQ):
        return f"nlist {index.nlist}, nprobe {index.nprobe}, PQ {index.pq.M}x8 bits ({index.code_size} B/vector)"
    if isinstance(index, faiss.IndexIVF):
        return f"nlist {index.nlist}, nprobe {index.nprobe}"
    if isinstance(index, faiss.IndexHNSW):
        return f"M {index.hnsw.nb_neighbors(1)}, efC {index.hnsw.efConstruction}, efS {index.hnsw.efSearch}"
    if isinstance(index, faiss.IndexFlat):
        return "exact inner product"
    return type(index).__name__


def gpu_kinds() -> list[str]:
    """Index types FAISS can build and search on a GPU here (none on a CPU-only machine)."""
    from moonsearch import devices as device

    return [kind for kind in sorted(device.GPU_INDEX_TYPES) if device.placement_for("auto", kind).faiss_gpu]


def report(results: list[dict], n: int, dim: int, nq: int, k: int, single: int, seconds: float,
           scores: tuple[float, float]) -> str:
    import faiss

    rows = [[r["index"], f"{r['build_s']:.1f}", f"{r['batch_qps']:,.0f}", f"{r['single_qps']:,.0f}",
             f"{r['single_p50_ms']:.2f}", f"{r['recall']:.3f}",
             "-" if r["index_mib"] is None else f"{r['index_mib']:,.0f}", r["settings"]]
            for r in results]
    head = (f"### FAISS at scale: {n:,} vectors x {dim} (float32, {n * dim * 4 / 2 ** 30:.2f} GiB), "
            f"{nq:,} queries, k={k}, {faiss.omp_get_max_threads()} FAISS threads")
    table = markdown_table(["index", "build s", "batch q/s", "single q/s", "single p50 ms", f"recall@{k}",
                            "index MiB", "settings"], rows)
    notes = (f"Batch: all {nq:,} queries in one call. Single: {single:,} calls of one query each. "
             f"Recall@{k} against Flat's exact results; the exact neighbours' mean cosine is {scores[0]:.2f} "
             f"(1st) to {scores[1]:.2f} ({k}th). Generating the data took {seconds:.1f} s (not in the table).")
    return f"{head}\n\n{table}\n{notes}\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--single-queries", type=int, help="how many queries to time one by one [all]")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dim", type=int, help="[the default encoder's dimension]")
    parser.add_argument("--topics", type=int, help="top-level clusters [vectors / 1000, at least 10]")
    parser.add_argument("--types", default=",".join(TYPES), help="comma-separated subset of flat,ivf,hnsw,ivfpq")
    parser.add_argument("--topic-spread", type=float, default=1.0, help="noise of sub-topic centres around topics")
    parser.add_argument("--point-spread", type=float, default=1.5, help="noise of points around sub-topic centres")
    parser.add_argument("--query-spread", type=float, default=0.75, help="noise added to data points to make queries")
    parser.add_argument("--threads", type=int, help="FAISS OpenMP threads [FAISS's default: one per core]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help=f"tiny scale ({QUICK['vectors']:,} vectors, {QUICK['queries']} queries)")
    parser.add_argument("--no-machine", action="store_true", help="leave out the machine block (run_all prints it)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)
    n, nq = (QUICK["vectors"], QUICK["queries"]) if args.quick else (args.vectors, args.queries)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    if set(types) - set(TYPES):
        parser.error(f"unknown index type(s) {', '.join(sorted(set(types) - set(TYPES)))}")
    if nq > n:
        parser.error("--queries cannot exceed --vectors")
    single = nq if args.single_queries is None else min(nq, args.single_queries)
    if args.threads:
        import faiss

        faiss.omp_set_num_threads(args.threads)

    if args.dim is None:
        from moonsearch.encoder.registry import load_encoder

        dim = load_encoder("default").dim
    else:
        dim = args.dim
    need, have = estimated_peak_bytes(n, dim, types, nq), available_memory_bytes()
    if have is not None and need > have:
        sys.exit(f"{n:,} x {dim} vectors need about {need / 2 ** 30:.1f} GiB at peak, but only "
                 f"{have / 2 ** 30:.1f} GiB is available; pass a smaller --vectors")
    if not args.no_machine:
        print(machine_block())

    from moonsearch.store import faiss_vectors as vectors

    started = time.perf_counter()
    print(f"generating {n:,} x {dim} clustered unit vectors ...", file=sys.stderr)
    data = clustered_unit_vectors(n, dim, args.topics or max(10, n // 1000), args.seed,
                                  topic_spread=args.topic_spread, point_spread=args.point_spread)
    queries = queries_near(data, nq, args.seed, spread=args.query_spread)
    setup = time.perf_counter() - started

    results: list[dict] = []
    print("flat (exact: the ground truth) ...", file=sys.stderr)
    flat, exact = measure("flat", lambda d: vectors.build(d, "flat"), data, queries, args.k,
                          single if "flat" in types else 0, None)
    if "flat" in types:
        results.append(flat)
    for kind in ("ivf", "hnsw"):
        if kind in types:
            print(f"{kind} ...", file=sys.stderr)
            results.append(measure(kind, lambda d, kind=kind: vectors.build(d, kind), data, queries,
                                   args.k, single, exact)[0])
    if "ivfpq" in types:
        print("ivfpq ...", file=sys.stderr)
        results.append(measure("ivfpq", build_ivfpq, data, queries, args.k, single, exact)[0])
    for kind in gpu_kinds():
        if kind not in types:
            continue
        name = f"{kind} (GPU)"
        print(f"{name} ...", file=sys.stderr)
        from moonsearch import devices as device

        try:
            # moonsearch trains and adds on the GPU, then keeps a CPU copy; searches go to the GPU again.
            results.append(measure(name, lambda d, kind=kind: vectors.build(d, kind, gpu=True), data, queries,
                                   args.k, single, exact, to_search=device.to_gpu)[0])
        except Exception as exc:  # pragma: no cover - only reachable with a GPU
            print(f"{name} failed: {exc}", file=sys.stderr)

    exact_scores = np.einsum("qd,qkd->qk", queries, data[exact])
    scores = (float(exact_scores[:, 0].mean()), float(exact_scores[:, -1].mean()))
    print(report(results, n, dim, nq, args.k, single, setup, scores))
    if args.json:
        args.json.write_text(json.dumps({"vectors": n, "dim": dim, "queries": nq, "results": results}, indent=2))


if __name__ == "__main__":
    main()
