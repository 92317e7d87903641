"""Public-benchmark protocols of the MOON2.0 paper, run zero-shot with any moonsearch encoder.

Each protocol module has ``run(encoder, data, limit=None) -> dict`` returning
``{"<task>": {"<metric>": value}, ..., "counts": {...}}``. Task names are shared across
benchmarks: ``t2mm, i2mm, mm2mm, t2i, i2t`` (query form -> candidate form; t = text only,
i = image only, mm = image and text together), ``classification`` and ``attribute``. A task
appears only when it had at least one query to score; ``counts`` says how many it had and
how many images could not be used (with their reasons), so a number is never reported
without the data behind it.

Forms are strict: an item takes part in a form only when it has exactly what the form
needs (text for t, a loadable image for i, both for mm); an item whose image is missing or
corrupt drops out of the image forms instead of silently becoming text only.
"""

from __future__ import annotations

import importlib
from collections import Counter
from pathlib import Path
from typing import Hashable, Iterable

import numpy as np

from moonsearch.eval.datasets import Item
from moonsearch.eval.retrieval import embed

FORMS = ("t", "i", "mm", "any")
PROTOCOLS = ("mbe2", "m5product", "fashion200k")


def form_key(item: Item, form: str) -> Hashable | None:
    """What identifies an item in a form (equal keys share one vector), None if it lacks it.

    "any" is the item as given (text, image or both), used for products being classified.
    """
    if form == "t":
        return item.text
    if form == "i":
        return item.image
    if form == "mm":
        return (item.text, item.image) if item.text is not None and item.image is not None else None
    if form == "any":
        return (item.text, item.image) if item.text is not None or item.image is not None else None
    raise ValueError(f"unknown form {form!r} (known: {', '.join(FORMS)})")


class FormVectors:
    """Vectors of distinct items in one form, each distinct key embedded once.

    ``bad_images`` (path -> reason) is shared between the forms of a run so a broken image is
    opened once and counted once; keys using it are left out of every image form.
    """

    def __init__(self, encoder, items: Iterable[Item], form: str, bad_images: dict, batch_size: int = 64):
        self.form = form
        keys = list(dict.fromkeys(k for k in (form_key(i, form) for i in items) if k is not None))
        if form != "t":
            keys = [k for k in keys if _image_of(k) is None or _image_of(k) not in bad_images]
        texts = [None if form == "i" else (k if form == "t" else k[0]) for k in keys]
        images = [None if form == "t" else _image_of(k) for k in keys]
        failures: dict[int, str] = {}
        vectors = embed(encoder, texts, images, batch_size=batch_size, failures=failures)
        for row, reason in failures.items():
            bad_images[images[row]] = reason
        good = [row for row in range(len(keys)) if row not in failures]
        self.vectors = vectors[good]
        self.row = {keys[r]: n for n, r in enumerate(good)}

    def index(self, item: Item) -> int | None:
        """Row of the item's vector, or None when the item has no usable vector in this form."""
        key = form_key(item, self.form)
        return None if key is None else self.row.get(key)


def _image_of(key) -> Path | None:
    if isinstance(key, tuple):
        return key[1]
    return key if isinstance(key, Path) else None


def embed_texts(encoder, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Label or description texts, text only."""
    return embed(encoder, texts, [None] * len(texts), batch_size=batch_size)


def image_counts(bad_images: dict) -> dict:
    """How many distinct images could not be used, and why."""
    return {"bad_images": len(bad_images), "bad_image_reasons": dict(Counter(bad_images.values()))}


def split_queries(metrics: dict, task: str, counts: dict) -> dict:
    """Move the query counts of a retrieval result into ``counts``, keep only the metrics."""
    metrics = dict(metrics)
    counts[f"{task}_queries"] = metrics.pop("queries")
    counts[f"{task}_queries_without_relevant"] = metrics.pop("queries_without_relevant")
    return metrics


def run_protocol(name: str, encoder, data, limit: int | None = None) -> dict:
    """Run one benchmark's protocol by name ("mbe2", "m5product" or "fashion200k")."""
    if name not in PROTOCOLS:
        from moonsearch.errors import MoonsearchError

        raise MoonsearchError(f"unknown benchmark '{name}' (known: {', '.join(PROTOCOLS)})")
    module = importlib.import_module(f"moonsearch.eval.protocols.{name}")
    return module.run(encoder, data, limit=limit)


__all__ = ["PROTOCOLS", "FormVectors", "form_key", "run_protocol"]
