"""What happens to a product photo between the catalog and a shopper's query.

A shopper's photo of a product is never the catalog file: it is cropped, mirrored, tilted,
recompressed, blurred by upscaling, or sits on a background. The named changes below are the
robustness benchmark's queries; `photo_mix` composes several of them at random, seeded per
product, and `random_photo` draws the same family with wider ranges as training views. Catalog
photos are on white, so fills are white unless a change is about a background.
"""

from __future__ import annotations

import io
import random
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

WHITE = (255, 255, 255)
GREY = (128, 128, 128)


def crop_border(image: Image.Image, left: float, top: float, right: float | None = None,
                bottom: float | None = None) -> Image.Image:
    """Cut the given fractions of the width / height off each side (right, bottom default to left, top)."""
    right = left if right is None else right
    bottom = top if bottom is None else bottom
    w, h = image.size
    box = (round(w * left), round(h * top), w - round(w * right), h - round(h * bottom))
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        return image.copy()
    return image.crop(box)


def rotate(image: Image.Image, degrees: float, fill=WHITE) -> Image.Image:
    return image.rotate(degrees, resample=Image.BICUBIC, fillcolor=fill)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """Re-encode as a JPEG of this quality and decode again (the artefacts are the point)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")


def upscale_blur(image: Image.Image, factor: float, radius: float) -> Image.Image:
    w, h = image.size
    big = image.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.BICUBIC)
    return big.filter(ImageFilter.GaussianBlur(radius))


def on_canvas(image: Image.Image, scale: float, colour=GREY, offset: tuple[float, float] = (0.5, 0.5)) -> Image.Image:
    """The photo on a plain canvas `scale` times its size; `offset` places it (0.5, 0.5 = centred)."""
    w, h = image.size
    canvas = Image.new("RGB", (max(w, round(w * scale)), max(h, round(h * scale))), colour)
    x = round((canvas.width - w) * offset[0])
    y = round((canvas.height - h) * offset[1])
    canvas.paste(image.convert("RGB"), (x, y))
    return canvas


def lighting(image: Image.Image, brightness: float, contrast: float) -> Image.Image:
    return ImageEnhance.Contrast(ImageEnhance.Brightness(image).enhance(brightness)).enhance(contrast)


# The benchmark's fixed changes (issue 16's table), each a function of the image alone.
NAMED: dict[str, Callable[[Image.Image], Image.Image]] = {
    "exact": lambda im: im.copy(),
    "mirror+crop6": lambda im: crop_border(ImageOps.mirror(im), 0.06, 0.06),
    "crop12": lambda im: crop_border(im, 0.12, 0.12),
    "rotate8": lambda im: rotate(im, 8),
    "jpeg-q30": lambda im: jpeg(im, 30),
    "upscale3x+blur": lambda im: upscale_blur(im, 3, 1.5),
    "pad-grey": lambda im: on_canvas(im, 1.4, GREY),
}
TRANSFORMS = (*NAMED, "photo-mix")


def _random_change(image: Image.Image, rng: random.Random, kind: str, wide: bool) -> Image.Image:
    """One change of `kind` with parameters drawn from rng; `wide` widens the ranges (training)."""
    if kind == "mirror":
        return ImageOps.mirror(image)
    if kind == "crop":
        top = 0.15 if wide else 0.12
        return crop_border(image, *(rng.uniform(0.02, top) for _ in range(4)))
    if kind == "rotate":
        limit = 12 if wide else 10
        return rotate(image, rng.choice((-1, 1)) * rng.uniform(3, limit))
    if kind == "jpeg":
        return jpeg(image, rng.randint(20 if wide else 25, 60))
    if kind == "blur":
        return upscale_blur(image, rng.uniform(1.5, 3.0), rng.uniform(0.5, 1.5))
    if kind == "canvas":
        shade = rng.randint(60, 235)
        tint = tuple(min(255, max(0, shade + rng.randint(-12, 12))) for _ in range(3))
        return on_canvas(image, rng.uniform(1.1, 1.6 if wide else 1.5), tint, (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)))
    if kind == "light":
        return lighting(image, rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2))
    raise ValueError(f"unknown photo change '{kind}'")


CHANGES = ("mirror", "crop", "rotate", "jpeg", "blur", "canvas", "light")
# Geometry first, then the camera: crop/rotate/canvas act on the scene, jpeg and blur on the shot.
_ORDER = {kind: i for i, kind in enumerate(("mirror", "crop", "rotate", "canvas", "light", "blur", "jpeg"))}


def compose(image: Image.Image, rng: random.Random, count: int, wide: bool = False) -> Image.Image:
    kinds = sorted(rng.sample(CHANGES, count), key=_ORDER.__getitem__)
    for kind in kinds:
        image = _random_change(image, rng, kind, wide)
    return image


def photo_mix(image: Image.Image, key: str, seed: int = 0) -> Image.Image:
    """Three random changes, the same for the same product key and seed on every machine."""
    return compose(image, random.Random(f"photo-mix:{seed}:{key}"), 3)


def transform(image: Image.Image, name: str, key: str = "", seed: int = 0) -> Image.Image:
    """A benchmark change by name; `key` (the product id) and `seed` seed `photo-mix`."""
    if name == "photo-mix":
        return photo_mix(image, key, seed)
    if name not in NAMED:
        raise ValueError(f"unknown photo transform '{name}' (choose from {', '.join(TRANSFORMS)})")
    return NAMED[name](image)


def random_photo(image: Image.Image, rng: random.Random) -> Image.Image:
    """A training view: two to four changes of the same family, with wider ranges."""
    return compose(image, rng, rng.randint(2, 4), wide=True)


def _frame_colour(pixels: np.ndarray, tolerance: int, uniform: float) -> np.ndarray | None:
    """The median colour of an image's outermost pixels when at least `uniform` of them are
    within `tolerance` of it (a plain frame); None otherwise, or for an image under 8 pixels."""
    h, w = pixels.shape[:2]
    if h < 8 or w < 8:
        return None
    frame = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(frame, axis=0)
    return colour if (np.abs(frame - colour).max(1) <= tolerance).mean() >= uniform else None


def restore_white(image: Image.Image, tolerance: int = 24, uniform: float = 0.9, lightest: int = 150) -> Image.Image:
    """A catalog-style photo taken darker (under-exposed, dimmed, a grey cast) has a plain, light
    frame that nothing inside is brighter than: its white background. Scale each channel so that
    frame is white again, as the catalog photo's is (else trim_plain_frame would cut the dimmed
    white away as a canvas). A photo on a canvas or wall is left alone: its own white background,
    inside, is brighter than the canvas. The photo identity channel's alone, for catalog photos
    and query views alike (photo_identity.whitened), so one on an off-white background still
    matches itself; the encoder's towers never see it."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    colour = _frame_colour(pixels, tolerance, uniform)
    if colour is None or colour.min() < lightest or colour.min() >= 253:   # no plain frame, dark, or white already
        return image
    if np.percentile(pixels.max(2), 99.5) > colour.max() + tolerance:   # a brighter white inside
        return image
    return Image.fromarray(np.clip(pixels * (255.0 / colour) + 0.5, 0, 255).astype(np.uint8))


