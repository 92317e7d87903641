"""Train moon-lite: multimodal joint learning with dual-level alignment, MoE objective weights,
co-augmentation and dynamic sample filtering, on cached tower tokens (feasible on 2 CPU cores).

Each step takes B training products. Every product is a positive candidate in image+text form
and brings a hard negative (same articleType, another colour or pattern). Queries come in all
three forms at once (joint learning): text (its title or a shopper-style query), image (an
expanded view of its photo) and image+text. Losses:
- inter-product InfoNCE per query form against all candidates of the batch, weighted by omega.
  A shopper-style query ("red dress") is written with its relevance rule, and every candidate
  of the batch that meets the rule counts as a positive, not a negative (multi-positive
  InfoNCE): otherwise the hard negative, another dress, would teach "dress" to avoid dresses;
- intra-product InfoNCE between each product's image-only and text-only embeddings;
- with config "photo" (issue 16): photo-like views of each photo (crops, mirror, tilt, canvas,
  light, blur, JPEG; cached through the frozen tower) are the i2mm queries, and an instance term
  pulls each view to its own catalog photo's image-only embedding and away from the batch's
  other photos, so an image query keeps the product's identity, not only its kind;
- L_aux (router load balance) and L_sparsity (entropy of W*'s rows);
- dynamic sample filtering: phi = sigmoid(kappa (s_qp - s_qn - m)); queries with phi < tau are
  down-weighted to phi, and the margin m decays linearly to 0 over training. With
  `loss.filter_focus` the weights are divided by their batch mean: the filter then moves the
  batch's focus between confident and hard triplets without also shrinking every step (early
  on, nearly every phi is below tau, so plain down-weighting acts as a much smaller lr).
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from moonsearch.encoder.moon import ENRICHED, IMAGE, IMAGE_EXPANDED, OBJECTIVES, TEXT, MoonLite, Segment, pad_tokens
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, Towers
from moonsearch.errors import MoonsearchError
from moonsearch.shopper import ShopperQuery, is_relevant, shopper_query
from moonsearch.progress import console, progress_bar
from moonsearch.train.baseline import split_train_val
from moonsearch.train.checkpoints import resume_checkpoint, save_checkpoint
from moonsearch.train.checkpoints import starting_weights as shared_starting_weights
from moonsearch.train.report import prepare_output, save_training_outputs
from moonsearch.train.schedule import plan_steps, warmup_cosine
from moonsearch.train.token_cache import (TokenCache, build_photo_view_cache, build_training_cache,
                                          text_token_arrays)


class Batcher:
    """Turns rows of the token cache into the segments of one training step."""

    def __init__(self, cache: TokenCache, config: dict, rng: random.Random, device: str = "cpu"):
        self.cache, self.rng = cache, rng
        self.coaug = config["components"]["co_augmentation"]
        self.p_enriched = config["augment"].get("p_enriched", 0.5)
        self.p_expanded = config["augment"].get("p_expanded", 0.5)
        self.p_query = config["augment"].get("p_shopper_query", 0.5)
        self.max_tokens = config["data"].get("max_text_tokens", 64)
        by_type = defaultdict(list)
        for row, attrs in enumerate(cache.attributes):
            by_type[attrs.get("articleType")].append(row)
        self.by_type = by_type
        title_ids = {}
        self.title_id = np.array([title_ids.setdefault(t, len(title_ids)) for t in cache.titles])
        # "cached": the one query per product fixed when the token cache was built (no rule);
        # "live": a fresh query and its relevance rule each time, its tokens from the text tower
        self.live_queries = config["data"].get("shopper_queries", "cached") == "live"
        self.device = device
        self.photo_views: np.ndarray | None = None   # (N, V, 12, 1280): set when config "photo" asks
        self._towers: Towers | None = None
        self._query_tokens: dict[str, np.ndarray] = {}

    def hard_negative(self, row: int) -> int:
        """Same articleType, another colour or pattern when one exists; else any other product."""
        attrs = self.cache.attributes[row]
        pool = self.by_type.get(attrs.get("articleType"), [])
        colour = attrs.get("baseColour")
        pattern = (attrs.get("attributes") or {}).get("Pattern")
        for _ in range(8):
            other = self.rng.choice(pool) if len(pool) > 1 else self.rng.randrange(len(self.cache))
            o = self.cache.attributes[other]
            if other != row and (o.get("baseColour") != colour or (o.get("attributes") or {}).get("Pattern") != pattern):
                return other
        return self.rng.randrange(len(self.cache))

    def _text(self, rows, field) -> Segment:
        arrays = [self.cache.text(r, field)[: self.max_tokens].astype(np.float32) for r in rows]
        return Segment(*pad_tokens(arrays, TEXT_FEATURE_DIM), TEXT)

    def _image(self, rows, expanded: bool, kind: int = IMAGE) -> Segment:
        arrays = []
        for r in rows:
            if not self.cache.has_image[r]:
                arrays.append(None)
            elif expanded and self.cache.has_expanded[r]:
                arrays.append(np.asarray(self.cache.expanded[r], np.float32))
            else:
                arrays.append(np.asarray(self.cache.image[r], np.float32))
        return Segment(*pad_tokens(arrays, IMAGE_FEATURE_DIM), kind)

    def candidate(self, rows) -> list[Segment]:
        """A product as the index sees it (product text + photo), plus co-augmented extras."""
        segments = [self._text(rows, "product"), self._image(rows, expanded=False)]
        if self.coaug:
            enriched = self._text(rows, "enriched")
            enriched.mask &= torch.rand(len(rows))[:, None] < self.p_enriched
            enriched.kind = ENRICHED
            extra = self._image(rows, expanded=True, kind=IMAGE_EXPANDED)
            extra.mask &= (torch.rand(len(rows)) < self.p_expanded)[:, None] & torch.from_numpy(self.cache.has_expanded[rows])[:, None]
            segments += [enriched, extra]
        return segments

    def text_query(self, rows) -> tuple[Segment, list[dict | None]]:
        """Titles or shopper-style queries, with each query's relevance rule (None: only its
        own product answers it)."""
        picks: list[ShopperQuery | str] = []     # a live query, or the cached field to read
        for r in rows:
            if self.rng.random() >= self.p_query:
                picks.append("title")
            elif not self.live_queries:
                picks.append("query")
            else:
                picks.append(shopper_query(self.cache.attributes[r], self.rng) or "title")
        live = iter(self.query_tokens([p for p in picks if isinstance(p, ShopperQuery)]))
        arrays = [next(live) if isinstance(p, ShopperQuery) else self.cache.text(r, p).astype(np.float32)
                  for r, p in zip(rows, picks)]
        rules = [p.match if isinstance(p, ShopperQuery) else None for p in picks]
        return Segment(*pad_tokens(arrays, TEXT_FEATURE_DIM), TEXT), rules

    def query_tokens(self, queries: list[ShopperQuery]) -> list[np.ndarray]:
        """Text-tower token states of live queries, remembered by text (queries repeat a lot).
        New texts go through the tower in groups of one token length: no padding, so a text's
        states do not depend on which batch first met it (a resumed run trains like a straight one)."""
        missing = sorted({q.text for q in queries} - self._query_tokens.keys())
        if missing:
            if self._towers is None:
                self._towers = Towers(device=self.device)
            lengths = self._towers.text.tokenize(missing)["attention_mask"].sum(1).tolist()
            for length in sorted(set(lengths)):
                group = [text for text, n in zip(missing, lengths) if n == length]
                self._query_tokens.update(zip(group, text_token_arrays(self._towers, group)))
        return [self._query_tokens[q.text].astype(np.float32) for q in queries]

    def query_input(self, queries: list[ShopperQuery]) -> list[Segment]:
        """What the model reads for these shopper queries (text tokens from the tower)."""
        return [Segment(*pad_tokens(self.query_tokens(queries), TEXT_FEATURE_DIM), TEXT)]

    def positives(self, rules: list[dict | None], cand_rows: np.ndarray) -> torch.Tensor:
        """(Q, C) bool: query i's own product (candidate i) and every candidate meeting its rule."""
        mask = torch.zeros(len(rules), len(cand_rows), dtype=torch.bool)
        mask[torch.arange(len(rules)), torch.arange(len(rules))] = True
        for i, rule in enumerate(rules):
            if rule is not None:
                for j, row in enumerate(cand_rows):
                    if is_relevant(self.cache.attributes[row], rule):
                        mask[i, j] = True
        return mask

    def image_query(self, rows) -> Segment:
        return self._image(rows, expanded=self.coaug)

    def photo_query(self, rows) -> Segment:
        """A random photo-like view of each product's photo (image only), as a shopper sends it."""
        views = self.photo_views.shape[1]
        arrays = [np.asarray(self.photo_views[r, self.rng.randrange(views)], np.float32)
                  if self.cache.has_image[r] else None for r in rows]
        return Segment(*pad_tokens(arrays, IMAGE_FEATURE_DIM), IMAGE)


