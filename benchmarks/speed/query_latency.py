"""Query latency of an index: warm (Python API, model loaded) and cold (a fresh CLI process).

    python benchmarks/speed/query_latency.py --index indexes/myntra [--image some.jpg] [--repeat 50]

Prints p50/p95 in milliseconds for text queries (hybrid, the default, and vectors alone), image,
text+image and filtered queries.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

TEXT_QUERIES = ["red dress", "black leather wallet", "men blue jeans", "white sports shoes", "gold watch",
                "striped cotton shirt", "pink handbag", "kurta for women", "sunglasses", "formal shoes"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(fn, repeat: int) -> list[float]:
    fn(0)  # warm-up: loads towers and FAISS files
    times = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, required=True)
    parser.add_argument("--image", type=Path, help="query image [default: the first indexed product's image]")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--cold-repeat", type=int, default=3)
    args = parser.parse_args()

    import moonsearch

    index = moonsearch.open_index(args.index, device="cpu")
    image = args.image or next(h.image for h in index.search(text="shirt", k=50) if h.image)
    cases = {
        "text, vectors": lambda i: index.search(text=TEXT_QUERIES[i % len(TEXT_QUERIES)], k=10, hybrid=False),
        "image": lambda i: index.search(image=image, k=10),
        "text+image": lambda i: index.search(text=TEXT_QUERIES[i % len(TEXT_QUERIES)], image=image, k=10),
        "filtered vectors": lambda i: index.search(text=TEXT_QUERIES[i % len(TEXT_QUERIES)], k=10,
                                                   filters=["gender=Men", "price<1000"], hybrid=False),
        "text (hybrid)": lambda i: index.search(text=TEXT_QUERIES[i % len(TEXT_QUERIES)], k=10, hybrid=True),
        "filtered hybrid": lambda i: index.search(text=TEXT_QUERIES[i % len(TEXT_QUERIES)], k=10,
                                                  filters=["gender=Men", "price<1000"], hybrid=True),
    }
    print(f"index {args.index}: {index.manifest.counts['products']} products, {index.manifest.index_type}")
    print(f"{'query':<16}{'p50 ms':>10}{'p95 ms':>10}")
    for name, fn in cases.items():
        times = timed(fn, args.repeat)
        print(f"{name:<16}{statistics.median(times):>10.1f}{percentile(times, 0.95):>10.1f}   (warm, Python API)")
    cold = []
    for _ in range(args.cold_repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "moonsearch.cli", "query", "red dress", "--index", str(args.index),
                        "--json", "--device", "cpu"], check=True, capture_output=True)
        cold.append((time.perf_counter() - start) * 1000)
    print(f"{'text, cold CLI':<16}{statistics.median(cold):>10.1f}{max(cold):>10.1f}   (fresh process; p95 = max of {len(cold)})")


if __name__ == "__main__":
    main()
