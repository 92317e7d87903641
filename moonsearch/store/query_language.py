"""Shopper language: a query as a shopper writes it, read into what the index can act on.

Shoppers write "tshirt", "t shirt", "tee" and "tees" for one thing, "mens" and "men's", "crew
neck" and "round-neck", "under 1000", "for kids". `understand` turns such a query into
- the text both halves of hybrid ranking read: normalised (lower case, possessive 's dropped,
  hyphens and punctuation as spaces) with variant spellings rewritten to one canonical phrase
  from the synonym list (`synonyms.tsv`, package data, read once on first use), so every
  spelling is embedded and keyword-matched as the same words; the keyword half may read a
  phrase as the catalog's own word instead (t-shirt -> "tshirt", the articleType);
- a price phrase ("under 1000", "below rs 999", "above 2000", "between 500 and 1500") taken out
  of the text and turned into a price filter: the bound is hard, as a shopper means it;
- a gender or age phrase ("men", "for women", "kids", "girls") kept in the text and turned into a
  soft boost: matching products move up, the rest stay in the list;
- `applied`: one line per thing it did, which every result carries, so a shopper can see why
  the list is what it is (and `parse=False`, the CLI's `--no-parse`, reads the query verbatim).

It sits in `store` because the keyword store and the evaluation both read it, below the query
layer (moonsearch.search) that applies it to an index.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence

from moonsearch.errors import MoonsearchError
from moonsearch.shopper import field_value, singular
from moonsearch.store.filters import NUMERIC_OPS, Filter

SYNONYMS_FILE = Path(__file__).with_name("synonyms.tsv")
PRICE_FIELD = "price"
GENDER_FIELD = "gender"
# Gender and age words -> the catalog's gender values they prefer (Myntra's kids wear is
# gender Boys / Girls). A boost, never a filter: "men" should not hide unisex products outright.
GENDER_WORDS = {
    "men": ("Men",), "women": ("Women",), "boys": ("Boys",), "girls": ("Girls",), "boy": ("Boys",),
    "girl": ("Girls",), "kids": ("Boys", "Girls"), "unisex": ("Unisex",),
}
# How much a satisfied boost adds to a reciprocal-rank-fusion score (one list's first place is
# 1/61 = 0.0164): chosen on myntra-val (benchmarks/text_queries.py --split myntra-val).
BOOST_WEIGHT = 0.02
RRF_CONSTANT = 60     # as moonsearch.search.fusion: Cormack et al.'s value

# Number: a noun is embedded in one number whatever the shopper typed ("watches" -> "watch",
# "heel" -> "heels"): singular, except the nouns a catalog names in the plural, which the
# singular turns into their plural; words that only look plural are left alone.
PLURAL_NOUNS = {"heel": "heels", "sandal": "sandals", "sock": "socks", "legging": "leggings", "trouser": "trousers",
                "capri": "capris", "boxer": "boxers", "jegging": "jeggings", "shoe": "shoes", "brief": "briefs",
                "flop": "flops", "pant": "pants"}
NOT_PLURAL = {"jeans", "shorts", "trousers", "shoes", "sunglasses", "briefs", "leggings", "flops", "pants", "capris",
              "boxers", "socks", "jeggings", "heels", "flats", "sandals", "tights", "sports", "kids", "boys", "girls",
              "men", "women", "mens", "womens", "glasses", "dress", "less", "this", "plus", "canvas", "chinos",
              "overalls", "pyjamas", "pajamas", "shades", "sweatpants", "joggers", "slippers", "clothes",
              "accessories", "cufflinks", "sleeves", "stockings", "suspenders", "jeggings", "lowers", "innerwear"}

# Fields whose values, written in a query ("v-neck", "slim fit", "cotton", "black", "kurta"),
# become soft boosts of the products having that value; chosen on myntra-val.
ATTRIBUTE_FIELDS = ("articleType", "baseColour", "usage", "attributes.Neck", "attributes.Sleeve Length",
                    "attributes.Fit", "attributes.Pattern", "attributes.Fabric", "attributes.Occasion")
MIN_VALUE_PRODUCTS = 5    # a value fewer products have is not worth a boost (and is often noise)

_UPPER = ("under", "below", "less than", "within", "upto", "up to", "max", "maximum", "cheaper than",
          "lower than", "not more than", "budget", "till", "until")
_LOWER = ("above", "over", "more than", "min", "minimum", "from", "at least", "costlier than", "starting")
_CURRENCY = {"rs", "inr", "rupees", "rupee", "r"}


@dataclass(frozen=True)
class Synonyms:
    """Variant phrase (a tuple of words) -> (canonical phrase, keyword phrase)."""
    phrases: Mapping[tuple[str, ...], tuple[str, str]]
    longest: int

    @classmethod
    def read(cls, path: Path | str = SYNONYMS_FILE) -> "Synonyms":
        phrases: dict[tuple[str, ...], tuple[str, str]] = {}
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise MoonsearchError(f"cannot read the synonym list {path}: {exc.strerror}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            columns = line.split("\t")
            if len(columns) not in (2, 3) or not columns[0].strip():
                raise MoonsearchError(f"synonym list {path} line {number}: expected canonical<TAB>variants"
                                      "[<TAB>keywords], got {line!r}")
            canonical = " ".join(columns[0].split())
            keywords = " ".join(columns[2].split()) if len(columns) == 3 and columns[2].strip() else canonical
            for variant in [canonical, *columns[1].split("|")]:
                key = tuple(words(variant))
                if key:
                    phrases[key] = (canonical, keywords)
        return cls(phrases, max((len(k) for k in phrases), default=0))

    def rewrite(self, tokens: Sequence[str]) -> tuple[list[str], list[str], list[tuple[str, str]]]:
        """(canonical words, keyword words, [(variant, canonical)] rewritten), longest match first."""
        canonical, keywords, changed = [], [], []
        i = 0
        while i < len(tokens):
            for size in range(min(self.longest, len(tokens) - i), 0, -1):
                found = self.phrases.get(tuple(tokens[i:i + size]))
                if found:
                    variant = " ".join(tokens[i:i + size])
                    canonical.append(found[0])
                    keywords.append(found[1])
                    if variant != " ".join(words(found[0])):
                        changed.append((variant, found[0]))
                    i += size
                    break
            else:
                word = one_number(tokens[i])
                canonical.append(word)
                keywords.append(word)
                if word != tokens[i]:
                    changed.append((tokens[i], word))
                i += 1
        return canonical, keywords, changed


@dataclass(frozen=True)
class AttributeWords:
    """Canonical words of an attribute value (read as a query is read) -> [(field, value)]."""
    phrases: Mapping[tuple[str, ...], tuple[tuple[str, str], ...]]
    longest: int

    @classmethod
    def from_values(cls, values: Mapping[str, Mapping[str, int]], synonyms: "Synonyms | None" = None,
                    min_products: int = MIN_VALUE_PRODUCTS) -> "AttributeWords":
        """From field -> {value: number of products}; values held by fewer than `min_products`
        products, and gender words (boosted on their own), are left out."""
        synonyms = synonyms or default_synonyms()
        phrases: dict[tuple[str, ...], list[tuple[str, str]]] = {}
        for field_name, counts in values.items():
            for value, count in counts.items():
                if count < min_products or not isinstance(value, str):
                    continue
                canonical = synonyms.rewrite(words(value))[0]
                key = tuple(" ".join(canonical).split())
                if key and not (len(key) == 1 and key[0] in GENDER_WORDS) and key[0] not in ("na", "none"):
                    phrases.setdefault(key, []).append((field_name, value))
        return cls({k: tuple(v) for k, v in phrases.items()}, max((len(k) for k in phrases), default=0))

    def find(self, tokens: Sequence[str]) -> list[tuple[str, str, str]]:
        """(phrase, field, value) for the longest value phrases in `tokens`, left to right."""
        found, i = [], 0
        while i < len(tokens):
            for size in range(min(self.longest, len(tokens) - i), 0, -1):
                hits = self.phrases.get(tuple(tokens[i:i + size]))
                if hits:
                    found += [(" ".join(tokens[i:i + size]), f, v) for f, v in hits]
                    i += size
                    break
            else:
                i += 1
        return found


_synonyms: Synonyms | None = None


def default_synonyms() -> Synonyms:
    global _synonyms
    if _synonyms is None:
        _synonyms = Synonyms.read()
    return _synonyms


def words(text: str) -> list[str]:
    """Lower-case words: accents stripped, possessive 's dropped (men's -> men), thousands
    separators joined (1,000 -> 1000), anything not a letter or digit a space (t-shirt -> t shirt)."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("\u2019", "'").replace("`", "'")
    text = re.sub(r"(\w)'s\b", r"\1", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return re.findall(r"[a-z0-9]+", text)


def one_number(word: str) -> str:
    """The number a noun is embedded in (see PLURAL_NOUNS / NOT_PLURAL)."""
    if word in PLURAL_NOUNS:
        return PLURAL_NOUNS[word]
    if word == "bras":   # "-as" words are mostly not plurals (canvas), this one is
        return "bra"
    if len(word) < 4 or word in NOT_PLURAL or not word.endswith("s") or word.endswith(("ss", "us", "is", "as", "ous")):
        return word
    return singular(word)


def _amount(word: str) -> float | None:
    match = re.fullmatch(r"(\d+)(k)?", word)
    if not match:
        return None
    return float(match[1]) * (1000 if match[2] else 1)


def _phrase_at(tokens: Sequence[str], i: int, phrases: Iterable[str]) -> int:
    """Length of the first of `phrases` found at tokens[i:], 0 if none."""
    for phrase in phrases:
        parts = phrase.split()
        if list(tokens[i:i + len(parts)]) == parts:
            return len(parts)
    return 0


def _number_after(tokens: Sequence[str], i: int) -> tuple[float | None, int]:
    """A price at tokens[i:] (a currency word before or after allowed) -> (amount, words used)."""
    j = i
    if j < len(tokens) and tokens[j] in _CURRENCY:
        j += 1
    amount = _amount(tokens[j]) if j < len(tokens) else None
    if amount is None:
        return None, 0
    j += 1
    if j < len(tokens) and tokens[j] in _CURRENCY | {"only"}:
        j += 1
    return amount, j - i


def _money(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _price_phrase(tokens: Sequence[str], i: int) -> tuple[list[Filter], int]:
    """Price filters read at tokens[i:] and the number of words they used ([], 0 if none)."""
    if tokens[i] == "between":
        low, used = _number_after(tokens, i + 1)
        if low is not None and i + 1 + used < len(tokens) and tokens[i + 1 + used] in ("and", "to"):
            high, more = _number_after(tokens, i + 2 + used)
            if high is not None:
                low, high = min(low, high), max(low, high)
                return ([Filter(PRICE_FIELD, ">=", (_money(low),)), Filter(PRICE_FIELD, "<=", (_money(high),))],
                        2 + used + more)
    for phrases, op in ((_UPPER, "<="), (_LOWER, ">=")):
        size = _phrase_at(tokens, i, phrases)
        if size:
            amount, used = _number_after(tokens, i + size)
            if amount is not None:
                return [Filter(PRICE_FIELD, op, (_money(amount),))], size + used
    if tokens[i] in _CURRENCY or tokens[i].isdigit():   # "rs 500 to 1000", "500 to 1000"
        low, used = _number_after(tokens, i)
        if low is not None and i + used < len(tokens) and tokens[i + used] in ("to",):
            high, more = _number_after(tokens, i + used + 1)
            if high is not None and used + more >= 2:
                low, high = min(low, high), max(low, high)
                return ([Filter(PRICE_FIELD, ">=", (_money(low),)), Filter(PRICE_FIELD, "<=", (_money(high),))],
                        used + 1 + more)
    return [], 0


def describe(f: Filter) -> str:
    if f.op in NUMERIC_OPS:
        return f"{f.key} {f.op} {f.values[0]}"
    return f"{f.key} = {' or '.join(f.values)}"


@dataclass(frozen=True)
class ParsedQuery:
    """A query as understood. `text` is what is embedded, `keywords` what BM25 matches; `filters`
    restrict the candidates, `boosts` move matching products up; `applied` says all of it."""
    original: str
    text: str
    keywords: str
    filters: tuple[Filter, ...] = ()
    boosts: tuple[Filter, ...] = ()
    applied: tuple[str, ...] = ()
    parsed: bool = True

    def to_json(self) -> dict:
        return {"original": self.original, "parsed": self.parsed, "text": self.text, "keywords": self.keywords,
                "filters": [describe(f) for f in self.filters], "boosts": [describe(f) for f in self.boosts],
                "applied": list(self.applied)}


def verbatim(text: str) -> ParsedQuery:
    """The query read as written: no rewriting, no filters, no boosts (`--no-parse`)."""
    stripped = (text or "").strip()
    return ParsedQuery(stripped, stripped, stripped, parsed=False)


def gender_first(phrases: Sequence[str]) -> tuple[list[str], str | None]:
    """"kurta for women" -> "women kurta": a "for <gender>" phrase moves to the front, the order
    the product text uses (gender first) and "women's kurta" takes, so both spellings embed the
    same (overlap@10 was 0.3). -> (words, the phrase as written, or None if none moved)."""
    flat = " ".join(phrases).split()
    for i in range(len(flat) - 1):
        if flat[i] == "for" and flat[i + 1] in GENDER_WORDS and i > 0:
            before = " ".join(flat)
            return [flat[i + 1], *flat[:i], *flat[i + 2:]], before
    return list(phrases), None


def understand(text: str, known_fields: Collection[str] | None = None, synonyms: Synonyms | None = None,
               gender_boosts: bool = True, attribute_words: AttributeWords | None = None) -> ParsedQuery:
    """Read a shopper's query (see the module docstring). `known_fields`: the index's filterable
    fields; a phrase whose field the index lacks stays in the text, and `applied` says so."""
    synonyms = synonyms or default_synonyms()
    tokens = words(text)
    filters: list[Filter] = []
    applied: list[str] = []
    kept: list[str] = []
    i = 0
    while i < len(tokens):
        found, used = _price_phrase(tokens, i)
        if found:
            phrase = " ".join(tokens[i:i + used])
            if known_fields is not None and PRICE_FIELD not in known_fields:
                applied.append(f"'{phrase}' not applied: this index has no {PRICE_FIELD} field")
                kept.extend(tokens[i:i + used])
            else:
                filters.extend(found)
                applied.append(f"filter {' and '.join(describe(f) for f in found)} (from '{phrase}')")
            i += used
            continue
        kept.append(tokens[i])
        i += 1
    canonical, keywords, changed = synonyms.rewrite(kept)
    applied[:0] = [f"'{variant}' read as '{to}'" for variant, to in changed]
    canonical, moved = gender_first(canonical)
    if moved:
        applied.append(f"'{moved}' read as '{' '.join(canonical)}'")
    boosts: list[Filter] = []
    if gender_boosts:
        flat = " ".join(canonical).split()
        wanted = [w for w in dict.fromkeys(flat) if w in GENDER_WORDS]
        if len(wanted) == 1:   # "men and women" asks for nothing in particular
            if known_fields is None or GENDER_FIELD in known_fields:
                boost = Filter(GENDER_FIELD, "=", GENDER_WORDS[wanted[0]])
                boosts.append(boost)
                applied.append(f"boost {describe(boost)} (from '{wanted[0]}')")
    if attribute_words is not None:
        for phrase, field_name, value in attribute_words.find(" ".join(canonical).split()):
            boost = Filter(field_name, "=", (value,))
            if boost not in boosts:
                boosts.append(boost)
                applied.append(f"boost {describe(boost)} (from '{phrase}')")
    return ParsedQuery((text or "").strip(), " ".join(canonical), " ".join(keywords), tuple(filters), tuple(boosts), tuple(applied))


def value_counts(records: Iterable[Mapping[str, Any]], fields: Sequence[str] = ATTRIBUTE_FIELDS) -> dict:
    """field -> {value: products} over records' attributes (dotted fields read nested maps)."""
    counts: dict[str, dict[str, int]] = {f: {} for f in fields}
    for attributes in records:
        for f in fields:
            value = field_value(attributes, f) if f not in attributes else attributes[f]
            if isinstance(value, str) and value:
                counts[f][value] = counts[f].get(value, 0) + 1
    return counts


def matches(f: Filter, attributes: Mapping[str, Any]) -> bool:
    """Whether a product's attributes (a record's top-level fields) pass a filter, as the
    attribute index answers it: for products held in memory (the evaluation)."""
    value = field_value(attributes, f.key) if f.key not in attributes else attributes[f.key]
    values = value if isinstance(value, list) else [value]
    if f.op in NUMERIC_OPS:
        bound = float(f.values[0])
        for v in values:
            try:
                number = float(v)
            except (TypeError, ValueError):
                continue
            if {"<": number < bound, "<=": number <= bound, ">": number > bound, ">=": number >= bound}[f.op]:
                return True
        return False
    hit = any(str(v).lower() in {x.lower() for x in f.values} for v in values if v is not None)
    return hit if f.op == "=" else not hit


def fuse(rankings: Sequence[Sequence[int]], boosted: Sequence[Collection[int]] = (),
         weight: float | None = None, constant: int = RRF_CONSTANT) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of `rankings` (as moonsearch.search.fusion), plus `weight` for each
    boost set an item is in (None: BOOST_WEIGHT); best first, ties in first-met order."""
    weight = BOOST_WEIGHT if weight is None else weight
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (constant + rank)
    if weight:
        for items in boosted:
            for item in scores:
                if item in items:
                    scores[item] += weight
    return sorted(scores.items(), key=lambda pair: -pair[1])
