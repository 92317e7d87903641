"""The indexing runner: catalog (reader) -> encoder (mapper) -> FAISS + DuckDB (writers).

Everything is written into a hidden sibling folder; only a finished build, manifest last, is
put in place: renamed to the path where there was no index, else moved in as the index's next
snapshot and committed by replacing its manifest, so the path is never without an index. An
interrupted or failed `index` leaves the previous index untouched. A build holds the index's
write lock (moonsearch.index.snapshots), as live writes do.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import moonsearch
from moonsearch.catalog import Product, open_catalog
from moonsearch.catalog.content import product_hash
from moonsearch.encoder.base import VIEWS, Encoder
from moonsearch.encoder.registry import load_encoder, weights_path
from moonsearch.catalog.inputs import ModelInput, image_failure, keyword_text, model_input
from moonsearch.catalog.inputs import keyword_weights as keyword_weights_of
from moonsearch.errors import MoonsearchError
from moonsearch.store import faiss_vectors
from moonsearch.store.backends import FAISS_DUCKDB, backend_location, create_records, create_vectors, release_unused
from moonsearch.index.further_images import FurtherImages, embed_batch_further
from moonsearch.devices import placement_for
from moonsearch.index.snapshots import WriteLock, remove_old_snapshots, snapshot_name
from moonsearch import threads as thread_policy
from moonsearch.progress import progress_bar
from moonsearch.store.extra_images import ExtraImageMap
from moonsearch.encoder.photo_identity import WithIdentity
from moonsearch.store.files import EXTRA_VIEWS, IDENTITY_VIEW, SKIPS_FILE, extra_view_file, view_file
from moonsearch.store.integrity import record_files
from moonsearch.store.manifest import MANIFEST_FILE, Manifest
from moonsearch.store.metadata import ProductRow

# Products encoded per chunk when batches are sorted by text length: the sort has a few batches
# to choose from, and a chunk's decoded images stay few. A chunk is also cut at a batch boundary
# once its images pass CHUNK_PIXELS (about 300 MB of RGB).
CHUNK_BATCHES = 4
CHUNK_PIXELS = 100_000_000
DISPLAY_CANDIDATES = ("brand", "articleType", "category", "baseColour", "colour", "color", "gender", "price")


@dataclass
class BuildSummary:
    out: Path
    products: int = 0
    with_image: int = 0
    text_only: int = 0
    skipped: int = 0
    images: int = 0            # images embedded (product vectors' images plus extra images)
    extra_images: int = 0      # of those, images after a product's first (vectors in the extra files)
    image_failures: int = 0    # images that did not load (each reported)
    index_type: str = ""
    seconds: float = 0.0
    placement: str = ""
    report: list[dict] = field(default_factory=list)   # skipped rows and text-only products

    @property
    def products_per_second(self) -> float:
        return self.products / self.seconds if self.seconds else 0.0


def _staging_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.building-{os.getpid()}"


def _remove_stale_staging(out: Path) -> None:
    """Folders left by builds that were killed (their process is gone): a staging folder is
    removed; an index retired by a swap cut between its two renames goes back into place when
    nothing took it, else it is removed."""
    for state in ("building", "old"):
        for folder in out.parent.glob(f".{out.name}.{state}-*"):
            pid = folder.name.rsplit("-", 1)[-1]
            if not pid.isdigit() or _process_alive(int(pid)):
                continue
            if state == "old" and not out.exists():
                folder.rename(out)
            else:
                shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_replaceable(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (not (out / MANIFEST_FILE).exists() and any(out.iterdir()))):
        raise MoonsearchError(f"{out} exists and is not a moonsearch index; refusing to replace it")


def _swap_into_place(staging: Path, out: Path) -> None:
    """Only where no index is at `out` (nothing, or an empty folder): the finished build is
    renamed into place. Over an index, `_commit_snapshot` is used: there is no moment without one."""
    _check_replaceable(out)
    retired = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def _current_generation(out: Path) -> int | None:
    """The generation of the index at `out` (0 for a build), None where there is none to keep
    serving during a rebuild (no folder, no manifest, or one that is not JSON)."""
    try:
        data = json.loads((out / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    generation = data.get("generation", 0) if isinstance(data, dict) else None
    return generation if isinstance(generation, int) else None


def _commit(staging: Path, out: Path, manifest: Manifest) -> None:
    """Put a finished build at `out`. Over an existing index the staging folder becomes its next
    snapshot (one rename inside the same file system) and replacing the manifest commits it:
    readers see the old index or the new one, and the path never lacks one. The old state's
    files go later, when no reader can still be opening them (snapshots.remove_old_snapshots)."""
    _check_replaceable(out)
    generation = _current_generation(out)
    if generation is None:
        manifest.write(staging)
        _swap_into_place(staging, out)
        return
    manifest.generation = generation + 1
    manifest.snapshot = snapshot_name(manifest.generation)
    shutil.rmtree(out / manifest.snapshot, ignore_errors=True)   # left by a write killed before its commit
    manifest.write(staging)
    staging.rename(out / manifest.snapshot)
    manifest.write(out)   # the commit
    remove_old_snapshots(out, manifest)
    release_unused(out, manifest)


def _display_fields(attribute_counts: dict[str, int]) -> list[str]:
    chosen = [k for k in DISPLAY_CANDIDATES if attribute_counts.get(k)]
    return chosen[:4] or sorted(attribute_counts, key=attribute_counts.get, reverse=True)[:3]


class _ViewBuffers:
    def __init__(self):
        self.chunks = {view: [] for view in VIEWS}

    def add(self, views) -> None:
        for view in views:   # VIEWS, and the identity channel's when the build has it
            self.chunks.setdefault(view, []).append(views[view])

    def stacked(self, view: str, dim: int) -> np.ndarray:
        parts = self.chunks[view]
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


class _ExtraVectors:
    """Vectors of products' further images, and for each the product row and image position.
    `first` lists products whose product vectors used an image other than image 0 (it failed)."""

    def __init__(self):
        self.chunks = {view: [] for view in EXTRA_VIEWS}
        self.rows: list[int] = []
        self.positions: list[int] = []
        self.first: list[tuple[int, int]] = []

    def add(self, views, rows: list[int], positions: list[int]) -> None:
        for view in views:   # EXTRA_VIEWS, and the identity channel's when the build has it
            self.chunks.setdefault(view, []).append(views[view])
        self.rows.extend(rows)
        self.positions.extend(positions)

    def save(self, folder: Path, kind: str, gpu: bool, backend: str, location: dict | None) -> None:
        """Nothing when every product has one image embedded, as image 0: such an index is
        exactly what it was before multi-image products."""
        if self.rows:
            # exact search unless there are as many extras as `auto` takes ANN for
            extra_kind = kind if len(self.rows) >= faiss_vectors.EXACT_BELOW else "flat"
            keys = np.arange(len(self.rows), dtype=np.int64)   # extra vector key = its slot in the map
            for view in self.chunks:
                store = create_vectors(np.concatenate(self.chunks[view]), keys,
                                       "flat" if view == IDENTITY_VIEW else extra_kind, gpu=gpu, backend=backend,
                                       location=location)
                store.save(folder / extra_view_file(view))
        ExtraImageMap(self.rows, self.positions, dict(self.first)).save(folder)


class _Chunk:
    """Products read ahead as the encoder sees them (moonsearch.catalog.inputs): each one's text
    and first loadable image, decoded (or why none was). An engine that embeds further images
    itself hands them over in `further`: per batch of the chunk, embed_batch_further's list,
    keys counted from the chunk's first product."""

    def __init__(self, products: list[Product], inputs: list[ModelInput],
                 further: list[list[FurtherImages]] | None = None):
        self.products = products
        self.inputs = inputs
        self.further = further