def info_nce(queries, candidates, positives: torch.Tensor, temperature: float, blocked=None) -> torch.Tensor:
    """Per-query InfoNCE with one or more positives: -log(sum over positives / sum over all).

    `positives` (Q, C) bool; with one positive per row this is the usual cross-entropy.
    `blocked` (Q, C) marks candidates that are neither positives nor negatives (same title)."""
    logits = queries @ candidates.T / temperature
    if blocked is not None:
        logits = logits.masked_fill(blocked & ~positives, float("-inf"))
    return torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positives, float("-inf")), 1)


def filter_weights(q, pos, neg, margin: float, kappa: float, tau: float) -> torch.Tensor:
    """Dynamic sample filtering: 1 for confident triplets, phi for those with phi < tau."""
    phi = torch.sigmoid(kappa * ((q * pos).sum(-1) - (q * neg).sum(-1) - margin))
    return torch.where(phi >= tau, torch.ones_like(phi), phi).detach()


def triplet_weights(q, pos, neg, hard_is_positive, valid, margin: float, loss_cfg: dict) -> torch.Tensor:
    """Per-query weights of the filter; 1 where the hard negative is itself relevant; divided by
    the batch mean over `valid` queries when `filter_focus` is on."""
    weight = filter_weights(q, pos, neg, margin, loss_cfg["kappa"], loss_cfg["tau"])
    weight = torch.where(hard_is_positive, torch.ones_like(weight), weight)
    if loss_cfg.get("filter_focus"):
        weight = weight / weight[valid].mean().clamp(min=1e-6)
    return weight


