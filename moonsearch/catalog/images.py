"""Load product and query images the same way, turning every failure into a short reason."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

MISSING = "missing file"
UNREADABLE = "unreadable file"
CORRUPT = "corrupt or truncated image"
UNSUPPORTED = "unsupported format"
URL = "not a local file (URL)"
TOO_LARGE = "image too large"

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


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB with transparent areas on white, since product shots are usually on white."""
    if image.mode == "RGB":
        return image.copy()
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def load_image(path: Path | str) -> Image.Image:
    """Fully decoded RGB image, or ImageError; never returns a lazily-open file."""
    text = str(path)
    if is_url(text):
        raise ImageError(URL, text)
    path = Path(text)
    if not path.is_file():
        raise ImageError(MISSING, path, "a directory" if path.is_dir() else None)
    try:
        with Image.open(path) as image:
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS; refuse those too.
            limit = Image.MAX_IMAGE_PIXELS
            width, height = image.size
            if limit and width * height > limit:
                raise ImageError(TOO_LARGE, path, f"{width}x{height} pixels")
            image.load()
            try:
                image = ImageOps.exif_transpose(image) or image  # phone photos carry rotation in EXIF
            except Exception:  # broken EXIF should not cost us the pixels
                pass
            try:
                return _to_rgb(image)
            except (ValueError, OSError) as exc:
                raise ImageError(UNSUPPORTED, path, f"mode {image.mode}: {exc}") from None
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(TOO_LARGE, path, str(exc)) from None
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


def first_image(paths: Sequence[Path]) -> tuple[Image.Image | None, str | None]:
    """First image that loads; otherwise the first failure's reason (None, None if no paths)."""
    first_reason: str | None = None
    for path in paths:
        try:
            return load_image(path), None
        except ImageError as exc:
            if first_reason is None:
                first_reason = exc.reason
    return None, first_reason
