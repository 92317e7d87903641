"""Image queries from changed photos: does a shopper's photo of a product find that product?

Each product photo, changed by one of `moonsearch.photos.TRANSFORMS`, is an image-only query;
the candidates are all the products embedded as the index embeds them (product text + photo,
the multimodal vectors); the product itself is the one relevant answer. The reference row does
the same with the frozen EfficientNet-Lite0 tower's pooled features (photo against photo, no
training, no text), so the gain or loss of the trained image path over the raw tower shows.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from moonsearch import photos
from moonsearch.encoder.base import l2_normalize
from moonsearch.eval.retrieval import embed, retrieval_recall

KS = (1, 10)


def transformed(images: list[Image.Image], keys: list[str], name: str, seed: int = 0) -> list[Image.Image]:
    return [photos.transform(image, name, key, seed) for image, key in zip(images, keys)]


def recall(queries: np.ndarray, candidates: np.ndarray, targets: list[int]) -> dict:
    metrics = retrieval_recall(queries, candidates, [{t} for t in targets], KS)
    return {f"R@{k}": round(float(metrics[f"R@{k}"]), 4) for k in KS}


def frozen_tower_vectors(towers, images: list[Image.Image], batch: int = 64,
                         size: tuple[int, int] | None = None) -> np.ndarray:
    """L2-normalised pooled EfficientNet-Lite0 features: the tower every moonsearch encoder stands
    on, at the encoders' input size or at `size` (width, height), to see what resolution costs."""
    parts = [towers.image_features(images[i:i + batch], size) for i in range(0, len(images), batch)]
    return l2_normalize(np.concatenate(parts)) if parts else np.zeros((0, 1280), np.float32)


class PhotoChannel:
    """An index's identity channel for the evaluation: the identity model and every candidate
    product's identity vector (its photo's; zeros and `has_photo` False for text-only products),
    ranked by moonsearch.search.photo as `ProductIndex.search(image=...)` ranks them."""

    def __init__(self, identity, candidates: np.ndarray, has_photo: np.ndarray,
                 weight: float | None = None, depth: int | None = None):
        from moonsearch.encoder import photo_identity as photo

        self.identity, self.candidates, self.has_photo = identity, candidates, has_photo
        self.weight = photo.MM_WEIGHT if weight is None else weight
        self.depth = photo.PHOTO_DEPTH if depth is None else depth

    @classmethod
    def of(cls, identity, images: list, **options) -> "PhotoChannel":
        """Candidate identity vectors of the products' photos (None: a text-only product)."""
        return cls(identity, identity.embed(images), np.array([im is not None for im in images]), **options)

    def ranked(self, encoder, queries: list, candidate_mm: np.ndarray) -> np.ndarray:
        """(Q, depth) candidate rows best first for image-only queries."""
        from moonsearch.encoder import photo_identity as photo

        query_mm = embed(encoder, [None] * len(queries), queries, queries=True) if self.weight else None
        views = self.identity.embed_query_views(queries)
        return photo.rank_matrix(views, self.candidates, query_mm, candidate_mm, self.weight, self.depth,
                                 self.has_photo, photo.view_penalties())

    def recall(self, encoder, queries: list, candidate_mm: np.ndarray, targets: list[int]) -> dict:
        from moonsearch.encoder import photo_identity as photo

        return photo.recall_at(self.ranked(encoder, queries, candidate_mm), targets, KS)

    def metrics(self, encoder, queries: list, candidate_mm: np.ndarray, targets: list[int], ks) -> dict:
        """R@k and MRR as retrieval_recall has them (MRR counts ranks within the channel's depth;
        a target ranked below it adds 0)."""
        ranked = self.ranked(encoder, queries, candidate_mm)
        hits = ranked == np.asarray(targets).reshape(-1, 1)
        found = hits.any(axis=1)
        ranks = np.where(found, hits.argmax(axis=1) + 1, 0)
        out = {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}
        out["MRR"] = float(np.where(found, 1.0 / np.maximum(ranks, 1), 0.0).mean())
        out["queries"] = len(targets)
        return out


def image_query_recall(encoder, queries: list, candidates: np.ndarray, targets: list[int],
                       channel: PhotoChannel | None = None) -> dict:
    """R@1, R@10 of image-only queries as the index answers them: through the identity channel
    when there is one, else the encoder's query vectors against the product vectors."""
    if channel is not None:
        return channel.recall(encoder, queries, candidates, targets)
    return recall(embed(encoder, [None] * len(queries), queries, queries=True), candidates, targets)


def run(encoder, images: list[Image.Image], keys: list[str], candidates: np.ndarray, targets: list[int],
        transforms=photos.TRANSFORMS, reference: bool = True, seed: int = 0,
        reference_size: tuple[int, int] | None = None, channel: PhotoChannel | None = None) -> dict:
    """`images[j]` is the photo of candidate `targets[j]` (`keys[j]` its product id, which seeds
    photo-mix); `candidates` the products' vectors as the index holds them; `channel` the
    index's identity channel (None: an index without one).
    -> {"queries", "transforms": {name: {R@1, R@10}}, "reference": {...}}."""
    result: dict = {"queries": len(images), "candidates": int(len(candidates)), "transforms": {}}
    if channel is not None:
        result["identity"] = channel.identity.id
    towers = getattr(encoder, "towers", None) if reference else None
    if reference:
        if towers is None:
            from moonsearch.encoder.towers import Towers

            towers = Towers()
        # the tower's candidates are the catalog photos themselves, in candidate order
        photo_of = dict(zip(targets, images))
        rows = sorted(photo_of)
        tower_candidates = np.zeros((len(candidates), 1280), np.float32)
        tower_candidates[rows] = frozen_tower_vectors(towers, [photo_of[r] for r in rows], size=reference_size)
        result["reference"] = {}
    for name in transforms:
        queries = transformed(images, keys, name, seed)
        result["transforms"][name] = image_query_recall(encoder, queries, candidates, targets, channel)
        if reference:
            result["reference"][name] = recall(frozen_tower_vectors(towers, queries, size=reference_size),
                                               tower_candidates, targets)
    return result


def flat_metrics(result: dict) -> dict:
    """{"<transform> R@1": x, ...}: the shape a results file's tasks have (floors read it)."""
    return {f"{name} {metric}": value for name, metrics in result["transforms"].items()
            for metric, value in metrics.items()}


def table(result: dict) -> str:
    """Markdown: one row per transform, the encoder beside the frozen tower."""
    reference = result.get("reference", {})
    lines = ["| query photo | R@1 | R@10 | frozen tower R@1 | frozen tower R@10 |", "|---|---|---|---|---|"]
    for name, metrics in result["transforms"].items():
        ref = reference.get(name, {})
        cells = [metrics["R@1"], metrics["R@10"], ref.get("R@1"), ref.get("R@10")]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"
