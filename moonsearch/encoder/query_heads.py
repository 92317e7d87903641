"""Query heads of a moon-lite model: where they live and which queries each embeds.

A query head is a second copy of a moon-lite fusion model, trained for one kind of search query
and kept beside the base weights as `<base>-<kind>-query.safetensors`:

- "photo" (`moonsearch train --config photo-query`, issue 16): image-only queries, a shopper's
  photo (cropped, mirrored, tilted, recompressed);
- "text" (`moonsearch train --config text-query`, issue 20): text-only queries, as shoppers write
  them ("mens crew neck tees", "kurta for women").

Products and image+text queries always use the base model, so an index and its product vectors
stay exactly as the base alone makes them, with or without heads. A head's config records the
base it was trained for (name@sha256 prefix); a head trained for other weights is not used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

KINDS = ("photo", "text")


def head_path(weights_path: Path, kind: str) -> Path:
    """Where the `kind` head of the moon-lite weights at `weights_path` is kept."""
    if kind not in KINDS:
        raise ValueError(f"no query head kind {kind!r} ({', '.join(KINDS)})")
    weights_path = Path(weights_path)
    return weights_path.with_name(f"{weights_path.stem}-{kind}-query.safetensors")


def is_head_weights(path: Path) -> bool:
    """Whether a weights file is some model's query head (not an encoder of its own)."""
    return any(Path(path).stem.endswith(f"-{kind}-query") for kind in KINDS)


def head_for(weights_path: Path, kind: str, base_id: Callable[[], str]) -> Path | None:
    """The `kind` head file for the base whose encoder_id `base_id()` gives (called only when a
    head exists: it hashes the weights), or None when there is none or it was trained for other
    weights (a stale head would put queries in the wrong place)."""
    from moonsearch.jsonfiles import read_json

    path = head_path(weights_path, kind)
    config_file = path.with_suffix(".json")
    if not path.is_file() or not config_file.is_file():
        return None
    return path if read_json(config_file, f"{kind}-query config").get("base") == base_id() else None


def heads_for(weights_path: Path, base_id: Callable[[], str]) -> dict[str, Path]:
    """kind -> head file, for every kind this base has a current head of."""
    found = {kind: head_for(weights_path, kind, base_id) for kind in KINDS}
    return {kind: path for kind, path in found.items() if path is not None}


def query_rows(texts: Sequence, images: Sequence, kind: str) -> list[int]:
    """Rows of a query batch that the `kind` head embeds: image-only (photo) or text-only (text)."""
    if kind == "photo":
        return [i for i, (text, image) in enumerate(zip(texts, images)) if text is None and image is not None]
    return [i for i, (text, image) in enumerate(zip(texts, images)) if text is not None and image is None]