def train_step(model: MoonLite, batcher: Batcher, rows: np.ndarray, config: dict, progress: float):
    comp, loss_cfg = config["components"], config["loss"]
    device = next(model.parameters()).device

    def embed(segments):
        return model([s.to(device) for s in segments])

    negatives = np.array([batcher.hard_negative(r) for r in rows])
    cand_rows = np.concatenate([rows, negatives])
    candidates, _ = embed(batcher.candidate(cand_rows))
    b = len(rows)
    pos_emb, neg_emb = candidates[:b], candidates[b:]
    title = torch.from_numpy(batcher.title_id[cand_rows]).to(device)
    blocked = title[None, :] == title[:b, None]          # same title: not a negative ...
    blocked[torch.arange(b), torch.arange(b)] = False    # ... except the positive itself
    own = torch.zeros(b, len(cand_rows), dtype=torch.bool, device=device)
    own[torch.arange(b), torch.arange(b)] = True

    text_query, rules = batcher.text_query(rows)
    mm_text, _ = batcher.text_query(rows)      # the image names the product: one positive
    photos = batcher.photo_views is not None
    photo_query = batcher.photo_query(rows) if photos else None
    forms = {
        "t2mm": ([text_query], batcher.positives(rules, cand_rows).to(device)),
        # with photo views, the image query is a shopper's photo of the product, not the catalog file
        "i2mm": ([photo_query if photos else batcher.image_query(rows)], own),
        "mm2mm": ([mm_text, batcher.image_query(rows)], own),
    }
    has_image = torch.from_numpy(batcher.cache.has_image[rows]).to(device)
    margin = loss_cfg["margin"] * max(0.0, 1.0 - progress)
    losses, gates, queries = {}, {}, {}
    for name, (segments, positive) in forms.items():
        q, g = embed(segments)
        per_query = info_nce(q, candidates, positive, loss_cfg["temperature"], blocked)
        valid = has_image if name != "t2mm" else torch.ones(b, dtype=torch.bool, device=device)
        if comp["filtering"]:
            hard_is_positive = positive[torch.arange(b), torch.arange(b) + b]   # no triplet to judge
            per_query = per_query * triplet_weights(q, pos_emb, neg_emb, hard_is_positive, valid, margin, loss_cfg)
        losses[name] = per_query[valid].mean()
        gates[name] = g[valid]
        queries[name] = q
    if comp["dual_level"] or photos:
        image_only, g_i = embed([batcher._image(rows, expanded=False)])
    if photos:
        # instance level: a photo of a product is nearer its catalog photo than any other in the batch
        view = queries["i2mm"]   # the photo view's embedding, as the i2mm form computed it
        keep = has_image
        blocked_images = (title[None, :b] == title[:b, None]) & ~torch.eye(b, dtype=torch.bool, device=device)
        per_view = info_nce(view[keep], image_only[keep], own[:, :b][keep][:, keep],
                            loss_cfg["temperature"], blocked_images[keep][:, keep])
        losses["photo"] = per_view.mean()
    if comp["dual_level"]:
        text_only, g_t = embed([batcher._text(rows, "product")])
        keep = has_image
        pairs = torch.eye(int(keep.sum()), dtype=torch.bool, device=device)
        ti = info_nce(image_only[keep], text_only[keep], pairs, loss_cfg["intra_temperature"])
        it = info_nce(text_only[keep], image_only[keep], pairs, loss_cfg["intra_temperature"])
        losses["intra"] = (ti.mean() + it.mean()) / 2
        gates["intra"] = torch.cat([g_i[keep], g_t[keep]])
    inter = ("t2mm", "i2mm", "mm2mm")
    if comp["moe"]:
        omega = torch.stack([model.objectives.omega(gates[m], OBJECTIVES.index(m)) for m in inter])
        omega = omega / omega.sum()
        mix = loss_cfg["omega_mix"]
        weights = len(inter) * ((1 - mix) / len(inter) + mix * omega)
        aux = model.aux_loss()
        sparsity = model.objectives.sparsity()
    else:
        weights = torch.ones(len(inter), device=device)
        aux = sparsity = torch.zeros((), device=device)
    inter_loss = sum(w * losses[m] for w, m in zip(weights, inter))
    intra = loss_cfg.get("intra_weight", 1.0) * losses.get("intra", torch.zeros((), device=device))
    photo = config.get("photo", {}).get("weight", 1.0) * losses.get("photo", torch.zeros((), device=device))
    total = inter_loss + intra + photo + loss_cfg["rho"] * aux + loss_cfg["varsigma"] * sparsity
    parts = {k: v.item() for k, v in losses.items()}
    parts.update({f"omega:{m}": w.item() / len(inter) for m, w in zip(inter, weights)},
                 aux=aux.item(), sparsity=sparsity.item(), total=total.item())
    return total, parts


