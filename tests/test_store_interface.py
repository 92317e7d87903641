"""The store interface (issue 18.1-2): FAISS and DuckDB behind VectorStore / RecordStore, vectors
keyed by product key rather than position. What every backend must do is tested once for all of
them in test_store_backends.py; this file keeps what is particular to FAISS files."""

import faiss
import numpy as np
import pytest

from moonsearch.store import faiss_vectors
from moonsearch.store.backends import open_records, open_vectors
from moonsearch.store.files import view_file
from moonsearch.store.faiss_vectors import FaissVectorStore
from moonsearch.store.interface import RecordStore
from moonsearch.store.manifest import Manifest


def unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_an_index_by_position_becomes_keyed_on_its_first_write():
    x = unit(20)
    legacy = FaissVectorStore(faiss_vectors.build(x, "flat"))   # as built before keys
    assert legacy.ids().tolist() == list(range(20))
    legacy.remove(np.array([3], np.int64))
    legacy.add(np.array([99], np.int64), x[3:4])
    assert isinstance(legacy.index, faiss.IndexIDMap2)
    assert legacy.search(x[3:4], 1)[1][0, 0] == 99 and legacy.search(x[4:5], 1)[1][0, 0] == 4


def test_the_built_index_keys_vectors_by_product_row(sample_index):
    summary, index = sample_index
    manifest = Manifest.read(summary.out)
    assert manifest.backend == "faiss+duckdb"
    records = open_records(summary.out)
    assert isinstance(records, RecordStore)
    vectors = open_vectors(summary.out, view_file("mm"))
    assert isinstance(vectors.index, faiss.IndexIDMap2)
    assert sorted(vectors.ids().tolist()) == sorted(records.allowed_rows([]).tolist())
    row = records.row_of("S0007")
    assert vectors.search(vectors.vectors(np.array([row])), 1)[1][0, 0] == row
    assert records.keys_of(["S0007", "nope"]) == {"S0007": row}
    records.close()


def test_a_manifest_naming_an_unknown_backend_is_refused(sample_index, tmp_path):
    import json
    import shutil

    from moonsearch.errors import IndexFormatError
    from moonsearch.search.product_index import ProductIndex

    summary, _ = sample_index
    copy = tmp_path / "copy"
    shutil.copytree(summary.out, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["backend"] = "cassandra"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="backend 'cassandra'"):
        ProductIndex.open(copy, device="cpu")
