"""Why did a product match a query: the score split over the product's words and image patches.

Two methods (`method=`, CLI `--method`):

- "occlusion" (the default): each product word (its word pieces together) and each image patch
  is left out in turn, the fusion model re-runs on the product's tower tokens without it, and
  drop_i = score(full) - score(without i). Weights are the shares of the positive drops: what the
  score depends on. The tower tokens are computed once; the occlusions run batched through the
  encoder's score_with_masks(). [CLS]/[SEP] are not left out.
- "decomposition": the product vector is p = m / ||m|| with m the mean of the last-layer token
  states h_1..h_T (see tokens.py), so for a unit query q the score q . p is exactly the sum of
  one term per token, c_i = q . h_i / (T ||m||); the result records that the terms add up to the
  score. Exact, but after fusion every token carries much of the product's meaning, so the
  terms are nearly equal (flat) for moon-lite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from moonsearch.errors import MoonsearchError
from moonsearch.encoder.base import query_encoding
from moonsearch.encoder.tokens import TokenBreakdown

# Display labels for WordPiece (MiniLM) and BPE / SentencePiece word-start markers.
_WORD_START = ("Ġ", "▁", " ")
METHODS = ("occlusion", "decomposition")
DEFAULT_METHOD = "occlusion"
# Why an encoder without score_with_masks() cannot be occluded (the fallback note names it).
_NO_OCCLUSION = {
    "mllm": "the MLLM backbone's token states come out of the whole Qwen-VL forward pass (vision "
            "tower, causal LLM, M-RoPE positions counted from the attention mask), so leaving a "
            "token out would re-run the full backbone once per word and patch and shift the "
            "positions of every later token; occlusion is not implemented for it",
}


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
    """A displayed word: the text pieces it merges and its weight; with decomposition, its
    pieces' summed score term; with occlusion, the score drop when its pieces are left out."""

    text: str
    weight: float
    term: float | None
    tokens: list[int]
    drop: float | None = None


@dataclass
class Explanation:
    query_text: str | None
    query_image: str | None
    product: ProductInput
    encoder_id: str
    score: float
    kinds: list[str]
    terms: np.ndarray | None      # (T,) additive score terms per token (decomposition only)
    weights: np.ndarray           # (T,) non-negative, sum to 1 (occlusion: a word's weight split over its pieces)
    weighting: str
    words: list[Word]
    specials: list[dict]
    image_weights: np.ndarray | None   # (rows, cols) weights of the image tokens, row-major
    image_letterbox: tuple[int, int] | None
    check: dict = field(default_factory=dict)
    method: str = "decomposition"
    image_drops: np.ndarray | None = None   # (rows, cols) score drops per patch (occlusion only)
    parts: dict | None = None               # occlusion: score without the whole text / image and the drop
    note: str | None = None                 # e.g. why occlusion fell back to decomposition

    @property
    def heatmap_grid(self) -> np.ndarray | None:
        """What the heatmap draws: the patch drops with occlusion (their weights are 0 wherever a
        patch's removal raises the score, often all but a few), else the patch weights."""
        return self.image_drops if self.image_drops is not None else self.image_weights

    def shares(self) -> dict[str, float]:
        """Total weight per kind of token (text, image, special, ...); with occlusion only the
        kinds that are left out (text, image): [CLS]/[SEP] are never occluded."""
        out: dict[str, float] = {}
        for kind, weight in zip(self.kinds, self.weights):
            if self.method == "occlusion" and kind not in ("text", "image"):
                continue
            out[kind] = out.get(kind, 0.0) + float(weight)
        return out

    def top_words(self, n: int = 10) -> list[Word]:
        return sorted(self.words, key=lambda w: -w.weight)[:n]

    def heatmap(self, scale: int = 1) -> Image.Image:
        """The product image with its image-token weights overlaid, at the image's size x scale."""
        from moonsearch.explain.heatmap import overlay

        if self.product.image is None or self.heatmap_grid is None:
            raise MoonsearchError(f"product {self.product.id} has no image: nothing to draw a heatmap on")
        return overlay(self.product.image, self.heatmap_grid, self.image_letterbox, scale=scale)

    def save_heatmap(self, path: Path | str, scale: int = 1) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.heatmap(scale).save(path, format="PNG", optimize=True)
        return path

    def to_json(self) -> dict[str, Any]:
        def r(x) -> float:
            return round(float(x), 6)

        occlusion = self.method == "occlusion"
        tokens = []
        piece_of = {}
        for word in self.words:
            for i in word.tokens:
                piece_of[i] = word.text
        special_of = {s["token"]: s["piece"] for s in self.specials}
        for i in range(len(self.kinds)):
            entry = {"index": i, "kind": self.kinds[i], "weight": r(self.weights[i])}
            if self.terms is not None:
                entry["term"] = r(self.terms[i])
            if i in special_of:
                entry["piece"] = special_of[i]
            elif i in piece_of:
                entry["word"] = piece_of[i]
            tokens.append(entry)
        image = None
        if self.image_weights is not None:
            rows, cols = self.image_weights.shape
            from moonsearch.explain.heatmap import COLOUR_RANGE

            drawn = "drops" if self.image_drops is not None else "weights"
            image = {"grid": [rows, cols], "order": "row-major, top-left first",
                     "heatmap_colours": f"{drawn}: {COLOUR_RANGE}",
                     "weights": [[r(w) for w in row] for row in self.image_weights],
                     "letterbox": list(self.image_letterbox) if self.image_letterbox else None}
            if self.image_drops is not None:
                image["drops"] = [[r(d) for d in row] for row in self.image_drops]
        value = "drop" if occlusion else "term"
        words = [{"word": w.text, "weight": r(w.weight), value: r(w.drop if occlusion else w.term), "tokens": w.tokens}
                 for w in self.words]
        specials = [{k: (r(v) if k in ("weight", "term") else v) for k, v in s.items()} for s in self.specials]
        out = {
            "query": {"text": self.query_text, "image": self.query_image},
            "product": {"id": self.product.id, "title": self.product.title, "text": self.product.text,
                        "image": self.product.image_path},
            "encoder": self.encoder_id,
            "method": self.method,
            "score": r(self.score),
            "weighting": self.weighting,
            "shares": {k: r(v) for k, v in self.shares().items()},
            "words": words,
            "special_tokens": specials,
            "image": image,
            "tokens": tokens,
            "check": self.check,
        }
        if self.parts is not None:
            out["parts"] = {k: {kk: r(vv) for kk, vv in v.items()} for k, v in self.parts.items()}
        if self.note:
            out["note"] = self.note
        return out


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


