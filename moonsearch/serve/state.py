"""The index a server holds: opened and warmed once, searched by many threads, swapped after a write.

Why this shape: a warm ProductIndex answers searches from memory (records, keyword postings,
filter values), which threads may read together (the store gives each thread its own DuckDB
cursor for what still reads SQL: first uses, `row_of`). So searches run concurrently under a
shared lock, and a write builds and warms the next state beside the served one, then swaps it
in under the exclusive lock (readers wait only for the swap, not for the write).

Other processes write to the same index too: the server's other workers (`serve --workers N`)
or `moonsearch upsert` beside a running server. A follower thread looks at the manifest every
`FOLLOW_SECONDS` and, when it names a newer state, opens, warms and swaps it in the same way,
so every worker serves every write within about a second of its commit (near-real-time, as a
search engine's refresh interval). Writes from several workers queue on the index's write lock.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from moonsearch.search.product_index import ProductIndex
from moonsearch.store.filters import Filter, parse_filters
from moonsearch.store.manifest import Manifest

log = logging.getLogger("moonsearch.serve")


class ReadWriteLock:
    """Many readers or one writer; a waiting writer stops new readers (writes are rare, and
    must not starve under a steady query load)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class IndexState:
    """One opened, warmed state of the index (one manifest generation) and what the server
    derived from it: the facet values of rows already seen, and which filter keys are loaded."""

    def __init__(self, index: ProductIndex):
        self.index = index
        self.index.store.memory_after = 0   # long-lived: load what a search reads on its first use
        self.generation = index.manifest.generation
        self.loaded_keys: set[str] = set()   # filter keys whose values are in memory
        self.facet_values: dict[int, list[tuple[str, str]]] = {}
        self.known_keys = {key for key, _ in index.store.attribute_keys()}

    def warm(self, text: str = "shirt") -> None:
        """One search of each kind, so that what a search reads (keyword postings, records,
        filter values, the photo graphs) is in memory before the first request waits for it."""
        self.index.search(text=text, k=5)
        self.index.search(text=text, k=5, hybrid=False)
        self.index.allowed_rows([], "image")
        self.index.store.allowed_rows([])   # the filter index's product list
        if self.index.manifest.counts.get("with_image"):   # the photo path's graphs, before the first photo
            from PIL import Image

            self.index.embed_query(image=Image.new("RGB", (96, 128), "white"))
            if self.index.manifest.identity:   # the photo identity graph and vectors (image-only queries)
                self.index.search(image=Image.new("RGB", (96, 128), "white"), k=1)

    def load_key(self, key: str) -> None:
        """Bring one filter key's values into memory (its first use reads them), so later
        filtered searches on it stay in memory; a new state loads the keys the old one had."""
        if key in self.loaded_keys or key not in self.known_keys:
            return
        self.index.store.allowed_rows([Filter(key, "=", ("",))])
        self.loaded_keys.add(key)

    def prepare_filters(self, filters: list[str]) -> list[Filter]:
        """Parse filters (a bad one is a MoonsearchError naming it) and load their keys."""
        parsed = parse_filters(filters)
        for f in parsed:
            self.load_key(f.key)
        return parsed

    def row_of(self, product_id: str) -> int | None:
        return self.index.store.row_of(str(product_id))

    def facet_pairs(self, rows: np.ndarray, flatten) -> list[list[tuple[str, str]]]:
        """(key, value) pairs of each row's attributes, read once per row per state."""
        missing = [int(r) for r in rows if int(r) not in self.facet_values]
        if missing:
            records = self.index.store.products(missing)
            for row, rec in zip(missing, records):
                self.facet_values[row] = [(k, str(v)) for k, v in flatten(rec["attributes"])]
        return [self.facet_values[int(r)] for r in rows]

    def close(self) -> None:
        self.index.close()


FOLLOW_SECONDS = 1.0     # how often a server looks for states other processes committed
WRITE_WAIT_SECONDS = 20.0   # how long a write waits for another process's write to finish


class ServedIndex:
    """The state requests read (`reading()`), and the writes that replace it."""

    def __init__(self, folder: Path, device: str = "cpu", encoder=None, warm_text: str = "shirt"):
        from moonsearch import open_index

        self.folder = Path(folder)
        self.device = device
        self.warm_text = warm_text
        started = time.perf_counter()
        index = open_index(self.folder, device=device, encoder=encoder)
        index.encoder   # load the encoder now, not on the first request
        self._state = IndexState(index)
        self._state.warm(warm_text)
        self.ready_seconds = time.perf_counter() - started
        self._lock = ReadWriteLock()
        self._write_mutex = threading.Lock()   # one state change at a time: a write or a follow
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None

    def follow(self, every_s: float = FOLLOW_SECONDS) -> None:
        """Serve states other processes commit (see the module docstring), checking every `every_s`."""
        if self._follower is None:
            self._follower = threading.Thread(target=self._follow, args=(every_s,), name="moonsearch-follow",
                                              daemon=True)
            self._follower.start()

    def _follow(self, every_s: float) -> None:
        refused = None   # a generation that would not open (another encoder, damage): said once
        while not self._stop.wait(every_s):
            generation = None
            try:
                generation = Manifest.read(self.folder).generation
                if generation not in (self._state.generation, refused) and self._write_mutex.acquire(blocking=False):
                    try:
                        if Manifest.read(self.folder).generation != self._state.generation:
                            self._swap_in_current()
                    finally:
                        self._write_mutex.release()
            except Exception as exc:   # keep serving the state we have
                if generation is not None and generation != refused:
                    refused = generation
                    log.warning("cannot serve generation %s of %s (%s); still serving generation %s", generation,
                                self.folder, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                                self._state.generation)

    @contextmanager
    def reading(self) -> Iterator[IndexState]:
        with self._lock.read():
            yield self._state

    @property
    def state(self) -> IndexState:
        """The current state, for a quick look that needs no lock (generation, manifest)."""
        return self._state

    def write(self, change) -> object:
        """Run `change(writer)` on the index's writer, then open, warm and swap in the new state.
        Writes are serialised; searches go on against the old state until the swap."""
        with self._write_mutex:
            with self._state.index.writer(lock_wait_s=WRITE_WAIT_SECONDS) as writer:
                summary = change(writer)
            if Manifest.read(self.folder).generation != self._state.generation:   # not when nothing changed
                self._swap_in_current()
            return summary

    def _swap_in_current(self) -> None:
        """Open and warm the state the manifest names now, then swap it in (the caller holds
        the write mutex); the filter keys the old state had loaded load in the new one too."""
        old = self._state
        fresh = IndexState(ProductIndex.open(self.folder, device=self.device, encoder=old.index.encoder))
        fresh.warm(self.warm_text)
        for key in old.loaded_keys:
            fresh.load_key(key)
        with self._lock.write():
            self._state = fresh
        old.close()

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(timeout=30)
        with self._lock.write():
            self._state.close()
