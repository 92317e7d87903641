"""Train a photo-query head for a moon-lite model (issue 16).

A shopper's photo is cropped, mirrored, tilted, recompressed or on a background; the shipped
model, trained for text alignment, maps such a photo near lookalikes rather than onto the product.
Retraining the whole model with photo views fixed some of that but moved every text metric down
(t2mm R@1 -0.057 on myntra-val): one set of weights also has to keep products and text queries
where they were. So the photo side gets weights of its own. The head is a copy of the base
fusion model that embeds image-only *queries* only; the base model, and with it every product
vector of every index it built, stays exactly as it is, so text, product and image+text results
cannot change and existing indexes keep working without a rebuild.

Training: the frozen base embeds every training product (product text + photo) once. The head
starts as the base and learns, by InfoNCE over all training products at once (a full softmax:
30k candidates are one matrix product), to put a view of a product's photo on that product's
vector. A view is the catalog photo itself, a cached photo-like view (moonsearch.photos.random_photo
through the frozen tower), and either of those with its token grid mirrored.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from moonsearch.encoder.moon import IMAGE, TEXT, MoonLite, Segment, pad_tokens
from moonsearch.encoder.query_heads import head_path
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM
from moonsearch.errors import MoonsearchError
from moonsearch.train.baseline import split_train_val
from moonsearch.train.report import prepare_output
from moonsearch.train.query_head import fit_head, save_head
from moonsearch.train.token_cache import TokenCache, build_photo_view_cache, build_training_cache

GRID = (4, 3)    # rows x columns of the image tokens (a 128 x 96 input at stride 32)


def mirrored_grid(tokens: np.ndarray) -> np.ndarray:
    """(12, D) row-major grid tokens with the columns reversed: close to what the tower gives for
    the mirrored photo, at no tower cost."""
    rows, cols = GRID
    return tokens.reshape(rows, cols, -1)[:, ::-1].reshape(rows * cols, -1)


def load_base(base: str) -> tuple[Path, dict, dict]:
    """The base model's weights path, its saved config (with the training config that built its
    token cache) and its tensors."""
    from moonsearch.encoder.base import read_weights
    from moonsearch.encoder.registry import weights_file

    path = weights_file(str(base))
    if not path.is_file():
        raise MoonsearchError(f"base: no weights at {path} (a shipped moon-lite name or a .safetensors path)")
    saved, tensors = read_weights(path)
    if saved.get("training", {}).get("encoder") != "moon-lite":
        raise MoonsearchError(f"base: {path} is not a moon-lite model; a query head extends one")
    return path, saved, tensors


@torch.no_grad()
def product_bank(model: MoonLite, cache: TokenCache, rows: np.ndarray, max_tokens: int, batch: int = 256) -> torch.Tensor:
    """(len(rows), dim) the base model's product vectors (product text + photo), as the index holds them."""
    out = []
    for start in range(0, len(rows), batch):
        part = rows[start:start + batch]
        text = Segment(*pad_tokens([cache.text(r, "product")[:max_tokens].astype(np.float32) for r in part],
                                   TEXT_FEATURE_DIM), TEXT)
        image = Segment(*pad_tokens([np.asarray(cache.image[r], np.float32) for r in part], IMAGE_FEATURE_DIM), IMAGE)
        out.append(model([text, image])[0].float())
    return torch.cat(out)


class ViewSampler:
    """Image-only query tokens for a batch of cache rows: a random view of each product's photo."""

    def __init__(self, cache: TokenCache, photo_views: np.ndarray, p_catalog: float, p_mirror: float):
        self.cache, self.photo_views = cache, photo_views
        self.p_catalog, self.p_mirror = p_catalog, p_mirror

    def __call__(self, rows: np.ndarray, rng: np.random.Generator) -> Segment:
        arrays = []
        for r in rows:
            if rng.random() < self.p_catalog:
                tokens = np.asarray(self.cache.image[r], np.float32)
            else:
                tokens = np.asarray(self.photo_views[r, rng.integers(self.photo_views.shape[1])], np.float32)
            arrays.append(mirrored_grid(tokens) if rng.random() < self.p_mirror else tokens)
        return Segment(*pad_tokens(arrays, IMAGE_FEATURE_DIM), IMAGE)


