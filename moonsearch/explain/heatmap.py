"""Image-token weights drawn over the product image, at the image's own size.

The token grid covers the image the encoder saw: the product photo letterboxed on white to the
tower's input size. So the grid is upsampled to that canvas, the white padding is cut off again,
and what is left is resized onto the photo; a patch's colour then sits on the pixels it saw.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

COLORMAP = "viridis"   # reads on red products too, where a red-hot scale would not
MAX_ALPHA = 0.55   # the hottest patch is 55% colour, cold ones let the photo show through
# Colours span the grid's min..max (as Grad-CAM maps do): patch drops (occlusion) are small and
# often all negative for a text query, and decomposition weights differ by tens of percent only.
# The values themselves are in the JSON.
COLOUR_RANGE = "viridis over the grid min (dark purple) .. grid max (yellow)"


def letterbox_box(size: tuple[int, int], canvas: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where an image of `size` (w, h) lands inside `canvas` (w, h); mirrors towers.letterbox."""
    (w, h), (cw, ch) = size, canvas
    scale = min(cw / w, ch / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    left, top = (cw - new_w) // 2, (ch - new_h) // 2
    return left, top, left + new_w, top + new_h


def upsample(grid: np.ndarray, size: tuple[int, int], letterbox: tuple[int, int] | None = None) -> np.ndarray:
    """(rows, cols) grid -> (h, w) float map over an image of `size` (w, h), bilinear."""
    cells = Image.fromarray(np.asarray(grid, np.float32))   # mode "F"
    if letterbox is None:
        return np.asarray(cells.resize(size, Image.BILINEAR))
    canvas = cells.resize(letterbox, Image.BILINEAR)
    return np.asarray(canvas.crop(letterbox_box(size, letterbox)).resize(size, Image.BILINEAR))


def overlay(image: Image.Image, grid: np.ndarray, letterbox: tuple[int, int] | None = None,
            scale: int = 1) -> Image.Image:
    """RGB image (w*scale, h*scale): the photo under a colormap of the grid, min..max."""
    from matplotlib import colormaps

    if scale < 1:
        raise ValueError("scale must be a positive integer")
    photo = image.convert("RGB")
    grid = np.asarray(grid, np.float64)
    spread = grid.max() - grid.min()
    heat = upsample((grid - grid.min()) / spread if spread > 0 else np.zeros_like(grid), photo.size, letterbox)
    if scale != 1:   # cut the padding at the photo's own size, then enlarge both alike
        size = (photo.width * scale, photo.height * scale)
        photo = photo.resize(size, Image.LANCZOS)
        heat = np.asarray(Image.fromarray(heat.astype(np.float32)).resize(size, Image.BILINEAR))
    heat = np.clip(heat, 0.0, 1.0)
    colour = colormaps[COLORMAP](heat)[..., :3] * 255.0
    alpha = (0.15 + (MAX_ALPHA - 0.15) * heat)[..., None]
    blended = (1 - alpha) * np.asarray(photo, np.float64) + alpha * colour
    return Image.fromarray(np.clip(blended + 0.5, 0, 255).astype(np.uint8))
