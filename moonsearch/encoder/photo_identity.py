"""The photo identity channel (issue 16): which catalog photo is this shopper's photo of?

An index built with it holds, beside its product vectors, one identity vector per product image
(`vectors-identity.faiss`, further images in `vectors-identity-extra.faiss`), made by the photo
identity network (moonsearch.encoder.identity_net: EfficientNet-Lite0 fine-tuned for instance
retrieval on photo-like views of catalog photos). An image-only query is embedded by the same
network and ranks products by their best image's identity similarity, which survives mirroring,
crops, tilts, recompression and canvases far better than the product (mm) vectors do. Text and
text + image queries never use it. The index's manifest names the identity model that built it
(`identity.id`); an index without one answers image queries through the encoder as before.

This module runs the network on ONNX Runtime (no torch on the query path); the graph is exported
from the shipped weights once, with torch, and cached like the encoders' graphs. With
MOONSEARCH_ONNX=0 (or no onnxruntime) it runs on torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from moonsearch.errors import MoonsearchError

NAME = "photo-identity"
EXPORT_VERSION = 1
CHUNK = 128
WEIGHTS = Path(__file__).parent / "weights" / f"{NAME}.safetensors"


def shipped() -> Path | None:
    """The shipped identity weights, if this install has them (with their config)."""
    return WEIGHTS if WEIGHTS.is_file() and WEIGHTS.with_suffix(".json").is_file() else None


def identity_id(weights: Path) -> str:
    from moonsearch.encoder.onnx_moon import weights_digest

    return f"{Path(weights).stem}@{weights_digest(Path(weights))[:16]}"


class PhotoIdentity:
    """embed(images) -> (N, dim) unit identity vectors of product or query photos."""

    def __init__(self, weights: Path, threads: int | None = None, spin: bool = False):
        from moonsearch.jsonfiles import read_json

        self.weights = Path(weights)
        config = read_json(self.weights.with_suffix(".json"), "photo identity config").get("model", {})
        self.dim = int(config.get("dim", 256))
        self.size = tuple(int(v) for v in config.get("size", (96, 128)))
        self.threads, self.spin = threads, spin   # spin: threads.onnx_session_options
        self.id = identity_id(self.weights)
        self._session = None
        self._torch = None

    @classmethod
    def load(cls, weights: Path | None = None, threads: int | None = None, spin: bool = False) -> "PhotoIdentity":
        weights = Path(weights) if weights is not None else shipped()
        if weights is None or not Path(weights).is_file():
            raise MoonsearchError(f"no photo identity weights at {weights or WEIGHTS}")
        return cls(weights, threads, spin)

    def spec(self) -> dict:
        """What an index manifest records about the identity model that built it."""
        return {"name": self.weights.stem, "id": self.id, "dim": self.dim,
                "weights": None if self.weights.resolve() == WEIGHTS.resolve() else str(self.weights.resolve())}

    def graph_path(self) -> Path:
        from moonsearch.cache import cache_root

        return cache_root() / "onnx" / f"{self.id.replace('@', '-')}-{self.size[0]}x{self.size[1]}-v{EXPORT_VERSION}.onnx"

    def _onnx(self):
        if self._session is None:
            import onnxruntime as ort

            from moonsearch import threads as policy
            from moonsearch.encoder.onnx_moon import one_line

            path = self.graph_path()
            for attempt in (0, 1):
                if not path.is_file():
                    self._export(path)
                try:
                    self._session = ort.InferenceSession(str(path), policy.onnx_session_options(self.threads, self.spin),
                                                         providers=["CPUExecutionProvider"])
                    break
                except Exception as exc:  # a damaged cached graph: export it again once
                    path.unlink(missing_ok=True)
                    if attempt:
                        raise MoonsearchError(f"the photo identity graph {path} does not load ({one_line(exc)}); "
                                              "set MOONSEARCH_ONNX=0 to run on torch") from None
        return self._session

    def _export(self, path: Path) -> None:
        try:
            from moonsearch.encoder.identity_net import export_onnx, load_identity_net
        except ImportError as exc:
            raise MoonsearchError(f"the photo identity graph is not cached at {path} and exporting it needs torch "
                                  f"({exc})") from None
        export_onnx(load_identity_net(self.weights), path, self.size, "identity")

    def _use_onnx(self) -> bool:
        from moonsearch.encoder import onnx_image

        return onnx_image.available()

    def embed(self, images: Sequence, whiten: bool = True) -> np.ndarray:
        """Unit vectors of RGB images (preprocessed as the towers' input: plain frames trimmed,
        letterboxed on white); None rows get zeros. `whiten=False` for query_views' views, which
        were whitened already (the same vectors, sooner)."""
        from moonsearch.encoder.pixels import images_to_batch

        if whiten:   # catalog photos and query views alike, so a photo still matches itself
            images = whitened(images)
        out = np.zeros((len(images), self.dim), np.float32)
        rows = [i for i, im in enumerate(images) if im is not None]
        for start in range(0, len(rows), CHUNK):
            part = rows[start:start + CHUNK]
            pixels = images_to_batch([images[i] for i in part], self.size)
            if self._use_onnx():
                out[part] = self._onnx().run(None, {"pixels": pixels})[0]
            else:
                out[part] = self._torch_embed(pixels)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return np.where(norms > 0, out / np.maximum(norms, 1e-12), 0.0).astype(np.float32)

    def embed_query_views(self, images: Sequence) -> np.ndarray:
        """(V, Q, d): each query photo's views (query_views), all through the network as one batch,
        so a query pays one run however many views it has."""
        views = query_views(list(images))
        flat = self.embed([im for view in views for im in view], whiten=False)
        return flat.reshape(len(views), len(images), self.dim)

    def _torch_embed(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        from moonsearch.encoder.identity_net import load_identity_net

        if self._torch is None:
            self._torch = load_identity_net(self.weights)
        with torch.inference_mode():
            return self._torch(torch.from_numpy(pixels)).float().numpy()


class WithIdentity:
    """An encoder whose `encode_views` also gives each product image's identity vector: what the
    builder and the live writer embed products with when the index has the identity channel.
    Everything else is the encoder's own."""

    def __init__(self, encoder, identity: PhotoIdentity):
        self.inner, self.identity_model = encoder, identity

    def encode_views(self, texts, images):
        from dataclasses import replace

        return replace(self.inner.encode_views(texts, images), identity=self.identity_model.embed(list(images)))

    def __getattr__(self, name):
        return getattr(self.inner, name)


