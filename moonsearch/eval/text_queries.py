"""How well text queries written the way shoppers write them are answered, ranked as the query
layer ranks them (hybrid: the product vectors and BM25 over the product text, fused by
reciprocal rank, with the query read by moonsearch.store.query_language unless `parse` is off).

Three measures (benchmarks/README.md, "Shopper language"):
- shopper: the shopper queries with their relevance rules: P@10, its ceiling (the best P@10 any
  ranking could reach, given how many products each query has), nDCG@10;
- attribute: queries written from the products' own attribute values, one key at a time
  ("round neck t-shirt" for Neck, "slim fit jeans" for Fit), relevant = the products having that
  value and that article type: nDCG@10 per key, their macro mean and the lowest key;
- variants: each shopper query spelled as shoppers also spell it (compounds split and joined,
  hyphens, plurals, possessives, common synonyms), by the written rules of `spelling_variants`:
  overlap@10 of each variant's top 10 with the canonical query's, and each variant's own P@10.

Everything reuses vectors the caller already has (the Myntra protocol's product vectors, or an
index's stored ones): only the queries are embedded here.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Callable, Sequence

import numpy as np

from moonsearch.eval.metrics import ndcg_at_k, precision_at_k
from moonsearch.shopper import attribute_text, is_relevant, singular
from moonsearch.store.keywords import memory_keyword_index
from moonsearch.store.query_language import AttributeWords, fuse, matches, understand, value_counts, verbatim

DEPTH = 100   # candidates each half hands to the fusion, as the query layer's HYBRID_DEPTH
ATTRIBUTE_KEYS = ("Neck", "Sleeve Length", "Fit", "Pattern", "Fabric", "Occasion")
MIN_RELEVANT = 10       # a (value, article type) pair is a query when at least this many products have it
MIN_PAIRS = 2           # a key is reported when it has at least this many such pairs
PAIRS_PER_KEY = 8       # at most this many pairs per key (a seeded sample of them): CI's time budget
MAX_VARIANTS = 150      # variant queries in all (a seeded sample when the rules write more)
NOUNS = {"Tshirts": "t-shirt"}   # article types a shopper spells otherwise than singular(articleType)


def article_noun(article_type: str) -> str:
    return NOUNS.get(article_type, singular(article_type))


def attribute_queries(products, keys: Sequence[str] = ATTRIBUTE_KEYS, min_relevant: int = MIN_RELEVANT,
                      min_pairs: int = MIN_PAIRS, per_key: int = PAIRS_PER_KEY, seed: int = 0) -> dict[str, list[dict]]:
    """key -> queries `{"query", "match"}` written "<value> <article noun>" from the products'
    own (value, articleType) pairs. The rule (stated in benchmarks/README.md): a pair is a query
    when at least `min_relevant` products have both; a key is kept when it has at least
    `min_pairs` pairs; a key with more than `per_key` pairs keeps a seeded sample of them."""
    found: dict[str, dict] = {}
    for key in keys:
        counts = Counter()
        for p in products:
            value = attribute_text(p.attributes.get("attributes") or {}, key)
            article = attribute_text(p.attributes, "articleType")
            if value and article:
                counts[(value, article)] += 1
        pairs = sorted(pair for pair, n in counts.items() if n >= min_relevant)
        if len(pairs) < min_pairs:
            continue
        if len(pairs) > per_key:
            pairs = sorted(random.Random(f"{seed}:{key}").sample(pairs, per_key))
        found[key] = [{"query": f"{value.lower()} {article_noun(article)}",
                       "match": {"articleType": [article], f"attributes.{key}": [value]}} for value, article in pairs]
    return found


# The variant rules: (name, pattern, replacement), applied one at a time to the lower-cased
# canonical query; each rule that changes the query writes one variant.
_VARIANT_RULES: list[tuple[str, str, str]] = [
    ("compound joined", r"\bt-shirt", "tshirt"),
    ("compound split", r"\bt-shirt", "t shirt"),
    ("compound split", r"\btshirt", "t shirt"),
    ("hyphenated", r"\btshirt", "t-shirt"),
    ("synonym", r"\bt-?shirt\b", "tee"),
    ("synonym plural", r"\bt-?shirt\b", "tees"),
    ("synonym", r"\bjeans\b", "denims"),
    ("synonym", r"\bsports shoes\b", "sneakers"),
    ("synonym", r"\brunning shoes\b", "sports shoes"),
    ("synonym", r"\bround neck\b", "crew neck"),
    ("hyphenated", r"\bround neck\b", "round-neck"),
    ("synonym", r"\blong sleeve\b", "full sleeve"),
    ("synonym", r"\bsleeveless\b", "no sleeves"),
    ("compound split", r"\bsweatshirt\b", "sweat shirt"),
    ("compound joined", r"\btrack pants\b", "trackpants"),
    ("compound joined", r"\bflip flops\b", "flipflops"),
    ("hyphenated", r"\bflip flops\b", "flip-flops"),
    ("compound split", r"\bhandbag\b", "hand bag"),
    ("compound split", r"\bbackpack\b", "back pack"),
    ("compound split", r"\bsunglasses\b", "sun glasses"),
    ("possessive dropped", r"\b(wo)?men's\b", r"\1mens"),
    ("possessive bare", r"\b(wo)?men's\b", r"\1men"),
    ("possessive", r"^(.*) for (wo)?men$", r"\2men's \1"),
    ("possessive dropped", r"^(.*) for (wo)?men$", r"\2mens \1"),
    ("for kids", r"^kids (.*)$", r"\1 for kids"),
]
_PLURALS = {"dress": "dresses", "watch": "watches", "wallet": "wallets", "belt": "belts", "shirt": "shirts",
            "t-shirt": "t-shirts", "tshirt": "tshirts", "top": "tops", "handbag": "handbags", "backpack": "backpacks",
            "kurta": "kurtas", "kurti": "kurtis", "saree": "sarees", "earrings": "earring", "cap": "caps",
            "tie": "ties", "jacket": "jackets", "sweatshirt": "sweatshirts", "sweater": "sweaters",
            "bra": "bras", "heels": "heel", "sandals": "sandal", "lipstick": "lipsticks", "perfume": "perfumes",
            "deodorant": "deodorants", "bag": "bags", "shorts": "short", "socks": "sock"}


def spelling_variants(query: str) -> list[tuple[str, str]]:
    """(rule, variant) for every written rule that changes the query (see _VARIANT_RULES), and the
    head noun's plural (or singular) wherever it stands."""
    canonical = " ".join(query.lower().split())
    found: dict[str, str] = {}
    for name, pattern, replacement in _VARIANT_RULES:
        variant = re.sub(pattern, replacement, canonical)
        if variant != canonical:
            found.setdefault(variant, name)
    for singular_form, plural in _PLURALS.items():
        variant = re.sub(rf"\b{re.escape(singular_form)}\b", plural, canonical, count=1)
        if variant != canonical:
            found.setdefault(variant, "plural" if len(plural) > len(singular_form) else "singular")
            break
    return [(name, variant) for variant, name in found.items()]


