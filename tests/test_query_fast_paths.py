"""The warm query path's fast paths (issue 17) give exactly what the plain paths give: the
float16 prescan of flat FAISS indexes, the boost membership by binary search, and the query
vector cache, which never outlives a write."""

import shutil

import faiss
import numpy as np
import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.search import product_index
from moonsearch.search.product_index import ProductIndex, members
from moonsearch.search.query_cache import QueryVectorCache, default_size
from moonsearch.store import faiss_vectors
from moonsearch.store.faiss_vectors import FaissVectorStore, HalfPrescan, search

QUERIES = ["red dress", "black leather wallet", "men blue jeans", "white sports shoes", "cotton kurta for women",
           "sunglasses under 1000"]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def tie_heavy_vectors(n=6000, d=32, seed=0):
    """Random unit vectors, 15 of them copied to 20 places each: exact ties, inside and at the
    k-th place, which FAISS orders by its scan."""
    rng = np.random.default_rng(seed)
    x = unit(rng.standard_normal((n, d)))
    for source in range(15):
        x[rng.choice(n, 20, replace=False)] = x[source]
    near = unit(x[:15] + 0.02 * rng.standard_normal((15, d)))
    far = unit(rng.standard_normal((15, d)))
    return x, np.concatenate([x[:15], near, far])


def same(a, b) -> bool:
    return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("keyed", [True, False])
def test_the_prescan_returns_the_flat_search_exactly_or_declines(keyed):
    x, queries = tie_heavy_vectors()
    rng = np.random.default_rng(1)
    if keyed:   # keys out of position order, as after live writes
        keys = rng.permutation(len(x)).astype(np.int64) * 3 + 5
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(x.shape[1]))
        index.add_with_ids(x, keys)
    else:
        keys = np.arange(len(x), dtype=np.int64)
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
    prescan = HalfPrescan(index)
    filters = [None, np.sort(rng.choice(keys, 2500, replace=False)), np.sort(rng.choice(keys, 40, replace=False)),
               np.sort(np.append(keys[:3000], keys.max() + 1))]   # a key the index lacks: declined
    answered = 0
    for q in queries:
        q = q[None].copy()
        for k in (1, 10, 100):
            for allowed in filters:
                reference = search(index, q, k, allowed)
                found = prescan.search(q, k, allowed)
                if found is not None:
                    answered += 1
                    assert same(found, reference), (k, None if allowed is None else len(allowed))
                assert same(FaissVectorStore(index).search(q, k, allowed), reference)
    assert answered > len(queries) * 4   # most searches are answered by the prescan, not declined


def test_a_few_queries_at_once_give_the_flat_search_exactly():
    """An image query searches its photo and the photo's mirror image in one call: each query
    goes through the float16 copy, and a batch with one declined query is the flat scan's."""
    x, queries = tie_heavy_vectors()
    store = FaissVectorStore.create(x, np.arange(len(x), dtype=np.int64), "flat")
    store.search(queries[20:21].copy(), 10)
    rng = np.random.default_rng(3)
    for batch in (queries[15:17], queries[20:24], queries[0:2], queries[14:16], queries[15:30]):
        batch = batch.copy()
        for k, allowed in ((10, None), (150, None), (10, np.sort(rng.choice(len(x), 2500, replace=False)))):
            assert same(store.search(batch, k, allowed), search(store.index, batch, k, allowed)), (len(batch), k)
    assert store._prescan is not None


def test_the_prescan_declines_ties_at_the_kth_place():
    x, _ = tie_heavy_vectors()
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    assert HalfPrescan(index).search(x[:1].copy(), 10) is None   # 21 copies of the query tie for first place


def test_the_store_builds_the_copy_on_its_second_search_and_drops_it_on_writes():
    x, queries = tie_heavy_vectors()
    keys = np.arange(len(x), dtype=np.int64)
    store = FaissVectorStore.create(x, keys, "flat")
    q = queries[20:21].copy()
    store.search(q, 10)
    assert store._prescan is None   # a one-shot query does not pay for the copy
    store.search(q, 10)
    assert store._prescan is not None
    # replace 50 vectors in place (same count), add some, remove some: each search still exact
    rng = np.random.default_rng(2)
    replaced = rng.choice(keys, 50, replace=False)
    store.remove(replaced)
    store.add(replaced, unit(rng.standard_normal((50, x.shape[1]))))
    assert store._prescan is None
    for step in range(3):
        for q in queries:
            q = q[None].copy()
            assert same(store.search(q, 10), search(store.index, q, 10))
        store.add(np.arange(10_000 + 100 * step, 10_050 + 100 * step), unit(rng.standard_normal((50, x.shape[1]))))
        store.remove(rng.choice(store.ids(), 30, replace=False))


