"""Find and stream a catalog's records, one at a time, in any supported layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterator

from moonsearch.catalog.fields import TITLE_KEYS, RecordContext, build_product
from moonsearch.catalog.models import CatalogScan, Product, Skip
from moonsearch.errors import CatalogError

SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
PREFERRED_NAMES = ("products.jsonl", "products.csv", "products.parquet")
KAGGLE_NAME = "styles.csv"
FORMATS = ("jsonl", "csv", "parquet", "kaggle-styles")
MAX_DUPLICATES_SHOWN = 20
_BOM = b"\xef\xbb\xbf"
_CSV_FIELD_LIMIT = 64 * 1024 * 1024  # long descriptions exceed csv's 128 KiB default

Record = tuple[int, str, "dict[str, Any] | Skip"]  # (line or row, "file:line", record or early skip)


def _utf8_error(path: Path, line: int, raw: bytes, exc: UnicodeDecodeError) -> CatalogError:
    column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
    bad = raw[exc.start : exc.start + 1].hex()
    hint = "re-save the file as UTF-8"
    if line == 1 and raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        hint = "it looks like UTF-16; " + hint
    return CatalogError(
        f"{path} line {line}: not valid UTF-8 (byte 0x{bad} at column {column}); {hint} "
        "(a spreadsheet's 'CSV UTF-8' option, or `iconv -f <its encoding> -t utf-8`)"
    )


def _decoded_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Decode line by line so an encoding error can name its line."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise CatalogError(f"cannot read catalog {path}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, 1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _utf8_error(path, number, raw, exc) from None


def _jsonl_records(path: Path) -> Iterator[Record]:
    for number, text in _decoded_lines(path):
        if not text.strip():
            continue
        source = f"{path.name}:{number}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, source, Skip(source, None, f"invalid JSON: {exc.msg} (column {exc.colno})")
            continue
        except RecursionError:
            yield number, source, Skip(source, None, "invalid JSON: nested too deeply")
            continue
        if not isinstance(value, dict):
            yield number, source, Skip(source, None, f"not a JSON object ({type(value).__name__})")
            continue
        yield number, source, value


def _csv_records(path: Path, kaggle: bool) -> Iterator[Record]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    consumed = 0  # physical lines handed to the csv module so far

    def lines() -> Iterator[str]:
        nonlocal consumed
        for number, text in _decoded_lines(path):
            consumed = number
            yield text

    reader = csv.reader(lines())
    header: list[str] | None = None
    title_at: int | None = None
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CatalogError(f"{path} line {start}: cannot parse CSV ({exc})") from None
        number, start = start, consumed + 1
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # blank line
        if header is None:
            header = [name.strip() for name in row]
            lowered = [name.lower() for name in header]
            title_at = next((lowered.index(k) for k in TITLE_KEYS if k in lowered), None)
            continue
        source = f"{path.name}:{number}"
        if len(row) > len(header):
            surplus = len(row) - len(header)
            if kaggle and title_at is not None:
                # Kaggle's styles.csv has unquoted commas inside productDisplayName.
                joined = ",".join(row[title_at : title_at + surplus + 1])
                row = row[:title_at] + [joined] + row[title_at + surplus + 1 :]
            else:
                reason = f"{len(row)} fields but the header has {len(header)} (unquoted comma?)"
                yield number, source, Skip(source, None, reason)
                continue
        record = {name: value for name, value in zip(header, row) if value.strip()}
        yield number, source, record


def _parquet_records(path: Path) -> Iterator[Record]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        batches = parquet.iter_batches(batch_size=1024)
    except (pa.ArrowException, OSError) as exc:
        raise CatalogError(f"cannot read Parquet file {path}: {exc}") from None
    row = 0
    while True:
        try:
            batch = next(batches)
            records = batch.to_pylist()
        except StopIteration:
            return
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise CatalogError(f"cannot read Parquet file {path} after row {row}: {exc}") from None
        for record in records:
            row += 1
            yield row, f"{path.name}:{row}", record


class Catalog:
    """A records file plus the folder its image paths are relative to."""

    def __init__(self, path: str | Path, format: str, root: str | Path | None = None):
        if format not in FORMATS:
            raise CatalogError(f"unknown catalog format {format!r}; expected one of {', '.join(FORMATS)}")
        self.path = Path(path)
        self.root = Path(root) if root is not None else self.path.parent
        self.format = format
        self.skips: list[Skip] = []

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, format={self.format!r})"

    def _records(self) -> Iterator[Record]:
        if self.format == "jsonl":
            return _jsonl_records(self.path)
        if self.format == "parquet":
            return _parquet_records(self.path)
        return _csv_records(self.path, kaggle=self.format == "kaggle-styles")

    def _walk(self, tally: CatalogScan, duplicates: dict[str, list[int]] | None) -> Iterator[Product]:
        """The one pass both scan() and products() use, so they always agree on skips."""
        ctx = RecordContext(
            root=self.root,
            derive_image=self.format == "kaggle-styles",
        )
        first_line: dict[str, int] = {}
        for number, source, record in self._records():
            tally.rows += 1
            item = record if isinstance(record, Skip) else build_product(record, source, ctx)
            if isinstance(item, Skip):
                tally.skips.append(item)
                continue
            if item.id in first_line:
                if duplicates is None:
                    raise CatalogError(
                        f"{self.path.name}: duplicate product id {item.id!r} on lines "
                        f"{first_line[item.id]} and {number}; product ids must be unique"
                    )
                duplicates.setdefault(item.id, [first_line[item.id]]).append(number)
                continue
            first_line[item.id] = number
            tally.products += 1
            yield item

    def scan(self) -> CatalogScan:
        """Read all text (no images) to count products and skips; refuse duplicate ids."""
        tally = CatalogScan(rows=0, products=0, skips=[])
        duplicates: dict[str, list[int]] = {}
        for _ in self._walk(tally, duplicates):
            pass
        self.skips = tally.skips
        if duplicates:
            shown = [
                f"{pid!r} (lines {', '.join(map(str, lines[:5]))}{', ...' if len(lines) > 5 else ''})"
                for pid, lines in list(duplicates.items())[:MAX_DUPLICATES_SHOWN]
            ]
            more = len(duplicates) - len(shown)
            raise CatalogError(
                f"{self.path.name}: {len(duplicates)} product id(s) used more than once: "
                + "; ".join(shown)
                + (f"; and {more} more" if more else "")
                + ". Product ids must be unique."
            )
        return tally

    def products(self) -> Iterator[Product]:
        """Stream valid products; skips collect in self.skips as the stream goes."""
        tally = CatalogScan(rows=0, products=0, skips=[])
        self.skips = tally.skips
        yield from self._walk(tally, None)


def _format_for_file(path: Path) -> str:
    if path.name.lower() == KAGGLE_NAME:
        return "kaggle-styles"
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise CatalogError(
            f"{path}: unsupported catalog file type {path.suffix or '(no suffix)'!r}; "
            "expected .jsonl, .csv or .parquet"
        )
    return fmt


def _detect(directory: Path) -> tuple[Path, str]:
    for name in PREFERRED_NAMES:
        if (directory / name).is_file():
            return directory / name, _format_for_file(directory / name)
    if (directory / KAGGLE_NAME).is_file():
        return directory / KAGGLE_NAME, "kaggle-styles"
    try:
        entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise CatalogError(f"cannot list catalog directory {directory}: {exc.strerror or exc}") from None
    candidates = [p for p in entries if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS]
    if len(candidates) == 1:
        return candidates[0], _format_for_file(candidates[0])
    expected = "products.jsonl, products.csv, products.parquet, styles.csv or a single .jsonl/.csv/.parquet file"
    if candidates:
        names = ", ".join(p.name for p in candidates)
        raise CatalogError(
            f"{directory}: several record files ({names}); pass one file's path, "
            "or name the one to use products.jsonl, products.csv or products.parquet"
        )
    found = [p.name + ("/" if p.is_dir() else "") for p in entries[:10]]
    listing = ", ".join(found) + (f", ... ({len(entries)} entries)" if len(entries) > 10 else "")
    raise CatalogError(f"{directory}: no catalog found; expected {expected}; found: {listing or 'nothing'}")


def open_catalog(path: str | Path) -> Catalog:
    """Open a catalog directory or records file; CatalogError if nothing usable is there."""
    given = Path(path).expanduser()
    if not given.exists():
        raise CatalogError(f"catalog not found: {given}")
    resolved = given.resolve()
    if resolved.is_dir():
        file, fmt = _detect(resolved)
    else:
        file, fmt = resolved, _format_for_file(resolved)
    return Catalog(file, fmt)
