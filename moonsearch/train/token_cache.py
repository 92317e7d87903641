"""Token-level features of the frozen towers for moon-lite training, computed once per catalog.

Per training product: text tokens of its product text, its title, its enriched title T+ and one
shopper-style query (ragged, float16), and the image token grid of its photo and of one
visual-expansion variant (the variant is dropped when the consistency filter rejects it).
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from moonsearch.catalog import first_image, open_catalog
from moonsearch.catalog.inputs import model_input
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, IMAGE_SIZE, Towers
from moonsearch.errors import MoonsearchError
from moonsearch.progress import console, progress_bar
from moonsearch.shopper import shopper_queries
from moonsearch.train.augment import consistent_rows, expand_image, make_enricher
from moonsearch.cache import cache_root
from moonsearch.train.features import check_split, data_fingerprint

CACHE_VERSION = 1
TEXT_FIELDS = ("product", "title", "enriched", "query")
BATCH = 64


@dataclass
class TokenCache:
    ids: np.ndarray                 # (N,)
    titles: list[str]
    attributes: list[dict]
    text_tokens: np.ndarray         # (total, 384) float16, all text fields back to back
    text_offsets: np.ndarray        # (N, 4, 2) start, end per text field
    image: np.ndarray               # (N, 12, 1280) float16
    expanded: np.ndarray            # (N, 12, 1280) float16
    has_image: np.ndarray           # (N,) bool
    has_expanded: np.ndarray        # (N,) bool
    stats: dict

    def __len__(self) -> int:
        return len(self.ids)

    def text(self, row: int, field: str) -> np.ndarray:
        start, end = self.text_offsets[row, TEXT_FIELDS.index(field)]
        return self.text_tokens[start:end]


def text_token_arrays(towers: Towers, strings: list[str]) -> list[np.ndarray]:
    """The text tower's token states of each string, padding dropped, float16 as cached."""
    hidden, mask = towers.text.token_states(strings)
    hidden = hidden.float().cpu().numpy().astype(np.float16)
    mask = mask.bool().cpu().numpy()
    return [hidden[i][mask[i]] for i in range(len(strings))]


def _fingerprint(records: Path, split: str, config: dict) -> str:
    return data_fingerprint(records, split, IMAGE_SIZE, CACHE_VERSION, config)


def training_slices(limit: int | None, exclude: list | None) -> list[tuple[int, int | None]]:
    """The [start, stop) runs of the split's products to train on: the first `limit` (all when
    None) minus the `exclude` run, which stays unseen (e.g. the `eval myntra-val` products)."""
    if not exclude:
        return [(0, limit)]
    start, stop = int(exclude[0]), int(exclude[1])
    if not 0 <= start < stop:
        raise MoonsearchError(f"data.exclude must be [start, stop) with 0 <= start < stop, got {exclude}")
    runs = [(0, start if limit is None else min(start, limit)), (stop, limit)]
    return [(a, b) for a, b in runs if b is None or b > a]


def build_training_cache(catalog_path: Path, config: dict, cache_dir: Path | None = None,
                         limit: int | None = None, exclude: list | None = None,
                         device: str = "cpu") -> TokenCache:
    """One token cache per run of `training_slices` (each cached on its own, so a run that
    another configuration already cached is reused), joined in order."""
    parts = [build_token_cache(catalog_path, config, cache_dir, limit=stop, start=start, device=device)
             for start, stop in training_slices(limit, exclude)]
    return parts[0] if len(parts) == 1 else concat_token_caches(parts)


def concat_token_caches(parts: list[TokenCache]) -> TokenCache:
    """The caches back to back, in memory (text offsets shifted into the joined token array)."""
    shifts = np.cumsum([0] + [len(p.text_tokens) for p in parts[:-1]])
    stats = {"products": sum(len(p) for p in parts), "parts": [p.stats for p in parts],
             "fingerprint": "+".join(str(p.stats.get("fingerprint")) for p in parts)}
    return TokenCache(
        ids=np.concatenate([p.ids for p in parts]),
        titles=[t for p in parts for t in p.titles], attributes=[a for p in parts for a in p.attributes],
        text_tokens=np.concatenate([p.text_tokens for p in parts]),
        text_offsets=np.concatenate([p.text_offsets + shift for p, shift in zip(parts, shifts)]),
        image=np.concatenate([p.image for p in parts]), expanded=np.concatenate([p.expanded for p in parts]),
        has_image=np.concatenate([p.has_image for p in parts]),
        has_expanded=np.concatenate([p.has_expanded for p in parts]), stats=stats)


