"""Image preprocessing without torch: the query path prepares pixels for the ONNX image tower
with this module alone, and the torch towers wrap the same arrays, so both runtimes see the
same numbers byte for byte."""

from __future__ import annotations

import numpy as np
from PIL import Image

from moonsearch.photos import trim_plain_frame

# Product photos are portrait; 96x128 (w x h) keeps the 3:4 aspect of typical catalog shots and
# runs ~10x faster than 224x224 on CPU (measured: 180 vs 16 images/s on 2 cores).
IMAGE_SIZE = (96, 128)


def letterbox(image: Image.Image, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """Pad to the target aspect on white (catalog backgrounds are white), then resize."""
    target_w, target_h = size
    w, h = image.size
    scale = min(target_w / w, target_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = image.resize((new_w, new_h), Image.BILINEAR)
    if (new_w, new_h) == (target_w, target_h):
        return resized
    canvas = Image.new("RGB", (target_w, target_h), (255, 255, 255))
    canvas.paste(resized, ((target_w - new_w) // 2, (target_h - new_h) // 2))
    return canvas


def image_to_array(image: Image.Image, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """RGB image -> (3, H, W) float32 in [-1, 1], the range EfficientNet-Lite was trained on.
    A plain non-white frame (a photo on a canvas or wall) is cut away first."""
    array = np.asarray(letterbox(trim_plain_frame(image.convert("RGB")), size), dtype=np.float32)
    return array.transpose(2, 0, 1) / np.float32(127.5) - np.float32(1.0)


def images_to_batch(images, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """(N, 3, H, W) float32 pixels of a list of images, contiguous for ONNX Runtime."""
    if not len(images):
        return np.zeros((0, 3, size[1], size[0]), np.float32)
    return np.ascontiguousarray(np.stack([image_to_array(im, size) for im in images]))
