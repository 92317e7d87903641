"""Train the MLLM backbone encoder: MOON2.0 on a local Qwen2-VL / Qwen2.5-VL checkpoint.

The loss is moon-lite's own `train_step` (inter-product InfoNCE per query form weighted by
omega from W*, the intra-product loss, L_aux, L_sparsity, dynamic sample filtering) and its
`validate`: both are called as they are, with a batcher and a model that speak the same
interface. What differs from moon-lite is only the data path. An MLLM is fine-tuned end to end,
so it cannot train on a frozen-tower token cache: batches hold raw texts and PIL images, and
co-augmentation (enriched titles, shopper queries, visual expansion with the consistency
filter) runs on those (augment.py).

On a GPU the backbone runs under bf16 autocast with gradient checkpointing (fp32 master
weights, fp32 loss); on a CPU it runs in fp32, which is only meant for tiny test models.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from moonsearch.catalog import first_image, open_catalog
from moonsearch.encoder.mllm import MoonMLLM, Part, _read_config, load_backbone, save_mllm
from moonsearch.catalog.inputs import model_input
from moonsearch.errors import MoonsearchError
from moonsearch.progress import console, progress_bar
from moonsearch.shopper import shopper_query
from moonsearch.train.augment import VARIANTS, consistent_rows, expand_image, make_enricher
from moonsearch.train.baseline import split_train_val
from moonsearch.train.features import check_split
from moonsearch.train.moon import Batcher, train_step, validate
from moonsearch.train.report import prepare_output
from moonsearch.train.schedule import plan_steps, warmup_cosine

JUDGE_BATCH = 64   # the consistency filter ranks a variant among this many titles


@dataclass
class ProductSet:
    """Training products in memory: texts, image paths and one visual-expansion recipe each.

    Offers what moon-lite's Batcher reads from its token cache (titles, attributes, has_image,
    has_expanded); images are decoded on demand (a small LRU), variants re-drawn from their seed.
    """

    ids: list[str]
    titles: list[str]
    attributes: list[dict]
    texts: dict[str, list[str]]          # "product" (as indexed), "title", "enriched" (T+)
    image_paths: list[list[Path]]
    has_image: np.ndarray
    variants: list[tuple[str, int] | None]
    has_expanded: np.ndarray
    stats: dict = field(default_factory=dict)
    cache_size: int = 2048

    def __post_init__(self):
        self._images: OrderedDict[int, Image.Image | None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, row: int) -> Image.Image | None:
        if not self.has_image[row]:
            return None
        if row not in self._images:
            self._images[row] = first_image(self.image_paths[row])[0]
            if len(self._images) > self.cache_size:
                self._images.popitem(last=False)
        self._images.move_to_end(row)
        return self._images[row]

    def expanded(self, row: int) -> Image.Image | None:
        image, recipe = self.image(row), self.variants[row]
        if image is None or recipe is None:
            return None
        name, seed = recipe
        return expand_image(image, random.Random(seed), name)[0]


def prepare_products(catalog_path: Path, config: dict, limit: int | None = None) -> ProductSet:
    """Read the training split, enrich titles, draw and judge one expansion variant per image."""
    augment = config["augment"]
    split = augment.get("split", "train")
    check_split(split)
    rng = random.Random(config.get("seed", 0))
    enricher = make_enricher(augment)
    catalog = open_catalog(catalog_path)
    rows: list = []
    for product in catalog.products():
        if split is not None and str(product.attributes.get("split")) != split:
            continue
        rows.append(product)
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise MoonsearchError(f"no products with split '{split}' in {catalog.path}")
    images, variants = [], []
    texts = {"product": [], "title": [], "enriched": []}
    for p in rows:
        given = model_input(p)
        image = given.image
        images.append(image)
        texts["product"].append(given.text)
        texts["title"].append(p.title)
        texts["enriched"].append(enricher.enrich(p.title, p.description, p.attributes, image))
        variants.append((rng.choice(VARIANTS), rng.randrange(2 ** 31)) if image is not None else None)
    has_image = np.array([im is not None for im in images], bool)
    has_expanded = has_image.copy()
    stats = {"products": len(rows), "with_image": int(has_image.sum()), "variants_dropped": 0}
    top = augment.get("consistency_top")
    if top and has_image.any():
        has_expanded &= _consistency(images, texts["title"], variants, int(top))
        stats["variants_dropped"] = int(has_image.sum() - has_expanded.sum())
    for image in images:
        if image is not None:
            image.close()
    return ProductSet(ids=[p.id for p in rows], titles=texts["title"],
                      attributes=[{k: v for k, v in p.attributes.items() if k != "descriptors"} for p in rows],
                      texts=texts, image_paths=[list(p.images) for p in rows], has_image=has_image,
                      variants=variants, has_expanded=has_expanded, stats=stats)


def _consistency(images, titles, variants, top: int) -> np.ndarray:
    """CLIP-style image-title consistency of each variant, scored by the baseline encoder."""
    from moonsearch.encoder.registry import load_encoder

    judge = load_encoder("baseline")
    present = [i for i, im in enumerate(images) if im is not None]
    keep = np.zeros(len(images), bool)
    for start in range(0, len(present), JUDGE_BATCH):
        chunk = present[start:start + JUDGE_BATCH]
        views = [expand_image(images[i], random.Random(variants[i][1]), variants[i][0])[0] for i in chunk]
        image_vectors = judge.encode([None] * len(chunk), views)
        title_vectors = judge.encode([titles[i] for i in chunk], [None] * len(chunk))
        keep[chunk] = consistent_rows(image_vectors @ title_vectors.T, top)
    return keep


class MLLMBatcher(Batcher):
    """moon-lite's Batcher (hard negatives, title ids) producing Parts of raw texts and images."""

    def __init__(self, products: ProductSet, config: dict, rng: random.Random):
        super().__init__(products, config, rng)

    def _text(self, rows, field) -> Part:
        return Part("text", [self.cache.texts[field][r] for r in rows])

    def _image(self, rows, expanded: bool, kind=None) -> Part:
        items = []
        for r in rows:
            view = self.cache.expanded(r) if expanded and self.cache.has_expanded[r] else None
            items.append(view if view is not None else self.cache.image(r))
        return Part("image", items)

    def candidate(self, rows) -> list[Part]:
        """A product as the index sees it (product text + photo), plus co-augmented extras."""
        parts = [self._image(rows, expanded=False), self._text(rows, "product")]
        if self.coaug:
            parts.append(Part("text", [self.cache.texts["enriched"][r] if self.rng.random() < self.p_enriched else None
                                       for r in rows]))
            parts.append(Part("image", [self.cache.expanded(r) if self.cache.has_expanded[r]
                                        and self.rng.random() < self.p_expanded else None for r in rows]))
        return parts

    def text_query(self, rows) -> tuple[Part, list[dict | None]]:
        """Titles or fresh shopper-style queries (raw text: no token cache to keep), with rules."""
        items, rules = [], []
        for r in rows:
            query = shopper_query(self.cache.attributes[r], self.rng) if self.rng.random() < self.p_query else None
            items.append(query.text if query else self.cache.titles[r])
            rules.append(query.match if query else None)
        return Part("text", items), rules

    def query_input(self, queries) -> list[Part]:
        return [Part("text", [q.text for q in queries])]

    def image_query(self, rows) -> Part:
        return self._image(rows, expanded=self.coaug)


