"""Product metadata in DuckDB: what each vector row is, and the attributes filters run on.

`row` is the product's stable key, shared with the vector stores; MetadataStore is the
RecordStore of the faiss+duckdb backend (moonsearch.store.interface), read-only for queries and
writable on a snapshot's own copy of the file for index writes (moonsearch.index.live).

Attributes are stored long-form (row, key, value) with nested keys flattened as
`attributes.Pattern`, so any catalog's columns are filterable without a schema per catalog, and
filter keys travel as bound parameters, never as SQL identifiers.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import duckdb
import numpy as np

from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.store import sql_literals
from moonsearch.store.attribute_index import AttributeIndex, load_attribute_index
from moonsearch.store.filters import Filter
from moonsearch.store.integrity import damaged
from moonsearch.store.interface import RecordStore
from moonsearch.store.keywords import (KEYWORD_SCHEMA, create_keyword_index, has_keyword_index, keyword_column,
                                       keyword_search, load_fts)
from moonsearch.store.postings import KeywordIndexMismatch, Postings, load_postings
from moonsearch.store.records import COLUMNS, RecordTable, load_records, record

DB_FILE = "metadata.duckdb"

SCHEMA = """
CREATE TABLE products (
    row INTEGER PRIMARY KEY, id VARCHAR NOT NULL UNIQUE, title VARCHAR NOT NULL,
    description VARCHAR, images VARCHAR[], has_image BOOLEAN NOT NULL,
    attributes JSON, source VARCHAR, text VARCHAR, keywords VARCHAR
);
CREATE TABLE attributes (
    row INTEGER NOT NULL, key VARCHAR NOT NULL, value VARCHAR, value_lower VARCHAR, value_num DOUBLE
);
CREATE TABLE hashes (row INTEGER PRIMARY KEY, hash VARCHAR NOT NULL);
"""
# What `update` compares to find unchanged products; indexes built before it have no such table.
HASHES_TABLE = "CREATE TABLE IF NOT EXISTS hashes (row INTEGER PRIMARY KEY, hash VARCHAR NOT NULL)"


@dataclass(frozen=True)
class ProductRow:
    row: int
    id: str
    title: str
    description: str | None
    images: Sequence[str]
    has_image: bool
    attributes: Mapping[str, Any]
    source: str
    text: str = ""              # what the encoder read (title + attributes)
    keywords: str | None = None  # what the keyword index reads (catalog.inputs.keyword_text); None: text
    content_hash: str = ""      # of the record and its image bytes: `update` re-encodes a product when it changes


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _as_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flatten_attributes(attributes: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(key, scalar) pairs: nested dicts as dotted keys, lists as one pair per element."""
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten_attributes(value, prefix=f"{name}.")
        elif isinstance(value, (list, tuple)):
            for item in value:
                if item is not None and not isinstance(item, (Mapping, list, tuple)):
                    yield name, item
        elif value is not None and str(value).strip() != "":
            yield name, value


def insert_rows(con, rows: Sequence[ProductRow]) -> None:
    """Products, their attribute values and content hashes in one batch of inserts."""
    if not rows:
        return
    import pyarrow as pa   # here, not at the top: a query never writes, and pyarrow is 0.1 s of a cold one
    products = pa.table({
        "row": [r.row for r in rows], "id": [r.id for r in rows], "title": [r.title for r in rows],
        "description": [r.description for r in rows], "images": [list(map(str, r.images)) for r in rows],
        "has_image": [r.has_image for r in rows],
        "attributes": [json.dumps(r.attributes, default=str, ensure_ascii=False) for r in rows],
        "source": [r.source for r in rows], "text": [r.text for r in rows],
        "keywords": [r.text if r.keywords is None else r.keywords for r in rows],
    })
    pairs = [(r.row, k, v) for r in rows for k, v in flatten_attributes(r.attributes)]
    attributes = pa.table({
        "row": pa.array([p[0] for p in pairs], pa.int32()),
        "key": pa.array([p[1] for p in pairs], pa.string()),
        "value": pa.array([_as_text(p[2]) for p in pairs], pa.string()),
        "value_lower": pa.array([_as_text(p[2]).lower() for p in pairs], pa.string()),
        "value_num": pa.array([_as_number(p[2]) for p in pairs], pa.float64()),
    })
    hashed = [r for r in rows if r.content_hash]
    hashes = pa.table({"row": pa.array([r.row for r in hashed], pa.int32()),
                       "hash": pa.array([r.content_hash for r in hashed], pa.string())})
    con.register("batch_products", products)
    con.register("batch_attributes", attributes)
    con.register("batch_hashes", hashes)
    # an index built before field weights has no keywords column: its keyword index reads text
    keywords = ", keywords" if keyword_column(con) == "keywords" else ""
    con.execute("INSERT INTO products SELECT row, id, title, description, images, has_image, "
                f"attributes::JSON, source, text{keywords} FROM batch_products")
    con.execute("INSERT INTO attributes SELECT * FROM batch_attributes")
    if hashed:
        con.execute("INSERT INTO hashes SELECT * FROM batch_hashes")
    for name in ("batch_products", "batch_attributes", "batch_hashes"):
        con.unregister(name)