@torch.no_grad()
def validate(model: MoonLite, batcher: Batcher, rows: np.ndarray) -> dict:
    """Held-out *train* products (up to 1,000, as the index sees them), hit@1 of three tasks:
    title -> product, an unseen view of the photo -> product (the expanded variant; the
    original photo would find itself trivially) and title -> image-only (intra alignment)."""
    model.eval()
    rows = rows[batcher.cache.has_image[rows] & batcher.cache.has_expanded[rows]][:1000]
    saved = batcher.coaug
    batcher.coaug = False  # validation sees products as the index does

    device = next(model.parameters()).device

    def run(make) -> torch.Tensor:
        return torch.cat([model([s.to(device) for s in make(rows[i:i + 256])])[0].float().cpu()
                          for i in range(0, len(rows), 256)])

    products = run(batcher.candidate)
    titles = run(lambda r: [batcher._text(r, "title")])
    views = run(lambda r: [batcher._image(r, expanded=True)])
    images = run(lambda r: [batcher._image(r, expanded=False)])
    shopper = shopper_precision(model, batcher, rows, products)
    photo_views = None
    if batcher.photo_views is not None:   # the first photo view of each held-out product
        photo_views = run(lambda r: [Segment(*pad_tokens([np.asarray(batcher.photo_views[i, 0], np.float32) for i in r],
                                                         IMAGE_FEATURE_DIM), IMAGE)])
    batcher.coaug = saved
    model.train()
    target = torch.arange(len(rows))

    def hit1(queries, candidates) -> float:
        return round(float(((queries @ candidates.T).argmax(1) == target).float().mean()), 4)

    record = {"val title->mm hit@1": hit1(titles, products), "val view->mm hit@1": hit1(views, products),
              "val title->image hit@1": hit1(titles, images), "val shopper P@10": shopper}
    if photo_views is not None:
        record["val photo->mm hit@1"] = hit1(photo_views, products)
    return record


