"""The one interface every encoder offers: any mix of text and image in, one shared space out."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

VIEWS = ("mm", "image", "text")


@dataclass(frozen=True)
class ProductViews:
    """A batch of products embedded three ways; rows without an image hold zeros in `image`."""

    mm: np.ndarray
    image: np.ndarray
    text: np.ndarray
    # the photo identity channel's vectors (moonsearch.encoder.photo_identity), when the index
    # being built has one; zeros for rows without an image
    identity: np.ndarray | None = None

    def __getitem__(self, view: str) -> np.ndarray:
        return getattr(self, view)

    def names(self) -> tuple[str, ...]:
        """The views this batch has vectors of."""
        return VIEWS + (("identity",) if self.identity is not None else ())


class Encoder:
    """Embeds text-only, image-only and image+text inputs into L2-normalised float32 vectors.

    `encode` takes parallel lists where either entry of a pair may be None: a text query is
    (text, None), an image query (None, image), a product or a combined query (text, image).
    """

    name: str
    dim: int
    weights_path: Path | None = None

    # kind -> the query head that embeds that kind of query (moon-lite's; encoder/query_heads.py)
    query_heads: dict = {}

    @property
    def photo_head(self) -> Path | None:
        return self.query_heads.get("photo")

    def head_id(self, kind: str) -> str | None:
        """A query head's name and weights hash, recorded beside results it made."""
        head = self.query_heads.get(kind)
        return None if head is None else f"{head.stem}@{file_sha256(head)[:16]}"

    @property
    def photo_query_id(self) -> str | None:
        return self.head_id("photo")

    @property
    def text_query_id(self) -> str | None:
        return self.head_id("text")

    @property
    def encoder_id(self) -> str:
        """Name plus a hash of the weights, recorded in every index this encoder builds."""
        if self.weights_path is None:
            return self.name
        return f"{self.name}@{file_sha256(self.weights_path)[:16]}"

    def encode(
        self, texts: Sequence[str | None], images: Sequence[Image.Image | None]
    ) -> np.ndarray:
        raise NotImplementedError

    def encode_queries(
        self, texts: Sequence[str | None], images: Sequence[Image.Image | None]
    ) -> np.ndarray:
        """Search queries, as `encode`; an encoder with query heads (moon-lite) embeds the
        queries of each head's kind with it (image-only: photo, text-only: text). Products
        always go through `encode` / `encode_views`."""
        from moonsearch.encoder.query_heads import query_rows

        by_kind = {kind: rows for kind in self.query_heads if (rows := query_rows(texts, images, kind))}
        if not by_kind:
            return self.encode(texts, images)
        out = np.zeros((len(texts), self.dim), np.float32)
        taken = {i for rows in by_kind.values() for i in rows}
        others = [i for i in range(len(texts)) if i not in taken]
        if others:
            out[others] = self.encode([texts[i] for i in others], [images[i] for i in others])
        for kind, rows in by_kind.items():
            out[rows] = self.encode_head(kind, [texts[i] for i in rows], [images[i] for i in rows])
        return out

    def encode_head(self, kind: str, texts: Sequence, images: Sequence) -> np.ndarray:
        """Queries through the `kind` query head (encoders that have one)."""
        raise NotImplementedError

    def encode_views(
        self, texts: Sequence[str], images: Sequence[Image.Image | None]
    ) -> ProductViews:
        """Products as multimodal, image-only and text-only vectors (override to share work)."""
        n = len(texts)
        image_rows = [i for i, im in enumerate(images) if im is not None]
        image_view = np.zeros((n, self.dim), np.float32)
        if image_rows:
            image_view[image_rows] = self.encode([None] * len(image_rows), [images[i] for i in image_rows])
        return ProductViews(
            mm=self.encode(texts, images), image=image_view, text=self.encode(texts, [None] * n)
        )


def query_encoding(encoder):
    """How `encoder` embeds search queries: its encode_queries, or encode for a duck-typed
    encoder (user code, tests) that only has encode."""
    return getattr(encoder, "encode_queries", encoder.encode)


def read_weights(weights_path: Path) -> tuple[dict, dict]:
    """A shipped model's config (`<name>.json`, written beside it by the trainer) and tensors."""
    from safetensors.torch import load_file

    from moonsearch.jsonfiles import read_json

    config = read_json(Path(weights_path).with_suffix(".json"), "model config")
    return config, load_file(str(weights_path))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
