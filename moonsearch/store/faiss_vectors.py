"""FAISS indexes over one view's vectors: build, save, load, and (filtered) search.

Vectors are L2-normalised, so inner product is cosine similarity. Each vector is stored under
its product's key (the metadata store's `row`), so a search returns keys and a product can be
removed or replaced without renumbering the others (FaissVectorStore, the VectorStore of the
faiss+duckdb backend). Indexes built before keys hold row i at position i, which is the same.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from moonsearch.errors import MoonsearchError
from moonsearch import devices
from moonsearch.store.interface import VectorStore

INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")
EXACT_BELOW = 100_000          # auto: exact search below this many products
EXACT_FILTER_LIMIT = 50_000    # a filter this selective is searched exactly over its rows
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
IVF_NPROBE = 16


def resolve_index_type(requested: str, n_vectors: int) -> str:
    if requested not in INDEX_TYPES:
        raise MoonsearchError(f"unknown index type '{requested}' (choose from {', '.join(INDEX_TYPES)})")
    if requested == "auto":
        return "flat" if n_vectors < EXACT_BELOW else "ivf"
    return requested


def ivf_lists(n_vectors: int) -> int:
    """~4 sqrt(n) lists, with at least 39 training points per list as faiss recommends."""
    return max(1, min(int(4 * math.sqrt(n_vectors)), n_vectors // 39))


def build(vectors: np.ndarray, index_type: str, gpu: bool = False) -> faiss.Index:
    """A CPU index holding `vectors` (built on the GPU when asked and supported)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    elif index_type == "ivf":
        nlist = ivf_lists(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(IVF_NPROBE, nlist)
    else:
        raise MoonsearchError(f"unknown index type '{index_type}'")
    if gpu and index_type in devices.GPU_INDEX_TYPES:
        gpu_index = devices.to_gpu(index)
        if not gpu_index.is_trained:
            gpu_index.train(vectors)
        gpu_index.add(vectors)
        index = devices.to_cpu(gpu_index)
    else:
        if not index.is_trained:
            index.train(vectors)
        index.add(vectors)
    if index_type == "ivf":
        index.make_direct_map()  # lets filtered searches reconstruct rows
    return index


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load(path: Path) -> faiss.Index:
    return faiss.read_index(str(path))


def _exact_over(index: faiss.Index, queries: np.ndarray, rows: np.ndarray, k: int):
    """Exact top-k restricted to `rows`, from the vectors the index stores."""
    if len(rows) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    vectors = index.reconstruct_batch(rows.astype(np.int64))
    scores = queries @ vectors.T
    k = min(k, len(rows))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), rows[top]


def _search_params(index: faiss.Index, selector):
    index = _inner(index)   # an IndexIDMap2 hands the selector to its sub-index, translated
    if isinstance(index, faiss.IndexIVF):
        return faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(index.hnsw.efSearch, HNSW_EF_SEARCH))
    return faiss.SearchParameters(sel=selector)


def search(index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None):
    """Top-k (scores, rows) per query; with `allowed`, only those rows, and still k of them
    whenever k rows are allowed. Flat indexes search the allowed rows through a FAISS ID
    selector (exact); ANN indexes search a selective filter exactly over its rows, and fall back
    to that when a broad filter starves their approximate search."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if allowed is None:
        if index.ntotal == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        scores, rows = index.search(queries, min(k, index.ntotal))
    elif len(allowed) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    elif len(allowed) <= EXACT_FILTER_LIMIT and not isinstance(_inner(index), faiss.IndexFlat):
        return _exact_over(index, queries, np.asarray(allowed, np.int64), k)
    else:
        allowed = np.asarray(allowed, np.int64)
        selector = faiss.IDSelectorBatch(allowed)
        scores, rows = index.search(queries, min(k, len(allowed)), params=_search_params(index, selector))
        if (rows < 0).any():
            return _exact_over(index, queries, allowed, k)
    return scores, rows


def _inner(index: faiss.Index) -> faiss.Index:
    """The index that holds the vectors: an IndexIDMap2's sub-index, else the index itself."""
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.downcast_index(index.index)
    return index