def build_token_cache(catalog_path: Path, config: dict, cache_dir: Path | None = None,
                      limit: int | None = None, start: int = 0, device: str = "cpu") -> TokenCache:
    """`config`: the trainer's "augment" section (enricher, consistency tolerance, seed).
    Caches the split's products [start, limit) (`limit` None: to the end)."""
    split = config.get("split", "train")
    check_split(split)
    catalog = open_catalog(catalog_path)
    run = {"limit": limit, **({"start": start} if start else {})}   # start 0 keeps older caches' keys
    fingerprint = _fingerprint(catalog.path, split, {**config, **run})
    folder = Path(cache_dir or cache_root() / "tokens") / fingerprint
    if (folder / "done").exists():
        return load_token_cache(folder)

    rng = random.Random(config.get("seed", 0))
    towers = Towers(device=device)
    enricher = make_enricher(config)
    from moonsearch.encoder.registry import load_encoder

    judge = load_encoder("baseline")   # the consistency filter's CLIP-style image-title scorer
    top = int(config.get("consistency_top", 5))
    ids, titles, attrs, text_parts, offsets = [], [], [], [], []
    images, expanded, has_image, has_expanded = [], [], [], []
    stats = {"variants": {}, "variants_dropped": 0, "products": 0, "with_image": 0}
    cursor = 0
    batch: list = []
    started = time.time()

    def flush() -> None:
        nonlocal cursor
        inputs = [model_input(p) for p in batch]
        loaded = [given.image for given in inputs]
        texts = {
            "product": [given.text for given in inputs],
            "title": [p.title for p in batch],
            "enriched": [enricher.enrich(p.title, p.description, p.attributes, im) for p, im in zip(batch, loaded)],
            "query": [(shopper_queries(p.attributes, rng) or [p.title])[0] for p in batch],
        }
        states = {field: text_token_arrays(towers, strings) for field, strings in texts.items()}
        present = [i for i, im in enumerate(loaded) if im is not None]
        variants = [expand_image(loaded[i], rng) for i in present]
        grid = np.zeros((len(batch), 2, 12, IMAGE_FEATURE_DIM), np.float16)
        keep_variant = np.zeros(len(batch), bool)
        if present:
            tokens = torch.from_numpy(towers.image_tokens([loaded[i] for i in present] + [v for v, _ in variants]))
            with torch.no_grad():
                image_emb = judge.heads.embed_images(tokens.mean(1))
                title_feats = torch.from_numpy(np.stack([states["title"][i].astype(np.float32).mean(0) for i in present]))
                title_emb = judge.heads.embed_texts(torch.nn.functional.normalize(title_feats, dim=-1))
            p = len(present)
            keep = consistent_rows((image_emb[p:] @ title_emb.T).numpy(), top)
            for j, i in enumerate(present):
                grid[i, 0] = tokens[j].numpy()
                name = variants[j][1]
                stats["variants"][name] = stats["variants"].get(name, 0) + 1
                if keep[j]:
                    grid[i, 1] = tokens[p + j].numpy()
                    keep_variant[i] = True
                else:
                    stats["variants_dropped"] += 1
        for i, product in enumerate(batch):
            ids.append(product.id)
            titles.append(product.title)
            attrs.append({k: v for k, v in product.attributes.items() if k != "descriptors"})
            row = []
            for field in TEXT_FIELDS:
                part = states[field][i]
                text_parts.append(part)
                row.append((cursor, cursor + len(part)))
                cursor += len(part)
            offsets.append(row)
            has_image.append(loaded[i] is not None)
            has_expanded.append(bool(keep_variant[i]))
        images.append(grid[:, 0])
        expanded.append(grid[:, 1])
        batch.clear()

    seen = 0   # products of the split so far, kept or skipped
    with progress_bar() as bar:
        task = bar.add_task(f"token features ({split})", total=catalog.scan().products)
        for product in catalog.products():
            bar.advance(task)
            if str(product.attributes.get("split")) != split:
                continue
            seen += 1
            if seen <= start:
                continue
            batch.append(product)
            if len(batch) == BATCH:
                flush()
            if limit and seen >= limit:
                break
        if batch:
            flush()
    if not ids:
        raise MoonsearchError(f"no products with split '{split}' in {catalog.path}"
                              + (f" after the first {start}" if start else ""))
    stats.update(products=len(ids), with_image=int(sum(has_image)), seconds=round(time.time() - started, 1),
                 fingerprint=fingerprint)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "text_tokens.npy", np.concatenate(text_parts))
    np.save(folder / "text_offsets.npy", np.array(offsets, np.int64))
    np.save(folder / "image.npy", np.concatenate(images))
    np.save(folder / "expanded.npy", np.concatenate(expanded))
    np.save(folder / "has_image.npy", np.array(has_image))
    np.save(folder / "has_expanded.npy", np.array(has_expanded))
    (folder / "meta.json").write_text(json.dumps({"ids": ids, "titles": titles, "attributes": attrs,
                                                  "stats": stats}, default=str))
    (folder / "done").write_text("ok\n")
    console.log(f"token cache: {stats}")
    return load_token_cache(folder)


