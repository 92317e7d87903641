"""The query layer: text, image, or text+image in; ranked products out, optionally filtered.

Filters are resolved to allowed product keys by the record store first, then handed to the
vector store, so a filtered query returns k hits whenever k products match instead of
post-filtering a short list. Both stores are reached through moonsearch.store.interface; the
manifest names the backend. An opened index reads the state its manifest pointed to at open
(a snapshot), whatever writes happen after.
Hybrid ranking adds BM25 over the product text and fuses the two rankings by reciprocal rank;
it is the default for text-only product queries because it ranked shopper queries and exact
titles better on held-out products (benchmarks/results/hybrid-val.md).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from moonsearch import threads
from moonsearch.catalog.images import load_query_image
from moonsearch.devices import placement_for
from moonsearch.encoder.base import VIEWS, Encoder, query_encoding
from moonsearch.encoder.registry import load_encoder
from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.store.backends import check_backend, open_records, open_vectors
from moonsearch.search.results import HYBRID, PHOTO, VECTORS, Hit, Ranking, SearchResults
from moonsearch.search.query_cache import QueryVectorCache
from moonsearch.store.extra_images import ExtraImageMap
from moonsearch.store.files import EXTRA_MAP_FILE, EXTRA_VIEWS, IDENTITY_VIEW, SKIPS_FILE, extra_view_file, view_file
from moonsearch.store.filters import Filter, parse_filters
from moonsearch.store.integrity import check_contents, check_sizes, damaged
from moonsearch.store.interface import RecordStore
from moonsearch.store.manifest import Manifest
from moonsearch.store.query_language import (ATTRIBUTE_FIELDS, AttributeWords, ParsedQuery, fuse, understand,
                                             verbatim)

HYBRID_DEPTH = 100   # candidates each retriever hands to the fusion (k if larger)


def check_min_score(value) -> float:
    """`search`'s cut-off as a float: a cosine, so a finite number from -1 to 1 (one-line error otherwise)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not -1.0 <= number <= 1.0:   # NaN fails the comparison too
        raise MoonsearchError(f"min_score must be a number from -1 to 1 (a cosine similarity), not {value!r}")
    return number


def members(candidates: np.ndarray, keys: np.ndarray) -> set[int]:
    """The candidates that are among `keys` (RecordStore.allowed_rows: sorted), by binary search:
    np.isin hashed all of a boost's keys (~15k for gender=Women) on every hybrid query, ~0.5 ms
    a boost; this is ~0.02 ms. Unsorted keys are sorted first."""
    keys = np.asarray(keys, np.int64)
    if len(keys) == 0 or len(candidates) == 0:
        return set()
    if len(keys) > 1 and not (keys[1:] >= keys[:-1]).all():
        keys = np.sort(keys)
    at = np.searchsorted(keys, candidates).clip(max=len(keys) - 1)
    return set(candidates[keys[at] == candidates].tolist())


