"""Load product and query images the same way, turning every failure into a short reason."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from moonsearch.errors import MoonsearchError

# Smaller images are spacer GIFs, tracking pixels and divider lines, not products; a few
# pixels of colour (a swatch) are still a usable query, so the floor stays low.
MIN_IMAGE_SIDE = 3

MISSING = "missing file"
UNREADABLE = "unreadable file"
CORRUPT = "corrupt or truncated image"
UNSUPPORTED = "unsupported format"
URL = "not a local file (URL)"
TOO_LARGE = "image too large"
# The limit is in the reason itself: callers that show only the reason (the query CLI) still say it.
TOO_SMALL = f"image too small (at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels needed)"

_BOMB_PIXELS_RE = re.compile(r"\((\d+) pixels\)")

# "https://x" becomes "https:/x" once it has been through Path(); both must match.
# Two letters minimum so a Windows drive ("C:/") is not a scheme.
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+:/")

# Signatures of image files Pillow should identify: if one of these fails to open,
# the file is damaged rather than of a foreign type.
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF
    b"MM\x00*",
)


class ImageError(Exception):
    """An image that cannot be used; `reason` is one of a few fixed strings for reports."""

    def __init__(self, reason: str, path: Path | str | None = None, detail: str | None = None):
        self.reason = reason
        self.path = path
        self.detail = detail
        text = reason if path is None else f"{reason}: {path}"
        super().__init__(f"{text} ({detail})" if detail else text)


def is_url(text: str) -> bool:
    """True for http://, s3://, data: and the like, which are not files on this machine."""
    return bool(_URL_RE.match(text)) or text[:5].lower() == "data:"


def _classify_unidentified(path: Path) -> str:
    """Pillow could not tell the type: damaged image bytes or a file of another kind?"""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return UNREADABLE
    if not head:
        return CORRUPT  # empty file: truncated to nothing
    if head.startswith(_IMAGE_MAGIC) or head[8:12] == b"WEBP":
        return CORRUPT
    if head[4:8] == b"ftyp":  # HEIC/HEIF/AVIF/MP4 without a decoder
        return UNSUPPORTED
    try:
        head.decode("utf-8")
        return UNSUPPORTED  # text (HTML error page, CSV, SVG) saved under an image name
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # cut inside a multi-byte character: still text
            return UNSUPPORTED
    if head.startswith((b"%PDF", b"PK\x03\x04", b"\x1f\x8b", b"7z\xbc\xaf")):
        return UNSUPPORTED
    return CORRUPT  # binary bytes of no known kind


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """8-bit grey from a 16-bit or 32-bit grey image; Pillow's convert() clips these at 255,
    which turns everything above 1/256 of full scale white. A 16-bit transparent grey (PNG
    tRNS) becomes white, as alpha does elsewhere."""
    raw = np.asarray(image if image.mode in ("F", "I") else image.convert("I"))
    values = raw.astype(np.float64)
    if image.mode.startswith("I;16"):
        top = 65535.0  # the file says 16 bits, so a dark picture stays dark
    else:
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
        if low >= 0 and high <= 255:
            top = 255.0
        elif low >= 0 and high <= 65535:
            top = 65535.0
        else:  # 32-bit or float data of no standard range: stretch what is there
            values = values - low
            top = max(high - low, 1.0)
    grey = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    key = image.info.get("transparency")
    if isinstance(key, int):
        grey[raw == key] = 255
    return Image.fromarray(grey, "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparent areas on white, since product shots are usually on white."""
    if image.mode.startswith("I") or image.mode == "F":
        return _high_depth_to_l(image).convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return image.copy() if image.mode == "RGB" else image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def _too_large(path: Path, pixels: int | str, limit: int) -> ImageError:
    """One line that names the limit, for the CLI and the index report alike."""
    return ImageError(TOO_LARGE, path, f"{pixels} pixels; the limit is {limit}")


def load_image(path: Path | str) -> Image.Image:
    """Fully decoded, upright RGB image, or ImageError; never returns a lazily-open file.

    Pillow's DecompressionBombWarning is silenced here: a too-large image is already refused
    with one line naming the limit, and the warning would print a second, noisier one.
    """
    text = str(path)
    if is_url(text):
        raise ImageError(URL, text)
    path = Path(text)
    if not path.is_file():
        raise ImageError(MISSING, path, "a directory" if path.is_dir() else None)
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(path, limit)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # over twice the limit: Pillow refuses in open()
        found = _BOMB_PIXELS_RE.search(str(exc))
        raise _too_large(path, found.group(1) if found else "too many", limit) from None
    except FileNotFoundError:
        raise ImageError(MISSING, path) from None
    except PermissionError as exc:
        raise ImageError(UNREADABLE, path, exc.strerror) from None
    except UnidentifiedImageError:
        raise ImageError(_classify_unidentified(path), path) from None
    except MemoryError:
        raise ImageError(TOO_LARGE, path, "out of memory while decoding") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error... on bad data
        raise ImageError(CORRUPT, path, f"{type(exc).__name__}: {exc}") from None


def _decode(path: Path, limit: int | None) -> Image.Image:
    """The first frame (animated GIF/WebP/APNG, phone MPO), size-checked from the header
    before any pixel is decoded, turned upright, then made RGB."""
    with Image.open(path) as image:
        width, height = image.size
        # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; refuse those too.
        if limit and width * height > limit:
            raise _too_large(path, f"{width}x{height} = {width * height}", limit)
        if min(width, height) < MIN_IMAGE_SIDE:
            raise ImageError(TOO_SMALL, path, f"{width}x{height} pixels")
        image.load()
        try:
            image = ImageOps.exif_transpose(image) or image  # phone photos carry rotation in EXIF
        except Exception:  # broken EXIF should not cost us the pixels
            pass
        try:
            return _to_rgb(image)
        except (ValueError, OSError) as exc:
            raise ImageError(UNSUPPORTED, path, f"mode {image.mode}: {exc}") from None


@dataclass
class LoadedImage:
    """The first of a product's images that loads: its position in the product's list (None:
    none loaded), the decoded image, and the failures before it as (position, ImageError)."""
    position: int | None
    image: Image.Image | None
    failures: list[tuple[int, ImageError]] = field(default_factory=list)


def first_loadable(paths: Sequence[Path | str]) -> LoadedImage:
    failures = []
    for position, path in enumerate(paths):
        try:
            return LoadedImage(position, load_image(Path(path)), failures)
        except ImageError as exc:
            failures.append((position, exc))
    return LoadedImage(None, None, failures)


def first_image(paths: Sequence[Path]) -> tuple[Image.Image | None, str | None]:
    """First image that loads; otherwise the first failure's reason (None, None if no paths)."""
    loaded = first_loadable(paths)
    return loaded.image, (loaded.failures[0][1].reason if loaded.image is None and loaded.failures else None)


def load_query_image(image: Image.Image | str | Path) -> Image.Image:
    """A query image given as a PIL image or a path; a file that cannot be used is a clear error."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        return load_image(Path(image))
    except ImageError as exc:
        detail = f" ({exc.detail})" if exc.detail else ""   # a size limit, a mode: what to change
        raise MoonsearchError(f"cannot use query image {image}: {exc.reason}{detail}") from None