_LOADED: dict = {}


def for_manifest(spec: dict | None, threads: int | None = None, spin: bool = False) -> PhotoIdentity | None:
    """The identity model an index was built with (its manifest's `identity`), or None for an
    index without identity vectors. A model other than the one recorded is refused in one line:
    its vectors would not be comparable."""
    if not spec:
        return None
    weights = Path(spec["weights"]) if spec.get("weights") else WEIGHTS
    key = (str(weights), threads, spin)
    if key not in _LOADED:
        if not weights.is_file():
            raise MoonsearchError(f"this index was built with the photo identity model {spec.get('id')}, whose weights "
                                  f"are not at {weights}; rebuild the index with `moonsearch index`")
        _LOADED[key] = PhotoIdentity.load(weights, threads, spin)
    model = _LOADED[key]
    if model.id != spec.get("id"):
        raise MoonsearchError(f"this index was built with the photo identity model {spec.get('id')}, but {weights} is "
                              f"{model.id}; rebuild the index with `moonsearch index`")
    return model


def default_model() -> PhotoIdentity | None:
    """The identity model a build embeds with by default (None where it is off or not shipped):
    what the evaluation measures image queries with, as a fresh index answers them."""
    return PhotoIdentity.load() if enabled_by_default() else None


def enabled_by_default() -> bool:
    """Builds embed identity vectors when the weights ship, unless MOONSEARCH_IDENTITY=0."""
    return os.environ.get("MOONSEARCH_IDENTITY", "1") != "0" and shipped() is not None


# -- how an image-only query ranks products by the channel (the index and the evaluation) --------
#
# Each product scores its best image's identity similarity. The top PHOTO_DEPTH products are
# then ordered by identity similarity + MM_WEIGHT x the cosine of the encoder's query vector (its
# photo head) to the product vector, which can break a near tie between two photos by what the
# product is. Both were chosen on myntra-val (benchmarks/results/photo-identity-val.md). One
# implementation for `ProductIndex.search` and the evaluation, so the benchmark measures what a
# query gets.

PHOTO_DEPTH = 100     # identity candidates re-ordered by the fused score
MM_WEIGHT = 0.0       # weight of the product-vector cosine in the fused score
MIRROR_QUERY = True   # also match the query photo's mirror image (a product scores the better of the two)
# Also match the query photo shrunk onto a white margin this many times its size (its plain
# frame trimmed first). A shopper's photo is framed tighter than the catalog's; the catalog
# photo of the same product then shows it smaller, with white around it, as these views do.
ZOOM_OUT = (1.15, 1.3)
ZOOM_PENALTY = 0.02   # taken off a shrunk view's similarity: more views, more chances for a lookalike
WORKING_SIZE = (384, 512)   # 4x the network's input (96 x 128) each way
WHITE_POINT = True    # a photo whose white background came out grey is made white first (photos.restore_white)


