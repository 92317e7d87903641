"""The store interface (issue 18.1-2): FAISS and DuckDB behind VectorStore / RecordStore, vectors
keyed by product key rather than position."""

import faiss
import numpy as np
import pytest

from moonsearch.store import faiss_vectors
from moonsearch.store.backends import open_records, open_vectors
from moonsearch.store.files import view_file
from moonsearch.store.faiss_vectors import FaissVectorStore
from moonsearch.store.interface import RecordStore, VectorStore
from moonsearch.store.manifest import Manifest


def unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_keys_survive_removal_and_addition(kind):
    x = unit(400)
    keys = np.arange(1000, 1400, dtype=np.int64)
    store = FaissVectorStore.create(x, keys, kind)
    assert isinstance(store, VectorStore) and store.size == 400 and store.kind == kind
    scores, found = store.search(x[:1], 3)
    assert found[0, 0] == 1000
    assert store.remove(np.array([1000, 5], np.int64)) == 1   # an absent key is ignored
    assert 1000 not in store.search(x[:1], 10)[1][0] and store.size == 399
    store.add(np.array([7], np.int64), x[:1])
    assert store.search(x[:1], 1)[1][0, 0] == 7
    np.testing.assert_allclose(store.vectors(np.array([1399, 7])), x[[399, 0]], atol=1e-6)
    allowed = np.array([1200, 1300, 7], np.int64)
    assert set(store.search(x[:1], 5, allowed)[1][0].tolist()) == {1200, 1300, 7}
    assert sorted(store.ids().tolist()) == sorted([7] + list(range(1001, 1400)))


def test_save_and_open_keep_the_keys(tmp_path):
    x = unit(50)
    store = FaissVectorStore.create(x, np.arange(50, dtype=np.int64) * 3, "flat")
    store.remove(np.array([0, 3], np.int64))
    store.save(tmp_path / "v.faiss")
    again = open_vectors(tmp_path, "v.faiss")
    assert again.size == 48 and again.search(x[5:6], 1)[1][0, 0] == 15


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