# Small tables written when a file is finished, so that opening an index answers "which keys,
# which values" from a few hundred rows instead of grouping every attribute row (~1.2M on 40k
# Myntra products: 250 ms for the keys, 100 ms for the values, on a cold query). A file without
# them (built before they existed, or being written) is answered from `attributes` itself.
SUMMARY_TABLES = ("attribute_keys", "attribute_values")


def summarise_attributes(con, sort: bool = False) -> None:
    """(Re)write the summary tables; `sort` also rewrites `attributes` ordered by key, so that
    DuckDB's per-row-group min/max skip every other key when one key's values are read (a
    filter's first use: 84 -> 25 ms on 40k products). Rows a later write appends stay after
    the sorted ones; only their row groups are then read for every key."""
    if sort:
        con.execute("CREATE TABLE attributes_sorted AS SELECT * FROM attributes LIMIT 0")
        con.execute("INSERT INTO attributes_sorted SELECT * FROM attributes ORDER BY key, row")
        con.execute("DROP TABLE attributes")
        con.execute("ALTER TABLE attributes_sorted RENAME TO attributes")
    con.execute("CREATE OR REPLACE TABLE attribute_keys AS "
                "SELECT key, count(DISTINCT row) AS n FROM attributes GROUP BY key")
    con.execute("CREATE OR REPLACE TABLE attribute_values AS SELECT key, value, count(DISTINCT row) AS n "
                "FROM attributes WHERE value IS NOT NULL GROUP BY key, value")


