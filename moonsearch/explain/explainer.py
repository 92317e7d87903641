"""Why did a product match a query: its score split exactly over the product's tokens.

An explainable encoder's product vector is p = m / ||m|| with m the mean of its last-layer token
states h_1..h_T (see tokens.py). For a unit query vector q the search score is q . p, which is
the sum of one term per product token, c_i = q . h_i / (T ||m||): nothing is approximated, and
the result records that the terms add up to the score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from moonsearch.errors import MoonsearchError
from moonsearch.explain.tokens import TokenBreakdown

# Display labels for WordPiece (MiniLM) and BPE / SentencePiece word-start markers.
_WORD_START = ("Ġ", "▁", " ")


@dataclass(frozen=True)
class ProductInput:
    """A product as the index encoded it: its product text and first readable image."""

    id: str | None
    title: str
    text: str
    image: Image.Image | None = None
    image_path: str | None = None


@dataclass(frozen=True)
class Word:
    """A displayed word: the text pieces it merges, their summed weight and score term."""

    text: str
    weight: float
    term: float
    tokens: list[int]


@dataclass
class Explanation:
    query_text: str | None
    query_image: str | None
    product: ProductInput
    encoder_id: str
    score: float
    kinds: list[str]
    terms: np.ndarray             # (T,) additive score terms, one per product token
    weights: np.ndarray           # (T,) non-negative, sum to 1
    weighting: str
    words: list[Word]
    specials: list[dict]
    image_weights: np.ndarray | None   # (rows, cols) weights of the image tokens, row-major
    image_letterbox: tuple[int, int] | None
    check: dict = field(default_factory=dict)

    def shares(self) -> dict[str, float]:
        """Total weight per kind of token (text, image, special, ...)."""
        out: dict[str, float] = {}
        for kind, weight in zip(self.kinds, self.weights):
            out[kind] = out.get(kind, 0.0) + float(weight)
        return out

    def top_words(self, n: int = 10) -> list[Word]:
        return sorted(self.words, key=lambda w: -w.weight)[:n]

    def heatmap(self, scale: int = 1) -> Image.Image:
        """The product image with its image-token weights overlaid, at the image's size x scale."""
        from moonsearch.explain.heatmap import overlay

        if self.product.image is None or self.image_weights is None:
            raise MoonsearchError(f"product {self.product.id} has no image: nothing to draw a heatmap on")
        return overlay(self.product.image, self.image_weights, self.image_letterbox, scale=scale)

    def save_heatmap(self, path: Path | str, scale: int = 1) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.heatmap(scale).save(path, format="PNG", optimize=True)
        return path

    def to_json(self) -> dict[str, Any]:
        def r(x) -> float:
            return round(float(x), 6)

        tokens = []
        piece_of = {}
        for word in self.words:
            for i in word.tokens:
                piece_of[i] = word.text
        special_of = {s["token"]: s["piece"] for s in self.specials}
        for i in range(len(self.kinds)):
            entry = {"index": i, "kind": self.kinds[i], "term": r(self.terms[i]), "weight": r(self.weights[i])}
            if i in special_of:
                entry["piece"] = special_of[i]
            elif i in piece_of:
                entry["word"] = piece_of[i]
            tokens.append(entry)
        image = None
        if self.image_weights is not None:
            rows, cols = self.image_weights.shape
            from moonsearch.explain.heatmap import COLOUR_RANGE

            image = {"grid": [rows, cols], "order": "row-major, top-left first", "heatmap_colours": COLOUR_RANGE,
                     "weights": [[r(w) for w in row] for row in self.image_weights],
                     "letterbox": list(self.image_letterbox) if self.image_letterbox else None}
        return {
            "query": {"text": self.query_text, "image": self.query_image},
            "product": {"id": self.product.id, "title": self.product.title, "text": self.product.text,
                        "image": self.product.image_path},
            "encoder": self.encoder_id,
            "score": r(self.score),
            "weighting": self.weighting,
            "shares": {k: r(v) for k, v in self.shares().items()},
            "words": [{"word": w.text, "weight": r(w.weight), "term": r(w.term), "tokens": w.tokens}
                      for w in self.words],
            "special_tokens": [{**s, "weight": r(s["weight"]), "term": r(s["term"])} for s in self.specials],
            "image": image,
            "tokens": tokens,
            "check": self.check,
        }