def load_token_cache(folder: Path) -> TokenCache:
    meta = json.loads((folder / "meta.json").read_text())
    return TokenCache(
        ids=np.array(meta["ids"], dtype=object), titles=meta["titles"], attributes=meta["attributes"],
        text_tokens=np.load(folder / "text_tokens.npy", mmap_mode="r"),
        text_offsets=np.load(folder / "text_offsets.npy"),
        image=np.load(folder / "image.npy", mmap_mode="r"), expanded=np.load(folder / "expanded.npy", mmap_mode="r"),
        has_image=np.load(folder / "has_image.npy"), has_expanded=np.load(folder / "has_expanded.npy"),
        stats=meta["stats"],
    )



PHOTO_CACHE_VERSION = 1


def build_photo_view_cache(catalog_path: Path, cache: TokenCache, views: int, seed: int = 0,
                           cache_dir: Path | None = None, device: str = "cpu") -> np.ndarray:
    """(N, views, 12, 1280) float16 image tokens of photo-like views of each cached product's
    photo (`moonsearch.photos.random_photo`: crops, mirror, tilt, canvas, light, blur, JPEG),
    zeros where a product has no photo. Kept beside the token cache it extends, under a key of
    its own: the text tokens and the catalog photos' tokens are reused as they are."""
    from moonsearch.photos import random_photo

    if views < 1:
        raise MoonsearchError(f"photo.views must be at least 1, got {views}")
    key = f"{cache.stats.get('fingerprint')}-photo{views}-seed{seed}-v{PHOTO_CACHE_VERSION}"
    folder = Path(cache_dir or cache_root() / "tokens") / "photo-views"
    path = folder / f"{key}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    wanted = {str(pid): row for row, pid in enumerate(cache.ids)}
    out = np.zeros((len(cache), views, 12, IMAGE_FEATURE_DIM), np.float16)
    towers = Towers(device=device)
    rng = random.Random(f"photo-views:{seed}")
    batch_rows: list[tuple[int, int]] = []   # (cache row, view number) of each image in the batch
    batch_images: list = []
    started = time.time()

    def flush() -> None:
        tokens = towers.image_tokens(batch_images)
        for j, (row, view) in enumerate(batch_rows):
            out[row, view] = tokens[j]
        batch_rows.clear()
        batch_images.clear()

    catalog = open_catalog(catalog_path)
    with progress_bar() as bar:
        task = bar.add_task("photo views", total=len(cache))
        for product in catalog.products():
            row = wanted.pop(str(product.id), None)
            if row is None:
                continue
            bar.advance(task)
            if not cache.has_image[row]:
                continue
            photo = first_image(product.images)[0]
            if photo is None:
                continue
            for view in range(views):
                batch_rows.append((row, view))
                batch_images.append(random_photo(photo, rng))
            if len(batch_images) >= BATCH * 2:
                flush()
            if not wanted:
                break
        if batch_images:
            flush()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{key}.{os.getpid()}.tmp.npy"
    np.save(tmp, out)
    tmp.replace(path)
    console.log(f"photo views: {views} per product, {len(cache)} products, {time.time() - started:.0f} s")
    return np.load(path, mmap_mode="r")
