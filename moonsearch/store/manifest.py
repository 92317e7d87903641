"""The manifest: what an index folder holds and which encoder made it.

It is written last, so a folder without one was never finished; `query` checks it before
reading anything else, and refuses an index another encoder or format version built. It is also
the index's pointer to its current state: `snapshot` names the folder holding the files (none:
the index folder itself), and a write or rebuild commits by replacing this one file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from moonsearch.errors import IndexFormatError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Manifest:
    encoder: dict                 # {"name", "id", "weights"}: id is name@weights-hash
    dim: int
    index_type: str               # flat | ivf | hnsw
    views: list[str]
    counts: dict                  # products, with_image, text_only, skipped
    source: dict                  # catalog path and layout
    created: str
    moonsearch_version: str
    display_fields: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION
    backend: str = "faiss+duckdb"   # which stores hold the vectors and records (moonsearch.store.backends)
    # The snapshot folder inside the index folder that holds this state's files; None: the files
    # sit in the index folder itself (a fresh build, or an index built before live writes).
    snapshot: str | None = None
    generation: int = 0             # how many writes made this state (0: a build)
    # The key the next new product takes (None: one past the largest stored), so a deleted
    # product's key is never handed to another product.
    next_key: int | None = None
    # {file name: {"bytes", "sha256"}} of this state's files (moonsearch.store.integrity); None:
    # written before checksums were recorded.
    files: dict | None = None
    # BM25 field weights the keyword index was built with ({"title": w, "attributes": w},
    # catalog.inputs.keyword_text); None: built before field weights, its keyword index reads
    # the product text as it is (every weight 1).
    keyword_weights: dict | None = None
    # Where a backend outside the index folder keeps its data ({"uri", "collection"} for milvus:
    # the Milvus address and its collections' name prefix); None: everything is in the folder.
    store: dict | None = None
    # The photo identity model whose vectors the index holds ({"name", "id", "dim", "weights"},
    # moonsearch.encoder.photo_identity); None: no identity channel (image queries go through
    # the encoder alone).
    identity: dict | None = None

    def vector_views(self) -> list[str]:
        """Every per-product vector file's view: the encoder's views, and the identity channel's."""
        from moonsearch.store.files import IDENTITY_VIEW

        return list(self.views) + ([IDENTITY_VIEW] if self.identity else [])

    def extra_views(self) -> tuple[str, ...]:
        """The views further images have vectors in."""
        from moonsearch.store.files import EXTRA_VIEWS, IDENTITY_VIEW

        return EXTRA_VIEWS + ((IDENTITY_VIEW,) if self.identity else ())

    def write(self, folder: Path) -> None:
        tmp = Path(folder) / (MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(Path(folder) / MANIFEST_FILE)

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        folder = Path(folder)
        path = folder / MANIFEST_FILE
        if not folder.exists():
            raise IndexFormatError(f"no index at {folder}: build one with `moonsearch index CATALOG --out {folder}`")
        if not path.exists():
            raise IndexFormatError(f"{folder} is not a finished moonsearch index (no {MANIFEST_FILE})")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IndexFormatError(f"{path} is unreadable: {exc}") from None
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise IndexFormatError(
                f"{folder} has index format version {version}; this moonsearch reads version "
                f"{FORMAT_VERSION}. Rebuild it with `moonsearch index`."
            )
        try:
            return cls(**data)
        except TypeError as exc:
            raise IndexFormatError(f"{path} is not a valid manifest: {exc}") from None

    def data_folder(self, folder: Path) -> Path:
        """Where this state's files are."""
        return Path(folder) / self.snapshot if self.snapshot else Path(folder)

    def check_encoder(self, encoder_id: str, folder: Path) -> None:
        if self.encoder.get("id") != encoder_id:
            raise IndexFormatError(
                f"{folder} was built by encoder {self.encoder.get('id')}, but the encoder here is "
                f"{encoder_id}: its vectors are not comparable. Rebuild it with `moonsearch index`."
            )