def score_terms(states: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-token terms c_i = q . h_i / (T ||mean h||) and the score q . normalise(mean h)."""
    states = np.asarray(states, np.float64)
    query = np.asarray(query, np.float64).reshape(-1)
    mean = states.mean(0)
    norm = max(float(np.linalg.norm(mean)), 1e-12)
    terms = states @ query / (len(states) * norm)
    return terms, float(query @ mean / norm)


def token_weights(terms: np.ndarray) -> tuple[np.ndarray, str]:
    """Weights that sum to 1: each token's share of the positive score terms.

    Why not a softmax: the terms are on the score's scale (about score / T each), so a softmax
    of them is nearly uniform and its sharpness depends on an arbitrary temperature. The
    positive share reads directly as "this token brings x% of what pulls the product towards
    the query"; tokens that pull away get 0 (their terms stay in the JSON). When no term is
    positive (a product far from the query) the shares of |term| are used instead, and said so.
    """
    terms = np.asarray(terms, np.float64)
    positive = np.clip(terms, 0.0, None)
    if positive.sum() > 0:
        return positive / positive.sum(), "positive share: max(term, 0) / sum of positive terms"
    magnitude = np.abs(terms)
    if magnitude.sum() > 0:
        return magnitude / magnitude.sum(), "absolute share (no token has a positive term): |term| / sum |term|"
    return np.full(len(terms), 1.0 / max(len(terms), 1)), "uniform (all terms are zero)"


def merge_pieces(pieces: list[str]) -> list[tuple[str, list[int]]]:
    """Tokenizer pieces -> (word, piece positions): WordPiece "##" continuations join the word
    before; with BPE/SentencePiece markers ("Ġ", "▁", a leading space) a marker starts a word."""
    marked = any(p.startswith(_WORD_START) for p in pieces)
    words: list[tuple[str, list[int]]] = []
    for i, piece in enumerate(pieces):
        if marked:
            starts = not words or piece.startswith(_WORD_START)
            text = piece.lstrip("".join(_WORD_START))
        else:
            starts = not words or not piece.startswith("##")
            text = piece if starts else piece[2:]
        if starts:
            words.append((text, [i]))
        else:
            words[-1] = (words[-1][0] + text, words[-1][1] + [i])
    return words


def product_tokens_of(encoder):
    """The encoder's product_tokens, or a clear error naming why it cannot be explained."""
    method = getattr(encoder, "product_tokens", None)
    if callable(method):
        return method
    name = getattr(encoder, "name", type(encoder).__name__)
    if name == "baseline":
        raise MoonsearchError(
            "the baseline encoder cannot be explained: it projects one pooled tower feature per "
            "modality (pre-computed means), so its scores have no per-token parts; index the catalog "
            "with --encoder moon-lite to use `moonsearch explain`")
    raise MoonsearchError(f"encoder '{name}' cannot be explained: it exposes no product_tokens()")


def product_from_record(product, product_id: str | None = None) -> ProductInput:
    """A catalog Product, or a stored index record (dict), as the index builder encodes it."""
    from moonsearch.catalog import ImageError, load_image
    from moonsearch.encoder.text import product_text

    if isinstance(product, dict):
        title, attributes = product["title"], product.get("attributes") or {}
        pid, has_image = product.get("id", product_id), product.get("has_image")
        # a product indexed text-only stays text-only, even if its image loads today
        paths = [] if has_image is False else [Path(p) for p in product.get("images") or []]
    else:
        title, attributes, paths = product.title, product.attributes, list(product.images)
        pid, has_image = product.id, None
    image, used, reason = None, None, None
    for path in paths:   # the first image that loads, as first_image() picks it at index time
        try:
            image, used = load_image(path), str(path)
            break
        except ImageError as exc:
            reason = reason or exc.reason
    if image is None and paths and has_image:
        raise MoonsearchError(
            f"product {pid}: its image {paths[0]} cannot be read now ({reason}); it was indexed with "
            "it, so an explanation without it would not match the index")
    return ProductInput(id=None if pid is None else str(pid), title=title,
                        text=product_text(title, attributes), image=image, image_path=used)


def product_from_index(index, product_id: str) -> ProductInput:
    """Look a product up in an index's metadata store; unknown ids are a clear error."""
    row = index.store.row_of(str(product_id))
    if row is None:
        raise MoonsearchError(f"no product with id '{product_id}' in the index {index.folder}")
    return product_from_record(index.store.products([row])[0])


def _query_image(image) -> tuple[Image.Image | None, str | None]:
    if image is None:
        return None, None
    if isinstance(image, Image.Image):
        return image.convert("RGB"), None
    from moonsearch.catalog import ImageError, load_image

    try:
        return load_image(Path(image)), str(image)
    except ImageError as exc:
        raise MoonsearchError(f"cannot use query image {image}: {exc.reason}") from None


def explain(index_or_encoder, product, text: str | None = None, image=None, verify: bool = True) -> Explanation:
    """Explain the score of a query (text, image or both) against one product.

    `index_or_encoder`: an opened ProductIndex (then `product` may be a product id) or an
    encoder with product_tokens(). `product`: an id, a catalog Product, a stored record, or a
    ProductInput. `verify` also re-encodes the product to check the breakdown is its vector.
    """
    index = index_or_encoder if hasattr(index_or_encoder, "store") else None
    encoder = index.encoder if index is not None else index_or_encoder
    tokens_of = product_tokens_of(encoder)
    if isinstance(product, ProductInput):
        item = product
    elif isinstance(product, (str, int)):
        if index is None:
            raise MoonsearchError("explaining a product by id needs an index; pass a ProductInput or Product")
        item = product_from_index(index, str(product))
    else:
        item = product_from_record(product)
    text = text.strip() if isinstance(text, str) else None
    picture, picture_path = _query_image(image)
    if not text and picture is None:
        raise MoonsearchError("give a query text, a query image, or both")

    query = encoder.encode([text or None], [picture])[0]
    breakdown: TokenBreakdown = tokens_of(item.text, item.image)
    return explain_breakdown(breakdown, query, item, text=text or None, query_image=picture_path,
                             encoder_id=getattr(encoder, "encoder_id", getattr(encoder, "name", "?")),
                             product_vector=encoder.encode([item.text], [item.image])[0] if verify else None)


def explain_breakdown(breakdown: TokenBreakdown, query: np.ndarray, item: ProductInput, text: str | None = None,
                      query_image: str | None = None, encoder_id: str = "?",
                      product_vector: np.ndarray | None = None) -> Explanation:
    """Terms, weights, words and image grid from a breakdown and a unit query vector (the part
    of `explain` that needs no encoder, so any TokenBreakdown can be explained and tested)."""
    kinds = list(breakdown.kinds)
    if len(kinds) != len(breakdown.states):
        raise ValueError(f"{len(kinds)} kinds for {len(breakdown.states)} token states")
    terms, score = score_terms(breakdown.states, query)
    weights, weighting = token_weights(terms)

    text_positions = [i for i, k in enumerate(kinds) if k == "text"]
    if len(text_positions) != len(breakdown.text_pieces):
        raise ValueError(f"{len(breakdown.text_pieces)} text pieces for {len(text_positions)} text tokens")
    words = []
    for word, pieces in merge_pieces(list(breakdown.text_pieces)):
        positions = [text_positions[p] for p in pieces]
        words.append(Word(word, float(weights[positions].sum()), float(terms[positions].sum()), positions))

    other = [i for i, k in enumerate(kinds) if k not in ("text", "image")]
    labels = list(breakdown.special_pieces) if len(breakdown.special_pieces) == len(other) else [kinds[i] for i in other]
    specials = [{"token": i, "kind": kinds[i], "piece": label, "weight": float(weights[i]), "term": float(terms[i])}
                for i, label in zip(other, labels)]

    image_positions = [i for i, k in enumerate(kinds) if k == "image"]
    grid = None
    if image_positions:
        rows, cols = breakdown.image_grid or (1, len(image_positions))
        if rows * cols != len(image_positions):
            raise ValueError(f"image grid {rows}x{cols} for {len(image_positions)} image tokens")
        grid = weights[image_positions].reshape(rows, cols)

    check = {"terms_sum": round(float(terms.sum()), 8), "score": round(score, 8),
             "abs_error": float(abs(terms.sum() - score)), "tokens": len(kinds)}
    if product_vector is not None:
        mean = np.asarray(breakdown.states, np.float64).mean(0)
        own = mean / max(np.linalg.norm(mean), 1e-12)
        check["product_vector_max_abs_diff"] = float(np.abs(own - product_vector).max())
    return Explanation(query_text=text, query_image=query_image, product=item, encoder_id=encoder_id,
                       score=score, kinds=kinds, terms=terms, weights=weights, weighting=weighting,
                       words=words, specials=specials, image_weights=grid,
                       image_letterbox=breakdown.image_letterbox if grid is not None else None, check=check)
