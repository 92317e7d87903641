"""Checksums of an index state's files, recorded in its manifest and checked when it is read.

A damaged file (a disk error, a copy cut short, an editor saving over it) should be named in
one line with what to do, not surface as a FAISS or DuckDB traceback deep inside a query, and
`moonsearch info` should not call such an index healthy. Every write and build records each
file's size and SHA-256 in the manifest (`Manifest.files`). Opening an index compares sizes
(a stat per file, cheap enough for every query); `moonsearch info --check` hashes every byte.
Snapshot files are never changed after their commit (a write makes new files and links the
unchanged ones), so a recorded checksum stays valid for the life of the state.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from moonsearch.errors import IndexDamagedError
from moonsearch.store.manifest import MANIFEST_FILE


def state_files(data: Path) -> list[str]:
    """The files that make up the state in `data`: all but the manifest and hidden temporaries."""
    data = Path(data)
    return sorted(name for name in os.listdir(data)
                  if name != MANIFEST_FILE and not name.startswith(".") and (data / name).is_file())


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def record_files(data: Path, previous: dict | None = None, previous_data: Path | None = None) -> dict:
    """{file name: {"bytes": n, "sha256": hex}} for the state in `data`. A file that is still a
    hard link to the same file of `previous_data` (a write left it as it was) keeps its recorded
    checksum instead of being hashed again."""
    data = Path(data)
    previous = previous or {}
    files = {}
    for name in state_files(data):
        stat = (data / name).stat()
        known = previous.get(name)
        if known is not None and previous_data is not None:
            try:
                same = os.stat(Path(previous_data) / name).st_ino == stat.st_ino
            except FileNotFoundError:
                same = False
            if same and known.get("bytes") == stat.st_size:
                files[name] = dict(known)
                continue
        files[name] = {"bytes": stat.st_size, "sha256": sha256_of(data / name)}
    return files


def damaged(path: Path, what: str) -> IndexDamagedError:
    """The one line for a damaged index file: which file, what is wrong with it, what to do."""
    return IndexDamagedError(f"{path} {what}: the index is damaged; rebuild it with `moonsearch index`, "
                             "or restore the index folder from a backup")


def _wrong_size(path: Path, size: int, recorded: int) -> IndexDamagedError:
    kind = "truncated" if size < recorded else "longer than written"
    return damaged(path, f"is {kind} ({size:,} bytes; the index recorded {recorded:,})")


def _changed(path: Path) -> IndexDamagedError:
    return damaged(path, "does not match its checksum (its bytes changed after it was written)")


def read_verified(path: Path, entry: dict | None) -> bytes:
    """A file read whole, checked against its recorded checksum (`entry`; None: not recorded).
    For files a query reads whole anyway (vector files, the extra-image map), hashing the bytes
    in memory costs about what reading them does, so a query never serves garbled vectors."""
    data = Path(path).read_bytes()
    if entry is not None:
        if len(data) != entry["bytes"]:
            raise _wrong_size(path, len(data), entry["bytes"])
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise _changed(path)
    return data


def check_sizes(data: Path, files: dict | None) -> None:
    """The quick check at open: every recorded file is there with its recorded size."""
    for name, entry in (files or {}).items():
        try:
            size = (Path(data) / name).stat().st_size
        except FileNotFoundError:
            raise damaged(Path(data) / name, "is missing") from None
        if size != entry["bytes"]:
            raise _wrong_size(Path(data) / name, size, entry["bytes"])


def check_contents(data: Path, files: dict | None) -> int:
    """The full check: sizes, then every file's SHA-256 against the manifest's. Returns how
    many files were verified (0 for an index built before checksums were recorded)."""
    check_sizes(data, files)
    for name, entry in (files or {}).items():
        if sha256_of(Path(data) / name) != entry["sha256"]:
            raise _changed(Path(data) / name)
    return len(files or {})
