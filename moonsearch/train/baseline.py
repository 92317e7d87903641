"""Train the contrastive baseline's projection heads on cached tower features (CLIP/LiT-style).

Both towers stay frozen (LiT's "locked" towers); only the heads and the temperature learn, with
a symmetric InfoNCE loss between each product's image and its text. The text side is the full
product text or, at random, the bare title, so that short queries land near their products.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moonsearch.encoder.baseline import BaselineHeads
from moonsearch.eval.metrics import hit_at_k
from moonsearch.progress import console, progress_bar
from moonsearch.jsonfiles import read_json
from moonsearch.train.features import FeatureCache, build_feature_cache
from moonsearch.train.report import prepare_output, save_training_outputs
from moonsearch.train.schedule import plan_steps

CONFIG_DIR = Path(__file__).parent / "configs"


def load_config(path: Path | str) -> dict:
    """A config by name (moonsearch/train/configs), a config file, or the `<model>.json` that
    `moonsearch train` saved beside trained weights (its `training` part: retrain that model)."""
    path = Path(path)
    if not path.exists() and (CONFIG_DIR / f"{path}.json").exists():
        path = CONFIG_DIR / f"{path}.json"
    config = read_json(path, "training config")
    return config["training"] if isinstance(config.get("training"), dict) and "model" in config else config


def info_nce(queries: torch.Tensor, keys: torch.Tensor, inv_temperature: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each query against all keys, its own row being the positive."""
    logits = inv_temperature * queries @ keys.T
    return nn.functional.cross_entropy(logits, torch.arange(len(queries)))


def split_train_val(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out slice of the *train* split for model selection; the test split is never seen."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * val_fraction))
    return order[n_val:], order[:n_val]


@torch.no_grad()
def validate(heads: BaselineHeads, cache: FeatureCache, rows: np.ndarray) -> dict[str, float]:
    """Title -> product (mm) hit@10 and image -> text hit@1 on held-out train products."""
    rows = rows[cache.has_image[rows]]
    image = heads.embed_images(torch.from_numpy(cache.image[rows].astype(np.float32)))
    text = heads.embed_texts(torch.from_numpy(cache.product_text[rows].astype(np.float32)))
    title = heads.embed_texts(torch.from_numpy(cache.title[rows].astype(np.float32)))
    mm = heads.fuse(image, text)
    t2mm = (title @ mm.T).argsort(dim=1, descending=True)[:, :10].numpy()
    i2t = (image @ text.T).argmax(dim=1).numpy()
    return {
        "title->mm hit@10": float(np.mean([hit_at_k(list(r), {i}, 10) for i, r in enumerate(t2mm)])),
        "image->text hit@1": float(np.mean(i2t == np.arange(len(rows)))),
    }


def train_baseline(catalog: Path, config: dict, out: Path, cache_dir: Path | None = None) -> dict:
    """Train, then write `<out>.safetensors`, `<out>.json` (config) and `<out>.report.json`."""
    out = prepare_output(out)
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    started = time.time()
    cache = build_feature_cache(Path(catalog), config["data"]["split"], cache_dir)
    feature_seconds = time.time() - started

    train_rows, val_rows = split_train_val(len(cache), config["data"]["val_fraction"], seed)
    if config["data"].get("exclude"):   # rows are the split's products in catalog order
        start, stop = config["data"]["exclude"]
        train_rows, val_rows = (r[(r < start) | (r >= stop)] for r in (train_rows, val_rows))
    train_rows = train_rows[cache.has_image[train_rows]]  # the loss pairs an image with its text
    model_cfg, optim_cfg = config["model"], config["optim"]
    heads = BaselineHeads(model_cfg["dim"], model_cfg["image_hidden"], model_cfg["text_hidden"],
                          temperature=optim_cfg["temperature"])
    optimizer = torch.optim.AdamW(heads.parameters(), lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    epochs = optim_cfg["epochs"]
    batch_size, steps_per_epoch, total_steps = plan_steps(train_rows, optim_cfg, catalog)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    title_prob = config["loss"]["title_prob"]

    image_all = torch.from_numpy(cache.image.astype(np.float32))
    text_all = torch.from_numpy(cache.product_text.astype(np.float32))
    title_all = torch.from_numpy(cache.title.astype(np.float32))
    history = []
    with progress_bar() as bar:
        task = bar.add_task("training baseline", total=epochs * steps_per_epoch)
        for epoch in range(epochs):
            heads.train()
            order = rng.permutation(train_rows)
            losses = []
            for step in range(steps_per_epoch):
                rows = torch.from_numpy(order[step * batch_size:(step + 1) * batch_size])
                use_title = torch.rand(len(rows)) < title_prob
                text_feats = torch.where(use_title[:, None], title_all[rows], text_all[rows])
                image_emb = heads.embed_images(image_all[rows])
                text_emb = heads.embed_texts(text_feats)
                scale = heads.log_inv_temperature.exp().clamp(max=100.0)
                loss = (info_nce(image_emb, text_emb, scale) + info_nce(text_emb, image_emb, scale)) / 2
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                bar.advance(task)
            heads.eval()
            record = {"epoch": epoch + 1, "loss": float(np.mean(losses)), **validate(heads, cache, val_rows)}
            history.append(record)
            console.log(record)

    report = {
        "encoder": "baseline",
        "data": {"catalog": str(catalog), "split": config["data"]["split"], "products": len(cache),
                 "with_image": int(cache.has_image.sum()), "train_rows": int(len(train_rows)),
                 "val_rows": int(len(val_rows)), "exclude": config["data"].get("exclude"),
                 "fingerprint": cache.fingerprint},
        "history": history,
        "wall_seconds": {"features": round(feature_seconds, 1), "total": round(time.time() - started, 1)},
    }
    save_training_outputs(heads.state_dict(), {"model": model_cfg, "training": config}, report, Path(out))
    return report