class HybridRanker:
    """Ranks text queries over products the caller has vectors for, as ProductIndex.search does
    for a text query on the mm view: vectors' top DEPTH and BM25's top DEPTH among the
    products the parsed filters allow, fused by reciprocal rank, plus the parsed boosts."""

    def __init__(self, embed_texts: Callable[[list[str]], np.ndarray], products, product_vectors: np.ndarray,
                 product_texts: Sequence[str], parse: bool = True):
        self.embed_texts = embed_texts
        self.products = products
        self.vectors = np.asarray(product_vectors, np.float32)
        self.postings = memory_keyword_index(product_texts)
        self.parse = parse
        self.fields = set().union(*(p.attributes.keys() for p in products)) if products else set()
        self.words = AttributeWords.from_values(value_counts(p.attributes for p in products)) if parse else None

    def rank(self, queries: Sequence[str], k: int = DEPTH) -> list[list[int]]:
        parsed = [understand(q, self.fields, attribute_words=self.words) if self.parse else verbatim(q)
                  for q in queries]
        query_vectors = self.embed_texts([p.text or p.original for p in parsed])
        rankings = []
        for query, vector in zip(parsed, query_vectors):
            scores = self.vectors @ vector
            allowed = None
            if query.filters:
                allowed = np.array([i for i, p in enumerate(self.products)
                                    if all(matches(f, p.attributes) for f in query.filters)], np.int64)
                keep = np.full(len(scores), -np.inf, np.float32)
                keep[allowed] = scores[allowed]
                scores = keep
            order = np.argsort(-scores, kind="stable")[:DEPTH]
            vector_rows = [int(i) for i in order if np.isfinite(scores[i])]
            keyword_rows = ([r for r, _ in self.postings.search(query.keywords, DEPTH, allowed)]
                            if query.keywords else [])
            candidates = set(vector_rows) | set(keyword_rows)
            boosted = [{i for i in candidates if matches(f, self.products[i].attributes)} for f in query.boosts]
            rankings.append([row for row, _ in fuse([vector_rows, keyword_rows], boosted)[:k]])
        return rankings


def _relevant(products, rule: dict) -> set[int]:
    return {i for i, p in enumerate(products) if is_relevant(p.attributes, rule)}


def _mean(values) -> float:
    values = list(values)
    return round(float(np.mean(values)), 4) if values else 0.0


