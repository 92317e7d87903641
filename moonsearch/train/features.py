"""Cache the frozen towers' features of a catalog split once; training then never decodes images.

On 2 CPU cores the towers are the slow part (minutes for 35k products) while training heads on
cached features takes seconds per epoch, so the cache is what makes training here feasible.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moonsearch.cache import cache_root
from moonsearch.catalog import open_catalog
from moonsearch.encoder.base import file_sha256
from moonsearch.catalog.inputs import model_input
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, IMAGE_SIZE, Towers
from moonsearch.errors import MoonsearchError
from moonsearch.progress import progress_bar

CACHE_VERSION = 1
BATCH = 128


@dataclass
class FeatureCache:
    ids: np.ndarray             # (N,) str
    image: np.ndarray           # (N, 1280) float16, zeros where has_image is False
    has_image: np.ndarray       # (N,) bool
    product_text: np.ndarray    # (N, 384) float16, MiniLM of title + attributes
    title: np.ndarray           # (N, 384) float16, MiniLM of the title alone
    attributes: list[dict]      # per product, for building queries and hard negatives
    fingerprint: str

    def __len__(self) -> int:
        return len(self.ids)


def data_fingerprint(records_path: Path, *parts) -> str:
    """A cache key from the catalog file's content, not its mtime (a fresh copy of the same
    data must reuse a cache that took tens of minutes to build), plus what shapes the cache."""
    key = json.dumps([str(records_path.resolve()), file_sha256(records_path), *parts], sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _fingerprint(records_path: Path, split: str | None) -> str:
    return data_fingerprint(records_path, split, IMAGE_SIZE, CACHE_VERSION)


def check_split(split: str | None) -> None:
    if split == "test":
        raise MoonsearchError("training on the 'test' split is not allowed: it is kept for evaluation")


def build_feature_cache(catalog_path: Path, split: str | None = "train",
                        cache_dir: Path | None = None) -> FeatureCache:
    """Tower features for every product of `split` (all products when None), cached on disk."""
    check_split(split)
    catalog = open_catalog(catalog_path)
    fingerprint = _fingerprint(catalog.path, split)
    cache_file = Path(cache_dir or cache_root() / "features") / f"{fingerprint}.npz"
    if cache_file.exists() and cache_file.with_suffix(".attributes.json").exists():
        return load_feature_cache(cache_file)

    towers = Towers()
    ids, has_image, attrs = [], [], []
    image_chunks, text_chunks, title_chunks = [], [], []
    batch: list = []

    def flush() -> None:
        inputs = [model_input(p) for p in batch]
        images = [given.image for given in inputs]
        present = [im for im in images if im is not None]
        feats = np.zeros((len(batch), IMAGE_FEATURE_DIM), np.float16)
        if present:
            rows = [i for i, im in enumerate(images) if im is not None]
            feats[rows] = towers.image_features(present).astype(np.float16)
        image_chunks.append(feats)
        has_image.extend(im is not None for im in images)
        text_chunks.append(towers.text_features([given.text for given in inputs]).astype(np.float16))
        title_chunks.append(towers.text_features([p.title for p in batch]).astype(np.float16))
        ids.extend(p.id for p in batch)
        attrs.extend(p.attributes for p in batch)
        batch.clear()

    total = catalog.scan().products
    with progress_bar() as bar:
        task = bar.add_task(f"tower features ({split or 'all'})", total=total)
        for product in catalog.products():
            bar.advance(task)
            if split is not None and str(product.attributes.get("split")) != split:
                continue
            batch.append(product)
            if len(batch) == BATCH:
                flush()
        if batch:
            flush()
    if not ids:
        raise MoonsearchError(f"no products with split '{split}' in {catalog.path}")

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    # Attributes go to a JSON file: as a numpy string array every row would be padded to the
    # longest record (one long description makes that many GB).
    attrs_file = cache_file.with_suffix(".attributes.json")
    tmp_attrs = attrs_file.with_name(attrs_file.name + ".tmp")
    tmp_attrs.write_text(json.dumps([{k: v for k, v in a.items() if k != "descriptors"} for a in attrs], default=str))
    tmp_attrs.replace(attrs_file)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, ids=np.array(ids, dtype=object), image=np.concatenate(image_chunks),
             has_image=np.array(has_image), product_text=np.concatenate(text_chunks),
             title=np.concatenate(title_chunks), fingerprint=np.array(fingerprint))
    tmp.replace(cache_file)
    return load_feature_cache(cache_file)


def load_feature_cache(path: Path) -> FeatureCache:
    data = np.load(path, allow_pickle=True)  # ids are an object array of our own making
    attributes = json.loads(Path(path).with_suffix(".attributes.json").read_text())
    return FeatureCache(
        ids=data["ids"], image=data["image"], has_image=data["has_image"],
        product_text=data["product_text"], title=data["title"],
        attributes=attributes, fingerprint=str(data["fingerprint"]),
    )
