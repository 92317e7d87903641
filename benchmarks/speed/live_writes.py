"""Writes to a live index, timed on a copy of a built index (issue 18.9, first figures).

    python benchmarks/speed/live_writes.py indexes/myntra --data ../shared/data/myntra

The index is copied to --work (the original is never written). Timed, in this order: the first
write (on an index built before stable keys it also turns every view into keyed vectors), an
upsert of --products new products with encoding (their records and images from the catalog,
under new ids), the same products again as `update` compares them (content hashes, nothing
encoded, nothing committed; `update` itself would also remove every product not in the batch),
deleting one product, and deleting the rest of the new products. Prints and writes JSON.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", type=Path)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/myntra"))
    parser.add_argument("--products", type=int, default=64)
    parser.add_argument("--work", type=Path, default=Path("/tmp/moonsearch-live-writes"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from moonsearch import threads
    from moonsearch.catalog import open_catalog
    from moonsearch.index.live import open_writer
    from moonsearch.search.searcher import ProductIndex

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
        assert summary.encoded == len(fresh)
        started = time.perf_counter()
        # the same products unchanged, as `update` finds them: hashed, not encoded, nothing committed
        summary = writer._write(fresh, delete_ids=(), only_changed=True)
        encoded = summary.encoded
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
    result["upsert_products_per_s_unchanged"] = round(len(fresh) / timings["upsert_unchanged"], 1)
    result["unchanged_encoded"] = encoded
    result["machine"] = facts()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    shutil.rmtree(args.work, ignore_errors=True)


if __name__ == "__main__":
    main()