def _read_chunks(catalog, batch_size: int, chunk_batches: int, workers: int) -> Iterator[_Chunk]:
    """Chunks of up to `chunk_batches` whole batches, each product's first loadable image
    decoded (by `workers` threads when there are several). A chunk is cut early, at a batch
    boundary so batches stay exactly those of a serial build, once its decoded images pass
    CHUNK_PIXELS: large catalog photos never pile up in memory. Batches and chunks end at each
    records file's end (a catalog of several files), as the Ray engine's, one task a file."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="moonsearch-decode") if workers > 1 else None

    def decode(batch: list[Product]) -> list:
        return list(pool.map(model_input, batch)) if pool is not None else [model_input(p) for p in batch]

    try:
        for file_products in catalog.products_by_file():
            products: list[Product] = []
            loaded: list = []
            batch: list[Product] = []
            pixels = 0
            for product in file_products:
                batch.append(product)
                if len(batch) < batch_size:
                    continue
                done = decode(batch)
                products += batch
                loaded += done
                pixels += sum(given.image.width * given.image.height for given in done if given.image is not None)
                batch = []
                if len(products) >= batch_size * chunk_batches or pixels >= CHUNK_PIXELS:
                    yield _Chunk(products, loaded)
                    products, loaded, pixels = [], [], 0
            if batch:
                loaded += decode(batch)
                products += batch
            if products:
                yield _Chunk(products, loaded)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)


class _Prefetch:
    """Reads and decodes the next chunk in a background thread while the caller encodes the
    current one. PIL releases the GIL while it decodes, and the encoder's runtimes while they
    compute, so decoding runs beside the encoder instead of before it. At most one chunk
    waits in the queue; an error in the reader reaches the caller at the chunk it stopped."""

    _DONE = object()

    def __init__(self, chunks: "Iterator[_Chunk]"):
        self.chunks = chunks
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="moonsearch-decode", daemon=True)
        self.thread.start()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for chunk in self.chunks:
                if not self._put(chunk):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)
            return
        self._put(self._DONE)

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def _encode_chunk(encoder: Encoder, texts: list[str], images: list, batch_size: int, by_length: bool):
    """The three views of a chunk, rows in catalog order. With `by_length` the products are
    encoded in batches of similar text length (a stable sort of the chunk), so the text tower
    and the fusion model pad each batch to a near length instead of the chunk's longest; the
    vectors go back to their rows afterwards, so only float rounding can differ."""
    n = len(texts)
    order = sorted(range(n), key=lambda i: len(texts[i])) if by_length else list(range(n))
    out: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        rows = order[start:start + batch_size]
        views = encoder.encode_views([texts[i] for i in rows], [images[i] for i in rows])
        for view in getattr(views, "names", lambda: VIEWS)():
            if view not in out:
                out[view] = np.zeros((n, views[view].shape[1]), np.float32)
            out[view][rows] = views[view]
    return out


def _encoded_locally(chunks: Iterator[_Chunk], encoder: Encoder, batch_size: int, by_length: bool):
    """The local engine: each chunk read here encoded in this process, (chunk, views)."""
    for chunk in chunks:
        yield chunk, _encode_chunk(encoder, [given.text for given in chunk.inputs],
                                   [given.image for given in chunk.inputs], batch_size, by_length)


def encoding_engine(engine: str, address: str | None = None, workers: int | None = None):
    """None for the local engine (this process encodes), else the object whose
    `encoded_chunks(catalog, encoder, batch_size, chunk_batches, by_length)` yields what
    `_encoded_locally` does; checked before anything is read."""
    if engine == "local":
        if address is not None or workers is not None:
            raise MoonsearchError("--address and --ray-workers are for --engine ray")
        return None
    if engine == "ray":
        from moonsearch.index.ray_engine import RayEngine

        return RayEngine(address, workers)
    raise MoonsearchError(f"unknown engine '{engine}' (choose from local, ray)")


def build_index(
    catalog_path: Path | str,
    out: Path | str,
    encoder: Encoder | str = "default",
    index_type: str = "auto",
    device: str = "auto",
    batch_size: int = 64,
    fail_after_batches: int | None = None,
    threads: int | None = None,
    overlap: bool = True,
    sort_by_length: bool = True,
    keyword_weights: dict | str | None = None,
    store: str = FAISS_DUCKDB,
    uri: str | None = None,
    engine=None,
    identity: bool | None = None,
) -> BuildSummary:
    """Index a catalog into `out`. `fail_after_batches` simulates a crash (tests only).

    `threads` overrides the indexing thread policy (moonsearch.threads); `overlap` decodes the
    next images in a background thread while the current batch encodes; `sort_by_length`
    batches products of similar text length together. Neither changes what is written beyond
    float rounding; both off is the plain serial loop (tests compare the two).

    `keyword_weights` ({"title": w, "attributes": w} or "title=2,attributes=1"; None: the
    default) weights the fields of the text the keyword index reads; vectors do not depend on it.

    `store` names the backend (moonsearch.store.backends): faiss+duckdb in the index folder, or
    milvus at `uri` (a milvus-lite `.db` file or a server), recorded in the manifest.

    `engine` (from `encoding_engine`) reads and encodes the catalog elsewhere (Ray): its `scan`
    stands for the catalog's, its `encoded_chunks` for the local loop; rows, report and the
    commit stay this function's, so either engine writes the same index.

    `identity` (None: on where the photo identity weights ship, with either engine; off with
    MOONSEARCH_IDENTITY=0) also stores each product image's photo identity vector
    (moonsearch.encoder.photo_identity), which image-only queries then rank by. The encoder is
    wrapped in `WithIdentity`, whose `encode_views` adds them: the local loop, and the Ray
    engine's actors (which wrap their own encoder with the same model), embed through it."""
    started = time.time()
    out = Path(out)
    weights = keyword_weights_of(keyword_weights)   # a bad spec fails before anything is read
    storage = (store, backend_location(store, uri, out))   # so does a bad store, uri or missing extra
    _check_replaceable(out)
    catalog = open_catalog(catalog_path)
    try:
        # text-only pass: duplicate ids and bad text fail here, before any encoding
        scan = catalog.scan() if engine is None else engine.scan(catalog)
        if scan.products == 0:
            raise MoonsearchError(f"{catalog.path} has no valid products ({len(scan.skips)} rows skipped)")
        kind = faiss_vectors.resolve_index_type(index_type, scan.products)
        placement = placement_for(device, kind)
        # The policy is in force before the encoder loads: its runtime sessions take their thread
        # counts when they are made (an encoder passed in keeps the ones it was made with).
        with thread_policy.using(thread_policy.resolve(thread_policy.INDEXING, threads)) as policy:
            if isinstance(encoder, str):
                encoder = load_encoder(encoder, device=placement.encoder)
            photo = _identity_model(identity)
            if photo is not None:
                encoder = WithIdentity(encoder, photo)
            summary = _build(catalog, scan, out, encoder, kind, placement, batch_size, fail_after_batches,
                             policy, overlap, sort_by_length, weights, storage, engine)
    finally:
        if engine is not None:
            engine.close()   # lets go of the cluster (a local Ray it started is shut down)
    summary.seconds = time.time() - started
    return summary


