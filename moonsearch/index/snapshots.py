"""Snapshots of an index folder, and the lock that lets one process at a time write one.

An index folder holds its state either directly (a fresh build, or an index built before live
writes) or in a snapshot folder `snap-NNNNNN` inside it, which `manifest.json` names. Writes
(moonsearch.index.live) and rebuilds (moonsearch.index.builder) make a new snapshot and commit
it by replacing the manifest with os.replace, so the path always holds a whole index, and a
reader, which reads the manifest once at open, sees one state from start to end.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from pathlib import Path

from moonsearch.errors import MoonsearchError
from moonsearch.store.manifest import Manifest

SNAPSHOT_PREFIX = "snap-"
GRACE_SECONDS = 60.0
# What a build leaves in the index folder itself besides the manifest and vectors-*.faiss (named
# here, not imported from the builder, which imports this module).
BUILD_FILES = {"metadata.duckdb", "metadata.duckdb.wal", "extra-images.npz", "skipped.jsonl", "milvus-records.json"}


def snapshot_name(generation: int) -> str:
    return f"{SNAPSHOT_PREFIX}{generation:06d}"


def lock_path(folder: Path) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


class WriteLock:
    """An exclusive, non-blocking flock on the index's lock file, with the holder's PID in it.

    The file is removed on release (so no lock file is left beside an idle index); whoever
    locked a file that was meanwhile removed sees another inode at the path and tries again."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = lock_path(self.folder)
        self.handle = None

    def acquire(self, wait_s: float = 0.0) -> "WriteLock":
        """Take the lock; while another writer holds it, retry for up to `wait_s` seconds (a
        server's workers queue their writes this way), then refuse, naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(0.0, wait_s)
        attempts = 0
        while attempts < 100:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "?"
                handle.close()
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise MoonsearchError(f"index {self.folder} is being written by PID {holder}; "
                                      "try again when it has finished") from None
            attempts += 1
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
                self.handle = handle
                return self
            handle.close()   # locked a file its holder had just removed: take the new one
        raise MoonsearchError(f"cannot lock {self.path}")

    def release(self) -> None:
        if self.handle is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.handle.close()
            self.handle = None

    def __enter__(self) -> "WriteLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _generation_of(name: str) -> int | None:
    suffix = name[len(SNAPSHOT_PREFIX):]
    return int(suffix) if name.startswith(SNAPSHOT_PREFIX) and suffix.isdigit() else None


def remove_old_snapshots(folder: Path, manifest: Manifest, grace: float = GRACE_SECONDS) -> None:
    """Snapshot folders no reader can need: left by a killed write (newer than the current
    one), or superseded more than `grace` seconds ago; the state before the current one stays
    for `grace` seconds after the current one was made. Files of a build (generation 0, in the
    index folder itself) go the same way. Called with the write lock held."""
    folder = Path(folder)
    current = manifest.generation
    made: dict[int, float] = {}
    for path in folder.iterdir():
        generation = _generation_of(path.name)
        if generation is not None and path.is_dir():
            made[generation] = path.stat().st_mtime
    now = time.time()
    for generation in sorted(made):
        if generation == current:
            continue
        successor = min((g for g in made if g > generation), default=None)
        stale = generation > current or (successor is not None and successor <= current
                                         and now - made[successor] > grace)
        if stale:
            shutil.rmtree(folder / snapshot_name(generation), ignore_errors=True)
    if manifest.snapshot and made.get(min((g for g in made if g >= 1), default=-1), now) < now - grace:
        for name in os.listdir(folder):   # the build's own files, superseded by the first write
            path = folder / name
            if path.is_file() and (name in BUILD_FILES or (name.startswith("vectors-") and name.endswith(".faiss"))):
                path.unlink(missing_ok=True)