class MetadataWriter:
    """Appends products batch by batch into a new DuckDB file."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / DB_FILE
        self.con = duckdb.connect(str(self.path))
        self.con.execute(SCHEMA)

    def add(self, rows: Iterable[ProductRow]) -> None:
        insert_rows(self.con, list(rows))

    def close(self) -> None:
        summarise_attributes(self.con, sort=True)
        self.con.execute("CREATE INDEX attributes_key ON attributes (key)")
        create_keyword_index(self.con)
        self.con.execute("CHECKPOINT")
        self.con.close()


# What a damaged or truncated file raises while it is read (not a mistake in a query).
_DAMAGE = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException, duckdb.FatalException)


class _GuardedConnection:
    """The store's DuckDB connection, safe to share between threads, whose reads of a damaged
    file raise one IndexDamagedError naming the file and what to do, instead of DuckDB's
    traceback wherever the damage is first read.

    Why per-thread cursors: a DuckDB connection is not thread-safe. Two threads' queries on one
    connection read each other's results (a server's first two searches loading the same filter
    key concurrently got `None` back: an intermittent 500). So the thread that opened the store
    uses the connection and every other thread its own cursor on the same database, which
    sees the same data and the extensions loaded on it."""

    def __init__(self, con, path: Path):
        self._con = con
        self._path = path
        self._owner = threading.get_ident()
        self._local = threading.local()
        self._cursors: list = []
        self._cursors_lock = threading.Lock()

    def _for_this_thread(self):
        if threading.get_ident() == self._owner:
            return self._con
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._local.cursor = self._con.cursor()
            with self._cursors_lock:
                self._cursors.append(cursor)
        return cursor

    def execute(self, *args, **kwargs):
        try:
            return self._for_this_thread().execute(*args, **kwargs)
        except _DAMAGE as exc:
            raise damaged(self._path, f"cannot be read ({str(exc).splitlines()[0][:160]})") from None

    def close(self) -> None:
        with self._cursors_lock:
            cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            cursor.close()
        self._con.close()

    def __getattr__(self, name):
        return getattr(self._con, name)


class MetadataStore(RecordStore):
    """Product records by vector row, and filters turned into allowed rows.

    DuckDB is the store of record; searches are answered from memory. Keyword postings, hit
    records and each filter key's values take longer to read (0.5 s, 0.75 s and ~20 ms on 40k
    products, on 2 busy cores) than one SQL answer costs (a filter: ~3 ms), so the first use of
    each is answered by SQL (a one-shot CLI query pays only that) and the next one loads them (a
    long-lived index pays once). `memory_after` is that count of SQL answers; 0 loads on first
    use (a server sets it). The `*_sql` methods are the SQL reference the in-memory answers are
    tested against.
    """

    memory_after = 1

    def __init__(self, folder: Path, writable: bool = False):
        """Read-only unless `writable`: a write opens a snapshot's private copy of the file
        (readers never share a file with a writer), changes it, and `close` commits it."""
        path = Path(folder) / DB_FILE
        if not path.exists():
            raise IndexFormatError(f"{folder} has no {DB_FILE}: not a moonsearch index")
        self.writable = writable
        self._changed = False
        try:
            self.con = _GuardedConnection(duckdb.connect(str(path), read_only=not writable), path)
        except duckdb.Error as exc:
            raise damaged(path, f"cannot be opened ({str(exc).splitlines()[0][:160]})") from None
        if writable:
            self.con.execute(HASHES_TABLE)
        self._keys: list[tuple[str, int]] | None = None
        self._summaries: bool | None = None
        self._fts_loaded = False
        self._attributes: AttributeIndex | None = None
        self._postings: Postings | None | bool = None    # False: an fts index Postings does not score
        self._records: RecordTable | None = None
        self._uses: Counter = Counter()   # "keywords", "records", "filter:<key>"

    def _in_memory(self, kind: str) -> bool:
        """Whether this use of `kind` is the one that loads it (see the class docstring)."""
        self._uses[kind] += 1
        return self._uses[kind] > self.memory_after

    def count(self) -> int:
        return self.con.execute("SELECT count(*) FROM products").fetchone()[0]

    def products(self, rows: Sequence[int]) -> list[dict]:
        """Records for vector rows, in the order asked."""
        if len(rows) == 0:
            return []
        if self._records is None and self._in_memory("records"):
            self._records = load_records(self.con)
        if self._records is None:
            return self.products_sql(rows)
        return self._records.records(rows)

    def products_sql(self, rows: Sequence[int]) -> list[dict]:
        """products() by one SQL query: the first use, and the reference for the in-memory one."""
        if len(rows) == 0:
            return []
        found = self.con.execute(f"SELECT {', '.join(COLUMNS)} FROM products "
                                 f"WHERE row IN (SELECT unnest({sql_literals.integers(rows)}))").fetchall()
        by_row = {r[0]: record(r) for r in found}
        return [by_row[int(r)] for r in rows]

    def row_of(self, product_id: str) -> int | None:
        found = self.con.execute(f"SELECT row FROM products WHERE id = {sql_literals.text(product_id)}").fetchone()
        return None if found is None else found[0]

    def keys_of(self, product_ids: Sequence[str]) -> dict[str, int]:
        found = self.con.execute("SELECT id, row FROM products "
                                 f"WHERE id IN (SELECT unnest({sql_literals.texts(product_ids)}))").fetchall()
        return dict(found)

    def content_hashes(self) -> dict[str, tuple[int, str]]:
        has_table = self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'hashes'").fetchone()[0]
        if not has_table:
            return {i: (r, "") for i, r in self.con.execute("SELECT id, row FROM products").fetchall()}
        found = self.con.execute("SELECT p.id, p.row, coalesce(h.hash, '') FROM products p "
                                 "LEFT JOIN hashes h ON h.row = p.row").fetchall()
        return {i: (r, h) for i, r, h in found}

    def max_row(self) -> int:
        """The largest key stored (-1 when empty): new products take keys after it."""
        found = self.con.execute("SELECT max(row) FROM products").fetchone()[0]
        return -1 if found is None else int(found)

    def _forget(self) -> None:
        """Drop everything read into memory: the next use reads the changed tables."""
        self._keys = None
        self._attributes = None
        self._postings = None
        self._records = None
        self._uses: Counter = Counter()   # "keywords", "records", "filter:<key>"

    def _require_writable(self) -> None:
        if not self.writable:
            raise MoonsearchError("this store was opened read-only; writes go through the index writer")

    def upsert(self, rows: Sequence[ProductRow]) -> None:
        """Insert products; a product whose key or id is stored already is replaced."""
        self._require_writable()
        rows = list(rows)
        if not rows:
            return
        keys = [int(r.row) for r in rows] + list(self.keys_of([r.id for r in rows]).values())
        self.delete(keys)
        insert_rows(self.con, rows)
        self._changed = True

    def delete(self, keys: Sequence[int]) -> None:
        self._require_writable()
        keys = sorted({int(k) for k in keys})
        if not keys:
            return
        for table in ("attributes", "hashes", "products"):
            self.con.execute(f"DELETE FROM {table} WHERE row IN (SELECT unnest(?))", [keys])
        self._changed = True
        self._forget()

    def rows_with_image(self) -> np.ndarray:
        return self._rows("SELECT row FROM products WHERE has_image")

    def attribute_keys(self) -> list[tuple[str, int]]:
        """Filterable keys with how many products have them, most common first (read once: the
        store is read-only, and every filtered query checks its keys against this list)."""
        if self._keys is None:
            source = "attribute_keys" if self._summarised() else \
                "(SELECT key, count(DISTINCT row) AS n FROM attributes GROUP BY key)"
            self._keys = self.con.execute(f"SELECT key, n FROM {source} ORDER BY n DESC, key").fetchall()
        return self._keys

    def _summarised(self) -> bool:
        """Whether the summary tables answer for this file: a read-only store of a file that has
        them (a writable one changes `attributes` under them until `close` rewrites them)."""
        if self._summaries is None:
            self._summaries = not self.writable and self.con.execute(
                "SELECT count(*) FROM duckdb_tables() "
                f"WHERE table_name IN (SELECT unnest({sql_literals.texts(SUMMARY_TABLES)}))").fetchone()[0] \
                == len(SUMMARY_TABLES)
        return self._summaries

    def value_counts(self, keys: Sequence[str]) -> dict[str, dict[str, int]]:
        """key -> {value: products having it} for these keys: the words a query may name a
        value by (moonsearch.store.query_language.AttributeWords), read once per state."""
        source = "attribute_values" if self._summarised() else \
            "(SELECT key, value, count(DISTINCT row) AS n FROM attributes WHERE value IS NOT NULL GROUP BY key, value)"
        found = self.con.execute(f"SELECT key, value, n FROM {source} "
                                 f"WHERE key IN (SELECT unnest({sql_literals.texts(keys)}))").fetchall()
        counts: dict[str, dict[str, int]] = {key: {} for key in keys}
        for key, value, n in found:
            counts[key][value] = int(n)
        return counts

    def _rows(self, sql: str) -> np.ndarray:
        return np.array([r[0] for r in self.con.execute(sql).fetchall()], dtype=np.int64)

    def _check_keys(self, filters: Sequence[Filter]) -> None:
        known = {k for k, _ in self.attribute_keys()}
        for f in filters:
            if f.key not in known:
                close = sorted(k for k in known if k.lower() == f.key.lower())
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise MoonsearchError(f"no attribute '{f.key}' in this index{hint}; "
                                      f"`moonsearch info` lists the filterable fields")

    def allowed_rows(self, filters: Sequence[Filter]) -> np.ndarray:
        """Rows matching every filter (sorted), from attribute values held in memory, or by SQL
        while a key's values are not loaded and this is its first use (see the class docstring)."""
        self._check_keys(filters)
        unloaded = [f.key for f in filters if self._attributes is None or not self._attributes.has(f.key)]
        if unloaded and not all([self._in_memory(f"filter:{key}") for key in unloaded]):
            return self.allowed_rows_sql(filters)
        if self._attributes is None:
            self._attributes = load_attribute_index(self.con)
        return self._attributes.allowed_rows(filters)

    def allowed_rows_sql(self, filters: Sequence[Filter]) -> np.ndarray:
        """allowed_rows() by SQL: the reference for the in-memory one."""
        self._check_keys(filters)
        query = " INTERSECT ".join(f.to_sql() for f in filters) if filters else "SELECT row FROM products"
        # unique: a lone filter on a list-valued key matched a product once per matching value
        return np.unique(self._rows(query))

    def has_keyword_index(self) -> bool:
        return has_keyword_index(self.con)

    def keyword_rows(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, BM25 score) of the k best keyword matches, among `allowed` rows if given."""
        if self._postings is None and self._in_memory("keywords"):
            self._check_keyword_index()
            try:
                self._postings = load_postings(self.con, KEYWORD_SCHEMA)
            except KeywordIndexMismatch:
                self._postings = False    # an fts index built otherwise: its SQL macro keeps answering
        if self._postings:
            return self._postings.search(query, k, allowed)
        return self.keyword_rows_sql(query, k, allowed)

    def keyword_rows_sql(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """keyword_rows() by DuckDB's fts macro: the first use, and the reference for the in-memory one."""
        if not self._fts_loaded:   # checked and loaded on the first keyword query only
            self._check_keyword_index()
            load_fts(self.con)
            self._fts_loaded = True
        return keyword_search(self.con, query, k, allowed)

    def _check_keyword_index(self) -> None:
        if not self.has_keyword_index():
            raise IndexFormatError("this index has no keyword index (it was built by an older moonsearch); "
                                   "rebuild it with `moonsearch index` to search by keywords")

    def close(self) -> None:
        """Close; a writable store that changed first rebuilds its keyword index (BM25 statistics
        cover every product, so it is rebuilt whole, not patched) and the attribute summaries,
        and checkpoints the file."""
        if self.writable and self._changed:
            create_keyword_index(self.con, overwrite=True)
            summarise_attributes(self.con)
            self.con.execute("CHECKPOINT")
            self._changed = False
        self.con.close()
