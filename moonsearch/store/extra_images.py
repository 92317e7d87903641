"""The map of a multi-image index's further images (EXTRA_MAP_FILE, beside the extra vector
stores): extra vector key i is image `positions[i]` of product row `rows[i]`; row -1 is a key no
longer used (its product deleted or replaced). `first` maps a product row to the image position
its product vectors used when that was not image 0 (image 0 did not load). An index without the
file has one image per product, or was built before multi-image products.

One reader and writer of the file for the builder, the live writer and the query layer."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from moonsearch.store.files import EXTRA_MAP_FILE
from moonsearch.store.integrity import damaged, read_verified


class ExtraImageMap:
    def __init__(self, rows=(), positions=(), first: dict | None = None):
        self.rows = np.asarray(rows, np.int64).reshape(-1)
        self.positions = np.asarray(positions, np.int64).reshape(-1)
        self.first = dict(first or {})
        self._most: int | None = None   # most_per_product, kept until the map changes

    @classmethod
    def load(cls, folder: Path, files: dict | None = None) -> "ExtraImageMap | None":
        """The map in `folder`, checked against its checksum in `files` (the manifest's record
        of the state's files) where there is one; None where the folder has no map."""
        path = Path(folder) / EXTRA_MAP_FILE
        if not path.exists():
            return None
        raw = read_verified(path, (files or {}).get(EXTRA_MAP_FILE))
        try:
            with np.load(io.BytesIO(raw)) as data:
                return cls(data["rows"], data["positions"],
                           dict(zip(data["first_rows"].tolist(), data["first_positions"].tolist())))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise damaged(path, f"cannot be read ({exc})") from None

    @property
    def used(self) -> int:
        """How many extra vectors belong to a product now."""
        return int((self.rows >= 0).sum())

    @property
    def most_per_product(self) -> int:
        """The most extra images one product has (how deep an image query must look); counted
        once, not on every image query."""
        if self._most is None:
            used = self.rows[self.rows >= 0]
            self._most = int(np.bincount(used).max()) if len(used) else 0
        return self._most

    def retire(self, product_rows: Sequence[int]) -> np.ndarray:
        """Retire these products' extra vectors (deleted or replaced products); their keys."""
        keys = np.flatnonzero(np.isin(self.rows, np.asarray(list(product_rows), np.int64)))
        self.rows[keys] = -1
        self._most = None
        for row in product_rows:
            self.first.pop(int(row), None)
        return keys.astype(np.int64)

    def append(self, rows: Sequence[int], positions: Sequence[int]) -> np.ndarray:
        """Add extra images; their keys (the next slots of the map)."""
        keys = np.arange(len(self.rows), len(self.rows) + len(rows), dtype=np.int64)
        self.rows = np.concatenate([self.rows, np.asarray(rows, np.int64)])
        self.positions = np.concatenate([self.positions, np.asarray(positions, np.int64)])
        self._most = None
        return keys

    def save(self, folder: Path) -> None:
        """Write the map atomically; nothing where there is nothing to say and no map was there
        (an index whose products each have one image, image 0, has no map)."""
        path = Path(folder) / EXTRA_MAP_FILE
        if not (len(self.rows) or self.first or path.exists()):
            return
        first = np.array(sorted(self.first.items()), np.int64).reshape(-1, 2)
        tmp = path.with_name(EXTRA_MAP_FILE + ".tmp.npz")
        np.savez(tmp, rows=self.rows, positions=self.positions, first_rows=first[:, 0], first_positions=first[:, 1])
        os.replace(tmp, path)
