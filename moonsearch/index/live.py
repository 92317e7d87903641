"""Writes to a built index: upsert, delete, update and compact without a rebuild.

Every write makes a new snapshot: a folder `snap-NNNNNN` inside the index folder holding the
whole new state (vectors, records, keyword index, extra-image map, a copy of the manifest).
Files the write does not change are hard links to the current state's; changed ones are
written fresh (a hard-linked file is never written in place). The write commits by replacing
`manifest.json`, whose `snapshot` names the state, with os.replace: one atomic step, so a reader
(which reads the manifest once, at open) sees the whole old or the whole new state. A writer
killed before that step leaves an unreferenced folder that the next write removes.

Superseded snapshots stay for GRACE_SECONDS after they stop being current, so a reader that
opened one just before a write can still load its files; the next write removes older ones.

One writer at a time: `.NAME.lock` beside the index holds an flock and the writer's PID; a
second writer is refused with that PID, and a lock whose process died is free again (the
kernel drops the flock with the process), so there are no stale locks to clear by hand.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from moonsearch.catalog import Product, open_catalog
from moonsearch.catalog.content import product_hash
from moonsearch.catalog.fields import RecordContext, build_product
from moonsearch.catalog.models import Skip
from moonsearch.encoder.base import VIEWS, Encoder
from moonsearch.catalog.inputs import UNWEIGHTED, image_failure, keyword_text, model_input
from moonsearch.errors import MoonsearchError, UnknownProductError
from moonsearch.store.backends import check_backend, create_vectors, open_records, open_vectors, release_unused
from moonsearch.index.further_images import after_first, embed_further
from moonsearch.store.extra_images import ExtraImageMap
from moonsearch.store.files import EXTRA_VIEWS, IDENTITY_VIEW, extra_view_file, view_file
from moonsearch.store.filters import Filter, parse_filters
from moonsearch.store.integrity import record_files
from moonsearch.store.manifest import MANIFEST_FILE, Manifest
from moonsearch.store.metadata import DB_FILE, ProductRow
from moonsearch.index.snapshots import (GRACE_SECONDS, WriteLock, lock_path, remove_old_snapshots,  # noqa: F401
                                        snapshot_name)

BATCH = 64


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _save_vectors(store, path: Path) -> None:
    """Into a fresh file: the path may be a hard link shared with the current state."""
    tmp = path.with_name(path.name + ".tmp")
    store.save(tmp)
    os.replace(tmp, path)


@dataclass
class WriteSummary:
    """What one write did; `encoded` counts products whose vectors were computed."""
    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    deleted: int = 0
    encoded: int = 0
    skipped: int = 0
    image_failures: int = 0
    compacted: bool = False      # the vector structures were rebuilt (compact)
    generation: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0  # of `seconds`: decoding images and running the encoder
    report: list[dict] = field(default_factory=list)


def products_from_records(records: Iterable[Product | Mapping], root: Path | str = ".") -> list[Product]:
    """Products given as Product objects or as catalog records (dicts; image paths relative to
    `root`); a record that is not a product is a one-line error naming why."""
    ctx = RecordContext(root=Path(root))
    products = []
    for number, item in enumerate(records, 1):
        if isinstance(item, Product):
            products.append(item)
            continue
        built = build_product(item, f"record {number}", ctx)
        if isinstance(built, Skip):
            raise MoonsearchError(f"record {number} is not a product: {built.reason}")
        products.append(built)
    ids = [p.id for p in products]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise MoonsearchError(f"product id(s) given more than once: {', '.join(twice[:5])}")
    return products


class IndexWriter:
    """Changes one index: `upsert`, `delete`, `update`, each committed as one snapshot.

    Holds the write lock from open to close. The encoder must be the one that built the index
    (checked as `query` checks it); it loads from the manifest when not given."""

    def __init__(self, folder: Path | str, encoder: Encoder | str | None = None, device: str = "auto",
                 lock_wait_s: float = 0.0):
        self.folder = Path(folder)
        self.lock = WriteLock(self.folder).acquire(lock_wait_s)
        try:
            manifest = Manifest.read(self.folder)
            check_backend(manifest.backend, self.folder)
            self.encoder = self._encoder(manifest, encoder, device)
            if manifest.identity:   # new products get identity vectors from the model that made the others
                from moonsearch.encoder.photo_identity import WithIdentity, for_manifest

                self.encoder = WithIdentity(self.encoder, for_manifest(manifest.identity))
            remove_old_snapshots(self.folder, manifest)
        except BaseException:
            self.lock.release()
            raise

    def _encoder(self, manifest: Manifest, encoder, device: str) -> Encoder:
        from moonsearch.encoder.registry import load_encoder
        from moonsearch.devices import placement_for

        if encoder is None or isinstance(encoder, str):
            spec = manifest.encoder
            name = encoder if isinstance(encoder, str) and encoder != "default" else spec["name"]
            encoder = load_encoder(name, device=placement_for(device, "flat").encoder,
                                   weights=spec.get("weights") if name == spec["name"] else None)
        manifest.check_encoder(encoder.encoder_id, self.folder)
        return encoder

    def close(self) -> None:
        """Release the lock, removing first the snapshots no reader can need any more."""
        try:
            if self.lock.handle is not None:
                manifest = Manifest.read(self.folder)
                remove_old_snapshots(self.folder, manifest)
                release_unused(self.folder, manifest)
        finally:
            self.lock.release()

    def __enter__(self) -> "IndexWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the three writes -------------------------------------------------------------------

    def upsert(self, products: Iterable[Product | Mapping], root: Path | str = ".") -> WriteSummary:
        """Insert products, replacing those whose id is already there (always re-encoded)."""
        return self._write(products_from_records(products, root), delete_ids=(), only_changed=False)

    def update(self, catalog_path: Path | str) -> WriteSummary:
        """Make the index hold exactly the catalog's products: new and changed ones encoded
        (changed: another content hash), unchanged ones left as they are, absent ones removed."""
        catalog = open_catalog(catalog_path)
        scan = catalog.scan()   # duplicate ids and bad text fail here, before any encoding
        if scan.products == 0:
            raise MoonsearchError(f"{catalog.path} has no valid products ({len(scan.skips)} rows skipped): update "
                                  "would empty the index; `moonsearch delete` removes products on purpose")
        products = list(catalog.products())
        summary = self._write(products, delete_ids=None, only_changed=True)
        summary.skipped = len(catalog.skips)
        return summary

    def add_catalog(self, catalog_path: Path | str) -> WriteSummary:
        """`moonsearch add`: upsert every product of a catalog."""
        catalog = open_catalog(catalog_path)
        catalog.scan()
        summary = self._write(list(catalog.products()), delete_ids=(), only_changed=False)
        summary.skipped = len(catalog.skips)
        return summary

    def delete(self, ids: Sequence[str] = (), filters: Sequence[Filter | str] = ()) -> WriteSummary:
        """Remove products by id and/or by filter (every product matching all filters)."""
        if not ids and not filters:
            raise MoonsearchError("delete needs product ids or --filter")
        return self._write([], delete_ids=list(ids), only_changed=False, delete_filters=list(filters))

    # -- one snapshot ---------------------------------------------------------------------

    def compact(self, index_type: str = "auto") -> WriteSummary:
        """Rebuild every view's vector structure from the vectors it stores, nothing re-encoded:
        IVF lists trained afresh on today's vectors, HNSW graphs without removed products, and
        with `auto` an index that outgrew the flat threshold turned into IVF (or back)."""
        return self._write(lambda manifest, records, snapshot: self._compact(manifest, records, snapshot, index_type))

    # -- one snapshot ---------------------------------------------------------------------

    def _write(self, products: list[Product] | None = None, delete_ids=(), only_changed: bool = False,
               delete_filters: Sequence[Filter | str] = (), apply=None) -> WriteSummary:
        """One snapshot: the current state's files linked or copied in, changed by `apply`
        (default: the product changes asked for), and committed unless nothing changed."""
        if apply is None and callable(products):
            apply, products = products, None
        if apply is None:
            def apply(manifest, records, snapshot):
                return self._apply(manifest, records, snapshot, products, delete_ids, only_changed, delete_filters)
        started = time.time()
        manifest = Manifest.read(self.folder)   # the state this write starts from (we hold the lock)
        current = manifest.data_folder(self.folder)
        generation = manifest.generation + 1
        snapshot = self.folder / snapshot_name(generation)
        shutil.rmtree(snapshot, ignore_errors=True)
        snapshot.mkdir()
        try:
            summary = self._fill(manifest, current, snapshot, apply)
        except BaseException:
            shutil.rmtree(snapshot, ignore_errors=True)
            raise
        summary.generation = summary.generation or generation
        summary.seconds = time.time() - started
        return summary

    def _fill(self, manifest: Manifest, current: Path, snapshot: Path, apply) -> WriteSummary:
        for name in os.listdir(current):
            source = current / name
            if name == MANIFEST_FILE or not source.is_file() or name.startswith("."):
                continue
            if name == DB_FILE:
                shutil.copy2(source, snapshot / name)   # DuckDB writes its file in place: a copy of its own
            else:
                _link_or_copy(source, snapshot / name)
        records = open_records(snapshot, manifest.backend, writable=True)
        try:
            summary, changes = apply(manifest, records, snapshot)
        finally:
            records.close()   # rebuilds the keyword index and checkpoints when anything changed
        if not (summary.added or summary.replaced or summary.deleted or summary.compacted):
            shutil.rmtree(snapshot, ignore_errors=True)   # nothing changed: no new state to commit
            summary.generation = manifest.generation
            return summary
        files = record_files(snapshot, manifest.files, current)
        committed = replace(manifest, **changes, snapshot=snapshot.name, generation=manifest.generation + 1,
                            files=files)
        committed.write(snapshot)        # the snapshot's own record of what it is
        committed.write(self.folder)     # the commit: one os.replace of the manifest
        return summary

    def _compact(self, manifest: Manifest, records, snapshot: Path, index_type: str):
        from moonsearch.store.faiss_vectors import EXACT_BELOW, resolve_index_type

        keys = np.asarray(records.allowed_rows([]), np.int64)
        kind = resolve_index_type(index_type, len(keys))
        for view in manifest.vector_views():
            store = open_vectors(snapshot, view_file(view), manifest.backend)
            rebuilt = create_vectors(store.vectors(keys), keys, "flat" if view == IDENTITY_VIEW else kind,
                                     backend=manifest.backend,
                                     location=manifest.store)
            _save_vectors(rebuilt, snapshot / view_file(view))
        extras = ExtraImageMap.load(snapshot) or ExtraImageMap()
        used = np.flatnonzero(extras.rows >= 0).astype(np.int64)
        if len(used):
            extra_kind = kind if len(used) >= EXACT_BELOW else "flat"
            for view in manifest.extra_views():
                store = open_vectors(snapshot, extra_view_file(view), manifest.backend)
                rebuilt = create_vectors(store.vectors(used), used, "flat" if view == IDENTITY_VIEW else extra_kind,
                                         backend=manifest.backend,
                                         location=manifest.store)
                _save_vectors(rebuilt, snapshot / extra_view_file(view))
        return WriteSummary(compacted=True), {"index_type": kind}

    def _apply(self, manifest: Manifest, records, snapshot: Path, products: list[Product], delete_ids,
               only_changed: bool, delete_filters):
        summary = WriteSummary()
        stored = records.content_hashes()    # id -> (key, hash)
        # Which products go: named ids, filter matches, or (update) those the catalog lacks.
        gone: set[int] = set()
        if delete_ids is None:
            wanted = {p.id for p in products}
            gone = {key for pid, (key, _) in stored.items() if pid not in wanted}
        elif delete_ids:
            found = records.keys_of([str(i) for i in delete_ids])
            missing = [str(i) for i in delete_ids if str(i) not in found]
            if missing and not found and not delete_filters:
                raise UnknownProductError(f"no product with id {', '.join(missing[:5])} in {self.folder}")
            summary.report += [{"kind": "not_found", "id": i} for i in missing]
            gone |= set(found.values())
        if delete_filters:
            parsed = [f if isinstance(f, Filter) else parse_filters([f])[0] for f in delete_filters]
            gone |= set(records.allowed_rows(parsed).tolist())
        # Which products are (re-)encoded, under which key.
        next_key = max(records.max_row() + 1, max(gone, default=-1) + 1, manifest.next_key or 0)
        todo: list[tuple[Product, int, str]] = []
        for product in products:
            digest = product_hash(product)
            key, old = stored.get(product.id, (None, None))
            if key is not None and only_changed and old == digest:
                summary.unchanged += 1
                continue
            if key is None:
                key, next_key = next_key, next_key + 1
                summary.added += 1
            else:
                summary.replaced += 1
            todo.append((product, key, digest))
        summary.deleted = len(gone)
        touched = sorted(gone | {key for _, key, _ in todo})

        extras = ExtraImageMap.load(snapshot) or ExtraImageMap()
        retired = extras.retire(touched)
        encoding = time.time()
        rows, views, further, failures = self._encode(todo, summary, manifest.keyword_weights or UNWEIGHTED,
                                                      manifest.vector_views(), manifest.extra_views())
        summary.encode_seconds = time.time() - encoding
        summary.encoded = len(rows)
        new_keys = np.array([r.row for r in rows], np.int64)
        for view in manifest.vector_views():
            store = open_vectors(snapshot, view_file(view), manifest.backend)
            store.remove(np.asarray(touched, np.int64))
            if len(rows):
                store.add(new_keys, views[view])
            _save_vectors(store, snapshot / view_file(view))
        self._write_extras(manifest, snapshot, extras, retired, further)
        records.delete(touched)
        records.upsert(rows)
        for product_row, position in failures:
            extras.first[product_row] = position
        extras.save(snapshot)
        summary.image_failures = sum(1 for entry in summary.report if entry.get("kind") == "image")
        with_image = len(records.rows_with_image())
        products_now = records.count()
        counts = dict(manifest.counts)
        counts.update(products=products_now, with_image=with_image, text_only=products_now - with_image,
                      extra_images=extras.used, images=with_image + extras.used,
                      image_failures=counts.get("image_failures", 0) + summary.image_failures)
        return summary, {"counts": counts, "next_key": next_key}

    def _write_extras(self, manifest, snapshot: Path, extras: ExtraImageMap, retired: np.ndarray, further) -> None:
        """Retire the touched products' extra vectors and add the new ones (a map file and its
        stores appear with the first product that has several images)."""
        if not len(retired) and not further["rows"]:
            return
        keys = extras.append(further["rows"], further["positions"]) if further["rows"] else np.zeros(0, np.int64)
        for view in manifest.extra_views():
            path = snapshot / extra_view_file(view)
            if path.exists():
                store = open_vectors(snapshot, extra_view_file(view), manifest.backend)
                store.remove(retired)
                store.add(keys, np.concatenate(further[view]) if further["rows"] else None)
            elif further["rows"]:
                store = create_vectors(np.concatenate(further[view]), keys, "flat", backend=manifest.backend,
                                       location=manifest.store)
            else:
                continue
            _save_vectors(store, path)

    def _encode(self, todo, summary: WriteSummary, weights: dict, views_of: list = VIEWS,
                extra_views: tuple = EXTRA_VIEWS):
        """ProductRows and the three views' vectors of the products to (re-)encode, in batches;
        and the vectors of their further images, as a build makes them."""
        rows: list[ProductRow] = []
        chunks = {view: [] for view in views_of}
        further = {"rows": [], "positions": [], **{view: [] for view in extra_views}}
        first_failures: list[tuple[int, int]] = []
        for start in range(0, len(todo), BATCH):
            batch = todo[start:start + BATCH]
            inputs = [model_input(p) for p, _, _ in batch]
            views = self.encoder.encode_views([given.text for given in inputs], [given.image for given in inputs])
            for view in views_of:
                chunks[view].append(np.asarray(views[view], np.float32))
            more = []
            for (product, key, digest), given in zip(batch, inputs):
                position = given.loaded.position
                summary.report += [image_failure(product, p, exc) for p, exc in given.loaded.failures]
                if position:
                    first_failures.append((key, position))
                more += after_first(key, given.text, product, position)
                rows.append(ProductRow(row=key, id=product.id, title=product.title, description=product.description,
                                       images=[str(p) for p in product.images], has_image=given.image is not None,
                                       attributes=product.attributes, source=product.source, text=given.text,
                                       keywords=keyword_text(product.title, product.attributes, weights),
                                       content_hash=digest))
            found = embed_further(self.encoder, more)
            summary.report += found.failures
            if found.keys:
                for view in extra_views:
                    further[view].append(found.vectors[view])
                further["rows"] += found.keys
                further["positions"] += found.positions
        views = {view: np.concatenate(parts) if parts else None for view, parts in chunks.items()}
        return rows, views, further, first_failures


def open_writer(folder: Path | str, encoder: Encoder | str | None = None, device: str = "auto",
                lock_wait_s: float = 0.0) -> IndexWriter:
    """An IndexWriter on `folder` (see IndexWriter); close it, or use it in a `with` block.
    `lock_wait_s`: how long to wait for another writer to finish before refusing."""
    return IndexWriter(folder, encoder=encoder, device=device, lock_wait_s=lock_wait_s)
