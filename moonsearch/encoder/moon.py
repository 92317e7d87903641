"""moon-lite: the MOON2.0 encoder on offline towers.

Token features of the frozen towers (MiniLM token states for text, the EfficientNet-Lite0
feature grid for images) are typed and concatenated into one sequence, fused by a small
transformer whose FFNs are modality-driven MoE layers, and mean-pooled over all tokens into one
L2-normalised vector. The same model embeds text-only, image-only and image+text inputs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from moonsearch.encoder import query_heads
from moonsearch.encoder.base import Encoder, ProductViews, l2_normalize, read_weights
from moonsearch.encoder.moe import MoEFeedForward, ObjectiveWeights
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, Towers

# Token types: what each segment of the sequence is.
TEXT, ENRICHED, IMAGE, IMAGE_EXPANDED = 0, 1, 2, 3
IMAGE_TOKENS = 12                      # the 4 x 3 grid of a 128 x 96 input
OBJECTIVES = ("t2mm", "i2mm", "mm2mm", "intra")


@dataclass
class Segment:
    """One typed run of tokens for a batch: (B, T, in_dim) features and their (B, T) mask."""

    tokens: torch.Tensor
    mask: torch.Tensor
    kind: int

    def to(self, device) -> "Segment":
        return Segment(self.tokens.to(device, non_blocking=True), self.mask.to(device, non_blocking=True), self.kind)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: nn.Module, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ffn = ffn
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keep_attention: bool = False) -> torch.Tensor:
        h = self.norm1(x)
        out, weights = self.attention(h, h, h, key_padding_mask=~mask, need_weights=keep_attention,
                                      average_attn_weights=True)
        self.last_attention = weights
        x = x + out
        return x + self.ffn(self.norm2(x), mask)


class MoonLite(nn.Module):
    def __init__(self, dim: int = 256, layers: int = 2, heads: int = 4, experts: int = 4, top_k: int = 2,
                 ffn_hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.dim = dim
        self.text_in = nn.Sequential(nn.Linear(TEXT_FEATURE_DIM, dim), nn.LayerNorm(dim))
        self.image_in = nn.Sequential(nn.Linear(IMAGE_FEATURE_DIM, dim), nn.LayerNorm(dim))
        self.kind = nn.Embedding(4, dim)
        self.image_position = nn.Parameter(torch.zeros(IMAGE_TOKENS, dim))
        self.blocks = nn.ModuleList(
            Block(dim, heads, MoEFeedForward(dim, ffn_hidden, experts, top_k, dropout), dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)
        self.objectives = ObjectiveWeights(experts, len(OBJECTIVES))

    def embed_segment(self, segment: Segment) -> torch.Tensor:
        if segment.kind in (IMAGE, IMAGE_EXPANDED):
            x = self.image_in(segment.tokens) + self.image_position[: segment.tokens.shape[1]]
        else:
            x = self.text_in(segment.tokens)
        return x + self.kind.weight[segment.kind]

    def token_states(self, segments: Sequence[Segment], keep_attention: bool = False):
        """-> (B, T, dim) final-norm token states, (B, T) mask, per-layer router gates.

        The embedding is the normalised masked mean of these states; `moonsearch explain` splits
        a score over them, so forward() and the explainer share this one code path."""
        x = torch.cat([self.embed_segment(s) for s in segments], dim=1)
        mask = torch.cat([s.mask for s in segments], dim=1)
        empty = ~mask.any(1)
        if empty.any():  # a sample with no token at all attends to one dummy slot
            mask = mask.clone()
            mask[empty, 0] = True
        gates = []
        for block in self.blocks:
            x = block(x, mask, keep_attention)
            gates.append(block.ffn.last_gates)
        return self.norm(x), mask, gates

    def forward(self, segments: Sequence[Segment], keep_attention: bool = False):
        """-> (B, dim) normalised embeddings, (B, Z) token-averaged router gates."""
        x, mask, gates = self.token_states(segments, keep_attention)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        sample_gates = (torch.stack(gates).mean(0) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return nn.functional.normalize(pooled, dim=-1), sample_gates

    def aux_loss(self) -> torch.Tensor:
        return torch.stack([b.ffn.last_aux for b in self.blocks]).mean()


def pad_tokens(arrays: Sequence[np.ndarray | None], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged (T_i, width) arrays (None = absent) -> padded (B, T, width) tensor and mask."""
    longest = max([len(a) for a in arrays if a is not None] + [1])
    out = np.zeros((len(arrays), longest, width), np.float32)
    mask = np.zeros((len(arrays), longest), bool)
    for i, a in enumerate(arrays):
        if a is not None and len(a):
            out[i, : len(a)] = a
            mask[i, : len(a)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


class TowerTokenMemo:
    """Frozen-tower tokens by input. Several moon-lite models scored on one benchmark (the
    ablation) share one memo, so the towers -- the expensive part -- run once per input."""

    def __init__(self) -> None:
        self.text: dict = {}
        self.image: dict = {}

    @staticmethod
    def image_key(image) -> bytes:
        digest = hashlib.blake2b(image.tobytes(), digest_size=16)
        digest.update(f"{image.mode}{image.size}".encode())
        return digest.digest()

    @staticmethod
    def lookup(store: dict, items: list, key, compute) -> list[np.ndarray]:
        keys = [key(item) for item in items]
        missing = {k: item for k, item in zip(keys, items) if k not in store}
        if missing:
            store.update(zip(missing, compute(list(missing.values()))))
        return [store[k] for k in keys]


class MoonEncoder(Encoder):
    """Inference: raw texts and PIL images -> tower tokens -> MoonLite -> vectors."""

    name = "moon-lite"

    def __init__(self, model: MoonLite, config: dict, weights_path: Path | None = None, device: str = "cpu"):
        self.model = model.eval().to(device)
        self.config = config
        self.dim = model.dim
        self.weights_path = weights_path
        self.device = device
        self.towers = Towers(device=device)

    @classmethod
    def load(cls, weights_path: Path, device: str = "cpu") -> "MoonEncoder":
        config, tensors = read_weights(weights_path)
        model = MoonLite(**config["model"])
        model.load_state_dict(tensors)
        encoder = cls(model, config["model"], weights_path=Path(weights_path), device=device)
        encoder.name = Path(weights_path).stem   # ablations ship as moon-lite-<variant>
        encoder.query_heads = query_heads.heads_for(weights_path, lambda: encoder.encoder_id)
        encoder.head_models = {}
        for kind, head in encoder.query_heads.items():
            head_config, head_tensors = read_weights(head)
            model = MoonLite(**head_config["model"])
            model.load_state_dict(head_tensors)
            encoder.head_models[kind] = model.eval().to(device)
        return encoder

    head_models: dict = {}     # kind -> the query head's MoonLite (moonsearch.encoder.query_heads)

    memo: "TowerTokenMemo | None" = None

    def text_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        if self.memo is not None:
            return self.memo.lookup(self.memo.text, list(texts), lambda t: t, self._text_tokens)
        return self._text_tokens(list(texts))

    def image_tokens(self, images: Sequence) -> list[np.ndarray]:
        if self.memo is not None:
            return self.memo.lookup(self.memo.image, list(images), TowerTokenMemo.image_key, self._image_tokens)
        return self._image_tokens(list(images))

    def _text_tokens(self, texts: list[str]) -> list[np.ndarray]:
        states, mask = self.towers.text.token_states(texts)
        states = states.float().cpu().numpy()
        return [states[i][mask[i].bool().cpu().numpy()] for i in range(len(texts))]

    def _image_tokens(self, images: list) -> list[np.ndarray]:
        return list(self.towers.image_tokens(images))

    def segments(self, texts, images) -> list[Segment]:
        n = len(texts)
        text_rows = [i for i in range(n) if texts[i] is not None]
        image_rows = [i for i in range(n) if images[i] is not None]
        text_arrays: list = [None] * n
        image_arrays: list = [None] * n
        for i, tokens in zip(text_rows, self.text_tokens([texts[i] for i in text_rows]) if text_rows else []):
            text_arrays[i] = tokens
        for i, tokens in zip(image_rows, self.image_tokens([images[i] for i in image_rows]) if image_rows else []):
            image_arrays[i] = tokens
        segments = []
        if text_rows:
            segments.append(Segment(*pad_tokens(text_arrays, TEXT_FEATURE_DIM), TEXT))
        if image_rows:
            segments.append(Segment(*pad_tokens(image_arrays, IMAGE_FEATURE_DIM), IMAGE))
        return [s.to(self.device) for s in segments]

    @torch.inference_mode()
    def encode(self, texts, images) -> np.ndarray:
        if len(texts) != len(images):
            raise ValueError("texts and images must be parallel lists")
        if not len(texts):
            return np.zeros((0, self.dim), np.float32)
        embeddings, _ = self.model(self.segments(texts, images))
        return l2_normalize(embeddings.float().cpu().numpy())

    @torch.inference_mode()
    def encode_head(self, kind: str, texts, images) -> np.ndarray:
        embeddings, _ = self.head_models[kind](self.segments(list(texts), list(images)))
        return l2_normalize(embeddings.float().cpu().numpy())

    @torch.inference_mode()
    def encode_views(self, texts, images) -> ProductViews:
        """Tower tokens once, then the fusion model three times (it is the cheap part)."""
        segments = self.segments(texts, images)
        text_segment = next(s for s in segments if s.kind == TEXT)
        mm, _ = self.model(segments)
        text, _ = self.model([text_segment])
        image = np.zeros((len(texts), self.dim), np.float32)
        image_segment = next((s for s in segments if s.kind == IMAGE), None)
        if image_segment is not None:
            rows = image_segment.mask.any(1)
            only, _ = self.model([Segment(image_segment.tokens[rows], image_segment.mask[rows], IMAGE)])
            image[rows.cpu().numpy()] = only.float().cpu().numpy()
        return ProductViews(mm=l2_normalize(mm.float().cpu().numpy()), image=image,
                            text=l2_normalize(text.float().cpu().numpy()))

    @torch.inference_mode()
    def product_tokens(self, text: str | None, image=None):
        """One product's final token states, labelled, for `moonsearch explain`.

        The same segments and model pass as `encode` (their normalised mean is the product's
        vector), with each state tagged: MiniLM word pieces ([CLS]/[SEP] as "special") and the
        EfficientNet-Lite0 feature grid of the letterboxed image, row-major as in image_tokens."""
        from moonsearch.encoder.tokens import TokenBreakdown
        from moonsearch.encoder.towers import IMAGE_SIZE

        if text is None and image is None:
            raise ValueError("a product needs a text, an image, or both")
        segments = self.segments([text], [image])
        states, mask, _ = self.model.token_states(segments)
        states = states[0][mask[0]].float().cpu().numpy()
        kinds: list[str] = []
        pieces: list[str] = []
        specials: list[str] = []
        grid = None
        for segment in segments:
            count = int(segment.mask[0].sum())
            if segment.kind == TEXT:
                tokenizer = self.towers.text.tokenizer
                ids = self.towers.text.tokenize([text])["input_ids"][0].tolist()
                if len(ids) != count:
                    raise RuntimeError(f"tokenizer gave {len(ids)} pieces for {count} text states")
                special_ids = set(tokenizer.all_special_ids)
                for token_id, piece in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
                    if token_id in special_ids:
                        kinds.append("special")
                        specials.append(piece)
                    else:
                        kinds.append("text")
                        pieces.append(piece)
            else:
                width, height = IMAGE_SIZE
                grid = (-(-height // 32), -(-width // 32))   # EfficientNet-Lite0 has stride 32
                if grid[0] * grid[1] != count:
                    raise RuntimeError(f"expected a {grid} image grid, got {count} image tokens")
                kinds += ["image"] * count
        return TokenBreakdown(states=states, kinds=kinds, text_pieces=pieces, image_grid=grid,
                              special_pieces=specials, image_letterbox=IMAGE_SIZE if grid else None)

    @torch.inference_mode()
    def score_with_masks(self, query, text: str | None, image, masks, batch_size: int = 128) -> np.ndarray:
        """Scores of a unit query vector against one product with some of its tokens left out,
        for `moonsearch explain --method occlusion`.

        `masks` is (M, T) bool over the product's tokens in product_tokens() order (the text
        segment's tokens, [CLS]/[SEP] included, then the image grid); False leaves a token out of
        attention and of the mean, as padding is. The tower tokens are computed once; only the
        fusion model runs again, `batch_size` masks per forward call. Returns (M,) float64:
        q . normalise(masked mean of the fused states)."""
        if text is None and image is None:
            raise ValueError("a product needs a text, an image, or both")
        segments = self.segments([text], [image])
        counts = [int(s.mask[0].sum()) for s in segments]
        masks = torch.as_tensor(np.asarray(masks, bool))
        if masks.ndim != 2 or masks.shape[1] != sum(counts):
            raise ValueError(f"masks must be (M, {sum(counts)}) for this product's tokens, got {tuple(masks.shape)}")
        q = torch.as_tensor(np.asarray(query, np.float32).reshape(-1), device=self.device)
        scores = []
        for start in range(0, len(masks), batch_size):
            chunk = masks[start:start + batch_size].to(self.device)
            batch, offset = [], 0
            for segment, count in zip(segments, counts):
                tokens = segment.tokens[:, :count].expand(len(chunk), -1, -1)
                batch.append(Segment(tokens, chunk[:, offset:offset + count], segment.kind))
                offset += count
            embeddings, _ = self.model(batch)
            scores.append((embeddings.float() @ q).double().cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0)
