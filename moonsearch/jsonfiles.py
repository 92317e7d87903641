"""JSON and JSONL files a user points moonsearch at (configs, queries, floors, model configs).

A typo in a path or a broken line there is the user's to fix, so it becomes a MoonsearchError
naming the file (and line), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

from moonsearch.errors import MoonsearchError


def _text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MoonsearchError(f"{what}: no file at {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MoonsearchError(f"{what}: cannot read {path} ({getattr(exc, 'strerror', None) or exc})") from None


def _object(text: str, where: str, what: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MoonsearchError(f"{what}: {where} is not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise MoonsearchError(f"{what}: {where} is not a JSON object")
    return value


def read_json(path: Path | str, what: str) -> dict:
    """The file's one JSON object."""
    return _object(_text(Path(path), what), str(path), what)


def read_jsonl(path: Path | str, what: str) -> list[dict]:
    """One JSON object per non-blank line."""
    lines = _text(Path(path), what).splitlines()
    return [_object(line, f"{path} line {n}", what) for n, line in enumerate(lines, start=1) if line.strip()]
