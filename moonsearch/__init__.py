"""moonsearch: product retrieval by text, image or both, on the MOON2.0 method."""

__version__ = "0.1.0"


def open_index(path, device: str = "auto"):
    """Open an index folder for searching, and for writes (`upsert`, `delete`, `writer()`; see
    moonsearch.search.ProductIndex and moonsearch.index.live)."""
    from moonsearch import threads
    from moonsearch.search.searcher import ProductIndex

    threads.for_queries()   # one thread per runtime unless overridden (moonsearch.threads)
    return ProductIndex.open(path, device=device)
