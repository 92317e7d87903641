"""One store-interface suite for every backend (issue 21.2): the same VectorStore / RecordStore
behaviour, live writes and search results from faiss+duckdb and from milvus (a real milvus-lite
file on disk). The milvus cases skip, saying so, where the `[scale]` extra is not installed."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.index.builder import build_index
from moonsearch.search.product_index import ProductIndex
from moonsearch.store.backends import (BACKENDS, FAISS_DUCKDB, MILVUS, backend_location, create_records,
                                       create_vectors, open_records, open_vectors)
from moonsearch.store.filters import parse_filters
from moonsearch.store.interface import RecordStore, VectorStore
from moonsearch.store.manifest import Manifest
from moonsearch.store.metadata import ProductRow

from conftest import SAMPLE_CATALOG, write_jsonl

SCALE_MISSING = "the milvus backend needs the [scale] extra (pymilvus, milvus-lite): pip install -e '.[scale]'"


def _needs_extra(backend: str) -> None:
    if backend == MILVUS:
        pytest.importorskip("pymilvus", reason=SCALE_MISSING)
        pytest.importorskip("milvus_lite", reason=SCALE_MISSING)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    """(backend name, its location for a store under tmp_path): a fresh milvus-lite file per test."""
    _needs_extra(request.param)
    return request.param, backend_location(request.param, str(tmp_path / "m.db") if request.param == MILVUS
                                           else None, tmp_path / "index")


def unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- VectorStore --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_vectors_are_keyed_removed_added_and_saved(backend, kind, tmp_path):
    name, location = backend
    x = unit(60)
    store = create_vectors(x, np.arange(1000, 1060, dtype=np.int64), kind, backend=name, location=location)
    assert isinstance(store, VectorStore) and store.size == 60 and store.kind == kind
    scores, keys = store.search(x[:2], 3)
    assert keys[:, 0].tolist() == [1000, 1001] and np.allclose(scores[:, 0], 1.0, atol=1e-5)
    assert store.remove(np.array([1000, 5], np.int64)) == 1          # an absent key is ignored
    assert 1000 not in store.search(x[:1], 60)[1][0] and store.size == 59
    store.add(np.array([7], np.int64), x[:1])
    assert store.search(x[:1], 1)[1][0, 0] == 7
    np.testing.assert_allclose(store.vectors(np.array([1059, 7])), x[[59, 0]], atol=1e-6)
    allowed = np.array([1020, 1030, 7], np.int64)
    scores, keys = store.search(x[:1], 5, allowed)
    assert set(keys[0][keys[0] >= 0].tolist()) == {1020, 1030, 7} and (keys[0][3:] == -1).all()   # padded
    assert store.search(x[:1], 5, np.zeros(0, np.int64))[1].shape == (1, 0)
    assert sorted(store.ids().tolist()) == sorted([7] + list(range(1001, 1060)))
    store.save(tmp_path / "v.store")
    again = open_vectors(tmp_path, "v.store", name)
    assert again.size == 60 and again.search(x[5:6], 1)[1][0, 0] == 1005


def test_exact_search_agrees_with_brute_force(backend):
    name, location = backend
    x, q = unit(300, 32, seed=1), unit(20, 32, seed=2)
    store = create_vectors(x, np.arange(300, dtype=np.int64) * 2, "flat", backend=name, location=location)
    scores, keys = store.search(q, 10)
    truth = np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :10] * 2
    assert (keys == truth).all()
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, truth // 2, axis=1), atol=1e-5)


def test_filtered_search_is_exact_for_few_and_many_allowed_keys(backend, monkeypatch):
    """Few allowed keys go into the request; many are searched deeper and kept, or sent in parts
    whose answers merge when the deeper search finds too few (milvus: a small part size here)."""
    name, location = backend
    if name == MILVUS:
        from moonsearch.store import milvus

        monkeypatch.setattr(milvus, "KEYS_PER_EXPRESSION", 8)
    x, q = unit(200, 32, seed=3), unit(3, 32, seed=4)
    store = create_vectors(x, np.arange(200, dtype=np.int64), "flat", backend=name, location=location)
    scores = q @ x.T
    for allowed in (np.array([5, 50, 150]), np.arange(0, 200, 2),            # few; many, spread over the ranking
                    np.argsort(scores[0])[:60]):                              # many, all at the bottom for query 0
        found_scores, found = store.search(q, 10, allowed)
        among = scores[:, allowed]
        truth = allowed[np.argsort(-among, axis=1, kind="stable")[:, :10]]
        assert (found[:, :len(allowed)] == truth).all()
        np.testing.assert_allclose(found_scores[:, :truth.shape[1]], np.take_along_axis(scores, truth, axis=1),
                                   atol=1e-5)


# -- RecordStore: filters with hostile values, upsert, delete ----------------------------------

HOSTILE = ["O'Neil", '"a" or 1==1', "back\\slash", "x) or (key >= 0", "tab\there", "a\x7fb", "cr\rx", 'say "hi"\\']


def _row(key, id_, title, attributes, has_image=True):
    return ProductRow(row=key, id=id_, title=title, description=None, images=[], has_image=has_image,
                      attributes=attributes, source=f"products.jsonl:{key + 1}", text=title, content_hash="h")


def _rows():
    rows = [_row(i, f"H{i}", f"hostile {i}", {"brand": value, "price": 100 * (i + 1)}) for i, value in enumerate(HOSTILE)]
    rows += [
        _row(10, "A", "red cotton dress", {"brand": "Zed", "gender": "Women", "price": "450", "colours": ["Red", "Blue"],
                                           "attributes": {"Pattern": "Solid"}}),
        _row(11, "B", "blue denim shirt", {"brand": "zed", "gender": "Men", "price": 1500, "colours": ["Blue"]}),
        _row(12, "C", "green shirt", {"gender": "Men", "price": "n/a"}, has_image=False),
    ]
    return rows


@pytest.fixture
def records(backend, tmp_path):
    name, location = backend
    folder = tmp_path / "records"
    folder.mkdir()
    writer = create_records(folder, name, location)
    writer.add(_rows()[:5])
    writer.add(_rows()[5:])
    writer.close()
    store = open_records(folder, name, writable=True)
    yield store
    store.close()


def allowed(store, *texts):
    return store.allowed_rows(parse_filters(list(texts))).tolist()


def test_filters_match_hostile_values_exactly(records):
    assert isinstance(records, RecordStore)
    for i, value in enumerate(HOSTILE):
        if "," in value:
            continue
        assert allowed(records, f"brand={value}") == [i], value
        assert i not in allowed(records, f"brand!={value}"), value
    assert allowed(records, "brand=o'neil") == [0]                  # case-insensitive, as DuckDB's
    assert allowed(records, "brand=a") == [] and allowed(records, "brand=1==1") == []
    assert allowed(records, 'brand="a" or 1==1') == [1]             # the whole text is one value
    assert allowed(records, "brand=x) or (key >= 0") == [3]
    assert allowed(records, "brand=nobody") == []


def test_filter_semantics(records):
    assert allowed(records, "brand=ZED") == [10, 11]
    assert allowed(records, "brand=O'Neil,zed") == [0, 10, 11]       # any of the values
    assert allowed(records, "gender!=Men") == [0, 1, 2, 3, 4, 5, 6, 7, 10]   # products without the key match
    assert allowed(records, "colours=blue") == [10, 11]              # a list matches by any element
    assert allowed(records, "colours!=red", "gender=Men") == [11, 12]
    assert allowed(records, "attributes.Pattern=solid") == [10]      # nested keys, dotted
    assert allowed(records, "price<450") == [0, 1, 2, 3]             # text "450" is a number; "n/a" is not
    assert allowed(records, "price<=450") == [0, 1, 2, 3, 10]
    assert allowed(records, "price>=700", "gender=Men") == [11]
    assert allowed(records, "price>-1e999") == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]   # infinities compare
    assert allowed(records) == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12]
    with pytest.raises(MoonsearchError, match="no attribute 'Gender'.*did you mean gender"):
        allowed(records, "Gender=Men")


def test_records_upsert_delete_and_keywords(records):
    assert records.count() == 11 and records.row_of("B") == 11 and records.keys_of(["A", "zz"]) == {"A": 10}
    assert records.rows_with_image().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 10, 11]
    records.upsert([_row(11, "B", "blue denim jacket", {"brand": "Other", "gender": "Men", "price": 99})])
    records.delete([0, 12])
    assert allowed(records, "brand=zed") == [10] and allowed(records, "brand=other") == [11]
    assert allowed(records, "price<100") == [11] and 0 not in allowed(records)
    assert records.products([11])[0]["title"] == "blue denim jacket"
    assert [key for key, _ in records.keyword_rows("denim", 5)] == [11]
    assert records.count() == 9 and records.content_hashes()["A"] == (10, "h")


# -- indexes built by the real indexer, searched and written through --------------------------

SUBSET = 16   # products of the shipped sample catalog in the end-to-end index (real image files)


@pytest.fixture(scope="module")
def subset_catalog(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subset")
    records = [json.loads(line) for line in (SAMPLE_CATALOG / "products.jsonl").read_text().splitlines()[:SUBSET]]
    for record in records:
        if record.get("image"):
            (folder / record["image"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(SAMPLE_CATALOG / record["image"], folder / record["image"])
    write_jsonl(folder / "products.jsonl", records)
    return folder


def _build(catalog, folder, encoder, name):
    _needs_extra(name)
    uri = str(folder.parent / f"{folder.name}.db") if name == MILVUS else None
    build_index(catalog, folder, encoder=encoder, device="cpu", store=name, uri=uri)
    return ProductIndex.open(folder, device="cpu", encoder=encoder)


@pytest.fixture(scope="module")
def built(subset_catalog, tmp_path_factory, encoder):
    """The subset indexed once by each backend."""
    root = tmp_path_factory.mktemp("built")
    indexes = {}
    for name in BACKENDS:
        try:
            indexes[name] = _build(subset_catalog, root / name.replace("+", "_"), encoder, name)
        except pytest.skip.Exception:
            pass
    yield indexes
    for index in indexes.values():
        index.close()


def _same_ranking(a, b):
    """Same products in the same order, but for neighbours whose scores tie within float rounding."""
    assert [h.id for h in a] != [] and sorted(h.id for h in a) == sorted(h.id for h in b)
    for x, y in zip(a, b):
        if x.id != y.id:
            assert abs(x.score - y.score) < 1e-5, (x.id, y.id)


QUERIES = [dict(text="red dress"), dict(text="men formal shirt", filters=["gender=Men"]),
           dict(text="blue", filters=["price<1500"]), dict(text="shirt", hybrid=False),
           dict(text="cotton", filters=["baseColour!=Blue,Black"], view="text"),
           dict(image=SAMPLE_CATALOG / "images" / "S0003.jpg"),
           dict(image=SAMPLE_CATALOG / "images" / "S0012.jpg", view="image", filters=["gender=Women"]),
           dict(text="blue", image=SAMPLE_CATALOG / "images" / "S0020.jpg")]


def _agree(built):
    faiss_index, milvus_index = built[FAISS_DUCKDB], built[MILVUS]
    for query in QUERIES:
        _same_ranking(faiss_index.search(k=10, **query), milvus_index.search(k=10, **query))
    key = faiss_index.store.row_of("S0007")
    assert [h.id for h in faiss_index.similar(key, 5)] == [h.id for h in milvus_index.similar(key, 5)]
    assert milvus_index.verify()["vectors"] == faiss_index.verify()["vectors"]


def test_both_backends_agree_before_and_after_the_same_live_writes(built):
    """The subset indexed by each backend gives the same top-10s; the same writes through each
    commit atomically (a reader of the old state keeps it whole), and the two agree after them."""
    if MILVUS in built:
        assert Manifest.read(built[MILVUS].folder).backend == MILVUS and Manifest.read(built[MILVUS].folder).store
        _agree(built)
    for index in built.values():
        _live_writes(index)
    if MILVUS not in built:
        pytest.skip(SCALE_MISSING)
    _agree(built)
    _killed_write_leaves_no_trace(built[MILVUS])   # FAISS writes new files only: test_live_index kills them
    _old_collections_are_dropped(built[MILVUS])


def _live_writes(index):
    before = ProductIndex.open(index.folder, device="cpu", encoder=index.encoder)   # a reader of state 0
    old_top = [h.id for h in before.search("red dress", k=5, hybrid=False)]
    summary = index.upsert([{"id": "NEW1", "title": "O'Neil Women Red Velvet Dress", "brand": "O'Neil",
                             "gender": "Women", "price": 4321}])
    assert summary.added == 1
    assert [h.id for h in index.search("red velvet dress", k=3, filters=["brand=O'Neil"])] == ["NEW1"]
    index.delete(["S0001"], filters=['brand="a" or 1==1'])          # a hostile filter deletes nothing more
    assert index.store.count() == SUBSET and index.store.row_of("S0001") is None
    assert "S0001" not in [h.id for h in index.search("shirt", k=SUBSET)]
    index.upsert([{"id": "NEW1", "title": "O'Neil Women Blue Denim Jacket", "brand": "O'Neil", "price": 10}])
    assert [h.id for h in index.search("jacket", k=1, filters=["price<11"])] == ["NEW1"]
    # the reader opened before the writes still serves state 0, whole
    assert [h.id for h in before.search("red dress", k=5, hybrid=False)] == old_top
    assert before.store.count() == SUBSET and before._view("mm").size == SUBSET
    assert before.search("dress", k=3, filters=["brand=O'Neil"]) == []
    info = index.verify()
    assert info["records"] == SUBSET and set(info["vectors"].values()) == {SUBSET}
    before.close()


def _killed_write_leaves_no_trace(index):
    """A write that changed Milvus and died before its commit is invisible; the next write undoes it."""
    from moonsearch.store.files import view_file

    store = open_vectors(index.data, view_file("mm"), MILVUS)
    store.remove(np.array([2, 3], np.int64))
    store.add(np.array([999], np.int64), unit(1, store.dim))
    rows = [h.row for h in index.search("shirt", k=SUBSET, hybrid=False)]   # readers of the committed state
    assert index._view("mm").size == SUBSET and {2, 3} <= set(rows) and 999 not in rows
    index.upsert([{"id": "NEW2", "title": "Plain Grey Scarf", "price": 5}])   # the next write cleans up
    mm = index._view("mm")
    assert mm.size == SUBSET + 1 and 999 not in mm.ids().tolist() and {2, 3} <= set(mm.ids().tolist())


def _old_collections_are_dropped(index):
    """Compaction writes new collections; the old ones go once no state on disk names them."""
    from moonsearch.store.milvus import client, drop_unreferenced

    with index.writer() as writer:
        writer.compact("flat")
    index.refresh()
    manifest = Manifest.read(index.folder)
    milvus = client(manifest.store["uri"])
    prefix = manifest.store["collection"]
    assert len([c for c in milvus.list_collections() if c.startswith(prefix)]) == 3 + 3 + 1
    assert drop_unreferenced(index.folder, manifest.store) == []   # the states before are still on disk
    for old in [p for p in index.folder.glob("snap-*") if p.name != manifest.snapshot]:
        shutil.rmtree(old)
    for name in ["metadata.duckdb", "milvus-records.json", *(p.name for p in index.folder.glob("vectors-*"))]:
        (index.folder / name).unlink(missing_ok=True)
    assert len(drop_unreferenced(index.folder, manifest.store)) == 3
    assert len([c for c in milvus.list_collections() if c.startswith(prefix)]) == 4
    assert [h.id for h in index.search("scarf", k=1, filters=["price<6"])] == ["NEW2"]


# -- one-line errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("uri, message", [
    (None, "--store milvus needs --uri"), ("./x.txt", "bad --uri './x.txt'"),
    ("/no/such/folder/x.db", "does not exist"), ("ftp://host/x", "bad --uri")])
def test_bad_uri_is_one_line(tmp_path, uri, message):
    with pytest.raises(MoonsearchError, match=message.replace(".", r"\.").replace("(", r"\(")) as caught:
        build_index(SAMPLE_CATALOG, tmp_path / "x", encoder="baseline", store=MILVUS, uri=uri)
    assert "\n" not in str(caught.value)
    with pytest.raises(MoonsearchError, match="unknown store 'milvus2'"):
        build_index(SAMPLE_CATALOG, tmp_path / "x", store="milvus2")
    with pytest.raises(MoonsearchError, match="--uri is for --store milvus"):
        build_index(SAMPLE_CATALOG, tmp_path / "x", uri="./x.db")
    assert not (tmp_path / "x").exists()


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    from moonsearch.store import milvus

    monkeypatch.setattr(milvus, "_clients", {})
    monkeypatch.setitem(sys.modules, "pymilvus", None)    # what an install without the extra has
    with pytest.raises(MoonsearchError, match=r"pip install 'moonsearch\[scale\]'"):
        backend_location(MILVUS, str(tmp_path / "x.db"), tmp_path / "x")


def test_a_dropped_collection_is_one_line(tmp_path):
    from moonsearch.errors import IndexFormatError
    from moonsearch.store.milvus import client

    _needs_extra(MILVUS)
    location = backend_location(MILVUS, str(tmp_path / "m.db"), tmp_path / "index")
    store = create_vectors(unit(5), np.arange(5, dtype=np.int64), "flat", backend=MILVUS, location=location)
    store.save(tmp_path / "v.store")
    client(location["uri"]).drop_collection(store.versions.collection)
    with pytest.raises(MoonsearchError, match="refused search: .*does not exist") as caught:
        store.search(unit(1), 3)
    assert "\n" not in str(caught.value)
    with pytest.raises(IndexFormatError, match="has no collection .*rebuild it"):
        open_vectors(tmp_path, "v.store", MILVUS)


def test_a_milvus_file_another_process_holds_is_one_line(tmp_path):
    import subprocess

    _needs_extra(MILVUS)
    path = tmp_path / "held.db"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pymilvus import MilvusClient; "
                               f"MilvusClient(uri={str(path)!r}); print('open', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(MoonsearchError, match="cannot open Milvus at .*held.db") as caught:
            backend_location(MILVUS, str(path), tmp_path / "x")
        assert "\n" not in str(caught.value)
    finally:
        holder.kill()
        holder.wait()