def _identity_model(identity: bool | None):
    """The photo identity model a build stores vectors of, or None; the same for either engine
    (the Ray engine's actors load it by its `spec()`)."""
    from moonsearch.encoder import photo_identity

    if identity is None:
        identity = photo_identity.enabled_by_default()   # the same default for both engines
    if not identity:
        return None
    return photo_identity.PhotoIdentity.load()


def _build(catalog, scan, out: Path, encoder: Encoder, kind: str, placement, batch_size: int,
           fail_after_batches: int | None, policy, overlap: bool, sort_by_length: bool,
           weights: dict, storage: tuple, engine=None) -> BuildSummary:
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = WriteLock(out).acquire()   # one writer at a time, builds and live writes alike
    try:
        return _build_locked(catalog, scan, out, encoder, kind, placement, batch_size, fail_after_batches, policy,
                             overlap, sort_by_length, weights, storage, engine)
    finally:
        lock.release()


def _build_locked(catalog, scan, out: Path, encoder: Encoder, kind: str, placement, batch_size: int,
                  fail_after_batches: int | None, policy, overlap: bool, sort_by_length: bool,
                  weights: dict, storage: tuple, engine=None) -> BuildSummary:
    _remove_stale_staging(out)
    backend, location = storage
    staging = _staging_folder(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    summary = BuildSummary(out=out, index_type=kind, placement=placement.reason)
    prefetch = encoded = None
    try:
        writer = create_records(staging, backend, location)
        con = getattr(writer, "con", None)
        if con is not None:
            thread_policy.configure_duckdb(con, policy.threads)
        buffers = _ViewBuffers()
        extras = _ExtraVectors()
        attribute_counts: dict[str, int] = {}
        batches_done = 0

        def add_further(found: FurtherImages, shift: int) -> None:
            summary.image_failures += len(found.failures)
            summary.report += found.failures
            if found.keys:
                extras.add(found.vectors, [key + shift for key in found.keys], found.positions)
                summary.images += len(found.keys)
                summary.extra_images += len(found.keys)

        def record(batch: list[Product], inputs: list[ModelInput], further: list[FurtherImages] | None,
                   shift: int) -> None:
            """Rows, report entries and further images of one batch, in catalog order. `further`:
            the batch's further images as an engine embedded them (keys + `shift` are rows), else
            None: embedded here."""
            nonlocal batches_done
            first = summary.products
            rows = []
            for product, given in zip(batch, inputs):
                text, position, failures = given.text, given.loaded.position, given.loaded.failures
                summary.image_failures += len(failures)
                if position is None:   # no image loaded (an engine's inputs no longer hold the image)
                    summary.text_only += 1
                    reason = failures[0][1].reason if failures else None
                    summary.report.append({"kind": "text_only", "source": product.source, "id": product.id,
                                           "reason": reason or "no image given"})
                    failures = failures[1:]   # the first is the text_only entry's reason
                else:
                    summary.images += 1
                    if position:
                        extras.first.append((summary.products, position))
                summary.report += [image_failure(product, p, exc) for p, exc in failures]
                for key in product.attributes:
                    attribute_counts[key] = attribute_counts.get(key, 0) + 1
                rows.append(ProductRow(
                    row=summary.products, id=product.id, title=product.title, description=product.description,
                    images=[str(p) for p in product.images], has_image=position is not None,
                    attributes=product.attributes, source=product.source, text=text,
                    keywords=keyword_text(product.title, product.attributes, weights),
                    content_hash=product_hash(product)))
                summary.products += 1
            writer.add(rows)
            if further is None:
                further, shift = embed_batch_further(encoder, first, batch, inputs, batch_size), 0
            for found in further:
                add_further(found, shift)
            batches_done += 1
            if fail_after_batches is not None and batches_done >= fail_after_batches:
                raise RuntimeError("simulated failure during indexing")

        chunk_batches = CHUNK_BATCHES if sort_by_length else 1
        if engine is None:
            workers = policy.decode_workers if overlap else 0
            chunks = _read_chunks(catalog, batch_size, chunk_batches, workers)
            if overlap:
                chunks = prefetch = _Prefetch(chunks)
            encoded = _encoded_locally(chunks, encoder, batch_size, sort_by_length)
        else:
            encoded = engine.encoded_chunks(catalog, encoder, batch_size, chunk_batches, sort_by_length)
        with progress_bar(unit="products") as bar:
            task = bar.add_task(f"indexing {catalog.path.name}", total=scan.products)
            for chunk, views in encoded:
                buffers.add(views)
                del views
                first = summary.products
                for number, start in enumerate(range(0, len(chunk.products), batch_size)):
                    stop = start + batch_size
                    further = None if chunk.further is None else chunk.further[number]
                    record(chunk.products[start:stop], chunk.inputs[start:stop], further, first)
                    bar.advance(task, len(chunk.products[start:stop]))
                del chunk
        writer.close()

        summary.with_image = summary.products - summary.text_only
        summary.skipped = len(catalog.skips)
        summary.report = [{"kind": "skipped", "source": s.source, "id": s.product_id, "reason": s.reason}
                          for s in catalog.skips] + summary.report
        keys = np.arange(summary.products, dtype=np.int64)   # each vector under its product's row
        for view in VIEWS:
            store = create_vectors(buffers.stacked(view, encoder.dim), keys, kind, gpu=placement.faiss_gpu,
                                   backend=backend, location=location)
            store.save(staging / view_file(view))
        photo = getattr(encoder, "identity_model", None)
        if photo is not None:   # exact search: image queries rank by it as the benchmark measures
            store = create_vectors(buffers.stacked(IDENTITY_VIEW, photo.dim), keys, "flat", backend=backend,
                                   location=location)
            store.save(staging / view_file(IDENTITY_VIEW))
        extras.save(staging, kind, placement.faiss_gpu, backend, location)
        with open(staging / SKIPS_FILE, "w", encoding="utf-8") as handle:
            for entry in summary.report:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

        shipped = getattr(encoder, "weights_path", None)
        manifest = Manifest(
            encoder={"name": encoder.name, "id": encoder.encoder_id,
                     "weights": None if shipped in (None, weights_path(encoder.name)) else str(Path(shipped).resolve())},
            dim=encoder.dim, index_type=kind, views=list(VIEWS),
            counts={"products": summary.products, "with_image": summary.with_image,
                    "text_only": summary.text_only, "skipped": summary.skipped, "images": summary.images,
                    "extra_images": summary.extra_images, "image_failures": summary.image_failures},
            source={"catalog": str(catalog.path.resolve()), "layout": catalog.format},
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            moonsearch_version=moonsearch.__version__,
            display_fields=_display_fields(attribute_counts),
            files=record_files(staging),
            keyword_weights=weights,
            backend=backend,
            store=location,
            identity=photo.spec() if photo is not None else None,
        )
        _commit(staging, out, manifest)
    except BaseException:
        if encoded is not None:
            encoded.close()   # an engine lets go of its cluster
        if prefetch is not None:
            prefetch.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if prefetch is not None:
        prefetch.close()
    return summary
