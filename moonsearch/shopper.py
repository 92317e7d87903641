"""Shopper queries: short texts with relevance rules, below everything that uses them.

A rule `{"articleType": ["Dresses"], "baseColour": ["Red"]}` makes a product relevant when every
field has one of the listed values (`attributes.X` reads the nested attribute X). The 50 queries
of the real catalog are such rules (`load_queries`); training writes more from a product's own
attributes (`shopper_query`), and the evaluation scores both the same way (`is_relevant`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from moonsearch.errors import MoonsearchError
from moonsearch.jsonfiles import read_jsonl

PLURAL_KEPT = {"jeans", "shorts", "trousers", "shoes", "sunglasses", "briefs", "leggings", "flip flops",
               "track pants", "capris", "boxers", "trunk", "socks", "jeggings", "casual shoes",
               "sports shoes", "formal shoes", "heels", "flats", "sandals", "sports sandals", "tights"}


def field_value(attributes: Mapping[str, Any], field: str) -> Any:
    value: Any = attributes
    for part in field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def is_relevant(attributes: Mapping[str, Any], rule: Mapping[str, list]) -> bool:
    return all(str(field_value(attributes, f)) in {str(v) for v in allowed} for f, allowed in rule.items())


def load_queries(path: Path) -> list[dict]:
    queries = read_jsonl(path, "shopper queries")
    for n, query in enumerate(queries, start=1):
        if not isinstance(query.get("query"), str) or not isinstance(query.get("match"), dict):
            raise MoonsearchError(f"shopper queries: {path} entry {n} needs \"query\" (text) and \"match\" (a rule object)")
    if not queries:
        raise MoonsearchError(f"shopper queries: {path} holds no queries")
    return queries


def attribute(attributes: Mapping[str, Any], key: str) -> Any:
    """A field from the top level or, failing that, from the nested `attributes` map."""
    value = attributes.get(key)
    if value is None and isinstance(attributes.get("attributes"), Mapping):
        value = attributes["attributes"].get(key)
    return value


def attribute_text(attributes: Mapping[str, Any], key: str) -> str | None:
    value = attribute(attributes, key)
    if value is None or isinstance(value, (Mapping, list)):
        return None
    text = " ".join(str(value).split())
    return None if text.lower() in {"", "na", "n/a", "none", "nan"} else text


def singular(category: str) -> str:
    lowered = category.lower()
    if lowered in PLURAL_KEPT:
        return lowered
    if lowered.endswith("sses") or lowered.endswith("shes") or lowered.endswith("ches"):
        return lowered[:-2]
    if lowered.endswith("s") and not lowered.endswith("ss"):
        return lowered[:-1]
    return lowered


@dataclass(frozen=True)
class ShopperQuery:
    """A short query and the rule that says which products answer it, in the shape of the
    shopper-query files (`{"articleType": ["Dresses"], "baseColour": ["Red"]}`): every product
    matching the rule is as right an answer as the one the query was written from."""

    text: str
    match: dict


def _rule_field(attributes: Mapping[str, Any], key: str) -> str:
    return key if key in attributes else f"attributes.{key}"


def _shopper_options(attributes: Mapping[str, Any], rng: random.Random) -> list[ShopperQuery]:
    category_key = "articleType" if attribute_text(attributes, "articleType") else "category"
    category = attribute_text(attributes, category_key)
    if not category:
        return []
    noun = singular(category) if rng.random() < 0.5 else category.lower()

    def rule(*keys: str) -> dict:
        return {_rule_field(attributes, k): [str(attribute(attributes, k))] for k in (category_key, *keys)}

    options = []
    for key in ("baseColour", "gender", "Pattern", "usage", "brand", "Fabric", "Sleeve Length", "Fit"):
        value = attribute_text(attributes, key)
        if value:
            options.append(ShopperQuery(f"{value.lower()} {noun}", rule(key)))
    colour, gender = attribute_text(attributes, "baseColour"), attribute_text(attributes, "gender")
    if colour and gender:
        options.append(ShopperQuery(f"{gender.lower()} {colour.lower()} {noun}", rule("gender", "baseColour")))
    options.append(ShopperQuery(noun, rule()))
    return options


def shopper_query(attributes: Mapping[str, Any], rng: random.Random) -> ShopperQuery | None:
    """One short query a shopper might type for this product, with its relevance rule."""
    options = _shopper_options(attributes, rng)
    return rng.choice(options) if options else None


def shopper_queries(attributes: Mapping[str, Any], rng: random.Random, count: int = 1) -> list[str]:
    """Short queries a shopper might type for this product, built from its attributes."""
    options = _shopper_options(attributes, rng)
    return [q.text for q in rng.sample(options, min(count, len(options)))]