def shopper_scores(ranker: HybridRanker, queries: list[dict]) -> tuple[dict, list[set[int]], list[list[int]]]:
    relevants = [_relevant(ranker.products, q["match"]) for q in queries]
    rankings = ranker.rank([q["query"] for q in queries])
    scored = [(r, rel) for r, rel in zip(rankings, relevants) if rel]
    return ({"P@10": _mean(precision_at_k(r, rel, 10) for r, rel in scored),
             "P@10_ceiling": _mean(min(1.0, len(rel) / 10) for _, rel in scored),
             "nDCG@10": _mean(ndcg_at_k(r, rel, 10) for r, rel in scored),
             "queries": len(scored)}, relevants, rankings)


def unjudged(products, key: str, article_type: str) -> set[int]:
    """Products of the article type that say nothing about `key`: a catalog that does not give a
    dress's occasion cannot mark it wrong for "casual dress", so such products are unjudged."""
    return {i for i, p in enumerate(products) if p.attributes.get("articleType") == article_type
            and not attribute_text(p.attributes.get("attributes") or {}, key)}


def attribute_scores(ranker: HybridRanker, by_key: dict[str, list[dict]]) -> dict:
    """nDCG@10 per key over condensed rankings (unjudged products taken out before scoring,
    Sakai 2007); `nDCG@10_strict` counts them as wrong instead."""
    per_key = {}
    for key, queries in by_key.items():
        rankings = ranker.rank([q["query"] for q in queries])
        condensed, strict = [], []
        for ranking, q in zip(rankings, queries):
            relevant = _relevant(ranker.products, q["match"])
            skip = unjudged(ranker.products, key, q["match"]["articleType"][0])
            condensed.append(ndcg_at_k([i for i in ranking if i not in skip], relevant, 10))
            strict.append(ndcg_at_k(ranking, relevant, 10))
        per_key[key] = {"nDCG@10": _mean(condensed), "nDCG@10_strict": _mean(strict),
                        "queries": [q["query"] for q in queries]}
    values = [v["nDCG@10"] for v in per_key.values()]
    return {"nDCG@10_macro": _mean(values), "nDCG@10_min_key": min(values) if values else 0.0, "per_key": per_key}


def variant_scores(ranker: HybridRanker, queries: list[dict], relevants: list[set[int]],
                   canonical_rankings: list[list[int]], max_variants: int = MAX_VARIANTS, seed: int = 0) -> dict:
    jobs = [(n, rule, variant) for n, q in enumerate(queries) for rule, variant in spelling_variants(q["query"])]
    if len(jobs) > max_variants:
        jobs = sorted(random.Random(seed).sample(jobs, max_variants))
    rankings = ranker.rank([variant for _, _, variant in jobs])
    overlaps, precisions, rows = [], [], []
    for (n, rule, variant), ranking in zip(jobs, rankings):
        top = set(canonical_rankings[n][:10])
        overlap = len(top & set(ranking[:10])) / max(1, min(10, len(top)))
        precision = precision_at_k(ranking, relevants[n], 10) if relevants[n] else None
        overlaps.append(overlap)
        if precision is not None:
            precisions.append(precision)
        rows.append({"query": queries[n]["query"], "variant": variant, "rule": rule, "overlap@10": round(overlap, 4),
                     "P@10": None if precision is None else round(precision, 4)})
    rows.sort(key=lambda r: (r["overlap@10"], r["P@10"] or 0.0))
    return {"overlap@10": _mean(overlaps), "P@10": _mean(precisions), "variants": len(jobs), "worst": rows[:15]}


def run(embed_texts: Callable[[list[str]], np.ndarray], products, product_vectors: np.ndarray,
        product_texts: Sequence[str], shopper_queries: list[dict], parse: bool = True,
        attribute_keys: Sequence[str] = ATTRIBUTE_KEYS) -> dict:
    """The three measures for these products (`text_queries.json`'s shape)."""
    ranker = HybridRanker(embed_texts, products, product_vectors, product_texts, parse=parse)
    result: dict = {"parse": parse}
    if shopper_queries:
        result["shopper"], relevants, rankings = shopper_scores(ranker, shopper_queries)
        result["variants"] = variant_scores(ranker, shopper_queries, relevants, rankings)
    result["attribute"] = attribute_scores(ranker, attribute_queries(products, attribute_keys))
    return result


def flat_metrics(result: dict) -> dict[str, dict]:
    """The eval tasks' metrics (what floors.json floors): text-shopper, text-attribute, text-variants."""
    tasks = {}
    if "shopper" in result:
        tasks["text-shopper"] = {k: result["shopper"][k] for k in ("P@10", "P@10_ceiling", "nDCG@10")}
        tasks["text-variants"] = {k: result["variants"][k] for k in ("overlap@10", "P@10")}
    attribute = result["attribute"]
    tasks["text-attribute"] = {"nDCG@10_macro": attribute["nDCG@10_macro"],
                               "nDCG@10_min_key": attribute["nDCG@10_min_key"],
                               **{f"nDCG@10:{key}": v["nDCG@10"] for key, v in attribute["per_key"].items()}}
    return tasks
