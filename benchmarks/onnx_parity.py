"""ONNX Runtime vs torch for moon-lite, on real products (issue 17, item 2): the query path runs
on ONNX Runtime, indexes may have been built on torch, so the two must give the same vectors and
the same rankings.

On the first --limit products of the Myntra `test` split (all with --limit 0) and the 50 shopper
queries, both runtimes embed every product three ways (encode_views) and every query; reported:
mean and min cosine per input kind, how many shopper queries get the identical top-10 product
ids (same order, and same set) from the multimodal vectors, and warm per-query latency (p50 ms,
one thread each, one query at a time) for text and image queries, measured in this one run.
Writes benchmarks/results/onnx_parity.json and .md:

    .venv/bin/python benchmarks/onnx_parity.py [--limit 500] [--encoder moon-lite]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def summary(values: np.ndarray) -> dict:
    return {"n": int(len(values)), "mean": round(float(values.mean()), 7), "min": round(float(values.min()), 7)}


def embed_products(encoder, texts, images, batch: int = 64):
    parts = [encoder.encode_views(texts[i:i + batch], images[i:i + batch]) for i in range(0, len(texts), batch)]
    return {view: np.concatenate([p[view] for p in parts]) for view in ("mm", "text", "image")}


def latency_ms(encoder, inputs: list[tuple], repeats: int = 1) -> float:
    """p50 over single-query encode() calls, after one warm-up call."""
    encoder.encode([inputs[0][0]], [inputs[0][1]])
    times = []
    for _ in range(repeats):
        for text, image in inputs:
            start = time.perf_counter()
            encoder.encode([text], [image])
            times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "myntra")
    parser.add_argument("--queries", type=Path, default=REPO.parent / "shared" / "data" / "queries" / "shopper_queries.jsonl")
    parser.add_argument("--encoder", default="moon-lite")
    parser.add_argument("--limit", type=int, default=500, help="first N test products (0: all)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args()
    if not (args.data / "products.jsonl").is_file() or not args.queries.is_file():
        print(f"skipped: no catalog at {args.data} or no shopper queries at {args.queries} (needs ../shared/data)")
        return

    from moonsearch import threads
    from moonsearch.catalog import ImageError, load_image
    from moonsearch.encoder.registry import load_encoder
    from moonsearch.catalog.inputs import product_text
    from moonsearch.eval.protocols import myntra
    from moonsearch.eval.shopper import load_queries

    threads.for_queries()                     # one thread for both runtimes, as a query runs
    onnx = load_encoder(args.encoder, runtime="onnx")
    torch_encoder = load_encoder(args.encoder, runtime="torch")
    threads.for_queries()                     # torch is imported now: set it too
    products = myntra.load_split(args.data, "test", limit=args.limit or None)
    texts = [product_text(p.title, p.attributes) for p in products]
    images = []
    for p in products:
        try:
            images.append(load_image(p.images[0]) if p.images else None)
        except ImageError:
            images.append(None)
    queries = [q["query"] for q in load_queries(args.queries)]

    started = time.time()
    timing = {}
    vectors = {}
    for name, encoder in (("onnx", onnx), ("torch", torch_encoder)):   # torch: its image tower on ONNX
        t = time.perf_counter()
        vectors[name] = embed_products(encoder, texts, images)
        vectors[name]["query"] = encoder.encode(queries, [None] * len(queries))
        timing[name] = round(time.perf_counter() - t, 1)
    has_image = np.array([im is not None for im in images])
    kinds = {"text-only (product text)": cosines(vectors["onnx"]["text"], vectors["torch"]["text"]),
             "image-only": cosines(vectors["onnx"]["image"][has_image], vectors["torch"]["image"][has_image]),
             "image+text": cosines(vectors["onnx"]["mm"][has_image], vectors["torch"]["mm"][has_image]),
             "shopper query (text)": cosines(vectors["onnx"]["query"], vectors["torch"]["query"])}
    top = {name: np.argsort(-(v["query"] @ v["mm"].T), axis=1, kind="stable")[:, :10] for name, v in vectors.items()}
    same_order = int(sum(np.array_equal(a, b) for a, b in zip(top["onnx"], top["torch"])))
    same_set = int(sum(set(a) == set(b) for a, b in zip(top["onnx"], top["torch"])))

    # warm latency of one query at a time, same inputs for both runtimes, alternating runtimes
    text_inputs = [(q, None) for q in queries[:30]]
    image_inputs = [(None, images[i]) for i in np.flatnonzero(has_image)[:30]]
    latency = {name: {"text_ms": latency_ms(enc, text_inputs, 2), "image_ms": latency_ms(enc, image_inputs, 2)}
               for name, enc in (("onnx", onnx), ("torch", torch_encoder))}
    # MoonEncoder's image tower itself runs on ONNX Runtime on a CPU (Towers.image_maps) unless
    # MOONSEARCH_ONNX=0: the all-torch image query, as before any ONNX
    previous = os.environ.get("MOONSEARCH_ONNX")
    os.environ["MOONSEARCH_ONNX"] = "0"
    try:
        latency["torch, image tower on torch too"] = {"text_ms": latency["torch"]["text_ms"],
                                                      "image_ms": latency_ms(torch_encoder, image_inputs, 2)}
    finally:
        if previous is None:
            os.environ.pop("MOONSEARCH_ONNX")
        else:
            os.environ["MOONSEARCH_ONNX"] = previous

    result = {
        "encoder": onnx.encoder_id, "same_encoder_id": onnx.encoder_id == torch_encoder.encoder_id,
        "split": "test", "products": len(products), "with_image": int(has_image.sum()), "queries": len(queries),
        "cosine": {kind: summary(values) for kind, values in kinds.items()},
        "shopper_top10": {"identical_order": same_order, "identical_set": same_set, "of": len(queries),
                          "ranked_by": f"query text vs products' image+text vectors ({len(products)} products)"},
        "latency_p50_ms": latency, "embed_seconds": timing,
        "machine": {"cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
                    "threads": threads.current().threads, "python": platform.python_version()},
        "seconds": round(time.time() - started, 1),
        "made_by": "python benchmarks/onnx_parity.py" + (f" --limit {args.limit}" if args.limit != 500 else ""),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_parity.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "onnx_parity.md").write_text(markdown(result))
    print(markdown(result))


def markdown(r: dict) -> str:
    lines = [f"# moon-lite: ONNX Runtime vs torch ({r['split']})", "",
             f"Encoder `{r['encoder']}` (same id on both runtimes: {r['same_encoder_id']}); the first "
             f"{r['products']} `test` products ({r['with_image']} with an image) and {r['queries']} shopper queries; "
             f"made by `{r['made_by']}`.", "",
             "| input | n | mean cosine | min cosine |", "|---|---:|---:|---:|"]
    lines += [f"| {kind} | {c['n']} | {c['mean']:.7f} | {c['min']:.7f} |" for kind, c in r["cosine"].items()]
    t = r["shopper_top10"]
    lines += ["", f"Shopper queries with the identical top-10 product ids ({t['ranked_by']}): "
              f"{t['identical_order']} of {t['of']} in the same order, {t['identical_set']} of {t['of']} as a set.", "",
              "Warm latency of one query, p50 ms (encoder only; one thread each; load average "
              f"{', '.join(map(str, r['machine']['load_average']))} on {r['machine']['cpu_count']} cores):", "",
              "| runtime | text query | image query |", "|---|---:|---:|"]
    lines += [f"| {name} | {v['text_ms']} | {v['image_ms']} |" for name, v in r["latency_p50_ms"].items()]
    lines += ["", "`torch` is MoonEncoder as `runtime=\"torch\"` loads it on a CPU: MiniLM and the fusion model on "
              "torch, its image tower on ONNX Runtime (Towers.image_maps); the last row sets MOONSEARCH_ONNX=0.", "",
              f"Embedding the products three ways and the queries (batches of 64, one thread) took "
              f"{r['embed_seconds']['onnx']} s on ONNX Runtime and {r['embed_seconds']['torch']} s on torch.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
