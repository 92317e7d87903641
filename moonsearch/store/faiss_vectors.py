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


class HalfPrescan:
    """Exact top-k of a flat inner-product index from half the memory traffic.

    Why: a warm query is bound by memory bandwidth, not arithmetic. The flat scan reads every
    float32 vector (41 MB for 40k x 256, 1.5 ms on this machine's one core); a float16 copy
    (faiss SQfp16) is scanned in ~0.65 ms. Its scores differ from the exact ones by at most
    `slack(q)` (Cauchy-Schwarz on the rounding of each vector, plus float32 summation error), so
    every true top-k vector scores at least (k-th float16 score - 2 slack) in the copy. Those
    candidates are rescored with FAISS's own float32 kernel (bit-identical scores) and ordered as
    FAISS orders them (score, then later position first). Whenever that cannot be guaranteed,
    `search` returns None and the caller runs the ordinary flat search: a candidate window that
    is not wide enough, a tie at the k-th place (which of the tied vectors FAISS keeps depends on
    its scan order), a filter naming keys the index does not hold, or a small index.
    """

    EXTRA = 16            # candidates beyond k asked of the float16 scan
    MIN_VECTORS = 4096    # below this the full scan is cheap and the copy not worth keeping

    def __init__(self, index: faiss.Index):
        flat = _inner(index)
        self.n, self.d = int(flat.ntotal), int(flat.d)
        self.index = index
        self.flat_vectors = faiss.rev_swig_ptr(flat.get_xb(), self.n * self.d).reshape(self.n, self.d)
        self.half = faiss.IndexScalarQuantizer(self.d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
        self.half.add(self.flat_vectors)
        decoded = self.half.sa_decode(faiss.vector_to_array(self.half.codes).view(np.uint8).reshape(self.n, -1))
        error = np.linalg.norm(decoded.astype(np.float64) - self.flat_vectors, axis=1).max()
        norm = np.linalg.norm(self.flat_vectors.astype(np.float64), axis=1).max()
        unit = 2.0 ** -24
        gamma = (self.d + 2) * unit / (1 - (self.d + 2) * unit)   # float32 dot product error bound
        # per unit of |q|: the rounding of the copy, and both dot products' summation error
        self.slack_per_norm = float(error + 2 * gamma * (norm + error)) * 1.01 + 1e-7
        if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
            self.keys = faiss.vector_to_array(index.id_map).astype(np.int64)   # position -> key
            self.position = np.full(int(self.keys.max()) + 1 if self.n else 0, -1, np.int64)   # key -> position
            self.position[self.keys] = np.arange(self.n)
        else:
            self.keys = None   # positional: key = position

    @classmethod
    def suits(cls, index: faiss.Index) -> bool:
        inner = _inner(index)
        return (type(inner) in (faiss.IndexFlatIP, faiss.IndexFlat) and inner.metric_type == faiss.METRIC_INNER_PRODUCT
                and inner.ntotal >= cls.MIN_VECTORS)

    def _positions(self, allowed: np.ndarray) -> np.ndarray | None:
        """Positions of the allowed keys; None if any key is not in the index (the flat search
        then decides what such a filter returns)."""
        inside = (allowed >= 0) & (allowed < (self.n if self.keys is None else len(self.position)))
        if not inside.all():
            return None
        if self.keys is None:
            return allowed
        positions = self.position[allowed]
        return None if (positions < 0).any() else positions

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray | None = None):
        """(scores, keys) as the flat search gives them for one query, or None (see the class)."""
        params, count = None, self.n
        if allowed is not None:
            positions = self._positions(np.asarray(allowed, np.int64))
            if positions is None:
                return None
            mask = np.zeros(self.n, bool)
            mask[positions] = True
            count = int(np.count_nonzero(mask))   # keys given twice count once, as in FAISS's selector
            bitmap = np.packbits(mask, bitorder="little")
            params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap)))
        k = min(k, count)
        wide = k + max(self.EXTRA, k // 2)
        if k < 1 or wide >= count:
            return None
        approx, found = self.half.search(query, wide, params=params)
        approx, found = approx[0], found[0]
        if (found < 0).any():
            return None
        threshold = approx[k - 1] - 2 * self.slack_per_norm * float(np.linalg.norm(query[0].astype(np.float64)))
        if not approx[-1] < threshold:   # the window may not hold every true top-k vector
            return None
        candidates = np.ascontiguousarray(found[approx >= threshold], np.int64)
        exact = np.empty(len(candidates), np.float32)
        faiss.fvec_inner_products_by_idx(faiss.swig_ptr(exact), faiss.swig_ptr(query), faiss.swig_ptr(self.flat_vectors),
                                         faiss.swig_ptr(candidates), self.d, 1, len(candidates))
        order = np.lexsort((-candidates, -exact))   # best score first; a tie: the later position first
        if len(order) > k and exact[order[k - 1]] == exact[order[k]]:
            return None   # a tie at the k-th place: FAISS's choice among them follows its scan
        top = candidates[order[:k]]
        keys = top if self.keys is None else self.keys[top]
        return exact[order[:k]][None, :], keys[None, :].astype(np.int64)


class FaissVectorStore(VectorStore):
    """The FAISS implementation of VectorStore. Indexes built before stable keys hold vectors by
    position (position = key); the first write turns them into keyed ones.

    A flat index answers single queries through a HalfPrescan from its second search on (the
    first search of a one-shot CLI query would not repay building the copy): same results,
    about half the time. Writes drop the copy; the next searches build it again."""

    prescan_after = 1    # searches answered by the plain scan before the float16 copy is built
    # up to this many queries in one search go through the copy one by one (an image query's photo
    # and its mirror image: two); a bigger batch is the flat scan's BLAS kernel's to answer
    prescan_queries = 4

    def __init__(self, index: faiss.Index):
        self.index = index
        self._prescan: HalfPrescan | None = None
        self._searches = 0

    def _prescan_for(self, queries: np.ndarray) -> HalfPrescan | None:
        if not 1 <= len(queries) <= self.prescan_queries:
            return None
        prescan = self._prescan
        if prescan is not None and prescan.index is self.index and prescan.n == self.index.ntotal:
            return prescan
        self._searches += 1
        if self._searches <= self.prescan_after or not HalfPrescan.suits(self.index):
            return None
        self._prescan = prescan = HalfPrescan(self.index)
        return prescan

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
        self._prescan = None   # it views the flat index's storage, which the write may move
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
        self._prescan = None   # as in add
        if self._positional or self.kind == "hnsw":
            self.index = self._rebuilt(np.setdiff1d(self.ids(), present))
            return len(present)
        if isinstance(self.index, faiss.IndexIVF) and self.index.direct_map.type != faiss.DirectMap.Hashtable:
            self.index.set_direct_map_type(faiss.DirectMap.Hashtable)
        present = np.ascontiguousarray(present, np.int64)
        # a hash-table direct map (IVF) removes only through an IDSelectorArray
        return int(self.index.remove_ids(faiss.IDSelectorArray(len(present), faiss.swig_ptr(present))))

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        prescan = self._prescan_for(queries)
        if prescan is not None:
            found = []
            for i in range(len(queries)):
                one = prescan.search(queries[i:i + 1], k, allowed_ids)
                if one is None:   # declined: the flat scan answers the whole batch
                    break
                found.append(one)
            else:
                return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])
        return search(self.index, queries, k, allowed_ids)
