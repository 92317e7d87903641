"""moonsearch: product retrieval by text, image or both, on the MOON2.0 method."""

__version__ = "0.1.0"


def open_index(path=None, device: str = "auto", encoder=None):
    """Open an index folder for searching, and for writes (`upsert`, `delete`, `writer()`; see
    moonsearch.search.ProductIndex and moonsearch.index.live). Without a path: the only index
    under ./indexes. Queries run under the query thread policy (moonsearch.threads)."""
    from moonsearch import threads
    from moonsearch.locations import default_index
    from moonsearch.search.product_index import ProductIndex

    threads.for_queries()   # one thread per runtime unless overridden
    return ProductIndex.open(path or default_index(), device=device, encoder=encoder)
