"""FAISS indexes over one view's vectors: build, save, load, and (filtered) search.

Vectors are L2-normalised, so inner product is cosine similarity. Row i of every view is
product row i of the metadata store.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from moonsearch.errors import MoonsearchError
from moonsearch.index import device as devices

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
    vectors = index.reconstruct_batch(rows.astype(np.int64))
    scores = queries @ vectors.T
    k = min(k, len(rows))
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), rows[top]


def _search_params(index: faiss.Index, selector):
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
        scores, rows = index.search(queries, min(k, index.ntotal))
    elif len(allowed) == 0:
        return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
    elif len(allowed) <= EXACT_FILTER_LIMIT and not isinstance(index, faiss.IndexFlat):
        return _exact_over(index, queries, np.asarray(allowed, np.int64), k)
    else:
        allowed = np.asarray(allowed, np.int64)
        selector = faiss.IDSelectorBatch(allowed)
        scores, rows = index.search(queries, min(k, len(allowed)), params=_search_params(index, selector))
        if (rows < 0).any():
            return _exact_over(index, queries, allowed, k)
    return scores, rows
