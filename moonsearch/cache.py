"""Where moonsearch keeps what it can rebuild: tower feature caches and exported models."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Outside the work tree ($MOONSEARCH_CACHE or ~/.cache/moonsearch), so a fresh clone or
    another checkout reuses what an earlier one built."""
    return Path(os.environ.get("MOONSEARCH_CACHE", Path.home() / ".cache" / "moonsearch"))
