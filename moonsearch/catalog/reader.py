"""Find and stream a catalog's records, one at a time, in any supported layout.

A catalog is one records file, or a folder of several records files of one format (an export
cut into `part-*.jsonl`, `part-*.parquet`, ...), read in name order as one catalog. Each file's
image paths are relative to the folder that file is in. `file_items` is the one place a file's
rows become products or skips: the reader here and the Ray engine's read tasks both call it."""

from __future__ import annotations

import csv
import json
import os
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


def _jsonl_records(path: Path, name: str) -> Iterator[Record]:
    for number, text in _decoded_lines(path):
        if not text.strip():
            continue
        source = f"{name}:{number}"
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


def _csv_records(path: Path, name: str, kaggle: bool) -> Iterator[Record]:
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
        source = f"{name}:{number}"
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


def _parquet_records(path: Path, name: str) -> Iterator[Record]:
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
            yield row, f"{name}:{row}", record


def file_items(path: Path, name: str, format: str, root: Path) -> Iterator[tuple[int, str, Product | Skip]]:
    """One records file's rows in order: (line or row, "name:line", Product or Skip). `name` is
    what sources call the file; image paths resolve against `root`."""
    if format == "jsonl":
        records = _jsonl_records(path, name)
    elif format == "parquet":
        records = _parquet_records(path, name)
    else:
        records = _csv_records(path, name, kaggle=format == "kaggle-styles")
    ctx = RecordContext(root=root, derive_image=format == "kaggle-styles")
    for number, source, record in records:
        yield number, source, record if isinstance(record, Skip) else build_product(record, source, ctx)


class IdCheck:
    """Product ids seen so far and where each was first: its line in a one-file catalog, its
    "file:line" in a catalog of several files. `collect` gathers every repeat for one error
    (`check`); otherwise the first repeat is the error."""

    def __init__(self, name: str, several: bool, collect: bool):
        self.name, self.several, self.collect = name, several, collect
        self.first: dict[str, int | str] = {}
        self.duplicates: dict[str, list[int | str]] = {}

    def add(self, pid: str, number: int, source: str) -> bool:
        """True for an id not seen before; False (or the error) for a repeat."""
        where = source if self.several else number
        first = self.first.get(pid)
        if first is None:
            self.first[pid] = where
            return True
        if not self.collect:
            places = f"at {first} and {where}" if self.several else f"on lines {first} and {where}"
            raise CatalogError(f"{self.name}: duplicate product id {pid!r} {places}; product ids must be unique")
        self.duplicates.setdefault(pid, [first]).append(where)
        return False

    def check(self) -> None:
        if not self.duplicates:
            return
        word = "at" if self.several else "lines"
        shown = [
            f"{pid!r} ({word} {', '.join(map(str, places[:5]))}{', ...' if len(places) > 5 else ''})"
            for pid, places in list(self.duplicates.items())[:MAX_DUPLICATES_SHOWN]
        ]
        more = len(self.duplicates) - len(shown)
        raise CatalogError(
            f"{self.name}: {len(self.duplicates)} product id(s) used more than once: "
            + "; ".join(shown)
            + (f"; and {more} more" if more else "")
            + ". Product ids must be unique."
        )


