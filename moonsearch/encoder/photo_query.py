"""The photo-query head of a moon-lite model: where it lives and which queries it embeds.

`moonsearch train --config photo-query` trains, for a moon-lite model, a second copy of its fusion
model for image-only *queries* (a shopper's photo: cropped, mirrored, tilted, recompressed), kept
beside the base weights as `<base>-photo-query.safetensors`. Products, text queries and
image+text queries always use the base model, so an index and every non-photo result stay
exactly as the base alone makes them. The head's config records the base it was trained for
(name@sha256 prefix); a head trained for other weights is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

SUFFIX = "-photo-query"


def photo_query_path(weights_path: Path) -> Path:
    """Where the head of the moon-lite weights at `weights_path` is kept."""
    weights_path = Path(weights_path)
    return weights_path.with_name(f"{weights_path.stem}{SUFFIX}.safetensors")


def is_photo_query_weights(path: Path) -> bool:
    return Path(path).stem.endswith(SUFFIX)


def head_for(weights_path: Path, base_id: Callable[[], str]) -> Path | None:
    """The head file for the base whose encoder_id `base_id()` gives (called only when a head
    exists: it hashes the weights), or None when there is none or it was trained for other
    weights (a stale head would put photos in the wrong place)."""
    from moonsearch.jsonfiles import read_json

    path = photo_query_path(weights_path)
    config_file = path.with_suffix(".json")
    if not path.is_file() or not config_file.is_file():
        return None
    return path if read_json(config_file, "photo-query config").get("base") == base_id() else None


def photo_rows(texts: Sequence, images: Sequence) -> list[int]:
    """Rows that are image-only queries (no text): the ones the head embeds."""
    return [i for i, (text, image) in enumerate(zip(texts, images)) if text is None and image is not None]
