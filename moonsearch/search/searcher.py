"""The query layer: text, image, or text+image in; ranked products out, optionally filtered.

Filters are resolved to allowed rows in DuckDB first, then handed to FAISS, so a filtered
query returns k hits whenever k products match instead of post-filtering a short list.
Hybrid ranking adds BM25 over the product text and fuses the two rankings by reciprocal rank;
it is the default for text-only product queries because it ranked shopper queries and exact
titles better on held-out products (benchmarks/results/hybrid-val.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from moonsearch.catalog import ImageError, load_image
from moonsearch.encoder.base import VIEWS, Encoder
from moonsearch.encoder.registry import load_encoder
from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.index import vectors as faiss_vectors
from moonsearch.index.builder import SKIPS_FILE, view_file
from moonsearch.index.device import placement_for
from moonsearch.search.fusion import reciprocal_rank_fusion
from moonsearch.store.filters import Filter, parse_filters
from moonsearch.store.manifest import Manifest
from moonsearch.store.metadata import MetadataStore

HYBRID_DEPTH = 100   # candidates each retriever hands to the fusion (k if larger)
HYBRID, VECTORS = "hybrid", "vectors"
RANKING_NAMES = {HYBRID: "hybrid (vectors + BM25)", VECTORS: "vectors"}


@dataclass(frozen=True)
class Ranking:
    """How `search` ranks a query, and a note for the user when the default had to fall back."""
    kind: str                 # HYBRID or VECTORS
    note: str | None = None

    @property
    def name(self) -> str:
        return RANKING_NAMES[self.kind]

    @property
    def hybrid(self) -> bool:
        """The `hybrid` argument that asks `search` for this ranking outright."""
        return self.kind == HYBRID


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    id: str
    title: str
    image: str | None
    attributes: dict
    row: int
    ranking: str = VECTORS    # what the score is: a cosine (vectors) or a fusion score (hybrid)

    def to_json(self) -> dict:
        return {"rank": self.rank, "score": round(self.score, 6), "ranking": self.ranking, "id": self.id,
                "title": self.title, "image": self.image, "attributes": self.attributes}


def load_query_image(image: Image.Image | str | Path) -> Image.Image:
    """A query image given as a PIL image or a path; a file that cannot be used is a clear error."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        return load_image(Path(image))
    except ImageError as exc:
        raise MoonsearchError(f"cannot use query image {image}: {exc.reason}") from None


