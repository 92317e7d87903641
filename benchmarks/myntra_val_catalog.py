"""Write the `myntra-val` products as a catalog of their own, with their shopper queries.

`moonsearch eval myntra-val` scores encoders on 4,500 held-out *train* products (the split's
products 20,000..24,499, which no shipped model trains on) with 100 attribute-written shopper
queries. Query-layer choices (hybrid or vectors, say) are made the same way, through an index,
so those products and queries are needed on disk: this writes DIR/products.jsonl (the records
as they are in the catalog, image paths made absolute, nothing copied) and DIR/queries.jsonl.

    .venv/bin/python benchmarks/myntra_val_catalog.py --out /tmp/myntra-val
    moonsearch index /tmp/myntra-val --out indexes/myntra-val
    .venv/bin/python benchmarks/hybrid.py --index indexes/myntra-val --split train \\
        --queries /tmp/myntra-val/queries.jsonl --name hybrid-val
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, default=REPO.parent / "shared/data/myntra")
    parser.add_argument("--out", type=Path, required=True, help="A folder outside the repository.")
    args = parser.parse_args()

    from moonsearch.eval.protocols.myntra import VALIDATION_SIZE, VALIDATION_SKIP, attribute_queries, load_split

    products = load_split(args.catalog, split="train", limit=VALIDATION_SKIP + VALIDATION_SIZE)[VALIDATION_SKIP:]
    wanted = {p.id for p in products}
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(args.catalog / "products.jsonl") as source, open(args.out / "products.jsonl", "w") as sink:
        for line in source:
            record = json.loads(line)
            if str(record["id"]) in wanted:
                if record.get("image"):
                    record["image"] = str((args.catalog / record["image"]).resolve())
                sink.write(json.dumps(record) + "\n")
                written += 1
    queries = attribute_queries(products, 100)   # the very queries `eval myntra-val` scores
    with open(args.out / "queries.jsonl", "w") as sink:
        sink.writelines(json.dumps(q) + "\n" for q in queries)
    print(f"{written} products and {len(queries)} shopper queries in {args.out}")


if __name__ == "__main__":
    main()
