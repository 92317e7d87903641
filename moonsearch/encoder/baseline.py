"""The contrastive baseline: frozen towers + projection heads trained CLIP/LiT-style.

It is the bar the MOON2.0 encoder has to clear. A product with both modalities is the
normalised sum of its image and text embeddings; with one modality, that one alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from moonsearch.encoder.base import Encoder, ProductViews, l2_normalize, read_weights
from moonsearch.encoder.towers import IMAGE_FEATURE_DIM, TEXT_FEATURE_DIM, Towers


def _head(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    if hidden <= 0:
        return nn.Linear(in_dim, out_dim)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class BaselineHeads(nn.Module):
    """Projection heads from the towers' pooled features into the shared space."""

    def __init__(self, dim: int, image_hidden: int = 0, text_hidden: int = 0, temperature: float = 0.07):
        super().__init__()
        self.image_head = _head(IMAGE_FEATURE_DIM, image_hidden, dim)
        self.text_head = _head(TEXT_FEATURE_DIM, text_hidden, dim)
        self.log_inv_temperature = nn.Parameter(torch.tensor(float(np.log(1.0 / temperature))))

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.image_head(features), dim=-1)

    def embed_texts(self, features: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.text_head(features), dim=-1)

    @staticmethod
    def fuse(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(image_embeddings + text_embeddings, dim=-1)


class BaselineEncoder(Encoder):
    """Inference wrapper: raw texts and PIL images in, normalised vectors out."""

    name = "baseline"

    def __init__(self, heads: BaselineHeads, config: dict, weights_path: Path | None = None, device: str = "cpu"):
        self.heads = heads.eval().to(device)
        self.config = config
        self.dim = int(config["dim"])
        self.weights_path = weights_path
        self.device = device
        self.towers = Towers(device=device)

    @classmethod
    def load(cls, weights_path: Path, device: str = "cpu") -> "BaselineEncoder":
        config, tensors = read_weights(weights_path)
        model = config["model"]
        heads = BaselineHeads(model["dim"], model["image_hidden"], model["text_hidden"])
        heads.load_state_dict(tensors)
        return cls(heads, model, weights_path=Path(weights_path), device=device)

    @torch.inference_mode()
    def _embed(self, texts: Sequence[str | None], images: Sequence[Image.Image | None]):
        n = len(texts)
        text_rows = [i for i in range(n) if texts[i] is not None]
        image_rows = [i for i in range(n) if images[i] is not None]
        text_emb = torch.zeros((n, self.dim))
        image_emb = torch.zeros((n, self.dim))
        if text_rows:
            feats = torch.from_numpy(self.towers.text_features([texts[i] for i in text_rows]))
            text_emb[text_rows] = self.heads.embed_texts(feats.to(self.device)).cpu()
        if image_rows:
            feats = torch.from_numpy(self.towers.image_features([images[i] for i in image_rows]))
            image_emb[image_rows] = self.heads.embed_images(feats.to(self.device)).cpu()
        return text_emb, image_emb

    def encode(self, texts, images) -> np.ndarray:
        if len(texts) != len(images):
            raise ValueError("texts and images must be parallel lists")
        text_emb, image_emb = self._embed(texts, images)
        return l2_normalize((text_emb + image_emb).numpy())

    def encode_views(self, texts, images) -> ProductViews:
        """One pass through each tower for all three views (the base class would take three)."""
        text_emb, image_emb = self._embed(texts, images)
        return ProductViews(
            mm=l2_normalize((text_emb + image_emb).numpy()),
            image=image_emb.numpy().astype(np.float32),
            text=l2_normalize(text_emb.numpy()),
        )