def occlusion_weights(drops: np.ndarray) -> tuple[np.ndarray, str, bool]:
    """Weights that sum to 1 over the occluded words and patches, from their score drops.

    A positive drop means the score depends on that word or patch; its weight is its share of
    the positive drops (words or patches whose removal raises the score get 0; their drops stay
    in the JSON). When no drop is positive, the shares of |drop| are used instead, and the
    result says so (the third value is True)."""
    drops = np.asarray(drops, np.float64)
    positive = np.clip(drops, 0.0, None)
    if positive.sum() > 0:
        return positive / positive.sum(), "occlusion, positive share: max(drop, 0) / sum of positive drops", False
    magnitude = np.abs(drops)
    if magnitude.sum() > 0:
        return (magnitude / magnitude.sum(),
                "occlusion, absolute share (leaving out any one word or patch does not lower the score): "
                "|drop| / sum |drop|", True)
    return np.full(len(drops), 1.0 / max(len(drops), 1)), "occlusion, uniform (all drops are zero)", True


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
    from moonsearch.catalog.images import first_loadable
    from moonsearch.catalog.inputs import product_text

    if isinstance(product, dict):
        title, attributes = product["title"], product.get("attributes") or {}
        pid, has_image = product.get("id", product_id), product.get("has_image")
        # a product indexed text-only stays text-only, even if its image loads today
        paths = [] if has_image is False else [Path(p) for p in product.get("images") or []]
    else:
        title, attributes, paths = product.title, product.attributes, list(product.images)
        pid, has_image = product.id, None
    loaded = first_loadable(paths)   # the image the index embedded (moonsearch.catalog.inputs)
    image = loaded.image
    used = None if loaded.position is None else str(paths[loaded.position])
    if image is None and paths and has_image:
        reason = loaded.failures[0][1].reason if loaded.failures else None
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
    """The query image as the searcher loads it, and its path for the report."""
    if image is None:
        return None, None
    from moonsearch.catalog.images import load_query_image

    return load_query_image(image), None if isinstance(image, Image.Image) else str(image)


def occlusion_unsupported(encoder) -> str:
    """The note shown when an encoder cannot be occluded and explain falls back to decomposition."""
    name = getattr(encoder, "name", type(encoder).__name__)
    reason = _NO_OCCLUSION.get(name, f"encoder '{name}' has no score_with_masks()")
    return f"occlusion unsupported: {reason}. Showing the exact decomposition instead."


