"""Train a text-query head for a moon-lite model (issue 20: MOON2.0's textual enrichment).

Shoppers write "mens crew neck tees", "kurta for women", "party dress"; the base model was trained
on titles and a few attribute-written queries. Retraining it would move every product vector and
invalidate every index, so, as for photos (train/photo_query.py), the text side gets weights of
its own: a copy of the base fusion model that embeds text-only *queries* only
(encoder/query_heads.py). Products keep the base's vectors exactly.

Training data, all from `train` products the base was trained on (its `data.exclude` slice, the
`myntra-val` products, stays out: their queries are the validation):
- queries written from each product's attributes by shopper.text_queries (the shopper writer
  plus Neck / Occasion phrases and gender word orders), respelled with the synonym list
  inverted (canonical -> a random variant: "t-shirt" -> "tees", "men" -> "mens"), each with its
  relevance rule;
- the product's title, so title lookups (t2mm) stay where the base put them.
Positives: every training product the query's rule accepts (a title: the products with that
title). Loss: multi-positive InfoNCE over all training products at once, against the frozen
base's product vectors, read from an index of the catalog built with the base (`data.index`) or
embedded here. The frozen MiniLM token states of the queries are computed once and cached.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from moonsearch.encoder.moon import TEXT, MoonLite, Segment, pad_tokens
from moonsearch.encoder.query_heads import head_path
from moonsearch.encoder.towers import TEXT_FEATURE_DIM
from moonsearch.errors import MoonsearchError
from moonsearch.progress import console, progress_bar
from moonsearch.shopper import field_value, text_queries
from moonsearch.train.photo_query import load_base
from moonsearch.train.query_head import fit_head, save_head
from moonsearch.train.report import prepare_output


def synonym_spellings() -> dict[str, list[str]]:
    """Every phrase of the synonym list -> all spellings of its group (canonical included)."""
    from moonsearch.store.query_language import default_synonyms

    groups: dict[str, set[str]] = {}
    for variant, (canonical, _) in default_synonyms().phrases.items():
        groups.setdefault(canonical, {canonical}).add(" ".join(variant))
    return {phrase: sorted(group) for group in groups.values() for phrase in group}


class RuleRows:
    """The rows of `products` each relevance rule accepts, from one value -> rows map per field."""

    def __init__(self, products):
        self.values: dict[str, dict[str, set[int]]] = defaultdict(lambda: defaultdict(set))
        self.products = products
        self.memo: dict = {}

    def rows(self, rule: dict) -> np.ndarray:
        key = tuple(sorted((f, tuple(sorted(map(str, v)))) for f, v in rule.items()))
        if key not in self.memo:
            found = None
            for f, allowed in rule.items():
                if f not in self.values:
                    for i, p in enumerate(self.products):
                        value = field_value(p.attributes, f)
                        if value is not None:
                            self.values[f][str(value)].add(i)
                matched = set().union(*(self.values[f].get(str(v), set()) for v in allowed))
                found = matched if found is None else found & matched
            self.memo[key] = np.array(sorted(found or ()), np.int64)
        return self.memo[key]


def write_queries(products, per_product: int, titles: bool, seed: int, p_respell: float,
                  spellings: dict) -> tuple[list[str], list[np.ndarray]]:
    """(query texts, positive rows of each): `per_product` written queries per product and, if
    `titles`, its title; identical (text, positives) pairs are kept once."""
    rng = random.Random(seed)
    rules = RuleRows(products)
    by_title: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(products):
        by_title[p.title].append(i)
    seen: dict[tuple[str, bytes], int] = {}
    texts: list[str] = []
    positives: list[np.ndarray] = []

    def add(text: str, rows: np.ndarray) -> None:
        key = (text, rows.tobytes())
        if len(rows) and key not in seen:
            seen[key] = len(texts)
            texts.append(text)
            positives.append(rows)

    for i, p in enumerate(products):
        for query in text_queries(p.attributes, rng, per_product, spellings, p_respell):
            add(query.text, rules.rows(query.match))
        if titles and p.title.strip():
            add(p.title, np.array(by_title[p.title], np.int64))
    return texts, positives


def query_tokens(encoder, texts: list[str], cache_dir: Path | None, batch: int = 256) -> list[np.ndarray]:
    """Frozen MiniLM token states (float16) of each text, computed once per distinct text and
    cached on disk (keyed by the texts): a query's tokens never change while the head trains."""
    from moonsearch.cache import cache_root

    distinct = list(dict.fromkeys(texts))
    digest = hashlib.sha256("\n".join(distinct).encode()).hexdigest()[:20]
    folder = Path(cache_dir) if cache_dir else cache_root() / "text-query"
    path = folder / f"tokens-{digest}.npz"
    if path.is_file():
        stored = np.load(path)
        flat, offsets = stored["flat"], stored["offsets"]
        arrays = [flat[offsets[i]:offsets[i + 1]] for i in range(len(distinct))]
    else:
        order = sorted(range(len(distinct)), key=lambda i: len(distinct[i]))
        arrays = [None] * len(distinct)
        with progress_bar() as bar:
            task = bar.add_task("query tokens", total=len(distinct))
            for start in range(0, len(order), batch):
                part = order[start:start + batch]
                for i, tokens in zip(part, encoder.text_tokens([distinct[i] for i in part])):
                    arrays[i] = tokens.astype(np.float16)
                bar.advance(task, len(part))
        offsets = np.zeros(len(distinct) + 1, np.int64)
        np.cumsum([len(a) for a in arrays], out=offsets[1:])
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, flat=np.concatenate(arrays), offsets=offsets)
        tmp.replace(path)
    position = {text: i for i, text in enumerate(distinct)}
    return [arrays[position[text]] for text in texts]


