"""What a search returns: ranked hits, and how they were ranked.

Below the index object and the CLI, server and evaluation that print or score hits, so each of
them reads one definition of a hit and of a ranking's name.
"""

from __future__ import annotations

from dataclasses import dataclass

HYBRID, VECTORS, PHOTO = "hybrid", "vectors", "photo"
RANKING_NAMES = {HYBRID: "hybrid (vectors + BM25)", VECTORS: "vectors",
                 PHOTO: "photo identity (each product's best image)"}


@dataclass(frozen=True)
class Ranking:
    """How `search` ranks a query, and a note for the user when the default had to fall back."""
    kind: str                 # HYBRID, VECTORS, or PHOTO (an image-only query on an index with identity vectors)
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
    ranking: str = VECTORS    # what the score is: a cosine (vectors), a fusion score (hybrid), or the photo
    #                           identity channel's score (photo: the identity cosine, moonsearch.encoder.photo_identity)
    # Image queries: the product image that matched best (its path, and its position in the
    # product's image list); None for text-only queries.
    matched_image: str | None = None
    matched_image_index: int | None = None
    # The cosine of the query and product vectors under any ranking (`score` is one only under
    # vectors ranking): what `min_score` cuts on. None where no query was encoded (browsing).
    similarity: float | None = None

    def to_json(self) -> dict:
        matched = (None if self.matched_image_index is None
                   else {"index": self.matched_image_index, "path": self.matched_image})
        similarity = None if self.similarity is None else round(self.similarity, 6)
        return {"rank": self.rank, "score": round(self.score, 6), "ranking": self.ranking, "similarity": similarity,
                "id": self.id, "title": self.title, "image": self.image, "matched_image": matched,
                "attributes": self.attributes}


class SearchResults(list):
    """A search's hits (a plain list of Hit, best first, as before) and what the query layer did
    with the query: `query` (the ParsedQuery: its text as embedded and keyword-matched, filters
    and boosts; None for an image-only query), `applied` (one line per thing done, what the CLI,
    the JSON and the server show) and `notes` (what could not be done, e.g. no keyword matched)."""

    def __init__(self, hits=(), query=None, applied=(), notes=()):
        super().__init__(hits)
        self.query = query
        self.applied = list(applied)
        self.notes = list(notes)

    def to_json(self) -> dict:
        query = None if self.query is None else self.query.to_json()
        return {"query": query, "applied": self.applied, "notes": self.notes, "hits": [h.to_json() for h in self]}