def shopper_precision(model: MoonLite, batcher: Batcher, rows: np.ndarray, products: torch.Tensor) -> float:
    """The shopper protocol on held-out train products: one attribute query per product (a fixed
    seed, duplicates merged), relevant = products meeting its rule; precision of the top 10,
    out of at most the number of relevant products (a small pool has few of each)."""
    rng = random.Random(0)
    unique = {}
    for row in rows:
        query = shopper_query(batcher.cache.attributes[row], rng)
        if query is not None:
            unique.setdefault((query.text, json.dumps(query.match, sort_keys=True)), query)
    queries = list(unique.values())
    if not queries:
        return 0.0
    device = next(model.parameters()).device
    embedded = []
    for i in range(0, len(queries), 256):
        embedded.append(model([s.to(device) for s in batcher.query_input(queries[i:i + 256])])[0].float().cpu())
    relevant = torch.tensor([[is_relevant(batcher.cache.attributes[r], q.match) for r in rows] for q in queries])
    return round(capped_precision(torch.cat(embedded) @ products.T, relevant, 10), 4)


def capped_precision(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> float:
    """Mean over queries of (relevant in the top k) / min(k, number relevant): 1.0 means every
    query got as many right answers as it could, whatever the pool size."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = relevant.gather(1, top).sum(1).float()
    return float((hits / relevant.sum(1).clamp(min=1, max=top.shape[1])).mean())


def starting_weights(init: str, model_config: dict) -> tuple[dict, dict]:
    """The tensors a fine-tuning run starts from (a shipped moon-lite name such as "moon-lite", or
    a .safetensors path) and their identity, with the epochs and wall time its own report gives."""
    tensors, start, prior = shared_starting_weights(init, "moon-lite", "moon-lite", model_config)
    if prior:
        start.update(epochs=len(prior.get("history", [])), wall_seconds=prior.get("wall_seconds", {}).get("total"))
    return tensors, start


def _checkpoint_path(out: Path) -> Path:
    return out.with_suffix(".checkpoint.pt")


def train_moon(catalog: Path, config: dict, out: Path, cache_dir: Path | None = None,
               resume: bool = True, limit: int | None = None, device: str = "cpu",
               stop_after_epoch: int | None = None) -> dict:
    """Train, checkpoint every epoch (resumable), then write weights, config and report.

    `device` "cuda" runs the towers (token cache) and the fusion model on the GPU, the latter
    under bf16 autocast; batches are assembled on the CPU from the cache on disk.
    `stop_after_epoch` ends the run after that epoch's checkpoint, as an interruption would (tests)."""
    out = prepare_output(out)
    # checked before the (long) token cache is built: a wrong init should fail at once
    initial, start = starting_weights(config["init"], config["model"]) if config.get("init") else (None, None)
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    started = time.time()
    limit = limit or config["data"].get("limit")   # a CPU budget: the first N train products
    cache = build_training_cache(Path(catalog), {**config["augment"], "seed": seed}, cache_dir, limit=limit,
                                 exclude=config["data"].get("exclude"), device=device)
    photo_config = config.get("photo")
    photo_views = None
    if photo_config:
        photo_views = build_photo_view_cache(Path(catalog), cache, int(photo_config.get("views", 2)),
                                             int(photo_config.get("seed", seed)), cache_dir, device=device)
    cache_seconds = time.time() - started
    rng = random.Random(seed)
    batcher = Batcher(cache, config, rng, device=device)
    batcher.photo_views = photo_views
    train_rows, val_rows = split_train_val(len(cache), config["data"]["val_fraction"], seed)
    train_rows = train_rows[cache.has_image[train_rows]]

    torch.manual_seed(seed)   # again: building the cache (first run only) draws from torch's RNG
    model = MoonLite(**config["model"])
    if initial is not None:
        model.load_state_dict(initial)
    model = model.to(device)
    optim_cfg = config["optim"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    batch_size, steps_per_epoch, total_steps = plan_steps(train_rows, optim_cfg, catalog)
    scheduler = warmup_cosine(optimizer, total_steps)
    history, start_epoch, seconds_before = [], 0, 0.0
    checkpoint = _checkpoint_path(Path(out))
    restored = resume_checkpoint(checkpoint, config, device, model, optimizer, scheduler, np_rng, rng) if resume else None
    if restored is not None:
        history, start_epoch, seconds_before = restored
    model.train()
    with progress_bar() as bar:
        task = bar.add_task(f"training {config.get('name', 'moon-lite')}", total=total_steps,
                            completed=start_epoch * steps_per_epoch)
        for epoch in range(start_epoch, optim_cfg["epochs"]):
            order = np_rng.permutation(train_rows)
            sums: dict = defaultdict(float)
            for step in range(steps_per_epoch):
                rows = order[step * batch_size:(step + 1) * batch_size]
                progress = (epoch * steps_per_epoch + step) / total_steps
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                    loss, parts = train_step(model, batcher, rows, config, progress)
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                for k, v in parts.items():
                    sums[k] += v
                bar.advance(task)
            record = {"epoch": epoch + 1, **{k: round(v / steps_per_epoch, 4) for k, v in sums.items()},
                      **validate(model, batcher, val_rows)}
            history.append(record)
            console.log(record)
            save_checkpoint(checkpoint, config, model, optimizer, scheduler, history, epoch + 1, np_rng,
                            seconds_before + time.time() - started, rng)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                raise KeyboardInterrupt(f"stopped after epoch {epoch + 1}")

    report = {
        "encoder": "moon-lite", "name": config.get("name"), "components": config["components"],
        **({"init": start} if start else {}),
        "data": {"catalog": str(catalog), "split": config["augment"].get("split", "train"), "products": len(cache),
                 "train_rows": int(len(train_rows)), "val_rows": int(len(val_rows)),
                 "fingerprint": cache.stats.get("fingerprint"), "augmentation": cache.stats},
        "history": history,
        "wall_seconds": {"token_cache": round(cache_seconds, 1),
                         "total": round(seconds_before + time.time() - started, 1),
                         **({"resumed_after_epoch": start_epoch} if start_epoch else {})},
        "device": device,
        "p_objectives": model.objectives.p().detach().cpu().numpy().round(3).tolist(),
    }
    save_training_outputs({k: v.cpu() for k, v in model.state_dict().items()}, {"model": config["model"], "training": config}, report, Path(out))
    plot_history(history, Path(out).with_suffix(".loss.png"))
    checkpoint.unlink(missing_ok=True)
    return report


def plot_history(history: list[dict], path: Path) -> None:
    """Loss curves per epoch as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in ("total", "t2mm", "i2mm", "mm2mm", "intra", "photo") if history and k in history[0]]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    for key in keys:
        ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