def product_bank(encoder, products, index: Path | None) -> np.ndarray:
    """(N, dim) the base's product vectors (mm view), as an index of the catalog holds them;
    products the index lacks (or all, without one) are embedded here."""
    from moonsearch.catalog.images import first_loadable
    from moonsearch.catalog.inputs import product_text
    from moonsearch.eval.retrieval import embed

    vectors = np.zeros((len(products), encoder.dim), np.float32)
    missing = list(range(len(products)))
    if index is not None:
        from moonsearch.store.backends import open_records, open_vectors
        from moonsearch.store.files import view_file
        from moonsearch.store.manifest import Manifest

        manifest = Manifest.read(Path(index))
        manifest.check_encoder(encoder.encoder_id, Path(index))
        data = manifest.data_folder(Path(index))
        records = open_records(data, manifest.backend)
        keys = records.keys_of([p.id for p in products])
        found = [i for i, p in enumerate(products) if p.id in keys]
        if found:
            store = open_vectors(data, view_file("mm"), manifest.backend, manifest.files)
            vectors[found] = store.vectors(np.array([keys[products[i].id] for i in found], np.int64))
        missing = [i for i, p in enumerate(products) if p.id not in keys]
    if missing:
        console.log(f"embedding {len(missing)} products the index does not hold")
        for start in range(0, len(missing), 64):
            part = missing[start:start + 64]
            texts = [product_text(products[i].title, products[i].attributes) for i in part]
            images = [first_loadable(products[i].images).image for i in part]
            vectors[part] = embed(encoder, texts, images)
    return vectors


def segment(tokens: list[np.ndarray], rows, device) -> Segment:
    return Segment(*pad_tokens([tokens[r].astype(np.float32) for r in rows], TEXT_FEATURE_DIM), TEXT).to(device)


@torch.no_grad()
def validation(model: MoonLite, tokens, positives, bank: torch.Tensor, titles: np.ndarray, device) -> dict:
    """Vectors-only scores of the held-out queries against the held-out products: written queries'
    P@10 (relevant = the rule's products) and title queries' hit@1."""
    model.eval()
    precision, hits = [], []
    for start in range(0, len(tokens), 512):
        rows = range(start, min(start + 512, len(tokens)))
        query, _ = model([segment(tokens, rows, device)])
        top = torch.topk(query.float() @ bank.T, min(10, len(bank)), dim=1).indices.cpu().numpy()
        for r, best in zip(rows, top):
            if titles[r]:
                hits.append(float(best[0] in set(positives[r].tolist())))
            else:
                precision.append(float(np.isin(best, positives[r]).mean()))
    model.train()
    return {"val written P@10": round(float(np.mean(precision)), 4) if precision else None,
            "val title hit@1": round(float(np.mean(hits)), 4) if hits else None}


