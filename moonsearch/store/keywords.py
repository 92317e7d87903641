"""Keyword (BM25) search over the product text, with DuckDB's full-text extension.

Dense vectors find what a query means; exact words (a model name, a brand, a style code) are
what BM25 is good at, so hybrid search fuses both. The extension comes from the
`duckdb-extension-fts` package and is loaded from its file: nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from moonsearch.errors import MoonsearchError
from moonsearch.store import sql_literals

KEYWORD_SCHEMA = "fts_main_products"   # where create_fts_index puts the index of table `products`


def fts_extension_path() -> Path:
    import duckdb_extension_fts

    root = Path(duckdb_extension_fts.__file__).parent
    found = sorted(root.rglob("fts.duckdb_extension"))
    if not found:
        raise MoonsearchError(f"no fts.duckdb_extension inside {root}: reinstall duckdb-extension-fts")
    return found[0]


def load_fts(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"LOAD '{fts_extension_path()}'")


def keyword_column(con: duckdb.DuckDBPyConnection) -> str:
    """The products column the keyword index reads: `keywords` (the product text with field
    weights, catalog.inputs.keyword_text), or `text` in an index built before field weights."""
    found = con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'products' "
                        "AND column_name = 'keywords'").fetchone()[0]
    return "keywords" if found else "text"


def create_keyword_index(con: duckdb.DuckDBPyConnection, overwrite: bool = False) -> None:
    """BM25 index over the products' keyword column (English stemming, lower-cased), built once
    all rows are in (`overwrite`: rebuilt whole after writes; its statistics cover every product)."""
    load_fts(con)
    con.execute(f"PRAGMA create_fts_index('products', 'row', '{keyword_column(con)}', stemmer='english', "
                f"lower=1{', overwrite=1' if overwrite else ''})")


def has_keyword_index(con: duckdb.DuckDBPyConnection) -> bool:
    return con.execute("SELECT count(*) FROM duckdb_schemas() "
                       f"WHERE schema_name = {sql_literals.text(KEYWORD_SCHEMA)}").fetchone()[0] > 0


def _ranked(query: str) -> str:
    return (f"SELECT row, score FROM (SELECT row, {KEYWORD_SCHEMA}.match_bm25(row, {sql_literals.text(query)}) "
            "AS score FROM products) WHERE score IS NOT NULL ORDER BY score DESC, row")


def keyword_search(con: duckdb.DuckDBPyConnection, query: str, k: int,
                   allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
    """(row, BM25 score) of the k best products for `query`, best first, among `allowed` rows if
    given; products sharing no word with the query are not returned. The caller has checked
    has_keyword_index and loaded the extension (once per connection, not per query)."""
    if allowed is None:
        return con.execute(f"{_ranked(query)} LIMIT {int(k)}").fetchall()
    # Filtering in numpy over every match is much faster than handing DuckDB the allowed rows
    # as a list parameter (0.6 s a query on 40k products, against a few ms here).
    ranked = con.execute(_ranked(query)).fetchnumpy()
    keep = np.isin(ranked["row"], allowed)
    return [(int(r), float(s)) for r, s in zip(ranked["row"][keep][:k], ranked["score"][keep][:k])]


def memory_keyword_index(texts):
    """BM25 postings over `texts` (row i is texts[i]), built exactly as an index's keyword
    index is (DuckDB fts, then read into memory): what the evaluation ranks keywords with,
    so its keyword half is the query layer's."""
    from moonsearch.store.postings import load_postings

    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE products (row BIGINT, text VARCHAR)")
        texts = [str(t) for t in texts]
        con.execute("INSERT INTO products SELECT unnest(?), unnest(?)", [list(range(len(texts))), texts])
        create_keyword_index(con)
        return load_postings(con, KEYWORD_SCHEMA)
    finally:
        con.close()
