"""Image-text co-augmentation (MOON2.0), for training data only; test data is never augmented.

- Textual enrichment: entities (brand, category, colour, material, pattern, style, gender) are
  extracted from title, description and attributes, and an enriched title T+ is written from
  them. The enricher is pluggable: the rule-based one is the default; `MLLMEnricher` asks a
  local Hugging Face vision-language model instead.
- Visual expansion: main-subject crop, background variants, viewpoint (flip, scale). A
  CLIP-style consistency filter (the baseline encoder's image-title similarity) drops variants
  that drift from their title.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np
from PIL import Image, ImageOps

from moonsearch.errors import MoonsearchError
from moonsearch.shopper import attribute_text

MATERIALS = ("cotton", "denim", "leather", "polyester", "silk", "wool", "linen", "suede", "canvas",
             "rubber", "nylon", "rayon", "viscose", "satin", "chiffon", "georgette", "velvet", "fleece",
             "jersey", "lycra", "steel", "stainless steel", "metal", "plastic", "synthetic", "mesh", "knit")
PATTERNS = ("striped", "checked", "printed", "solid", "floral", "embroidered", "self design", "colourblocked",
            "graphic", "polka dot", "camouflage", "washed")
COLOURS = ("black", "white", "blue", "navy blue", "red", "green", "yellow", "pink", "grey", "brown", "beige",
           "purple", "orange", "maroon", "olive", "silver", "gold", "cream", "teal", "khaki", "peach",
           "magenta", "lavender", "charcoal", "turquoise blue", "mustard", "rust", "coffee brown")
STYLE_KEYS = ("usage", "Fit", "Neck", "Sleeve Length", "Occasion", "Type", "Length", "Closure", "Collar")


def _found(words: tuple[str, ...], text: str) -> list[str]:
    lowered = f" {text.lower()} "
    return [w for w in words if re.search(rf"\b{re.escape(w)}\b", lowered)]


@dataclass
class Entities:
    brand: str | None
    category: str | None
    colours: list[str]
    materials: list[str]
    patterns: list[str]
    styles: list[str]
    gender: str | None


def extract_entities(title: str, description: str | None, attributes: Mapping[str, Any]) -> Entities:
    """Entities from structured fields first, then words found in title and description."""
    text = f"{title} {description or ''}"
    colours = [c for c in (attribute_text(attributes, k) for k in ("baseColour", "colour1", "colour2")) if c]
    colours += [c for c in _found(COLOURS, title) if c not in {x.lower() for x in colours}]
    materials = [m for m in (attribute_text(attributes, k) for k in ("Fabric", "Material")) if m]
    materials += [m for m in _found(MATERIALS, text) if m not in {x.lower() for x in materials}]
    patterns = [p for p in (attribute_text(attributes, "Pattern"),) if p]
    patterns += [p for p in _found(PATTERNS, title) if p not in {x.lower() for x in patterns}]
    return Entities(
        brand=attribute_text(attributes, "brand"), category=attribute_text(attributes, "articleType") or attribute_text(attributes, "category"),
        colours=colours[:2], materials=materials[:2], patterns=patterns[:1],
        styles=[s for s in (attribute_text(attributes, k) for k in STYLE_KEYS) if s][:3], gender=attribute_text(attributes, "gender"),
    )


class Enricher(Protocol):
    def enrich(self, title: str, description: str | None, attributes: Mapping[str, Any],
               image: Image.Image | None = None) -> str: ...


class EntityEnricher:
    """Rule-based T+: the title followed by its entities, as a shopper would describe the item."""

    def enrich(self, title, description, attributes, image=None) -> str:
        e = extract_entities(title, description, attributes)
        head = " ".join(x for x in (*e.colours[:1], *e.patterns, *e.materials[:1], e.category) if x)
        parts = [title.strip()]
        if head:
            parts.append(head + (f" by {e.brand}" if e.brand else "") + (f" for {e.gender}" if e.gender else ""))
        if e.styles:
            parts.append(", ".join(e.styles))
        return ". ".join(parts)


class MLLMEnricher:
    """T+ written by a local Hugging Face vision-language model (e.g. a Qwen2-VL folder).

    Nothing is downloaded: `model_path` must be a folder on disk. Slow on CPU; meant for GPU users.
    """

    PROMPT = ("Rewrite this product title as one enriched e-commerce title that names its brand, "
              "category, colour, material and style. Title: {title}. Known facts: {facts}.")

    def __init__(self, model_path: str | Path, device: str = "cpu", max_new_tokens: int = 48):
        path = Path(model_path)
        if not path.is_dir():
            raise MoonsearchError(f"MLLM enricher: no model folder at {path}")
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).to(device).eval()
        self.device = device
        self.max_new_tokens = max_new_tokens
        self.fallback = EntityEnricher()

    def enrich(self, title, description, attributes, image=None) -> str:
        import torch

        e = extract_entities(title, description, attributes)
        facts = ", ".join(x for x in (e.brand, e.category, *e.colours, *e.materials, *e.patterns, *e.styles) if x)
        content = [{"type": "text", "text": self.PROMPT.format(title=title, facts=facts)}]
        if image is not None:
            content.insert(0, {"type": "image"})
        prompt = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = self.processor(text=[prompt], images=[image] if image is not None else None, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(**inputs.to(self.device), max_new_tokens=self.max_new_tokens, do_sample=False)
        text = self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()
        return text or self.fallback.enrich(title, description, attributes)


def make_enricher(config: Mapping[str, Any]) -> Enricher:
    kind = config.get("enricher", "entity")
    if kind == "entity":
        return EntityEnricher()
    if kind == "mllm":
        return MLLMEnricher(config["mllm_path"], device=config.get("device", "cpu"))
    raise MoonsearchError(f"unknown enricher '{kind}' (entity or mllm)")


# --- visual expansion -------------------------------------------------------------------

def subject_box(image: Image.Image, threshold: int = 235) -> tuple[int, int, int, int] | None:
    """Bounding box of the non-background (not near-white) pixels, None for a blank image."""
    array = np.asarray(image.convert("RGB"))
    foreground = (array < threshold).any(axis=2)
    if not foreground.any():
        return None
    rows, cols = np.nonzero(foreground.any(axis=1))[0], np.nonzero(foreground.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_subject(image: Image.Image, margin: float = 0.06) -> Image.Image:
    box = subject_box(image)
    if box is None:
        return image.copy()
    x0, y0, x1, y1 = box
    mx, my = round((x1 - x0) * margin), round((y1 - y0) * margin)
    return image.crop((max(0, x0 - mx), max(0, y0 - my), min(image.width, x1 + mx), min(image.height, y1 + my)))


def recolour_background(image: Image.Image, colour: tuple[int, int, int], threshold: int = 235) -> Image.Image:
    array = np.asarray(image.convert("RGB")).copy()
    background = (array >= threshold).all(axis=2)
    array[background] = colour
    return Image.fromarray(array)


def rescale(image: Image.Image, factor: float) -> Image.Image:
    """factor < 1 zooms out (pads with white), > 1 zooms in (centre crop); size unchanged."""
    w, h = image.size
    if factor >= 1:
        cw, ch = round(w / factor), round(h / factor)
        left, top = (w - cw) // 2, (h - ch) // 2
        return image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR)
    small = image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BILINEAR)
    canvas = Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(small, ((w - small.width) // 2, (h - small.height) // 2))
    return canvas


VARIANTS = ("crop", "background", "flip", "zoom_out", "zoom_in")


def expand_image(image: Image.Image, rng: random.Random, variant: str | None = None) -> tuple[Image.Image, str]:
    """One visual-expansion variant of a product photo (the variant's name is returned too)."""
    variant = variant or rng.choice(VARIANTS)
    if variant == "crop":
        return crop_subject(image), variant
    if variant == "background":
        colour = tuple(rng.randint(215, 245) for _ in range(3))   # studio tints, not scenery
        return recolour_background(image, colour), variant
    if variant == "flip":
        return ImageOps.mirror(image), variant
    if variant == "zoom_out":
        return rescale(image, rng.uniform(0.8, 0.92)), variant
    if variant == "zoom_in":
        return rescale(image, rng.uniform(1.08, 1.2)), variant
    raise ValueError(f"unknown variant {variant}")


def consistent_rows(similarity: np.ndarray, top: int) -> np.ndarray:
    """CLIP-style image-title consistency: variant i is kept when its own title (column i) is
    among the `top` best-matching titles of the batch. Rank-based, so it does not depend on the
    scale of a scorer's similarities."""
    own = np.diag(similarity)
    better = (similarity > own[:, None]).sum(axis=1)
    return better < top