def train_text_query(catalog: Path, config: dict, out: Path, resume: bool = True, device: str = "cpu",
                     cache_dir: Path | None = None) -> dict:
    """Train the head for config["base"]; writes out.safetensors/.json/.report.json (`out` is
    normally head_path(base, "text"), where the encoders find it)."""
    from moonsearch.encoder.base import file_sha256
    from moonsearch.encoder.moon import MoonEncoder
    from moonsearch.eval.protocols.myntra import load_split

    out = prepare_output(out)
    base_path, saved, tensors = load_base(config["base"])
    base_id = f"{base_path.stem}@{file_sha256(base_path)[:16]}"
    seed = int(config.get("seed", 0))
    data_cfg = config["data"]
    started = time.time()
    products = load_split(Path(catalog), split="train", limit=data_cfg.get("limit"))
    exclude = data_cfg.get("exclude", saved["training"]["data"].get("exclude"))
    held = set(range(*exclude)) if exclude else set()
    train_products = [p for i, p in enumerate(products) if i not in held]
    val_products = [p for i, p in enumerate(products) if i in held]
    if len(train_products) < 2:
        raise MoonsearchError(f"{catalog}: {len(train_products)} training products; need at least 2")

    encoder = MoonEncoder.load(base_path, device=device)   # the frozen base: towers and fusion model
    encoder.head_models, encoder.query_heads = {}, {}            # products and queries by the base alone
    index = Path(data_cfg["index"]) if data_cfg.get("index") else None
    bank = torch.from_numpy(product_bank(encoder, train_products, index)).to(device)
    spellings = synonym_spellings()
    per_product, titles = int(data_cfg["queries_per_product"]), bool(data_cfg.get("titles", True))
    p_respell = float(data_cfg.get("p_respell", 0.5))
    texts, positives = write_queries(train_products, per_product, titles, seed, p_respell, spellings)
    tokens = query_tokens(encoder, texts, cache_dir)
    val = {}
    if val_products:
        val_texts, val_positives = write_queries(val_products, 1, titles, seed + 1, p_respell, spellings)
        pick = np.random.default_rng(seed).permutation(len(val_texts))[:int(data_cfg.get("val_queries", 2000))]
        val_texts, val_positives = [val_texts[i] for i in pick], [val_positives[i] for i in pick]
        title_set = {p.title for p in val_products}
        val = {"tokens": query_tokens(encoder, val_texts, cache_dir), "positives": val_positives,
               "bank": torch.from_numpy(product_bank(encoder, val_products, index)).to(device),
               "titles": np.array([t in title_set for t in val_texts])}
    cache_seconds = time.time() - started
    console.log(f"{len(texts)} training queries ({len(train_products)} products), caches in {cache_seconds:.0f}s")

    def score(model) -> dict:
        return validation(model, val["tokens"], val["positives"], val["bank"], val["titles"], device) if val else {}

    def multi_positive(logits: torch.Tensor, part: np.ndarray) -> torch.Tensor:
        """InfoNCE with every product the query's rule accepts as a positive:
        -log(sum over the rule's products / sum over all)."""
        positive = torch.zeros_like(logits, dtype=torch.bool)
        for j, r in enumerate(part):
            positive[j, torch.from_numpy(positives[r]).to(device)] = True
        return (torch.logsumexp(logits, 1) - torch.logsumexp(logits.masked_fill(~positive, -torch.inf), 1)).mean()

    checkpoint = Path(out).with_name(Path(out).name + ".checkpoint.pt")
    head, history, seconds = fit_head(saved, tensors, np.arange(len(texts)), config, catalog, checkpoint,
                                      lambda part, rng: segment(tokens, part, device), multi_positive, bank, score,
                                      device=device, resume=resume, started=started)

    data = {"catalog": str(catalog), "products": len(train_products), "queries": len(texts),
            "held_out_products": len(val_products), "index": None if index is None else str(index)}
    return save_head("text", head, saved, base_id, config, data, history, cache_seconds, seconds, device, out,
                     checkpoint)


def default_output(base: str) -> Path:
    """Beside the base weights, under the name the encoders look for (without suffix)."""
    from moonsearch.encoder.registry import weights_file

    return head_path(weights_file(str(base)), "text").with_suffix("")