def resolve_backbone(backbone_path: Path | str | None, config: dict) -> Path:
    """The backbone folder from --backbone-path or the config; a clear error when it is missing."""
    path = backbone_path or (config.get("backbone") or {}).get("path")
    if not path:
        raise MoonsearchError(f"config '{config.get('name')}' trains an MLLM: pass --backbone-path with a local "
                              "Qwen2-VL / Qwen2.5-VL checkpoint folder (nothing is downloaded)")
    folder = Path(path).expanduser()
    _read_config(folder)      # fails with a clear message on a missing or foreign folder
    return folder


def build_model(backbone: Path, config: dict) -> MoonMLLM:
    """Load and upcycle the backbone as the config says (no MoE for the w/o-MoE ablation)."""
    moe = dict(config.get("moe") or {})
    if not config["components"]["moe"]:
        moe["layers"] = "none"
    preprocess = {k: v for k, v in (config.get("backbone") or {}).items() if k != "path"}
    return load_backbone(backbone, moe, preprocess)


def place(model: MoonMLLM, device: str, config: dict) -> MoonMLLM:
    """The model on `device`, with the memory savers the config asks for (bf16, checkpointing)."""
    train_cfg = config.get("train", {})
    model.to(device)
    if train_cfg.get("freeze_vision", False):
        model.backbone.visual.requires_grad_(False)
    on_gpu = device == "cuda"
    if train_cfg.get("bf16", True) and on_gpu:
        model.autocast_dtype = torch.bfloat16
    checkpointing = train_cfg.get("gradient_checkpointing", "auto")
    if checkpointing is True or (checkpointing == "auto" and on_gpu):
        # Non-reentrant: the router gates read outside the checkpointed layers keep their graph.
        kwargs = {"use_reentrant": False}
        if hasattr(model.backbone, "activation_checkpointing_enable"):
            model.backbone.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.eval_batch_size = int(train_cfg.get("eval_batch_size", 16))
    return model


