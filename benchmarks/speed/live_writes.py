"""Writes to a live index, timed on a copy of a built index (issue 18.9, first figures).

    python benchmarks/speed/live_writes.py indexes/myntra --data ../shared/data/myntra

The index is copied to --work (the original is never written). Timed, in this order: the first
write (on an index built before stable keys it also turns every view into keyed vectors), an
upsert of --products new products with encoding (their records and images from the catalog,
under new ids), the same products again as `update` compares them (content hashes, nothing
encoded, nothing committed; `update` itself would also remove every product not in the batch),
deleting one product, and deleting the rest of the new products. Then query latency (hybrid
text queries, one open index, warm) on the idle index and again while another process writes
to it in a loop (upsert one product, delete it). Prints and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import facts  # noqa: E402
from query_latency import TEXT_QUERIES, percentile  # noqa: E402

WRITER_LOOP = r"""
import os, sys
from moonsearch.index.live import open_writer
folder, stop = sys.argv[1], sys.argv[2]
writes = 0
with open_writer(folder, device="cpu") as writer:
    while not os.path.exists(stop):
        writer.upsert([{"id": "live-loop", "title": "Loop test cotton shirt", "price": 1}])
        writer.delete(["live-loop"])
        writes += 2
        print(writes, flush=True)
"""


def query_p50(index, rounds: int) -> dict:
    """p50 / p95 ms of hybrid text queries, after one warm-up round."""
    for text in TEXT_QUERIES:
        index.search(text=text, k=10)
    times = []
    for _ in range(rounds):
        for text in TEXT_QUERIES:
            started = time.perf_counter()
            index.search(text=text, k=10)
            times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(percentile(times, 0.5), 1), "p95_ms": round(percentile(times, 0.95), 1), "queries": len(times)}


def under_writes(folder: Path, rounds: int) -> tuple[dict, int]:
    import subprocess

    stop = folder.parent / (folder.name + ".stop")
    stop.unlink(missing_ok=True)
    writer = subprocess.Popen([sys.executable, "-c", WRITER_LOOP, str(folder), str(stop)],
                              stdout=subprocess.PIPE, text=True)
    try:
        writer.stdout.readline()   # the first write has happened: the writer is running
        from moonsearch.search.product_index import ProductIndex

        index = ProductIndex.open(folder, device="cpu")
        result = query_p50(index, rounds)
        index.close()
    finally:
        stop.touch()
        out, _ = writer.communicate(timeout=600)
        stop.unlink(missing_ok=True)
    writes = int(out.split()[-1]) if out.split() else 2
    return result, writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/myntra"))
    parser.add_argument("--products", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path("/tmp/moonsearch-live-writes"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=5, help="Rounds of the 10 text queries, idle and under writes.")
    args = parser.parse_args()

    from moonsearch import threads
    from moonsearch.catalog import open_catalog
    from moonsearch.index.live import open_writer
    from moonsearch.search.product_index import ProductIndex

    threads.for_queries()
    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    shutil.copytree(args.index, args.work)
    copy_s = time.perf_counter() - started
    catalog = open_catalog(args.data)
    fresh = [dataclasses.replace(p, id=f"live-{p.id}") for p in islice(catalog.products(), args.products)]
    result = {"index": str(args.index), "products_before": ProductIndex.open(args.work).manifest.counts["products"],
              "copy_seconds": round(copy_s, 2), "batch": len(fresh)}
    started = time.perf_counter()
    writer = open_writer(args.work, device="cpu")
    result["open_writer_seconds"] = round(time.perf_counter() - started, 2)   # loads the encoder
    try:
        timings = {}
        started = time.perf_counter()
        summary = writer.delete([fresh[0].id.removeprefix("live-")])
        timings["first_write_delete_1"] = time.perf_counter() - started
        started = time.perf_counter()
        summary = writer.upsert(fresh)
        timings["upsert_encoded"] = time.perf_counter() - started
        timings["upsert_encoding_part"] = summary.encode_seconds
        assert summary.encoded == len(fresh)
        started = time.perf_counter()
        # the same products unchanged, as `update` finds them: hashed, not encoded, nothing committed
        unchanged = writer._write(fresh, delete_ids=(), only_changed=True)
        timings["upsert_unchanged"] = time.perf_counter() - started
        started = time.perf_counter()
        writer.delete([fresh[1].id])
        timings["delete_1"] = time.perf_counter() - started
        started = time.perf_counter()
        writer.delete([p.id for p in fresh[2:]])
        timings["delete_batch"] = time.perf_counter() - started
    finally:
        writer.close()
    result.update({k: round(v, 2) for k, v in timings.items()})
    result["upsert_products_per_s_encoded"] = round(len(fresh) / timings["upsert_encoded"], 1)
    # the same upsert without its encoding: what the stores, the keyword index and the commit cost
    result["upsert_products_per_s_without_encoding"] = round(
        len(fresh) / (timings["upsert_encoded"] - timings["upsert_encoding_part"]), 1)
    result["upsert_products_per_s_unchanged"] = round(len(fresh) / timings["upsert_unchanged"], 1)
    result["unchanged_encoded"] = unchanged.encoded
    idle_index = ProductIndex.open(args.work, device="cpu")
    result["query_idle"] = query_p50(idle_index, args.rounds)
    idle_index.close()
    result["query_while_writing"], result["writes_during_queries"] = under_writes(args.work, args.rounds)
    result["machine"] = facts()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
