"""The milvus backend: vectors, and the attributes filters run on, in Milvus; records in DuckDB.

What lives where, and why:
- Each vector store (a view's product vectors, a view's further-image vectors) is one Milvus
  collection: FLAT / IVF_FLAT / HNSW over inner product, as the FAISS kinds are.
- Filters run in Milvus: a collection beside them holds each product's attribute values
  (lower-cased text values, and the smallest and largest numeric value of each key, as JSON),
  and moonsearch's `Filter`s become Milvus boolean expressions with every user value escaped
  (`expression`). Milvus needs a vector field in every collection, so this one has a 2-d zero.
- Records, the BM25 keyword index and the attribute summaries stay in DuckDB
  (MetadataStore, subclassed here): hybrid ranking's keyword half is then the same BM25 for both
  backends, and a hit's record is read from memory, not fetched from Milvus.

Milvus has no transactions across requests: an insert, delete or upsert is applied whole, but
a write of several is not. Index states stay atomic through the manifest, as for files: every
Milvus entity carries the generation of its store it was born in and the one it died in, a
store reads only `born <= g < died` for the generation `g` its pointer file names, and a write
marks entities dead (an upsert) and inserts new ones at g+1 before its new pointer files, and
then the manifest, commit it. A reader of the old state never sees the write; a write killed
before its commit leaves entities at g+1 that the next write removes before it starts. Entities
dead two generations ago are deleted by the next write (the state before the current one stays
readable, as its snapshot folder does).

A pointer file (JSON: uri, collection, generation) stands where the FAISS backend keeps its
vector file, under the same name, so the snapshot machinery (links, checksums, commits) is the
same for both backends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.store.files import MILVUS_RECORDS_FILE
from moonsearch.store.filters import NUMERIC_OPS, Filter
from moonsearch.store.interface import VectorStore
from moonsearch.store.metadata import MetadataStore, MetadataWriter, ProductRow, _as_number, _as_text, \
    flatten_attributes

INSTALL_HINT = "pip install 'moonsearch[scale]'"
LIVE = 2 ** 62                 # `died` of an entity no write has removed
GENERATION_BITS = 24           # pk = key << 24 | born: an entity's id is fixed by its key and generation
MAX_TOPK = 16_384              # Milvus' largest search limit
KEYS_PER_EXPRESSION = 4_096    # `key in [...]` lists are cut into requests of this many keys
INSERT_BATCH = 2_000           # rows per insert request (well under gRPC's 64 MB)
RECORDS_DIM = 2                # the records collection's placeholder vector
_LITE_FILE = re.compile(r"^[^:]*\.db$")
_SERVER = re.compile(r"^(https?|tcp|grpc)://[^/\s]+(:\d+)?/?$")
_clients: dict[str, object] = {}


def check_uri(uri: str | None) -> str:
    """The uri as the manifest records it: a milvus-lite file (`*.db`, made absolute) or a
    Milvus server (`http(s)://host:port`); anything else is refused in one line."""
    text = str(uri or "").strip()
    if not text:
        raise MoonsearchError("--store milvus needs --uri: a milvus-lite file (./moonsearch.db) or a Milvus "
                              "server (http://host:19530)")
    if _SERVER.match(text):
        return text
    if _LITE_FILE.match(text):
        path = Path(text).expanduser().resolve()
        if not path.parent.is_dir():
            raise MoonsearchError(f"bad --uri '{uri}': the folder {path.parent} does not exist")
        return str(path)
    raise MoonsearchError(f"bad --uri '{uri}': give a milvus-lite file ending in .db (./moonsearch.db) or a "
                          "Milvus server address (http://host:19530)")


def client(uri: str):
    """One MilvusClient per uri and process (milvus-lite runs one local server per file, and
    lets one process at a time open it)."""
    if uri in _clients:
        return _clients[uri]
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise MoonsearchError(f"the milvus store needs pymilvus and milvus-lite: {INSTALL_HINT}") from None
    # pymilvus logs each refused call before raising it (moonsearch says it in one line instead)
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)
    if not _SERVER.match(uri):
        try:
            import milvus_lite  # noqa: F401
        except ImportError:
            raise MoonsearchError(f"a milvus-lite file needs the milvus-lite package: {INSTALL_HINT}") from None
    try:
        made = MilvusClient(uri=uri)
    except Exception as exc:   # pymilvus wraps the lock error of a file another process holds
        cause = exc.__cause__ or exc.__context__ or exc
        reason = str(cause).strip().splitlines()[0][:200] if str(cause).strip() else type(cause).__name__
        raise MoonsearchError(f"cannot open Milvus at {uri}: {reason}") from None
    _clients[uri] = _GuardedClient(made, uri)
    return _clients[uri]


class _GuardedClient:
    """A MilvusClient whose refused calls (a server gone away, a dropped collection, a request
    it cannot parse) raise one MoonsearchError naming Milvus and the call, not pymilvus' traceback
    wherever a query meets it."""

    def __init__(self, milvus, uri: str):
        self._milvus = milvus
        self._uri = uri

    def __getattr__(self, name):
        call = getattr(self._milvus, name)
        if not callable(call):
            return call

        def guarded(*args, **kwargs):
            from pymilvus.exceptions import MilvusException

            try:
                return call(*args, **kwargs)
            except MilvusException as exc:
                reason = " ".join(str(getattr(exc, "message", exc)).split())[:300]
                raise MoonsearchError(f"Milvus at {self._uri} refused {name}: {reason}") from None
        return guarded


def location(uri: str | None, out: Path) -> dict:
    """What a milvus index's manifest records in `store`: where Milvus is, and the prefix its
    collections take (from the index folder's name, so collections say whose they are)."""
    checked = check_uri(uri)
    client(checked)   # the package and the uri fail here, before anything is read or encoded
    name = re.sub(r"[^0-9a-zA-Z_]", "_", Path(out).name)[:64] or "index"
    # the folder's path in the prefix: two indexes of one name elsewhere never share collections
    where = hashlib.sha256(str(Path(out).resolve()).encode()).hexdigest()[:8]
    return {"uri": checked, "collection": f"moonsearch_{name}_{where}"}


def drop_unreferenced(folder: Path, location: dict) -> list[str]:
    """Drop this index's collections that no state on disk names any more: those of a rebuild's
    or a compaction's predecessor once its snapshot is gone, or of a build that failed. Called
    with the index's write lock held, so no build of it is half-way."""
    folder = Path(folder)
    named = set()
    for data in [folder, *folder.glob("snap-*")]:
        for path in [*data.glob("vectors-*.faiss"), data / MILVUS_RECORDS_FILE]:
            try:
                named.add(json.loads(path.read_bytes())["collection"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    milvus = client(location["uri"])
    prefix = location["collection"] + "_"
    dropped = [name for name in milvus.list_collections() if name.startswith(prefix) and name not in named]
    for name in dropped:
        milvus.drop_collection(name)
    return dropped


def literal(text: str) -> str:
    """A Milvus string literal holding `text` exactly: quotes and backslashes escaped, and line
    breaks and tabs as the escapes Milvus' parser knows (\\n \\r \\t; it knows no \\x or \\u, and
    takes every other character as it is), so no value can end the literal and become syntax."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    return '"' + "".join(escapes.get(char, char) for char in str(text)) + '"'


def _number(value: float) -> str:
    """A Milvus float literal; infinities clamp to the largest double (every finite value compares
    with it as with infinity)."""
    return repr(float(max(min(value, 1.7976931348623157e308), -1.7976931348623157e308)))


def expression(filters: Sequence[Filter]) -> str:
    """Filters as one Milvus boolean expression over the records collection, meaning what the
    DuckDB translation means (Filter.to_sql): `=` any of the values (case-insensitive) among
    the key's values; `!=` none of them (products without the key match); numeric operators any
    numeric value of the key. Keys and values enter only as escaped literals."""
    parts = []
    for f in filters:
        key = literal(f.key)
        if f.op in NUMERIC_OPS:
            value = float(f.values[0])
            if math.isnan(value):
                parts.append("key < 0")   # NaN compares false with everything: no product
                continue
            field = "nmin" if f.op in ("<", "<=") else "nmax"
            parts.append(f"{field}[{key}] {f.op} {_number(value)}")
            continue
        values = ", ".join(literal(v.lower()) for v in f.values)
        match = f"json_contains_any(text[{key}], [{values}])"
        parts.append(match if f.op == "=" else f"not {match}")
    return " and ".join(f"({p})" for p in parts)


def _key_list(keys: Iterable[int]) -> str:
    return "[" + ", ".join(str(int(k)) for k in keys) + "]"


class Versions:
    """A Milvus collection whose entities carry the generations they were born and died in (see
    the module docstring), read at one generation. The first change opens generation g+1."""

    def __init__(self, uri: str, collection: str, generation: int):
        self.uri, self.collection, self.generation = uri, collection, int(generation)
        self.client = client(uri)
        self.writing = False
        if not self.client.has_collection(collection):
            raise IndexFormatError(f"Milvus at {uri} has no collection {collection}: the index's vectors are gone "
                                   "(another Milvus file, or the collection was dropped); rebuild it with "
                                   "`moonsearch index --store milvus`")
        self.client.load_collection(collection)

    @classmethod
    def create(cls, uri: str, prefix: str, kind: str, fields, dim: int, n: int) -> "Versions":
        """A new collection `<prefix>_<kind>_<random>` with the versioning fields, `fields`
        ((name, DataType name)), and a vector field of `dim` indexed as `kind`."""
        from pymilvus import DataType, MilvusClient

        milvus = client(uri)
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pk", DataType.INT64, is_primary=True)
        for field in ("key", "born", "died"):
            schema.add_field(field, DataType.INT64)
        for field, type_name in fields:
            schema.add_field(field, getattr(DataType, type_name))
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        params = milvus.prepare_index_params()
        params.add_index(field_name="vector", metric_type="IP", **_index_spec(kind, n))
        milvus.create_collection(name, schema=schema, consistency_level="Strong")
        # not waited for: pymilvus polls a new index's state every 0.5 s (2 s of a tiny build);
        # a server searches rows its index has not reached yet by brute force meanwhile
        milvus.create_index(name, params, sync=False)
        made = cls(uri, name, 0)
        made.writing = True   # generation 0 is being written: nothing before it to clean up
        return made

    def visible(self) -> str:
        return f"born <= {self.generation} and died > {self.generation}"

    def _begin(self) -> None:
        """Open generation g+1 for a write: first undo what a write killed before its commit
        left (entities born after g; deaths after g), and delete entities dead since g-1."""
        if self.writing:
            return
        g = self.generation
        self.client.delete(self.collection, filter=f"born > {g} or died <= {g - 1}")
        revived = self._fetch(f"died > {g} and died < {LIVE}", ["*"])
        for row in revived:
            row["died"] = LIVE
        self._upsert(revived)
        self.generation += 1
        self.writing = True

    def _fetch(self, where: str, fields: list[str]) -> list[dict]:
        """Every entity matching `where`: milvus-lite answers one query whole; a server caps a
        query at 16,384 results, so there an iterator pages through them."""
        if not _SERVER.match(self.uri):
            return [dict(row) for row in self.client.query(self.collection, filter=where, output_fields=fields)]
        found: list[dict] = []
        iterator = self.client.query_iterator(self.collection, batch_size=INSERT_BATCH, filter=where,
                                              output_fields=fields)
        try:
            while True:
                batch = iterator.next()
                if not batch:
                    return found
                found += [dict(row) for row in batch]
        finally:
            iterator.close()

    def _upsert(self, rows: list[dict]) -> None:
        for start in range(0, len(rows), INSERT_BATCH):
            self.client.upsert(self.collection, rows[start:start + INSERT_BATCH])

    def insert(self, rows: list[dict]) -> None:
        """New entities (dicts with `key` and the collection's fields), born in this write."""
        if not rows:
            return
        self._begin()
        born = self.generation
        for row in rows:
            row.update(pk=(int(row["key"]) << GENERATION_BITS) | (born % (1 << GENERATION_BITS)),
                       born=born, died=LIVE)
        for start in range(0, len(rows), INSERT_BATCH):
            self.client.insert(self.collection, rows[start:start + INSERT_BATCH])

    def retire(self, keys: Sequence[int]) -> int:
        """Mark the visible entities of these keys dead in this write; how many there were."""
        keys = sorted({int(k) for k in keys})
        if not keys:
            return 0
        self._begin()
        gone = 0
        for start in range(0, len(keys), KEYS_PER_EXPRESSION):
            rows = self.fetch(keys[start:start + KEYS_PER_EXPRESSION], ["*"])
            for row in rows:
                row["died"] = self.generation
            self._upsert(rows)
            gone += len(rows)
        return gone

    def fetch(self, keys: Sequence[int], fields: list[str]) -> list[dict]:
        """The visible entities of these keys (one request per KEYS_PER_EXPRESSION keys)."""
        found: list[dict] = []
        for start in range(0, len(keys), KEYS_PER_EXPRESSION):
            part = keys[start:start + KEYS_PER_EXPRESSION]
            found += [dict(row) for row in self.client.query(
                self.collection, filter=f"{self.visible()} and key in {_key_list(part)}", output_fields=fields,
                limit=len(part))]
        return found

    def keys(self, where: str = "") -> np.ndarray:
        """Sorted keys of the visible entities matching `where`."""
        condition = self.visible() + (f" and ({where})" if where else "")
        rows = self._fetch(condition, ["key"])
        return np.unique(np.array([row["key"] for row in rows], np.int64))

    def count(self) -> int:
        found = self.client.query(self.collection, filter=self.visible(), output_fields=["count(*)"])
        return int(found[0]["count(*)"])

    def pointer(self) -> bytes:
        """What the pointer file holds; first the collection is flushed, so what it names is on
        disk before a commit can name it (and milvus-lite searches sealed segments ~10x faster
        than freshly inserted rows: 16 vs 150 ms a query on 4.5k vectors)."""
        self.client.flush(self.collection)
        return (json.dumps({"uri": self.uri, "collection": self.collection, "generation": self.generation},
                           indent=1) + "\n").encode()

    @classmethod
    def from_pointer(cls, data: bytes, where: Path) -> "Versions":
        try:
            spec = json.loads(data)
            return cls(spec["uri"], spec["collection"], spec["generation"])
        except (ValueError, KeyError, TypeError):
            raise IndexFormatError(f"{where} is not a Milvus pointer file") from None


def _index_spec(kind: str, n: int) -> dict:
    """The Milvus index for a FAISS kind, with FAISS's parameters (moonsearch.store.faiss_vectors)."""
    from moonsearch.store import faiss_vectors as fv

    if kind == "ivf":
        return {"index_type": "IVF_FLAT", "params": {"nlist": fv.ivf_lists(max(n, 1))}}
    if kind == "hnsw":
        return {"index_type": "HNSW", "params": {"M": fv.HNSW_M, "efConstruction": fv.HNSW_EF_CONSTRUCTION}}
    return {"index_type": "FLAT", "params": {}}


def _search_params(kind: str) -> dict:
    from moonsearch.store import faiss_vectors as fv

    extra = {"ivf": {"nprobe": fv.IVF_NPROBE}, "hnsw": {"ef": fv.HNSW_EF_SEARCH}}.get(kind, {})
    return {"metric_type": "IP", "params": extra}


class MilvusVectorStore(VectorStore):
    """One view's vectors in a Milvus collection, read at one generation (class Versions)."""

    def __init__(self, versions: Versions, kind: str = "flat"):
        self.versions = versions
        self.kind = kind
        self._bound: int | None = None
        described = versions.client.describe_collection(versions.collection)
        self.dim = next(int(f["params"]["dim"]) for f in described["fields"] if f["name"] == "vector")
        index_types = {"IVF_FLAT": "ivf", "HNSW": "hnsw"}
        try:
            info = versions.client.describe_index(versions.collection, "vector")
            self.kind = index_types.get(info.get("index_type"), "flat")
        except Exception:   # an index description this Milvus does not give: search as flat
            pass

    @classmethod
    def create(cls, vectors: np.ndarray, ids: np.ndarray, index_type: str, location: dict) -> "MilvusVectorStore":
        vectors = np.ascontiguousarray(vectors, np.float32)
        versions = Versions.create(location["uri"], location["collection"], index_type, (), vectors.shape[1],
                                   len(vectors))
        store = cls(versions, index_type)
        store._insert(ids, vectors)
        return store

    def _insert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.versions.insert([{"key": int(k), "vector": v} for k, v in zip(ids, vectors)])

    @classmethod
    def open(cls, path: Path) -> "MilvusVectorStore":
        return cls.from_bytes(Path(path).read_bytes(), path)

    @classmethod
    def from_bytes(cls, data: bytes, where: Path | str = "pointer") -> "MilvusVectorStore":
        return cls(Versions.from_pointer(data, Path(where)))

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.versions.pointer())

    @property
    def size(self) -> int:
        return self.versions.count()

    def _entities(self) -> int:
        """How many entities the collection holds, every generation's: at least the visible ones,
        and read from its statistics (128 ms) where counting the visible ones costs 2.6 s in
        milvus-lite on 40k vectors. Kept until this store writes."""
        if self._bound is None:
            self._bound = int(self.versions.client.get_collection_stats(self.versions.collection)["row_count"])
        return self._bound

    def ids(self) -> np.ndarray:
        return self.versions.keys()

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        ids = [int(k) for k in np.asarray(ids, np.int64)]
        if not ids:
            return np.zeros((0, self.dim), np.float32)
        found = {row["key"]: row["vector"] for row in self.versions.fetch(sorted(set(ids)), ["key", "vector"])}
        missing = [k for k in ids if k not in found]
        if missing:
            raise MoonsearchError(f"no vector stored under key {missing[0]} in {self.versions.collection}")
        return np.array([found[k] for k in ids], np.float32)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self._bound = None
        if len(ids):
            self._insert(np.asarray(ids, np.int64), np.ascontiguousarray(vectors, np.float32))

    def remove(self, ids: np.ndarray) -> int:
        self._bound = None
        return self.versions.retire(np.asarray(ids, np.int64).tolist())

    def _search(self, queries: np.ndarray, limit: int, where: str) -> list[list[tuple[float, int]]]:
        """(score, key) pairs per query, best first, of one Milvus search request."""
        found = self.versions.client.search(self.versions.collection, data=list(queries), limit=limit, filter=where,
                                            output_fields=["key"], anns_field="vector",
                                            search_params=_search_params(self.kind))
        return [[(float(hit["distance"]), int(hit["entity"]["key"])) for hit in hits] for hits in found]

    def _deeper(self, queries: np.ndarray, limit: int, allowed: np.ndarray) -> list | None:
        """A broad `allowed` set without sending it: the unfiltered top `depth` (about twice as
        deep as the allowed share predicts), kept where allowed. Exact for FLAT: an allowed key
        ranked above the k-th one kept would be in the top `depth` too. None where some query
        kept fewer than k and the search did not reach every vector (then the keys are sent)."""
        size = self._entities()
        depth = min(MAX_TOPK, size, max(limit, int(2 * limit * size / len(allowed)) + 10))
        answers = []
        for answer in self._search(queries, depth, self.versions.visible()):
            keys = np.array([key for _, key in answer], np.int64)
            kept = [answer[i] for i in np.flatnonzero(np.isin(keys, allowed))[:limit]]
            if len(kept) < limit and depth < size:
                return None
            answers.append(kept)
        return answers

    def search(self, queries: np.ndarray, k: int, allowed_ids: np.ndarray | None = None):
        """Milvus' top-k under the generation's visibility; -1 keys pad a short answer. Allowed
        keys go into the request (`key in [...]`, cut into requests of KEYS_PER_EXPRESSION keys
        whose answers merge) when they are few; a broad set is searched by `_deeper` first: on
        40k vectors, 20k keys sent cost 740 ms a query in milvus-lite, a search 70 ms."""
        queries = np.ascontiguousarray(queries, np.float32)
        limit = min(int(k), MAX_TOPK)
        if allowed_ids is None:
            answers = self._search(queries, limit, self.versions.visible())
        else:
            allowed = np.unique(np.asarray(allowed_ids, np.int64))
            answers = self._deeper(queries, limit, allowed) if len(allowed) > KEYS_PER_EXPRESSION else None
            if answers is None:
                answers = [[] for _ in range(len(queries))]
                for start in range(0, len(allowed), KEYS_PER_EXPRESSION):
                    part = _key_list(allowed[start:start + KEYS_PER_EXPRESSION])
                    for answer, more in zip(answers, self._search(queries, limit,
                                                                  f"{self.versions.visible()} and key in {part}")):
                        answer += more
        width = min(limit, max((len(a) for a in answers), default=0))
        scores = np.full((len(queries), width), -np.inf, np.float32)
        keys = np.full((len(queries), width), -1, np.int64)
        for i, answer in enumerate(answers):
            best = sorted(answer, key=lambda pair: (-pair[0], pair[1]))[:width]
            scores[i, :len(best)] = [s for s, _ in best]
            keys[i, :len(best)] = [key for _, key in best]
        return scores, keys


# -- records: DuckDB for what hits show and BM25 reads, Milvus for what filters match --------

RECORD_FIELDS = (("has_image", "BOOL"), ("text", "JSON"), ("nmin", "JSON"), ("nmax", "JSON"))


def filter_entity(row: ProductRow) -> dict:
    """A product's filterable values as the records collection holds them (what DuckDB's
    attributes table holds: value_lower, value_num per flattened key)."""
    text: dict[str, list[str]] = {}
    numbers: dict[str, list[float]] = {}
    for key, value in flatten_attributes(row.attributes):
        text.setdefault(key, []).append(_as_text(value).lower())
        number = _as_number(value)
        if number is not None:
            numbers.setdefault(key, []).append(number)
    return {"key": int(row.row), "has_image": bool(row.has_image), "text": text,
            "nmin": {k: min(v) for k, v in numbers.items()}, "nmax": {k: max(v) for k, v in numbers.items()},
            "vector": np.zeros(RECORDS_DIM, np.float32)}


def _write_pointer(folder: Path, versions: Versions) -> None:
    """Into a fresh file: in a snapshot the path may be a hard link shared with the current state."""
    path = Path(folder) / MILVUS_RECORDS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(versions.pointer())
    os.replace(tmp, path)


class MilvusRecordWriter(MetadataWriter):
    """A build's record store: DuckDB as for FAISS, and each batch's filterable values in Milvus."""

    def __init__(self, folder: Path, location: dict):
        super().__init__(folder)
        self.folder = Path(folder)
        self.filters = Versions.create(location["uri"], location["collection"], "flat", RECORD_FIELDS,
                                       RECORDS_DIM, 0)

    def add(self, rows: Iterable[ProductRow]) -> None:
        rows = list(rows)
        super().add(rows)
        self.filters.insert([filter_entity(r) for r in rows])

    def close(self) -> None:
        super().close()
        _write_pointer(self.folder, self.filters)


class MilvusRecordStore(MetadataStore):
    """MetadataStore whose filters run in Milvus (`expression`); records and BM25 stay in DuckDB."""

    def __init__(self, folder: Path, writable: bool = False):
        super().__init__(folder, writable=writable)
        path = Path(folder) / MILVUS_RECORDS_FILE
        if not path.exists():
            raise IndexFormatError(f"{folder} is incomplete: {MILVUS_RECORDS_FILE} is missing")
        self.folder = Path(folder)
        self.filters = Versions.from_pointer(path.read_bytes(), path)

    def allowed_rows(self, filters: Sequence[Filter]) -> np.ndarray:
        self._check_keys(filters)
        return self.filters.keys(expression(filters))

    def delete(self, keys: Sequence[int]) -> None:
        super().delete(keys)   # MetadataStore.upsert deletes through here too
        self.filters.retire(keys)

    def upsert(self, rows: Sequence[ProductRow]) -> None:
        rows = list(rows)
        super().upsert(rows)
        self.filters.insert([filter_entity(r) for r in rows])

    def close(self) -> None:
        super().close()
        if self.filters.writing:
            _write_pointer(self.folder, self.filters)
            self.filters.writing = False