def explain(index_or_encoder, product, text: str | None = None, image=None, verify: bool = True,
            method: str = DEFAULT_METHOD, batch_size: int = 128) -> Explanation:
    """Explain the score of a query (text, image or both) against one product.

    `index_or_encoder`: an opened ProductIndex (then `product` may be a product id) or an
    encoder with product_tokens(). `product`: an id, a catalog Product, a stored record, or a
    ProductInput. `method`: "occlusion" (default; needs the encoder's score_with_masks(), else
    falls back to "decomposition" with a `note`) or "decomposition". `verify` also re-encodes
    the product to check the explained score is the search score. `batch_size`: occlusions per
    forward call of the fusion model.
    """
    if method not in METHODS:
        raise MoonsearchError(f"unknown explain method '{method}' (use {' or '.join(METHODS)})")
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

    query = query_encoding(encoder)([text or None], [picture])[0]
    breakdown: TokenBreakdown = tokens_of(item.text, item.image)
    common = dict(text=text or None, query_image=picture_path,
                  encoder_id=getattr(encoder, "encoder_id", getattr(encoder, "name", "?")),
                  product_vector=encoder.encode([item.text], [item.image])[0] if verify else None)
    note = None
    if method == "occlusion":
        scorer = getattr(encoder, "score_with_masks", None)
        if callable(scorer):
            return explain_occlusion(
                breakdown, lambda masks: scorer(query, item.text, item.image, masks, batch_size=batch_size),
                item, query=query, batch_size=batch_size, **common)
        note = occlusion_unsupported(encoder)
    result = explain_breakdown(breakdown, query, item, **common)
    result.note = note
    return result


def _layout(breakdown: TokenBreakdown) -> tuple[list[str], list[tuple[str, list[int]]], list[tuple[int, str]],
                                               list[int], tuple[int, int] | None]:
    """kinds, words (text, token positions), specials (position, label), image positions, grid."""
    kinds = list(breakdown.kinds)
    if len(kinds) != len(breakdown.states):
        raise ValueError(f"{len(kinds)} kinds for {len(breakdown.states)} token states")
    text_positions = [i for i, k in enumerate(kinds) if k == "text"]
    if len(text_positions) != len(breakdown.text_pieces):
        raise ValueError(f"{len(breakdown.text_pieces)} text pieces for {len(text_positions)} text tokens")
    words = [(word, [text_positions[p] for p in pieces]) for word, pieces in merge_pieces(list(breakdown.text_pieces))]
    other = [i for i, k in enumerate(kinds) if k not in ("text", "image")]
    labels = list(breakdown.special_pieces) if len(breakdown.special_pieces) == len(other) else [kinds[i] for i in other]
    image_positions = [i for i, k in enumerate(kinds) if k == "image"]
    grid = None
    if image_positions:
        grid = breakdown.image_grid or (1, len(image_positions))
        if grid[0] * grid[1] != len(image_positions):
            raise ValueError(f"image grid {grid[0]}x{grid[1]} for {len(image_positions)} image tokens")
    return kinds, words, list(zip(other, labels)), image_positions, grid


def _product_vector_check(breakdown: TokenBreakdown, product_vector: np.ndarray) -> float:
    mean = np.asarray(breakdown.states, np.float64).mean(0)
    own = mean / max(np.linalg.norm(mean), 1e-12)
    return float(np.abs(own - product_vector).max())


def explain_breakdown(breakdown: TokenBreakdown, query: np.ndarray, item: ProductInput, text: str | None = None,
                      query_image: str | None = None, encoder_id: str = "?",
                      product_vector: np.ndarray | None = None) -> Explanation:
    """The exact decomposition: terms, weights, words and image grid from a breakdown and a unit
    query vector (the part of `explain` that needs no encoder, so any TokenBreakdown can be
    explained and tested)."""
    kinds, word_positions, special_positions, image_positions, grid_shape = _layout(breakdown)
    terms, score = score_terms(breakdown.states, query)
    weights, weighting = token_weights(terms)
    words = [Word(word, float(weights[positions].sum()), float(terms[positions].sum()), positions)
             for word, positions in word_positions]
    specials = [{"token": i, "kind": kinds[i], "piece": label, "weight": float(weights[i]), "term": float(terms[i])}
                for i, label in special_positions]
    grid = weights[image_positions].reshape(grid_shape) if grid_shape else None

    check = {"terms_sum": round(float(terms.sum()), 8), "score": round(score, 8),
             "abs_error": float(abs(terms.sum() - score)), "tokens": len(kinds)}
    if product_vector is not None:
        check["product_vector_max_abs_diff"] = _product_vector_check(breakdown, product_vector)
    return Explanation(query_text=text, query_image=query_image, product=item, encoder_id=encoder_id,
                       score=score, kinds=kinds, terms=terms, weights=weights, weighting=weighting,
                       words=words, specials=specials, image_weights=grid,
                       image_letterbox=breakdown.image_letterbox if grid is not None else None, check=check,
                       method="decomposition")