def reduced(image):
    """The image, or a copy shrunk to fit WORKING_SIZE when it is bigger."""
    if image.width <= WORKING_SIZE[0] and image.height <= WORKING_SIZE[1]:
        return image
    small = image.copy()
    small.thumbnail(WORKING_SIZE)
    return small


def whitened(images: list) -> list:
    """The images with a dimmed white background made white again (photos.restore_white) when
    WHITE_POINT: every image the identity network embeds, catalog photos and query views alike."""
    if not WHITE_POINT:
        return list(images)
    from moonsearch.photos import restore_white_inside

    return [None if im is None else restore_white_inside(im) for im in images]


def query_views(images: list) -> list[list]:
    """The photos an image query is matched as: itself, shrunk onto white margins (ZOOM_OUT), and
    the mirror image of each when MIRROR_QUERY. A product scores its best view."""
    from PIL import ImageOps

    from moonsearch.photos import WHITE, on_canvas, trim_plain_frame

    # every view from a copy no bigger than WORKING_SIZE: a phone photo's 12 MP, trimmed, mirrored
    # and shrunk six times, would be slow and change nothing at the network's 96 x 128
    images = whitened([None if im is None else reduced(im) for im in images])   # before the trims below
    views = [images]
    if ZOOM_OUT:
        trimmed = [None if im is None else trim_plain_frame(im.convert("RGB")) for im in images]
        views += [[None if im is None else on_canvas(im, scale, WHITE) for im in trimmed] for scale in ZOOM_OUT]
    if MIRROR_QUERY:
        views += [[None if im is None else ImageOps.mirror(im) for im in view] for view in views]
    return views


def view_penalties() -> np.ndarray:
    """What each of query_views' views takes off its similarities, in the same order."""
    one = [0.0] + [ZOOM_PENALTY] * len(ZOOM_OUT)
    return np.array(one * (2 if MIRROR_QUERY else 1), np.float32)


def fused(identity_scores: np.ndarray, mm_scores: np.ndarray | None, weight: float = MM_WEIGHT) -> np.ndarray:
    """The score a photo query gives a candidate product."""
    scores = np.asarray(identity_scores, np.float32)
    if mm_scores is None or not weight:
        return scores
    return scores + np.float32(weight) * np.asarray(mm_scores, np.float32)


def rank_matrix(query_identity: np.ndarray, candidate_identity: np.ndarray, query_mm: np.ndarray | None = None,
                candidate_mm: np.ndarray | None = None, weight: float = MM_WEIGHT, depth: int = PHOTO_DEPTH,
                has_photo: np.ndarray | None = None, penalties: np.ndarray | None = None) -> np.ndarray:
    """(Q, depth) candidate rows best first, for whole matrices (the evaluation's way; the
    index gets the same top `depth` from FAISS). `query_identity` is (Q, d), or (V, Q, d) for
    several views of each query (query_views), each candidate scoring its best view less the
    view's penalty (`penalties`, one per view: view_penalties()). Views with a penalty (the
    shrunk ones) only re-score the top `depth` of the others, as the index does: their search
    would cost a FAISS scan each.
    Candidates without a photo (`has_photo` False) are not ranked, as the index leaves
    text-only products out of image queries."""
    views = np.asarray(query_identity, np.float32)
    views = views[None] if views.ndim == 2 else views
    candidates = np.asarray(candidate_identity, np.float32)
    penalties = np.zeros(len(views), np.float32) if penalties is None else np.asarray(penalties, np.float32)
    plain = penalties == 0   # these rank every candidate; the others re-score their top `depth`
    scores = np.max(np.stack([v @ candidates.T for v in views[plain]]), axis=0)
    if has_photo is not None:
        scores[:, ~np.asarray(has_photo, bool)] = -np.inf
    depth = min(depth, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
    identity_top = np.take_along_axis(scores, top, axis=1)
    for view, penalty in zip(views[~plain], penalties[~plain]):
        rescored = np.einsum("qd,qkd->qk", view, candidates[top]) - penalty
        identity_top = np.where(np.isfinite(identity_top), np.maximum(identity_top, rescored), identity_top)
    mm_top = None
    if weight and query_mm is not None and candidate_mm is not None:
        mm_top = np.einsum("qd,qkd->qk", np.asarray(query_mm, np.float32), np.asarray(candidate_mm, np.float32)[top])
    order = np.argsort(-fused(identity_top, mm_top, weight), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_at(ranked: np.ndarray, targets, ks=(1, 10)) -> dict:
    """R@k of ranked rows (Q, depth) against one target row per query."""
    targets = np.asarray(list(targets)).reshape(-1, 1)
    hits = ranked == targets
    return {f"R@{k}": round(float(hits[:, :k].any(axis=1).mean()), 4) if len(targets) else 0.0 for k in ks}