def make_optimizer(model: MoonMLLM, optim_cfg: dict) -> torch.optim.Optimizer:
    """Pretrained weights at `lr` (the paper's 1e-5); new ones (routers, W*) at `lr_new`."""
    new, pretrained = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (new if ".router." in name or name.startswith("objectives.") else pretrained).append(param)
    groups = [{"params": pretrained, "lr": optim_cfg["lr"]},
              {"params": new, "lr": optim_cfg.get("lr_new", optim_cfg["lr"])}]
    return torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=optim_cfg["weight_decay"])


def train_mllm(catalog: Path, config: dict, out: Path, backbone_path: Path | str | None = None,
               device: str | None = None, limit: int | None = None) -> dict:
    """Train, then write the model folder `out` (see encoder/mllm.py) with its report."""
    from moonsearch.devices import placement_for

    started = time.time()
    out = prepare_output(out)
    backbone = resolve_backbone(backbone_path, config)
    seed = int(config.get("seed", 0))
    torch.manual_seed(seed)
    np_rng = np.random.default_rng(seed)
    rng = random.Random(seed)
    products = prepare_products(Path(catalog), config, limit=limit or config["data"].get("limit"))
    prepare_seconds = time.time() - started
    target = placement_for(device or config.get("device", "auto"), "flat").encoder
    model = place(build_model(backbone, config), target, config)
    batcher = MLLMBatcher(products, config, rng)
    train_rows, val_rows = split_train_val(len(products), config["data"]["val_fraction"], seed)
    train_rows = train_rows[products.has_image[train_rows]]
    val_rows = val_rows[products.has_image[val_rows] & products.has_expanded[val_rows]]
    optim_cfg = config["optim"]
    batch_size, steps_per_epoch, total_steps = plan_steps(train_rows, optim_cfg, catalog)
    optimizer = make_optimizer(model, optim_cfg)
    scheduler = warmup_cosine(optimizer, total_steps, optim_cfg.get("warmup", 0.05))
    trainable = [p for p in model.parameters() if p.requires_grad]
    history = []
    model.train()
    with progress_bar() as bar:
        task = bar.add_task(f"training {config.get('name', 'mllm')} on {target}", total=total_steps)
        for epoch in range(optim_cfg["epochs"]):
            order = np_rng.permutation(train_rows)
            sums: dict = defaultdict(float)
            for step in range(steps_per_epoch):
                rows = order[step * batch_size:(step + 1) * batch_size]
                loss, parts = train_step(model, batcher, rows, config, (epoch * steps_per_epoch + step) / total_steps)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(trainable, 1.0)
                optimizer.step()
                scheduler.step()
                for k, v in parts.items():
                    sums[k] += v
                bar.advance(task)
            record = {"epoch": epoch + 1, **{k: round(v / max(1, steps_per_epoch), 4) for k, v in sums.items()}}
            if len(val_rows):
                record.update(validate(model, batcher, val_rows))
            history.append(record)
            console.log(record)

    model.eval()
    report = {
        "encoder": "mllm", "name": config.get("name"), "backbone": str(backbone), "family": model.family,
        "device": target, "components": config["components"], "moe": model.moe,
        "data": {"catalog": str(catalog), "split": config["augment"].get("split", "train"), **products.stats,
                 "train_rows": len(train_rows), "val_rows": len(val_rows)},
        "history": history,
        "wall_seconds": {"prepare": round(prepare_seconds, 1), "total": round(time.time() - started, 1)},
        "p_objectives": model.objectives.p().detach().cpu().numpy().round(3).tolist(),
    }
    save_mllm(model, Path(out), training=config, report=report)
    return report
