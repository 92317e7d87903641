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
from typing import Any, Mapping, Sequence

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


# Words a shopper puts after the noun for a gender or age ("kurta for women"); the catalog
# writes the gender first ("Women Kurtas").
_GENDER_WORDS = {"men": "men", "women": "women", "boys": "boys", "girls": "girls", "unisex": "unisex"}


def _respell(text: str, rng: random.Random, spellings: Mapping[str, Sequence[str]], p: float) -> str:
    """Each phrase of `text` that is one spelling of a group (`spellings`: phrase -> every
    spelling of its group, canonical included) becomes a random spelling of it with chance `p`,
    longest phrases first; phrases are whole words."""
    words = text.split()
    longest = max((len(k.split()) for k in spellings), default=0)
    out: list[str] = []
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            if phrase in spellings:
                out.append(rng.choice(list(spellings[phrase])) if rng.random() < p else phrase)
                i += n
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def text_query_options(attributes: Mapping[str, Any], rng: random.Random) -> list[ShopperQuery]:
    """What the text-query head trains on (issue 20): the shopper options, plus Neck and
    Occasion phrases ("round neck t-shirt", "party dress") and the gender in the orders
    shoppers write it ("kurta for women", "women's kurta", "mens kurta")."""
    options = _shopper_options(attributes, rng)
    if not options:
        return []
    noun = options[-1].text            # the bare noun, always last
    base_rule = options[-1].match

    def rule(*keys: str) -> dict:
        return {**base_rule, **{_rule_field(attributes, k): [str(attribute(attributes, k))] for k in keys}}

    for key in ("Neck", "Occasion"):
        value = attribute_text(attributes, key)
        if value:
            options.append(ShopperQuery(f"{value.lower()} {noun}", rule(key)))
    gender = (attribute_text(attributes, "gender") or "").lower()
    if gender in _GENDER_WORDS:
        colour = attribute_text(attributes, "baseColour")
        described = f"{colour.lower()} {noun}" if colour and rng.random() < 0.5 else noun
        keys = ("gender", "baseColour") if described != noun else ("gender",)
        orders = [f"{described} for {gender}", f"{gender} {described}"]
        if not gender.endswith("s"):
            orders += [f"{gender}'s {described}", f"{gender}s {described}"]
        written = rng.choice(orders)
        options.append(ShopperQuery(written, rule(*keys)))
    return options


def text_queries(attributes: Mapping[str, Any], rng: random.Random, count: int,
                 spellings: Mapping[str, Sequence[str]] | None = None, p_respell: float = 0.5) -> list[ShopperQuery]:
    """Up to `count` distinct training queries for a product with their relevance rules, each
    respelled (`spellings`, from the synonym list inverted: "t-shirt" -> "tees") with chance
    `p_respell` per phrase."""
    options = text_query_options(attributes, rng)
    chosen = rng.sample(options, min(count, len(options)))
    if spellings:
        chosen = [ShopperQuery(_respell(q.text, rng, spellings, p_respell), q.match) for q in chosen]
    return chosen
