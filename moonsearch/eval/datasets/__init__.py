"""Loaders of public benchmarks (MBE2.0, M5Product, Fashion200k) from a local copy.

None of these datasets can be downloaded on our machines, so each loader reads the layout a
user would have on disk and turns it into plain records; the protocols in
``moonsearch.eval.protocols`` do the embedding and scoring. Loaders never open images (the
protocols count missing or corrupt ones), skip malformed rows with a reason instead of
failing, and raise MoonsearchError with a readable message for a wrong path or an empty or
unreadable file.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from moonsearch.catalog.images import is_url
from moonsearch.errors import MoonsearchError

TABLE_SUFFIXES = (".jsonl", ".ndjson", ".csv", ".parquet")


@dataclass(frozen=True)
class Item:
    """One product or query as the benchmark gives it: text, image path, or both."""

    text: str | None
    image: Path | None


def clean_text(value: Any) -> str | None:
    """Text stripped of whitespace; None, NaN and empty strings all mean "no text"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def image_path(value: Any, base: Path) -> Path | None:
    """A relative image path resolved against the data file's folder; URLs left as they are."""
    text = clean_text(value)
    if text is None:
        return None
    if is_url(text):
        return Path(text)  # load_image reports it as "not a local file (URL)"
    path = Path(text).expanduser()
    return path if path.is_absolute() else base / path


def existing_path(path: str | Path, what: str) -> Path:
    """The path if it exists, else a MoonsearchError naming what was expected there."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MoonsearchError(f"no {what} at {path}: pass the folder (or file) of a local copy")
    return path


def find_table(root: Path, stems: tuple[str, ...], what: str) -> Path:
    """`root` itself when it is a file, else the first `<stem><suffix>` present inside it."""
    root = existing_path(root, what)
    if root.is_file():
        return root
    for stem in stems:
        for suffix in TABLE_SUFFIXES:
            if (root / f"{stem}{suffix}").is_file():
                return root / f"{stem}{suffix}"
    names = ", ".join(f"{s}.jsonl|.csv|.parquet" for s in stems)
    raise MoonsearchError(f"no {what} in {root}: expected one of {names}")


def optional_table(root: Path, stem: str) -> Path | None:
    """`<stem>.jsonl` (or .csv/.parquet) next to the data, when the benchmark ships it."""
    folder = root if root.is_dir() else root.parent
    for suffix in TABLE_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def read_rows(path: Path) -> Iterator[tuple[str, Mapping[str, Any] | str]]:
    """Yield ("file:line", row) per record, or ("file:line", reason) for a malformed one.

    JSONL, CSV (header row) and Parquet; nested JSON objects and Parquet structs arrive as
    dicts. An unreadable file raises MoonsearchError; a bad line is only skipped.
    """
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            with open(path, encoding="utf-8-sig") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    where = f"{path.name}:{number}"
                    try:
                        value = json.loads(line)
                    except (json.JSONDecodeError, RecursionError) as exc:
                        yield where, f"invalid JSON ({getattr(exc, 'msg', 'nested too deeply')})"
                        continue
                    yield where, value if isinstance(value, dict) else f"not a JSON object ({type(value).__name__})"
        elif suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as handle:
                for number, row in enumerate(csv.DictReader(handle), 2):
                    yield f"{path.name}:{number}", row
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.ParquetFile(path)
            number = 0
            for batch in table.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    number += 1
                    yield f"{path.name}:row {number}", row
        else:
            raise MoonsearchError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .csv or .parquet)")
    except UnicodeDecodeError:
        raise MoonsearchError(f"{path} is not valid UTF-8 text; re-save it as UTF-8") from None
    except MoonsearchError:
        raise
    except OSError as exc:
        raise MoonsearchError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # pyarrow raises its own errors for a damaged Parquet file
        raise MoonsearchError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None


def field(row: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present (and not None) in the row."""
    for name in names:
        if name in row and row[name] is not None:
            return row[name]
    return None


def item_from(value: Any, base: Path) -> Item | None:
    """An element given as {"text"/"title", "image"} or as a bare string (text only)."""
    if isinstance(value, str):
        text = clean_text(value)
        return Item(text, None) if text else None
    if not isinstance(value, Mapping):
        return None
    item = Item(clean_text(field(value, "text", "title")), image_path(field(value, "image", "image_path"), base))
    return item if item.text is not None or item.image is not None else None


from moonsearch.eval.datasets.fashion200k import Fashion200k, load_fashion200k  # noqa: E402
from moonsearch.eval.datasets.m5product import M5Product, load_m5product  # noqa: E402
from moonsearch.eval.datasets.mbe2 import MBE2, load_mbe2  # noqa: E402

__all__ = [
    "Item",
    "MBE2",
    "M5Product",
    "Fashion200k",
    "load_mbe2",
    "load_m5product",
    "load_fashion200k",
]