class ProductIndex:
    """An index folder opened for search; the encoder loads on first use. It serves the state
    the manifest named at open; its own writes (`upsert`, `delete`) move it to the new state,
    other processes' writes show after `refresh` or a new open."""

    def __init__(self, folder: Path, manifest: Manifest, store: RecordStore, device: str = "auto",
                 encoder: Encoder | None = None):
        self.folder = folder
        self.data = manifest.data_folder(folder)   # this state's files, fixed at open
        self.manifest = manifest
        self.store = store
        self.device = device
        self._encoder = encoder
        self._views: dict = {}
        self._rows_with_image = None
        self._keyword_index: bool | None = None
        self._extras: ExtraImageMap | None = None
        self._extra_views: dict = {}
        self._attribute_words: AttributeWords | None = None
        self.query_cache = QueryVectorCache()   # new and empty for every state (refresh)

    @classmethod
    def open(cls, folder: Path | str, device: str = "auto", encoder: Encoder | None = None) -> "ProductIndex":
        folder = Path(folder)
        manifest = Manifest.read(folder)   # read once: the state this index serves
        check_backend(manifest.backend, folder)
        data = manifest.data_folder(folder)
        check_sizes(data, manifest.files)
        for view in manifest.vector_views():
            if not (data / view_file(view)).exists():
                raise IndexFormatError(f"{folder} is incomplete: {view_file(view)} is missing")
        extras = ExtraImageMap.load(data, manifest.files)
        if manifest.counts.get("extra_images") and extras is None:
            raise IndexFormatError(f"{folder} is incomplete: {EXTRA_MAP_FILE} is missing")
        if extras is not None and extras.used:
            for view in manifest.extra_views():
                if not (data / extra_view_file(view)).exists():
                    raise IndexFormatError(f"{folder} is incomplete: {extra_view_file(view)} is missing")
        store = open_records(data, manifest.backend)
        index = cls(folder, manifest, store, device=device, encoder=encoder)
        index._extras = extras
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
        if view not in VIEWS and not (view == IDENTITY_VIEW and self.manifest.identity):
            raise MoonsearchError(f"unknown view '{view}' (choose from {', '.join(VIEWS)})")
        if view not in self._views:
            self._views[view] = open_vectors(self.data, view_file(view), self.manifest.backend, self.manifest.files)
        return self._views[view]

    def _extra_view(self, view: str):
        if view not in self._extra_views:
            self._extra_views[view] = open_vectors(self.data, extra_view_file(view), self.manifest.backend,
                                                     self.manifest.files)
        return self._extra_views[view]

    def _best_per_product(self, view: str, query: np.ndarray, depth: int, allowed: np.ndarray | None,
                          scores: np.ndarray, rows: np.ndarray) -> tuple[list[tuple[float, int]], dict[int, int]]:
        """An image query over every image: each product scores its best image (the product
        vector's, or an extra image's), one row per product, best first; and the image position
        that scored it. The product vectors' top `depth` plus the extras' top `depth` x (most
        extra images of one product) hold the true top `depth` products at their best scores."""
        extras = self._extras
        first = extras.first if extras is not None else {}
        best: dict[int, tuple[float, int]] = {}
        found = rows[0] >= 0
        for score, row in zip(scores[0][found].tolist(), rows[0][found].tolist()):
            best[row] = (score, first.get(row, 0))
        if extras is not None and extras.most_per_product:
            extra_allowed = None if allowed is None else np.flatnonzero(np.isin(extras.rows, allowed))
            extra_depth = depth * extras.most_per_product
            extra_scores, extra_ids = self._extra_view(view).search(query, extra_depth, extra_allowed)
            for score, extra in zip(extra_scores[0], extra_ids[0]):
                if extra < 0:
                    continue
                row, position = int(extras.rows[extra]), int(extras.positions[extra])
                if row not in best or score > best[row][0]:   # a tie keeps the product vector's image
                    best[row] = (float(score), position)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:depth]
        return [(score, row) for row, (score, _) in ranked], {row: position for row, (_, position) in ranked}

    def embed_query(self, text: str | None = None, image: Image.Image | str | Path | None = None):
        text = text.strip() if isinstance(text, str) else None
        if not text and image is None:
            raise MoonsearchError("give a query text, a query image, or both")
        if image is None:   # text only: the vector depends on the text and the encoder alone
            return self.query_cache.vector(text, lambda t: query_encoding(self.encoder)([t], [None]))
        picture = load_query_image(image)
        return query_encoding(self.encoder)([text or None], [picture])

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
        vectors, with a note saying so. An image-only query on the mm or image view of an index
        with identity vectors ranks by the photo identity channel (PHOTO) unless hybrid is asked."""
        keywords = text.strip() if isinstance(text, str) else ""
        if hybrid and not keywords:
            raise MoonsearchError("hybrid search needs a query text: its keywords are what BM25 matches")
        if hybrid:
            return Ranking(HYBRID)
        if self.photo_query(keywords, image, view):
            return Ranking(PHOTO)
        if hybrid is not None:
            return Ranking(VECTORS)
        if not keywords or image is not None or view != "mm":
            return Ranking(VECTORS)
        if not self.has_keyword_index():
            return Ranking(VECTORS, "this index has no keyword index (built by an older moonsearch): ranked by "
                                    "vectors only; rebuild it with `moonsearch index` for hybrid ranking")
        return Ranking(HYBRID)

    def photo_query(self, text: str | None, image, view: str = "mm") -> bool:
        """Whether a query is ranked by the photo identity channel: an image-only query on the
        mm or image view of an index that holds identity vectors."""
        keywords = text.strip() if isinstance(text, str) else ""
        return bool(self.manifest.identity) and image is not None and not keywords and view in EXTRA_VIEWS

    def _photo_pairs(self, image, k: int, filters) -> tuple[list[tuple[float, int]], dict[int, int], dict[int, float]]:
        """(score, row) best first, the matched image of each row and its identity cosine, for an image-only
        query (moonsearch.encoder.photo_identity): each product by its best image's identity vector, the
        top PHOTO_DEPTH re-ordered by the fused score."""
        from moonsearch.encoder.photo_identity import for_manifest
        from moonsearch.encoder import photo_identity as photo

        picture = load_query_image(image)
        model = for_manifest(self.manifest.identity, threads.query_batch_threads(), spin=True)   # the views: one batch
        allowed = self.allowed_rows(filters, "image")   # text-only products have no photo to match
        depth = max(k, photo.PHOTO_DEPTH)
        best: dict[int, tuple[float, int]] = {}
        queries = model.embed_query_views([picture])[:, 0]   # (views, d)
        penalties = photo.view_penalties()
        plain = np.flatnonzero(penalties == 0)   # these search the index; the shrunk views re-score their top
        if filters:
            all_scores, all_rows = self._view(IDENTITY_VIEW).search(queries[plain], depth, allowed)
        else:   # a plain scan costs less than a selector of every row with a photo: drop the others after
            vectors = self._view(IDENTITY_VIEW)
            all_scores, all_rows = vectors.search(queries[plain], depth + max(0, vectors.size - len(allowed)), None)
            all_rows = np.where(np.isin(all_rows, allowed), all_rows, -1)
        for v in range(len(plain)):   # each product scores its best view of the query
            found, positions = self._best_per_product(IDENTITY_VIEW, queries[plain[v]:plain[v] + 1], depth,
                                                      allowed if filters else None, all_scores[v:v + 1],
                                                      all_rows[v:v + 1])
            for score, row in found:
                if row not in best or score > best[row][0]:
                    best[row] = (score, positions[row])
        shrunk = np.flatnonzero(penalties != 0)
        if len(shrunk) and best:
            self._rescore_photo(best, sorted(best, key=lambda row: -best[row][0])[:depth], queries[shrunk],
                                penalties[shrunk])
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:depth]
        pairs = [(score, row) for row, (score, _) in ranked]
        matched = {row: position for row, (_, position) in ranked}
        cosines = {row: score for score, row in pairs}
        if photo.MM_WEIGHT and pairs:
            mm_query = query_encoding(self.encoder)([None], [picture])
            candidates = [row for _, row in pairs]
            mm = self.stored_vectors(candidates, "mm").astype(np.float32) @ mm_query[0].astype(np.float32)
            fused = photo.fused(np.array([s for s, _ in pairs]), mm)
            order = np.argsort(-fused, kind="stable")
            pairs = [(float(fused[i]), candidates[i]) for i in order]
        return pairs[:k], matched, cosines

    def _rescore_photo(self, best: dict[int, tuple[float, int]], rows: list[int], queries: np.ndarray,
                       penalties: np.ndarray) -> None:
        """Raise `best` (row -> (score, image position)) where one of `queries` (less its penalty)
        matches an image of one of `rows` better: the shrunk views of a photo query, which only
        re-order the plain views' top products (photo_identity.rank_matrix does the same)."""
        extras = self._extras
        first = extras.first if extras is not None else {}
        images = [(row, first.get(row, 0)) for row in rows]
        vectors = [self.stored_vectors(rows, IDENTITY_VIEW)]
        if extras is not None and extras.most_per_product:
            ids = np.flatnonzero(np.isin(extras.rows, rows))
            images += [(int(extras.rows[i]), int(extras.positions[i])) for i in ids]
            vectors.append(self._extra_view(IDENTITY_VIEW).vectors(ids))
        scores = queries @ np.concatenate(vectors).astype(np.float32).T - penalties[:, None]
        for (row, position), score in zip(images, scores.max(axis=0)):
            if float(score) > best[row][0]:
                best[row] = (float(score), position)

    def understand(self, text: str | None, parse: bool = True) -> ParsedQuery | None:
        """How `search` reads a query text (moonsearch.store.query_language): rewritten spellings,
        a price phrase as a filter, a gender phrase as a boost; `parse=False` reads it verbatim."""
        if not (isinstance(text, str) and text.strip()):
            return None
        if not parse:
            return verbatim(text)
        fields = {key for key, _ in self.store.attribute_keys()}
        if self._attribute_words is None:
            counts = getattr(self.store, "value_counts", None)   # a backend without it: no value boosts
            present = [f for f in ATTRIBUTE_FIELDS if f in fields]
            self._attribute_words = AttributeWords.from_values(counts(present) if counts and present else {})
        return understand(text, fields, attribute_words=self._attribute_words)

    def search(self, text: str | None = None, image: Image.Image | str | Path | None = None, k: int = 10,
               filters: Sequence[Filter | str] = (), view: str = "mm", hybrid: bool | None = None,
               parse: bool = True, min_score: float | None = None) -> SearchResults:
        """Top-k products for the query; `view` picks the multimodal, image or text vectors.
        Hybrid ranking (see `ranking`; `hybrid` None chooses) fuses the vectors' ranking with
        BM25 keyword matches of the query text; a hit's score is then its reciprocal-rank-fusion
        score, not a cosine similarity. A query with an image, on the mm or image view, scores each
        product by its best image (products with several have extra vectors) and names that image
        in `Hit.matched_image` / `matched_image_index`.
        The query text is read as a shopper writes it (`understand`; `parse=False` turns that
        off): the returned list's `applied` and `notes` say what was done with it.
        Every hit carries `similarity`, the cosine of the query vector and the product's vector in
        this view (the vector half's score; for an image query, its best image's), whatever the
        ranking, because a fusion score says nothing about relevance on its own. `min_score` drops
        the top-k hits whose similarity is below it, keeping the others in their order: one
        encoding of the query serves both the ranking and the cut."""
        if k < 1:
            raise MoonsearchError("k must be at least 1")
        if min_score is not None:
            min_score = check_min_score(min_score)
        ranking = self.ranking(text, image, view, hybrid)
        if ranking.kind == PHOTO:
            pairs, matched, cosines = self._photo_pairs(image, k, filters)
            return self._results(self._hits(pairs, PHOTO, matched, cosines), None, [], [], min_score)
        parsed = self.understand(text, parse)
        index = self._view(view)
        applied, notes = (list(parsed.applied) if parsed else []), []
        boosts = parsed.boosts if parsed and ranking.hybrid else ()
        if parsed and parsed.boosts and not ranking.hybrid:
            applied = [line for line in applied if not line.startswith("boost ")]
            notes.append("boosts apply to hybrid ranking only: not applied under vectors ranking")
        allowed = self.allowed_rows([*filters, *(parsed.filters if parsed else ())], view)
        embedded = parsed.text or (parsed.original if image is None else None) if parsed else None
        query = self.embed_query(embedded, image)
        depth = max(k, HYBRID_DEPTH) if ranking.hybrid else k
        scores, rows = index.search(query, depth, allowed)
        matched: dict[int, int] = {}   # product row -> position of the image that matched
        if image is not None and view in EXTRA_VIEWS:
            pairs, matched = self._best_per_product(view, query, depth, allowed, scores, rows)
        else:
            pairs = [(float(s), int(r)) for s, r in zip(scores[0], rows[0]) if r >= 0]
        cosines = {row: score for score, row in pairs}   # the vector half's scores are cosines
        if ranking.hybrid:
            keywords = parsed.keywords
            matches = self.store.keyword_rows(keywords, depth, allowed) if keywords else []
            if not keywords:
                notes.append("no words left to match by keyword: ranked by vectors alone")
            elif not matches and (allowed is None or len(allowed)):
                notes.append(f"no product's text has any of the words '{keywords}': ranked by vectors alone")
            candidates = np.array(sorted({r for _, r in pairs} | {r for r, _ in matches}), np.int64)
            boosted = [members(candidates, self.store.allowed_rows([b])) for b in boosts]
            merged = fuse([[r for _, r in pairs], [r for r, _ in matches]], boosted)
            pairs = [(score, row) for row, score in merged[:k]]
            missing = [row for _, row in pairs if row not in cosines]   # found by keywords alone
            if missing:
                vectors = self.stored_vectors(missing, view).astype(np.float32)
                cosines.update(zip(missing, (float(c) for c in vectors @ query[0].astype(np.float32))))
        return self._results(self._hits(pairs, ranking.kind, matched, cosines), parsed, applied, notes, min_score)

    @staticmethod
    def _results(hits: list[Hit], parsed, applied: list, notes: list, min_score: float | None) -> SearchResults:
        if min_score is not None:
            kept = [h for h in hits if h.similarity >= min_score]
            if hits and not kept:
                notes.append(f"min_score {min_score:g} left out all {len(hits)} hits: the best cosine similarity "
                             f"to the query is {max(h.similarity for h in hits):.3f}")
            hits = [replace(h, rank=i) for i, h in enumerate(kept, 1)]
        return SearchResults(hits, parsed, applied, notes)

    def _hits(self, pairs: list[tuple[float, int]], kind: str, matched: dict[int, int] | None = None,
              cosines: dict[int, float] | None = None) -> list[Hit]:
        """Hits for (score, key) pairs, best first; `matched`: key -> position of the image that
        matched; `cosines`: key -> similarity (default: the score, which is the cosine when
        ranking by vectors)."""
        records = self.store.products([r for _, r in pairs])
        hits = []
        for i, ((score, row), rec) in enumerate(zip(pairs, records)):
            position = (matched or {}).get(row)
            if not rec["has_image"] or (position is not None and position >= len(rec["images"] or ())):
                position = None   # a text-only product (its images did not load) matched by its text
            hits.append(Hit(rank=i + 1, score=score, id=rec["id"], title=rec["title"],
                            image=rec["images"][0] if rec["images"] else None, attributes=rec["attributes"],
                            row=row, ranking=kind,
                            matched_image=None if position is None else rec["images"][position],
                            matched_image_index=position,
                            similarity=score if cosines is None else cosines[row]))
        return hits

    def stored_vectors(self, keys: Sequence[int], view: str = "mm") -> np.ndarray:
        """The vectors the index holds for these product keys (`Hit.row`), in that order: a hit's
        cosine to a query under hybrid ranking, or a product as a query itself."""
        return self._view(view).vectors(np.asarray(keys, np.int64))

    def similar(self, key: int, k: int = 10, filters: Sequence[Filter | str] = (), view: str = "mm") -> list[Hit]:
        """"More like this": the products nearest to product `key`'s stored vector, itself left
        out; scores are cosines."""
        if k < 1:
            raise MoonsearchError("k must be at least 1")
        allowed = self.allowed_rows(filters, view)
        scores, rows = self._view(view).search(self.stored_vectors([key], view).astype(np.float32), k + 1, allowed)
        pairs = [(float(s), int(r)) for s, r in zip(scores[0], rows[0]) if r >= 0 and int(r) != key][:k]
        return self._hits(pairs, VECTORS)

    def info(self) -> dict:
        skipped = self.data / SKIPS_FILE
        return {
            "path": str(self.folder), "manifest": self.manifest.__dict__,
            "filterable_fields": self.store.attribute_keys(),
            "keyword_index": self.has_keyword_index(),   # False: built before hybrid ranking existed
            "skip_report": str(skipped) if skipped.exists() else None,
        }

    def verify(self) -> dict:
        """The full integrity check (`moonsearch info --check`): every file against the size and
        SHA-256 the manifest recorded, then every vector file read whole and every record read,
        which also finds damage in an index built before checksums were recorded. Raises
        IndexDamagedError (or IndexFormatError) naming the first bad file."""
        verified = check_contents(self.data, self.manifest.files)
        vectors = {view: self._view(view).size for view in self.manifest.vector_views()}
        if self._extras is not None and self._extras.used:
            for view in self.manifest.extra_views():
                vectors[f"{view} (further images)"] = self._extra_view(view).size
        records = self.store.count()
        self.store.products(self.store.allowed_rows([]).tolist())
        expected = self.manifest.counts.get("products")
        if records != expected or any(size != records for view, size in vectors.items()
                                      if view in self.manifest.vector_views()):
            raise damaged(self.data, f"holds stores that disagree on the product count (manifest {expected}, "
                                     f"records {records}, vectors {vectors})")
        return {"files_verified": verified, "checksums": self.manifest.files is not None,
                "records": records, "vectors": vectors}

    # -- writes (moonsearch.index.live): each commits one snapshot, then this index reads it --

    def writer(self, lock_wait_s: float = 0.0):
        """An IndexWriter on this index, with its encoder (use it in a `with` block); it holds
        the write lock until closed (another writer's lock is waited for up to `lock_wait_s`).
        Call `refresh` to read what it wrote."""
        from moonsearch.index.live import open_writer

        return open_writer(self.folder, encoder=self.encoder, device=self.device, lock_wait_s=lock_wait_s)

    def upsert(self, products, root: Path | str = "."):
        """Insert or replace products (catalog Products, or records as a catalog holds them,
        image paths relative to `root`); returns the WriteSummary."""
        with self.writer() as writer:
            summary = writer.upsert(products, root=root)
        self.refresh()
        return summary

    def delete(self, ids: Sequence[str] = (), filters: Sequence[Filter | str] = ()):
        """Remove products by id and/or filter; returns the WriteSummary."""
        with self.writer() as writer:
            summary = writer.delete(ids, filters)
        self.refresh()
        return summary

    def refresh(self) -> None:
        """Serve the index's current state (what the manifest names now)."""
        fresh = ProductIndex.open(self.folder, device=self.device, encoder=self._encoder)
        self.store.close()
        self.__dict__.update(fresh.__dict__)

    def close(self) -> None:
        self.store.close()
