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
from moonsearch.catalog import Product, first_image, open_catalog
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
DISPLAY_CANDIDATES = ("brand", "articleType", "category", "baseColour", "colour", "color", "gender", "price")


def view_file(view: str) -> str:
    return f"vectors-{view}.faiss"


@dataclass
class BuildSummary:
    out: Path
    products: int = 0
    with_image: int = 0
    text_only: int = 0
    skipped: int = 0
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
        attribute_counts: dict[str, int] = {}
        batch: list[Product] = []
        batches_done = 0

        def flush() -> None:
            nonlocal batches_done
            loaded = [first_image(p.images) for p in batch]
            images = [image for image, _ in loaded]
            texts = [product_text(p.title, p.attributes) for p in batch]
            buffers.add(encoder.encode_views(texts, images))
            rows = []
            for product, text, (image, reason) in zip(batch, texts, loaded):
                if image is None:
                    summary.text_only += 1
                    summary.report.append({"kind": "text_only", "source": product.source, "id": product.id,
                                           "reason": reason or "no image given"})
                for key in product.attributes:
                    attribute_counts[key] = attribute_counts.get(key, 0) + 1
                rows.append(ProductRow(
                    row=summary.products, id=product.id, title=product.title, description=product.description,
                    images=[str(p) for p in product.images], has_image=image is not None,
                    attributes=product.attributes, source=product.source, text=text))
                summary.products += 1
            writer.add(rows)
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
        with open(staging / SKIPS_FILE, "w", encoding="utf-8") as handle:
            for entry in summary.report:
                handle.write(json.dumps(entry, ensure_ascii=False) + "\n")

        shipped = getattr(encoder, "weights_path", None)
        Manifest(
            encoder={"name": encoder.name, "id": encoder.encoder_id,
                     "weights": None if shipped in (None, weights_path(encoder.name)) else str(Path(shipped).resolve())},
            dim=encoder.dim, index_type=kind, views=list(VIEWS),
            counts={"products": summary.products, "with_image": summary.with_image,
                    "text_only": summary.text_only, "skipped": summary.skipped},
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
