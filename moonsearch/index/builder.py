"""The indexing runner: catalog (reader) -> encoder (mapper) -> FAISS + DuckDB (writers).

Everything is written into a hidden sibling folder; only a finished build, manifest last, is
renamed into place. An interrupted or failed `index` leaves the previous index untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import moonsearch
from moonsearch.catalog import ImageError, Product, load_image, open_catalog
from moonsearch.encoder.base import VIEWS, Encoder
from moonsearch.encoder.registry import load_encoder, weights_path
from moonsearch.encoder.text import product_text
from moonsearch.errors import MoonsearchError
from moonsearch.index import vectors as faiss_vectors
from moonsearch.index.device import placement_for
from moonsearch.progress import progress_bar
from moonsearch.store.manifest import MANIFEST_FILE, Manifest
from moonsearch.store.metadata import MetadataWriter, ProductRow

SKIPS_FILE = "skipped.jsonl"
# Products with several images: every image after the one in the product vectors (the first that
# loads) gets its own mm and image vectors in these files; EXTRA_MAP_FILE says whose they are.
EXTRA_VIEWS = ("mm", "image")
EXTRA_MAP_FILE = "extra-images.npz"
DISPLAY_CANDIDATES = ("brand", "articleType", "category", "baseColour", "colour", "color", "gender", "price")


def view_file(view: str) -> str:
    return f"vectors-{view}.faiss"


def extra_view_file(view: str) -> str:
    return f"vectors-{view}-extra.faiss"


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
    _check_replaceable(out)
    retired = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(retired)
    staging.rename(out)
    shutil.rmtree(retired, ignore_errors=True)


def _display_fields(attribute_counts: dict[str, int]) -> list[str]:
    chosen = [k for k in DISPLAY_CANDIDATES if attribute_counts.get(k)]
    return chosen[:4] or sorted(attribute_counts, key=attribute_counts.get, reverse=True)[:3]


class _ViewBuffers:
    def __init__(self):
        self.chunks = {view: [] for view in VIEWS}

    def add(self, views) -> None:
        for view in VIEWS:
            self.chunks[view].append(views[view])

    def stacked(self, view: str, dim: int) -> np.ndarray:
        parts = self.chunks[view]
        return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)


class _ExtraImages:
    """Vectors of products' further images, and for each the product row and image position.
    `first` lists products whose product vectors used an image other than image 0 (it failed)."""

    def __init__(self):
        self.chunks = {view: [] for view in EXTRA_VIEWS}
        self.rows: list[int] = []
        self.positions: list[int] = []
        self.first: list[tuple[int, int]] = []

    def add(self, views, rows: list[int], positions: list[int]) -> None:
        for view in EXTRA_VIEWS:
            self.chunks[view].append(views[view])
        self.rows.extend(rows)
        self.positions.extend(positions)

    def save(self, folder: Path, kind: str, gpu: bool) -> None:
        """Nothing when every product has one image embedded, as image 0: such an index is
        exactly what it was before multi-image products."""
        if self.rows:
            # exact search unless there are as many extras as `auto` takes ANN for
            extra_kind = kind if len(self.rows) >= faiss_vectors.EXACT_BELOW else "flat"
            for view in EXTRA_VIEWS:
                index = faiss_vectors.build(np.concatenate(self.chunks[view]), extra_kind, gpu=gpu)
                faiss_vectors.save(index, folder / extra_view_file(view))
        if self.rows or self.first:
            first = np.array(self.first, np.int64).reshape(-1, 2)
            np.savez(folder / EXTRA_MAP_FILE, rows=np.array(self.rows, np.int64),
                     positions=np.array(self.positions, np.int64), first_rows=first[:, 0],
                     first_positions=first[:, 1])


def _first_loadable(paths) -> tuple[int | None, object, list[tuple[int, ImageError]]]:
    """(position, image) of the first image that loads, as the product vectors use it, and the
    failures before it; (None, None, failures) when none loads."""
    failures = []
    for position, path in enumerate(paths):
        try:
            return position, load_image(path), failures
        except ImageError as exc:
            failures.append((position, exc))
    return None, None, failures


def _image_failure(product: Product, position: int, exc: ImageError) -> dict:
    return {"kind": "image", "source": product.source, "id": product.id,
            "reason": f"image {position} not embedded: {exc.reason}", "image": str(product.images[position])}


def build_index(
    catalog_path: Path | str,
    out: Path | str,
    encoder: Encoder | str = "default",
    index_type: str = "auto",
    device: str = "auto",
    batch_size: int = 64,
    fail_after_batches: int | None = None,
) -> BuildSummary:
    """Index a catalog into `out`. `fail_after_batches` simulates a crash (tests only)."""
    started = time.time()
    out = Path(out)
    _check_replaceable(out)
    catalog = open_catalog(catalog_path)
    scan = catalog.scan()  # text-only pass: duplicate ids and bad text fail here, before any encoding
    if scan.products == 0:
        raise MoonsearchError(f"{catalog.path} has no valid products ({len(scan.skips)} rows skipped)")
    kind = faiss_vectors.resolve_index_type(index_type, scan.products)
    placement = placement_for(device, kind)
    if isinstance(encoder, str):
        encoder = load_encoder(encoder, device=placement.encoder)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_staging(out)
    staging = _staging_folder(out)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    summary = BuildSummary(out=out, index_type=kind, placement=placement.reason)
    try:
        writer = MetadataWriter(staging)
        buffers = _ViewBuffers()
        extras = _ExtraImages()
        attribute_counts: dict[str, int] = {}
        batch: list[Product] = []
        batches_done = 0

        def embed_further(chunk) -> None:
            done = []
            for row, text, product, position in chunk:
                try:
                    done.append((row, text, position, load_image(product.images[position])))
                except ImageError as exc:
                    summary.image_failures += 1
                    summary.report.append(_image_failure(product, position, exc))
            if done:
                views = encoder.encode_views([d[1] for d in done], [d[3] for d in done])
                extras.add(views, [d[0] for d in done], [d[2] for d in done])
                summary.images += len(done)
                summary.extra_images += len(done)

        def flush() -> None:
            nonlocal batches_done
            loaded = [_first_loadable(p.images) for p in batch]
            images = [image for _, image, _ in loaded]
            texts = [product_text(p.title, p.attributes) for p in batch]
            buffers.add(encoder.encode_views(texts, images))
            rows = []
            further = []   # (product row, text, product, position) of images after the first that loaded
            for product, text, (position, image, failures) in zip(batch, texts, loaded):
                summary.image_failures += len(failures)
                if image is None:
                    summary.text_only += 1
                    reason = failures[0][1].reason if failures else None
                    summary.report.append({"kind": "text_only", "source": product.source, "id": product.id,
                                           "reason": reason or "no image given"})
                    failures = failures[1:]   # the first is the text_only entry's reason
                else:
                    summary.images += 1
                    if position:
                        extras.first.append((summary.products, position))
                    further += [(summary.products, text, product, p)
                                for p in range(position + 1, len(product.images))]
                summary.report += [_image_failure(product, p, exc) for p, exc in failures]
                for key in product.attributes:
                    attribute_counts[key] = attribute_counts.get(key, 0) + 1
                rows.append(ProductRow(
                    row=summary.products, id=product.id, title=product.title, description=product.description,
                    images=[str(p) for p in product.images], has_image=image is not None,
                    attributes=product.attributes, source=product.source, text=text))
                summary.products += 1
            writer.add(rows)
            del loaded, images
            for start in range(0, len(further), batch_size):   # batch_size images decoded at a time
                embed_further(further[start:start + batch_size])
            batch.clear()
            batches_done += 1
            if fail_after_batches is not None and batches_done >= fail_after_batches:
                raise RuntimeError("simulated failure during indexing")

        with progress_bar() as bar:
            task = bar.add_task(f"indexing {catalog.path.name}", total=scan.products)
            for product in catalog.products():
                batch.append(product)
                if len(batch) == batch_size:
                    flush()
                    bar.advance(task, batch_size)
            if batch:
                n = len(batch)
                flush()
                bar.advance(task, n)
        writer.close()

        summary.with_image = summary.products - summary.text_only
        summary.skipped = len(catalog.skips)
        summary.report = [{"kind": "skipped", "source": s.source, "id": s.product_id, "reason": s.reason}
                          for s in catalog.skips] + summary.report
        for view in VIEWS:
            index = faiss_vectors.build(buffers.stacked(view, encoder.dim), kind, gpu=placement.faiss_gpu)
            faiss_vectors.save(index, staging / view_file(view))
        extras.save(staging, kind, placement.faiss_gpu)
        with open(staging / SKIPS_FILE, "w", encoding="utf-8") as handle:
            for entry in summary.report:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

        shipped = getattr(encoder, "weights_path", None)
        Manifest(
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
        ).write(staging)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary.seconds = time.time() - started
    return summary
