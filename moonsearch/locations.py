"""Where moonsearch looks when the user names no path: the project's ./indexes folder and the
shared data folder beside the repository. Library rules, not the CLI's, so `open_index()` and
`moonsearch query` find the same index and the evaluation finds the same data."""

from __future__ import annotations

from pathlib import Path

from moonsearch.errors import MoonsearchError

INDEXES_DIR = Path("indexes")
SHARED_DATA = Path("../shared/data")
MYNTRA_DATA = SHARED_DATA / "myntra"
SHOPPER_QUERIES_FILE = Path("queries") / "shopper_queries.jsonl"   # beside a dataset folder


def index_folder_for(catalog: Path) -> Path:
    """Where `moonsearch index CATALOG` puts its index without --out: indexes/<catalog name>."""
    source = Path(catalog).resolve()
    return INDEXES_DIR / (source.stem if source.is_file() else source.name)


def default_index() -> Path:
    """The only index under ./indexes, so `moonsearch query "red dress"` works after one `index`."""
    found = sorted(p.parent for p in INDEXES_DIR.glob("*/manifest.json")
                   if not p.parent.name.startswith("."))   # a build's staging or retired folder
    if len(found) == 1:
        return found[0]
    if not found:
        raise MoonsearchError("no index under ./indexes: run `moonsearch index CATALOG` first, or pass --index")
    names = ", ".join(str(p) for p in found)
    raise MoonsearchError(f"several indexes under ./indexes ({names}): choose one with --index")


def default_dataset(protocol: str) -> Path | None:
    """The data folder of a protocol that has one here (the real catalog's), else None."""
    return MYNTRA_DATA if protocol in ("myntra", "myntra-val") else None


def shopper_queries_beside(data: Path) -> Path:
    """The shopper-query file of a dataset folder (../shared/data/myntra -> ../shared/data/queries/...)."""
    return Path(data).parent / SHOPPER_QUERIES_FILE
