"""Reference systems the encoders are compared with: MiniLM over titles, BM25 over titles.

A "system" tells the protocols how to write a product as text (`product_text`), how to embed
(`encode`, as any Encoder) and whether it can see images. BM25 has no vectors; it ranks with
DuckDB's full-text extension, loaded from the `duckdb-extension-fts` package (offline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import duckdb
import numpy as np

from moonsearch.encoder.base import Encoder, l2_normalize
from moonsearch.encoder.registry import load_encoder
from moonsearch.catalog.inputs import product_text
from moonsearch.errors import MoonsearchError
from moonsearch.store.keywords import load_fts


@dataclass
class System:
    """An encoder plus the product text it reads; `sees_images` False for text-only models."""

    name: str
    encoder: Encoder | None
    text_of: str = "product"        # "product": title + attributes; "title": the bare title
    sees_images: bool = True

    def product_text(self, title: str, attributes: dict) -> str:
        return title if self.text_of == "title" else product_text(title, attributes)


class MiniLMEncoder(Encoder):
    """all-MiniLM-L6-v2 sentence embeddings; text only (an image-only input is refused)."""

    name = "minilm"
    dim = 384

    def __init__(self, device: str = "cpu"):
        from moonsearch.encoder.towers import Towers

        self.towers = Towers(device=device)

    def encode(self, texts, images) -> np.ndarray:
        if any(t is None for t in texts):
            raise MoonsearchError("the MiniLM reference reads text only")
        return l2_normalize(self.towers.text_features(list(texts)))


class BM25Index:
    """BM25 over a list of documents, in an in-memory DuckDB with the fts extension."""

    def __init__(self, documents: Sequence[str]):
        self.con = duckdb.connect()
        load_fts(self.con)
        self.con.execute("CREATE TABLE docs (doc INTEGER, body VARCHAR)")
        self.con.executemany("INSERT INTO docs VALUES (?, ?)", list(enumerate(documents)))
        self.con.execute("PRAGMA create_fts_index('docs', 'doc', 'body', stemmer='english', lower=1)")
        self.n = len(documents)

    def rank(self, query: str, k: int) -> list[int]:
        rows = self.con.execute(
            "SELECT doc FROM (SELECT doc, fts_main_docs.match_bm25(doc, ?) AS score FROM docs) "
            "WHERE score IS NOT NULL ORDER BY score DESC, doc LIMIT ?", [query, k]
        ).fetchall()
        return [r[0] for r in rows]


def load_system(name: str, device: str = "cpu") -> System:
    """`bm25-title`, `minilm-title`, or an encoder name (`default`, `baseline`, ...)."""
    if name == "bm25-title":
        return System(name, None, text_of="title", sees_images=False)
    if name == "minilm-title":
        return System(name, MiniLMEncoder(device), text_of="title", sees_images=False)
    encoder = load_encoder(name, device=device)
    return System(encoder.name, encoder)