def build_keyed(vectors: np.ndarray, ids: np.ndarray, index_type: str, gpu: bool = False) -> faiss.Index:
    """Like `build`, with each vector stored under its product key instead of its position:
    Flat and HNSW inside an IndexIDMap2, IVF with its own ids (it stores them in its lists) and a
    hash-table direct map, so keys can be removed and reconstructed."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if index_type == "ivf":
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(vectors.shape[1]), vectors.shape[1], ivf_lists(len(vectors)),
                                   faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(IVF_NPROBE, index.nlist)
        if gpu and index_type in devices.GPU_INDEX_TYPES:
            trained = devices.to_gpu(index)
            trained.train(vectors)
            index = devices.to_cpu(trained)
        else:
            index.train(vectors)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)
        index.add_with_ids(vectors, ids)
        return index
    keyed = faiss.IndexIDMap2(build(np.zeros((0, vectors.shape[1]), np.float32), index_type))
    keyed.add_with_ids(vectors, ids)
    return keyed


class FaissVectorStore(VectorStore):
    """The FAISS implementation of VectorStore. Indexes built before stable keys hold vectors by
    position (position = key); the first write turns them into keyed ones."""

    def __init__(self, index: faiss.Index):
        self.index = index

    @classmethod
    def open(cls, path: Path) -> "FaissVectorStore":
        return cls(load(path))

    @classmethod
    def from_bytes(cls, data: bytes) -> "FaissVectorStore":
        """A store from a file's bytes already in memory (read once to check them, then parsed)."""
        return cls(faiss.deserialize_index(np.frombuffer(data, np.uint8)))

    @classmethod
    def create(cls, vectors: np.ndarray, ids: np.ndarray, index_type: str, gpu: bool = False) -> "FaissVectorStore":
        return cls(build_keyed(vectors, ids, index_type, gpu=gpu))

    def save(self, path: Path) -> None:
        save(self.index, path)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def kind(self) -> str:
        inner = _inner(self.index)
        if isinstance(inner, faiss.IndexIVF):
            return "ivf"
        return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"

    @property
    def _positional(self) -> bool:
        return not isinstance(self.index, (faiss.IndexIDMap, faiss.IndexIDMap2, faiss.IndexIVF))

    def ids(self) -> np.ndarray:
        if isinstance(self.index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            return faiss.vector_to_array(self.index.id_map).astype(np.int64)
        if isinstance(self.index, faiss.IndexIVF):
            lists = self.index.invlists
            found = [faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                     for i in range(self.index.nlist) if lists.list_size(i)]
            return np.sort(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, np.int64)
        return np.arange(self.index.ntotal, dtype=np.int64)

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.index.d), np.float32)
        return self.index.reconstruct_batch(ids)

    def _rebuilt(self, keep: np.ndarray, extra_ids=None, extra_vectors=None) -> faiss.Index:
        """A keyed index of the same kind holding `keep`'s vectors (and the extra ones): how
        position-keyed and HNSW indexes (which cannot remove) take a write, without re-encoding."""
        vectors = self.vectors(keep)
        if extra_ids is not None:
            keep = np.concatenate([keep, extra_ids])
            vectors = np.concatenate([vectors, np.asarray(extra_vectors, np.float32)])
        if self.kind == "ivf" and len(keep) < ivf_lists(len(keep)) * 39 and len(keep):
            kind = "flat"   # too few vectors left to train the lists on
        else:
            kind = self.kind
        if len(keep) == 0:
            return faiss.IndexIDMap2(build(np.zeros((0, self.index.d), np.float32), "flat"))
        return build_keyed(vectors, keep, kind)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, np.float32)
        if self._positional:
            self.index = self._rebuilt(self.ids(), ids, vectors)
            return
        if isinstance(self.index, faiss.IndexIVF) and self.index.direct_map.type != faiss.DirectMap.Hashtable:
            self.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        self.index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, np.int64)
        present = np.intersect1d(self.ids(), ids)
        if len(present) == 0:
            return 0
        if self._positional or self.kind == "hnsw":
            self.index = self._rebuilt(np.setdiff1d(self.ids(), present))
            return len(present)
        if isinstance(self.index, faiss.IndexIVF) and self.index.direct_map.type != faiss.DirectMap.Hashtable:
            self.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        present = np.ascontiguousarray(present, np.int64)
        # a hash-table direct map (IVF) removes only through an IDSelectorArray
        return int(self.index.remove_ids(faiss.IDSelectorArray(len(present), faiss.swig_ptr(present))))

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        return search(self.index, queries, k, allowed_ids)
