"""The storage backends an index can name in its manifest, and how each opens its stores.

`search/` and the writers ask here for a view's VectorStore and the RecordStore and use only
those interfaces (moonsearch.store.interface); a manifest naming a backend this moonsearch does
not have is refused in one line. Two backends:
- faiss+duckdb: FAISS files for vectors, DuckDB for records, all in the index folder;
- milvus: vectors and filters in Milvus (a milvus-lite file or a server; the `[scale]` extra),
  records and BM25 in DuckDB (moonsearch.store.milvus says why). `location` is where the
  backend keeps data outside the folder (the manifest's `store`), None for faiss+duckdb.
"""

from __future__ import annotations

from pathlib import Path

from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.store.integrity import damaged, read_verified
from moonsearch.store.interface import RecordStore, VectorStore

FAISS_DUCKDB = "faiss+duckdb"
MILVUS = "milvus"
BACKENDS = (FAISS_DUCKDB, MILVUS)


def check_backend(name: str, folder: Path) -> None:
    if name not in BACKENDS:
        raise IndexFormatError(f"{folder} is stored in backend '{name}', which this moonsearch does not have "
                               f"({', '.join(BACKENDS)})")


def backend_location(backend: str, uri: str | None, out: Path) -> dict | None:
    """What a build over `backend` records as the manifest's `store`, checked before anything is
    read: a wrong name, a uri without milvus, a bad uri or a missing extra is one line."""
    if backend not in BACKENDS:
        raise MoonsearchError(f"unknown store '{backend}' (choose from {', '.join(BACKENDS)})")
    if backend == FAISS_DUCKDB:
        if uri:
            raise MoonsearchError(f"--uri is for --store {MILVUS}; the {FAISS_DUCKDB} store lives in the index folder")
        return None
    from moonsearch.store.milvus import location

    return location(uri, out)


def _vector_class(backend: str):
    if backend == MILVUS:
        from moonsearch.store.milvus import MilvusVectorStore

        return MilvusVectorStore
    from moonsearch.store.faiss_vectors import FaissVectorStore

    return FaissVectorStore


def open_vectors(folder: Path, file_name: str, backend: str = FAISS_DUCKDB, files: dict | None = None) -> VectorStore:
    """The vector store kept in `folder / file_name` (a FAISS file, or a milvus pointer file),
    checked against its checksum in `files` (the manifest's record of the state's files) where
    there is one."""
    check_backend(backend, folder)
    store = _vector_class(backend)
    path = Path(folder) / file_name
    if not path.exists():
        raise IndexFormatError(f"{folder} is incomplete: {file_name} is missing (the index may have changed "
                               "since it was opened: open it again)")
    try:
        if not files or file_name not in files:
            return store.open(path)
        return store.from_bytes(read_verified(path, files[file_name]))
    except RuntimeError as exc:
        raise damaged(path, f"cannot be read ({str(exc).strip().splitlines()[-1][:120]})") from None


def create_vectors(vectors, ids, index_type: str, gpu: bool = False, backend: str = FAISS_DUCKDB,
                   location: dict | None = None) -> VectorStore:
    """A new vector store holding `vectors` under `ids` (a build's views, a write's first extras)."""
    check_backend(backend, Path("."))
    if backend == MILVUS:
        return _vector_class(backend).create(vectors, ids, index_type, location)
    return _vector_class(backend).create(vectors, ids, index_type, gpu=gpu)


def create_records(folder: Path, backend: str = FAISS_DUCKDB, location: dict | None = None):
    """A new record store in `folder` for a build to append batches of ProductRows to (`add`),
    finished by `close` (which builds the keyword index)."""
    check_backend(backend, Path(folder))
    if backend == MILVUS:
        from moonsearch.store.milvus import MilvusRecordWriter

        return MilvusRecordWriter(folder, location)
    from moonsearch.store.metadata import MetadataWriter

    return MetadataWriter(folder)


def open_records(folder: Path, backend: str = FAISS_DUCKDB, writable: bool = False) -> RecordStore:
    check_backend(backend, folder)
    if backend == MILVUS:
        from moonsearch.store.milvus import MilvusRecordStore

        return MilvusRecordStore(folder, writable=writable)
    from moonsearch.store.metadata import MetadataStore

    return MetadataStore(folder, writable=writable)


def release_unused(folder: Path, manifest) -> None:
    """Free what a backend keeps outside the index folder for states no longer on disk (milvus:
    their collections); files need nothing, they went with their snapshot folders."""
    if manifest.backend == MILVUS and manifest.store:
        from moonsearch.store.milvus import drop_unreferenced

        drop_unreferenced(folder, manifest.store)
