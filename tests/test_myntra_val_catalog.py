"""benchmarks/myntra_val_catalog.py on the real catalog (skipped when ../shared/data is absent):
the catalog it writes is exactly the `myntra-val` products, readable by moonsearch, with the
queries `eval myntra-val` scores."""

import json
import subprocess
import sys
from pathlib import Path

from moonsearch.catalog.reader import open_catalog
from moonsearch.eval.protocols.myntra import VALIDATION_SIZE, VALIDATION_SKIP, attribute_queries, load_split

from conftest import REPO


def test_the_written_catalog_is_the_validation_products_and_queries(myntra_available, tmp_path):
    out = tmp_path / "myntra-val"
    subprocess.run([sys.executable, str(REPO / "benchmarks/myntra_val_catalog.py"), "--catalog", str(myntra_available),
                    "--out", str(out)], check=True, capture_output=True, text=True, timeout=600)
    expected = load_split(myntra_available, split="train", limit=VALIDATION_SKIP + VALIDATION_SIZE)[VALIDATION_SKIP:]
    written = list(open_catalog(out).products())
    assert [p.id for p in written] == [p.id for p in expected]
    assert all(Path(p.images[0]).is_file() for p in written if p.images)
    assert sum(1 for p in written if p.images) == sum(1 for p in expected if p.images)
    queries = [json.loads(line) for line in (out / "queries.jsonl").read_text().splitlines()]
    assert queries == attribute_queries(expected, 100) and len(queries) == 100