def restore_white_inside(image: Image.Image) -> Image.Image:
    """restore_white, and again inside a canvas: a dimmed photo on a canvas has its canvas
    trimmed first (one pass of trim_plain_frame), then its own grey background made white."""
    image = restore_white(image)
    inner = trim_plain_frame(image, passes=1)
    if inner is image:
        return image
    whitened = restore_white(inner)
    return image if whitened is inner else whitened   # no dimmed photo inside: the image as it was


def trim_plain_frame(image: Image.Image, tolerance: int = 24, uniform: float = 0.9, passes: int = 2) -> Image.Image:
    """Cut away a plain, non-white frame around the subject: the canvas or wall a product
    was photographed on. Every image the towers see goes through this, catalog photos too.

    The frame's colour is the median of the outermost pixels; it is only trimmed when at least
    `uniform` of them are within `tolerance` of it (a busy background is left alone) and it is
    not near white: catalog photos are framed on white, and that framing is part of what the
    model learned, so a white margin stays. Rows and columns are kept from the first to the last
    one with at least two pixels that differ from the frame."""
    for _ in range(passes):
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
        colour = _frame_colour(pixels, tolerance, uniform)
        if colour is None or colour.min() >= 255 - tolerance:
            return image
        h, w = pixels.shape[:2]
        differs = np.abs(pixels - colour).max(2) > tolerance
        rows = np.flatnonzero(differs.sum(1) >= 2)
        cols = np.flatnonzero(differs.sum(0) >= 2)
        if not len(rows) or not len(cols):
            return image
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        if box == (0, 0, w, h) or box[2] - box[0] < 4 or box[3] - box[1] < 4:
            return image
        image = image.crop(box)
    return image