def test_members_equals_isin():
    rng = np.random.default_rng(3)
    candidates = np.unique(rng.integers(0, 1000, 150))
    for keys in (np.sort(rng.choice(1000, 400, replace=False)), rng.choice(1000, 400, replace=False),
                 np.array([], np.int64), np.array([5]), np.arange(1000)):
        assert members(candidates, keys) == set(candidates[np.isin(candidates, keys)].tolist())
    assert members(np.array([], np.int64), np.arange(5)) == set()


def test_query_vector_cache_is_an_lru_of_copies():
    calls = []

    def encode(text):
        calls.append(text)
        return np.full((1, 4), len(calls), np.float32)

    cache = QueryVectorCache(size=2)
    first = cache.vector("a", encode)
    first[:] = -1   # the caller's copy; the cache keeps its own
    assert cache.vector("a", encode)[0, 0] == 1 and calls == ["a"]
    cache.vector("b", encode)
    cache.vector("a", encode)   # "a" is now the most recent
    cache.vector("c", encode)   # drops "b"
    assert len(cache) == 2 and cache.vector("a", encode)[0, 0] == 1
    cache.vector("b", encode)
    assert calls == ["a", "b", "c", "b"] and cache.hits == 3
    off = QueryVectorCache(size=0)
    off.vector("a", encode), off.vector("a", encode)
    assert calls[-2:] == ["a", "a"] and len(off) == 0


def test_query_cache_size_from_the_environment(monkeypatch):
    monkeypatch.setenv("MOONSEARCH_QUERY_CACHE", "0")
    assert default_size() == 0 and QueryVectorCache().size == 0
    monkeypatch.setenv("MOONSEARCH_QUERY_CACHE", "lots")
    with pytest.raises(MoonsearchError, match="MOONSEARCH_QUERY_CACHE"):
        default_size()


def hits(results):
    return [(h.id, h.score, h.similarity) for h in results]


def every_kind(index):
    """Top-10 of each query as vectors, hybrid and filtered hybrid."""
    return [hits(index.search(text=q, k=10, hybrid=hybrid, filters=filters)) for q in QUERIES
            for hybrid, filters in ((False, ()), (True, ()), (True, ["price<2000"]))]


@pytest.fixture
def opened(sample_index, tmp_path, encoder, monkeypatch):
    """A private copy of the sample index with the prescan on at its size (it is below MIN_VECTORS)."""
    summary, _ = sample_index
    folder = tmp_path / "sample"
    shutil.copytree(summary.out, folder)
    monkeypatch.setattr(HalfPrescan, "MIN_VECTORS", 1)
    monkeypatch.setattr(HalfPrescan, "EXTRA", 4)
    index = ProductIndex.open(folder, device="cpu", encoder=encoder)
    yield index, folder
    index.close()


def test_fast_paths_give_the_plain_paths_results(opened, encoder, monkeypatch):
    index, folder = opened
    fast = every_kind(index)
    again = every_kind(index)   # vectors from the cache, the prescan built
    assert index.query_cache.hits > 0 and any(v._prescan is not None for v in index._views.values())
    monkeypatch.setattr(FaissVectorStore, "prescan_after", 10 ** 9)
    monkeypatch.setattr(product_index, "members", lambda c, keys: set(c[np.isin(c, keys)].tolist()))
    plain = ProductIndex.open(folder, device="cpu", encoder=encoder)
    plain.query_cache.size = 0
    try:
        assert every_kind(plain) == fast == again
    finally:
        plain.close()


def test_writes_through_the_index_empty_the_query_cache(opened, encoder):
    index, folder = opened
    every_kind(index)
    every_kind(index)
    assert len(index.query_cache) > 0
    new = {"id": "NEWDRESS", "title": "Zorblax Women Red Velvet Dress", "gender": "Women", "articleType": "Dresses",
           "baseColour": "Red", "price": 999}
    index.upsert([new])
    assert len(index.query_cache) == 0
    after_upsert = every_kind(index)
    assert "NEWDRESS" in {h[0] for result in after_upsert for h in result}
    fresh = ProductIndex.open(folder, device="cpu", encoder=encoder)
    fresh.query_cache.size = 0
    try:
        assert every_kind(fresh) == after_upsert == every_kind(index)
        index.delete(["NEWDRESS"])
        assert len(index.query_cache) == 0
        after_delete = every_kind(index)
        assert "NEWDRESS" not in {h[0] for result in after_delete for h in result}
        fresh.refresh()
        assert every_kind(fresh) == after_delete
    finally:
        fresh.close()
