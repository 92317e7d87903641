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
from moonsearch.progress import console, progress_bar
from moonsearch.train.baseline import split_train_val
from moonsearch.train.checkpoints import resume_checkpoint, save_checkpoint
from moonsearch.train.report import prepare_output, save_training_outputs
from moonsearch.train.schedule import plan_steps, warmup_cosine
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

    def __init__(self, cache: TokenCache, photo_views: np.ndarray, p_catalog: float, p_mirror: float,
                 rng: np.random.Generator):
        self.cache, self.photo_views = cache, photo_views
        self.p_catalog, self.p_mirror, self.rng = p_catalog, p_mirror, rng

    def __call__(self, rows: np.ndarray) -> Segment:
        arrays = []
        for r in rows:
            if self.rng.random() < self.p_catalog:
                tokens = np.asarray(self.cache.image[r], np.float32)
            else:
                tokens = np.asarray(self.photo_views[r, self.rng.integers(self.photo_views.shape[1])], np.float32)
            arrays.append(mirrored_grid(tokens) if self.rng.random() < self.p_mirror else tokens)
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

    torch.manual_seed(seed)
    head = MoonLite(**saved["model"])
    head.load_state_dict(tensors)
    head = head.to(device).train()
    optim_cfg, loss_cfg = config["optim"], config["loss"]
    optimizer = torch.optim.AdamW(head.parameters(), lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    batch_size, steps_per_epoch, total_steps = plan_steps(train_rows, optim_cfg, catalog)
    scheduler = warmup_cosine(optimizer, total_steps)
    np_rng = np.random.default_rng(seed)
    sampler = ViewSampler(cache, photo_views, float(loss_cfg["p_catalog"]), float(loss_cfg["p_mirror"]), np_rng)
    history = [{"epoch": 0, "val photo->mm hit@1": photo_hit1(head, photo_views, val_rows, bank, position[val_rows])}]
    start_epoch, seconds_before = 0, 0.0
    checkpoint = Path(out).with_name(Path(out).name + ".checkpoint.pt")
    restored = resume_checkpoint(checkpoint, config, device, head, optimizer, scheduler, np_rng) if resume else None
    if restored is not None:
        history, start_epoch, seconds_before = restored
    temperature = float(loss_cfg["temperature"])
    with progress_bar() as bar:
        task = bar.add_task(f"training {config.get('name', 'photo-query')}", total=total_steps,
                            completed=start_epoch * steps_per_epoch)
        for epoch in range(start_epoch, optim_cfg["epochs"]):
            order = np_rng.permutation(train_rows)
            total = 0.0
            for step in range(steps_per_epoch):
                part = order[step * batch_size:(step + 1) * batch_size]
                query, _ = head([sampler(part).to(device)])
                logits = query @ bank.T / temperature
                loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(position[part]).to(device))
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total += loss.item()
                bar.advance(task)
            record = {"epoch": epoch + 1, "loss": round(total / steps_per_epoch, 4),
                      "val photo->mm hit@1": photo_hit1(head, photo_views, val_rows, bank, position[val_rows])}
            history.append(record)
            console.log(record)
            save_checkpoint(checkpoint, config, head, optimizer, scheduler, history, epoch + 1, np_rng,
                            seconds_before + time.time() - started)

    from moonsearch.encoder.base import file_sha256

    base_id = f"{base_path.stem}@{file_sha256(base_path)[:16]}"
    report = {
        "encoder": "photo-query", "name": config.get("name"), "base": base_id,
        "data": {"catalog": str(catalog), "products": len(cache), "train_rows": int(len(train_rows)),
                 "val_rows": int(len(val_rows)), "fingerprint": cache.stats.get("fingerprint")},
        "history": history,
        "wall_seconds": {"caches": round(cache_seconds, 1), "total": round(seconds_before + time.time() - started, 1)},
        "device": device,
    }
    save_training_outputs({k: v.cpu() for k, v in head.state_dict().items()},
                          {"model": saved["model"], "base": base_id, "training": config}, report, Path(out))
    checkpoint.unlink(missing_ok=True)
    return report


def default_output(base: str) -> Path:
    """Beside the base weights, under the name MoonEncoder.load looks for (without suffix)."""
    from moonsearch.encoder.registry import weights_file

    path = head_path(weights_file(str(base)), "photo")
    return path.with_suffix("")