@torch.no_grad()
def photo_hit1(model: MoonLite, photo_views: np.ndarray, rows: np.ndarray, bank: torch.Tensor,
               positions: np.ndarray) -> float:
    """Hit@1 of the first cached photo view of each held-out row against all products of the bank."""
    model.eval()
    hits = 0
    for start in range(0, len(rows), 256):
        part = rows[start:start + 256]
        query = Segment(*pad_tokens([np.asarray(photo_views[r, 0], np.float32) for r in part], IMAGE_FEATURE_DIM), IMAGE)
        best = (model([query])[0].float() @ bank.T).argmax(1).numpy()
        hits += int((best == positions[start:start + 256]).sum())
    model.train()
    return round(hits / max(1, len(rows)), 4)


def train_photo_query(catalog: Path, config: dict, out: Path, resume: bool = True, device: str = "cpu",
                      cache_dir: Path | None = None, limit: int | None = None) -> dict:
    """Train the head for config["base"]; writes out.safetensors/.json/.report.json (`out` is
    normally the base weights' head_path(..., "photo"), where MoonEncoder.load finds it)."""
    out = prepare_output(out)
    base_path, saved, tensors = load_base(config["base"])
    base_training = saved["training"]
    seed = int(config.get("seed", 0))
    started = time.time()
    limit = limit or config.get("data", {}).get("limit")
    # the base's own token cache: the same products, texts and photos it was trained on
    cache = build_training_cache(Path(catalog), {**base_training["augment"], "seed": int(base_training.get("seed", 0))},
                                 cache_dir, limit=limit, exclude=base_training["data"].get("exclude"), device=device)
    photo = config["photo"]
    photo_views = build_photo_view_cache(Path(catalog), cache, int(photo["views"]), int(photo.get("seed", seed)),
                                         cache_dir, device=device)
    cache_seconds = time.time() - started
    rows = np.flatnonzero(cache.has_image)
    max_tokens = int(base_training["data"].get("max_text_tokens", 64))

    base = MoonLite(**saved["model"])
    base.load_state_dict(tensors)
    base = base.to(device).eval()
    bank = product_bank(base, cache, rows, max_tokens)
    position = np.full(len(cache), -1)
    position[rows] = np.arange(len(rows))
    train_rows, val_rows = split_train_val(len(rows), float(config["data"].get("val_fraction", 0.03)), seed)
    train_rows, val_rows = rows[np.sort(train_rows)], rows[np.sort(val_rows)][:1000]

    sampler = ViewSampler(cache, photo_views, float(config["loss"]["p_catalog"]), float(config["loss"]["p_mirror"]))
    checkpoint = Path(out).with_name(Path(out).name + ".checkpoint.pt")
    head, history, seconds = fit_head(
        saved, tensors, train_rows, config, catalog, checkpoint, sampler,
        lambda logits, part: torch.nn.functional.cross_entropy(logits, torch.from_numpy(position[part]).to(device)),
        bank, lambda model: {"val photo->mm hit@1": photo_hit1(model, photo_views, val_rows, bank, position[val_rows])},
        device=device, resume=resume, started=started)

    from moonsearch.encoder.base import file_sha256

    base_id = f"{base_path.stem}@{file_sha256(base_path)[:16]}"
    data = {"catalog": str(catalog), "products": len(cache), "train_rows": int(len(train_rows)),
            "val_rows": int(len(val_rows)), "fingerprint": cache.stats.get("fingerprint")}
    return save_head("photo", head, saved, base_id, config, data, history, cache_seconds, seconds, device, out,
                     checkpoint)


def default_output(base: str) -> Path:
    """Beside the base weights, under the name MoonEncoder.load looks for (without suffix)."""
    from moonsearch.encoder.registry import weights_file

    path = head_path(weights_file(str(base)), "photo")
    return path.with_suffix("")

