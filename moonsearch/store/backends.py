"""The storage backends an index can name in its manifest, and how each opens its stores.

`search/` and the writers ask here for a view's VectorStore and the RecordStore and use only
those interfaces (moonsearch.store.interface); a manifest naming a backend this moonsearch does
not have is refused in one line. Today there is one: FAISS files for vectors, DuckDB for records.
"""

from __future__ import annotations

from pathlib import Path

from moonsearch.errors import IndexFormatError
from moonsearch.store.integrity import damaged, read_verified
from moonsearch.store.interface import RecordStore, VectorStore

FAISS_DUCKDB = "faiss+duckdb"
BACKENDS = (FAISS_DUCKDB,)


def check_backend(name: str, folder: Path) -> None:
    if name not in BACKENDS:
        raise IndexFormatError(f"{folder} is stored in backend '{name}', which this moonsearch does not have "
                               f"({', '.join(BACKENDS)})")


def open_vectors(folder: Path, file_name: str, backend: str = FAISS_DUCKDB, files: dict | None = None) -> VectorStore:
    """The vector store kept in `folder / file_name`, checked against its checksum in `files`
    (the manifest's record of the state's files) where there is one."""
    check_backend(backend, folder)
    from moonsearch.store.faiss_vectors import FaissVectorStore

    path = Path(folder) / file_name
    if not path.exists():
        raise IndexFormatError(f"{folder} is incomplete: {file_name} is missing (the index may have changed "
                               "since it was opened: open it again)")
    try:
        if not files or file_name not in files:
            return FaissVectorStore.open(path)
        return FaissVectorStore.from_bytes(read_verified(path, files[file_name]))
    except RuntimeError as exc:
        raise damaged(path, f"cannot be read ({str(exc).strip().splitlines()[-1][:120]})") from None


def create_vectors(vectors, ids, index_type: str, gpu: bool = False, backend: str = FAISS_DUCKDB) -> VectorStore:
    """A new vector store holding `vectors` under `ids` (a build's views, a write's first extras)."""
    check_backend(backend, Path("."))
    from moonsearch.store.faiss_vectors import FaissVectorStore

    return FaissVectorStore.create(vectors, ids, index_type, gpu=gpu)


def create_records(folder: Path, backend: str = FAISS_DUCKDB):
    """A new record store in `folder` for a build to append batches of ProductRows to (`add`),
    finished by `close` (which builds the keyword index)."""
    check_backend(backend, Path(folder))
    from moonsearch.store.metadata import MetadataWriter

    return MetadataWriter(folder)


def open_records(folder: Path, backend: str = FAISS_DUCKDB, writable: bool = False) -> RecordStore:
    check_backend(backend, folder)
    from moonsearch.store.metadata import MetadataStore

    return MetadataStore(folder, writable=writable)