class Catalog:
    """A records file plus the folder its image paths are relative to, or a folder of several
    records files of one format (`files`, in reading order), each relative to its own folder."""

    def __init__(self, path: str | Path, format: str, root: str | Path | None = None,
                 files: list[Path] | None = None):
        if format not in FORMATS:
            raise CatalogError(f"unknown catalog format {format!r}; expected one of {', '.join(FORMATS)}")
        self.path = Path(path)
        self.root = Path(root) if root is not None else (self.path if files else self.path.parent)
        self.format = format
        self.files = [Path(f) for f in files] if files else None
        self.skips: list[Skip] = []

    def __repr__(self) -> str:
        return f"Catalog({str(self.path)!r}, format={self.format!r})"

    def parts(self) -> list[tuple[Path, str, Path]]:
        """(file, the name its sources use, the folder its image paths are relative to), in
        reading order: one for a records file; for a folder of several, each file named by its
        path inside the folder."""
        if self.files is None:
            return [(self.path, self.path.name, self.root)]
        return [(f, f.relative_to(self.path).as_posix(), f.parent) for f in self.files]

    def id_check(self, collect: bool) -> IdCheck:
        return IdCheck(self.path.name, self.files is not None, collect)

    def _walk(self, tally: CatalogScan, ids: IdCheck) -> Iterator[Product]:
        """The one pass both scan() and products() use, so they always agree on skips."""
        for part in self.parts():
            yield from self._walk_one(part, tally, ids)

    def scan(self) -> CatalogScan:
        """Read all text (no images) to count products and skips; refuse duplicate ids."""
        tally = CatalogScan(rows=0, products=0, skips=[])
        ids = self.id_check(collect=True)
        for _ in self._walk(tally, ids):
            pass
        self.skips = tally.skips
        ids.check()
        return tally

    def products(self) -> Iterator[Product]:
        """Stream valid products; skips collect in self.skips as the stream goes."""
        tally = CatalogScan(rows=0, products=0, skips=[])
        self.skips = tally.skips
        yield from self._walk(tally, self.id_check(collect=False))

    def products_by_file(self) -> Iterator[Iterator[Product]]:
        """products(), one iterator per records file in turn (a builder cuts its batches at a
        file's end, as the Ray engine's read tasks, one per file, do)."""
        tally = CatalogScan(rows=0, products=0, skips=[])
        self.skips = tally.skips
        ids = self.id_check(collect=False)
        for part in self.parts():
            yield self._walk_one(part, tally, ids)

    def _walk_one(self, part: tuple[Path, str, Path], tally: CatalogScan, ids: IdCheck) -> Iterator[Product]:
        path, name, root = part
        for number, source, item in file_items(path, name, self.format, root):
            tally.rows += 1
            if isinstance(item, Skip):
                tally.skips.append(item)
            elif ids.add(item.id, number, source):
                tally.products += 1
                yield item


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


def _record_files(directory: Path, recursive: bool) -> list[Path]:
    """Records files (by suffix) in a folder, or anywhere under it, in name order; names that
    start with "." or "_" are left out (hidden files, Spark's _SUCCESS and _temporary)."""
    found = []
    try:
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "_"))) if recursive else []
            found += [Path(dirpath) / name for name in filenames
                      if not name.startswith((".", "_")) and Path(name).suffix.lower() in SUFFIX_FORMATS]
    except OSError as exc:
        raise CatalogError(f"cannot list catalog directory {directory}: {exc.strerror or exc}") from None
    return sorted(found, key=lambda p: p.relative_to(directory).parts)


def _detect(directory: Path) -> tuple[Path, str, list[Path] | None]:
    """(records file or folder, format, the files of a folder of several or None)."""
    for name in PREFERRED_NAMES:
        if (directory / name).is_file():
            return directory / name, _format_for_file(directory / name), None
    if (directory / KAGGLE_NAME).is_file():
        return directory / KAGGLE_NAME, "kaggle-styles", None
    try:
        entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise CatalogError(f"cannot list catalog directory {directory}: {exc.strerror or exc}") from None
    # records files at the top level; where there are none, in subfolders (a partitioned export)
    candidates = _record_files(directory, recursive=False) or _record_files(directory, recursive=True)
    if len(candidates) == 1:
        return candidates[0], _format_for_file(candidates[0]), None
    expected = ("products.jsonl, products.csv, products.parquet, styles.csv, or .jsonl/.csv/.parquet files "
                "(several: all of one format)")
    if candidates:
        formats = {SUFFIX_FORMATS[p.suffix.lower()] for p in candidates}
        if len(formats) == 1 and not any(p.name.lower() == KAGGLE_NAME for p in candidates):
            return directory, formats.pop(), candidates
        names = ", ".join(p.relative_to(directory).as_posix() for p in candidates[:10])
        more = f", ... ({len(candidates)} files)" if len(candidates) > 10 else ""
        raise CatalogError(
            f"{directory}: record files of several formats ({names}{more}); a catalog of several "
            "files has one format: pass one file's path, or name the one to use products.jsonl, "
            "products.csv or products.parquet"
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
        file, fmt, files = _detect(resolved)
        return Catalog(file, fmt, files=files)
    return Catalog(resolved, _format_for_file(resolved))