def occlusion_masks(kinds: list[str], units: list[list[int]]) -> np.ndarray:
    """(1 + U, T) bool: row 0 keeps every token, row 1 + u leaves unit u's tokens out."""
    masks = np.ones((1 + len(units), len(kinds)), bool)
    for row, positions in enumerate(units, start=1):
        masks[row, positions] = False
    return masks


def explain_occlusion(breakdown: TokenBreakdown, score_masks, item: ProductInput, text: str | None = None,
                      query_image: str | None = None, encoder_id: str = "?",
                      product_vector: np.ndarray | None = None, query: np.ndarray | None = None,
                      batch_size: int | None = None) -> Explanation:
    """Leave-one-out over the product's words and image patches.

    `score_masks(masks)` scores the query against the product for each (T,) bool row of
    `masks` (False = left out), in the breakdown's token order: an encoder's score_with_masks
    bound to a query and a product, or any function in tests. One call scores the full product
    and every occlusion together."""
    kinds, word_positions, special_positions, image_positions, grid_shape = _layout(breakdown)
    units = [positions for _, positions in word_positions] + [[i] for i in image_positions]
    if not units:
        raise MoonsearchError(f"product {item.id} has no words or image patches to leave out")
    # then, with both text and image: the whole image left out, and the whole text ([CLS]/[SEP] too)
    part_units = {}
    if image_positions and len(image_positions) < len(kinds):
        part_units = {"image": list(image_positions),
                      "text": [i for i, k in enumerate(kinds) if k != "image"]}
    masks = occlusion_masks(kinds, units + list(part_units.values()))
    scores = np.asarray(score_masks(masks), np.float64).reshape(-1)
    if len(scores) != len(masks):
        raise ValueError(f"{len(scores)} scores for {len(masks)} masks")
    score = float(scores[0])
    drops = score - scores[1:1 + len(units)]
    parts = {name: {"score_without": float(s), "drop": score - float(s)}
             for name, s in zip(part_units, scores[1 + len(units):])} or None
    unit_weights, weighting, fallback = occlusion_weights(drops)

    weights = np.zeros(len(kinds))
    for positions, weight in zip(units, unit_weights):
        weights[positions] = weight / len(positions)   # a word's weight split evenly over its pieces
    words = [Word(word, float(w), None, positions, drop=float(d))
             for (word, positions), w, d in zip(word_positions, unit_weights, drops)]
    specials = [{"token": i, "kind": kinds[i], "piece": label, "weight": 0.0, "occluded": False}
                for i, label in special_positions]
    n_words = len(word_positions)
    grid = drop_grid = None
    if grid_shape:
        grid = unit_weights[n_words:].reshape(grid_shape)
        drop_grid = drops[n_words:].reshape(grid_shape)

    check = {"score": round(score, 8), "occluded_words": n_words, "occluded_patches": len(image_positions),
             "masks": len(masks), "weights_fallback": fallback, "tokens": len(kinds),
             "positive_drops_sum": round(float(np.clip(drops, 0, None).sum()), 8)}
    if batch_size:
        check["forward_calls"] = -(-len(masks) // batch_size)
    if product_vector is not None:
        check["product_vector_max_abs_diff"] = _product_vector_check(breakdown, product_vector)
        if query is not None:   # the full-mask score is the search score
            search = float(np.asarray(query, np.float64).reshape(-1) @ np.asarray(product_vector, np.float64))
            check["score_vs_search_abs_diff"] = abs(score - search)
    note = None
    if fallback:
        note = ("no single word or patch lowers the score when left out: weights are shares of |drop| "
                "(see each word's signed drop)")
    return Explanation(query_text=text, query_image=query_image, product=item, encoder_id=encoder_id,
                       score=score, kinds=kinds, terms=None, weights=weights, weighting=weighting,
                       words=words, specials=specials, image_weights=grid,
                       image_letterbox=breakdown.image_letterbox if grid is not None else None, check=check,
                       method="occlusion", image_drops=drop_grid, parts=parts, note=note)