class ProductIndex:
    """An index folder opened for search; the encoder loads on first use."""

    def __init__(self, folder: Path, manifest: Manifest, store: MetadataStore, device: str = "auto",
                 encoder: Encoder | None = None):
        self.folder = folder
        self.manifest = manifest
        self.store = store
        self.device = device
        self._encoder = encoder
        self._views: dict = {}
        self._rows_with_image = None
        self._keyword_index: bool | None = None

    @classmethod
    def open(cls, folder: Path | str, device: str = "auto", encoder: Encoder | None = None) -> "ProductIndex":
        folder = Path(folder)
        manifest = Manifest.read(folder)
        for view in manifest.views:
            if not (folder / view_file(view)).exists():
                raise IndexFormatError(f"{folder} is incomplete: {view_file(view)} is missing")
        index = cls(folder, manifest, MetadataStore(folder), device=device, encoder=encoder)
        if encoder is not None:
            manifest.check_encoder(encoder.encoder_id, folder)
        return index

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            placement = placement_for(self.device, self.manifest.index_type)
            spec = self.manifest.encoder
            encoder = load_encoder(spec["name"], device=placement.encoder, weights=spec.get("weights"))
            self.manifest.check_encoder(encoder.encoder_id, self.folder)
            self._encoder = encoder
        return self._encoder

    def _view(self, view: str):
        if view not in VIEWS:
            raise MoonsearchError(f"unknown view '{view}' (choose from {', '.join(VIEWS)})")
        if view not in self._views:
            self._views[view] = faiss_vectors.load(self.folder / view_file(view))
        return self._views[view]

    def embed_query(self, text: str | None = None, image: Image.Image | str | Path | None = None):
        text = text.strip() if isinstance(text, str) else None
        if not text and image is None:
            raise MoonsearchError("give a query text, a query image, or both")
        picture = load_query_image(image) if image is not None else None
        return self.encoder.encode([text or None], [picture])

    def allowed_rows(self, filters: Sequence[Filter | str], view: str):
        parsed = [f if isinstance(f, Filter) else parse_filters([f])[0] for f in filters or ()]
        allowed = self.store.allowed_rows(parsed) if parsed else None
        if view == "image":  # text-only products have no image vector to rank
            if self._rows_with_image is None:
                self._rows_with_image = self.store.rows_with_image()
            allowed = self._rows_with_image if allowed is None else np.intersect1d(allowed, self._rows_with_image)
        return allowed

    def has_keyword_index(self) -> bool:
        if self._keyword_index is None:
            self._keyword_index = self.store.has_keyword_index()
        return self._keyword_index

    def ranking(self, text: str | None = None, image: Image.Image | str | Path | None = None, view: str = "mm",
                hybrid: bool | None = None) -> Ranking:
        """What `search` ranks by. True and False ask for hybrid or vectors; None (the default)
        takes hybrid for a text-only query on the product (mm) vectors, where it was measured
        better, and vectors for image queries and for the image / text views, which ask for one
        kind of vector by name. An index built before keyword search existed falls back to
        vectors, with a note saying so."""
        keywords = text.strip() if isinstance(text, str) else ""
        if hybrid and not keywords:
            raise MoonsearchError("hybrid search needs a query text: its keywords are what BM25 matches")
        if hybrid is not None:
            return Ranking(HYBRID if hybrid else VECTORS)
        if not keywords or image is not None or view != "mm":
            return Ranking(VECTORS)
        if not self.has_keyword_index():
            return Ranking(VECTORS, "this index has no keyword index (built by an older moonsearch): ranked by "
                                    "vectors only; rebuild it with `moonsearch index` for hybrid ranking")
        return Ranking(HYBRID)

    def search(self, text: str | None = None, image: Image.Image | str | Path | None = None, k: int = 10,
               filters: Sequence[Filter | str] = (), view: str = "mm", hybrid: bool | None = None) -> list[Hit]:
        """Top-k products for the query; `view` picks the multimodal, image or text vectors.
        Hybrid ranking (see `ranking`; `hybrid` None chooses) fuses the vectors' ranking with
        BM25 keyword matches of the query text; a hit's score is then its reciprocal-rank-fusion
        score, not a cosine similarity."""
        if k < 1:
            raise MoonsearchError("k must be at least 1")
        ranking = self.ranking(text, image, view, hybrid)
        index = self._view(view)
        allowed = self.allowed_rows(filters, view)
        query = self.embed_query(text, image)
        depth = max(k, HYBRID_DEPTH) if ranking.hybrid else k
        scores, rows = faiss_vectors.search(index, query, depth, allowed)
        pairs = [(float(s), int(r)) for s, r in zip(scores[0], rows[0]) if r >= 0]
        if ranking.hybrid:
            matches = self.store.keyword_rows(text.strip(), depth, allowed)
            merged = reciprocal_rank_fusion([[r for _, r in pairs], [r for r, _ in matches]])
            pairs = [(score, row) for row, score in merged[:k]]
        records = self.store.products([r for _, r in pairs])
        return [
            Hit(rank=i + 1, score=score, id=rec["id"], title=rec["title"],
                image=rec["images"][0] if rec["images"] else None, attributes=rec["attributes"], row=row,
                ranking=ranking.kind)
            for i, ((score, row), rec) in enumerate(zip(pairs, records))
        ]

    def info(self) -> dict:
        skipped = self.folder / SKIPS_FILE
        return {
            "path": str(self.folder), "manifest": self.manifest.__dict__,
            "filterable_fields": self.store.attribute_keys(),
            "keyword_index": self.has_keyword_index(),   # False: built before hybrid ranking existed
            "skip_report": str(skipped) if skipped.exists() else None,
        }

    def close(self) -> None:
        self.store.close()
