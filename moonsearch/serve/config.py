"""Server settings: where it listens, what it accepts, who may write.

Safe defaults, because a search server is easy to expose by accident: it listens on 127.0.0.1,
sends no CORS headers, and takes no writes unless a token is configured (in a file, or the
MOONSEARCH_SERVE_TOKEN environment variable: never on the command line, where `ps` shows it).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from moonsearch.errors import MoonsearchError

TOKEN_ENV = "MOONSEARCH_SERVE_TOKEN"


@dataclass
class ServeConfig:
    index: Path
    host: str = "127.0.0.1"
    port: int = 8000
    device: str = "cpu"
    write_token: str | None = None           # None: writes are off
    cors_origins: list[str] = field(default_factory=list)
    max_upload_bytes: int = 8 * 1024 * 1024  # a query photo; larger bodies get a 413
    max_image_pixels: int = 40_000_000       # decoded size of a query photo
    request_timeout_s: float = 30.0          # past it, a 503 (explain is the slow one: ~1 s)
    candidates: int = 200                    # a query's candidate set: facets, price sort, min_score
    max_k: int = 100                         # page size cap
    max_window: int = 1000                   # offset + limit cap
    facet_fields: list[str] = field(default_factory=list)   # empty: chosen per query
    warm_text: str = "shirt"
    workers: int = 1                         # processes serving the one socket (see serve.app.serve)
    follow_s: float = 1.0                    # seconds between looks for other processes' writes; 0: off

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "index": str(self.index)})

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        values = json.loads(text)
        return cls(**{**values, "index": Path(values["index"])})


def read_token(token_file: Path | None) -> str | None:
    """The write token: the file's first line if given, else the environment; empty means none."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip().splitlines()[0:1]
        except OSError as exc:
            raise MoonsearchError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        token = token[0].strip() if token else ""
        if not token:
            raise MoonsearchError(f"the token file {token_file} is empty")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    return token or None
