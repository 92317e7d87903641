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


def run(encoder, images: list[Image.Image], keys: list[str], candidates: np.ndarray, targets: list[int],
        transforms=photos.TRANSFORMS, reference: bool = True, seed: int = 0,
        reference_size: tuple[int, int] | None = None) -> dict:
    """`images[j]` is the photo of candidate `targets[j]` (`keys[j]` its product id, which seeds
    photo-mix); `candidates` the products' vectors as the index holds them.
    -> {"queries", "transforms": {name: {R@1, R@10}}, "reference": {...}}."""
    result: dict = {"queries": len(images), "candidates": int(len(candidates)), "transforms": {}}
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
        result["transforms"][name] = recall(embed(encoder, [None] * len(queries), queries, queries=True),
                                                candidates, targets)
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
