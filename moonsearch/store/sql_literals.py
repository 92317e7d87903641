"""Values written into SQL as literals, for the read queries a search runs.

Why not bound parameters: DuckDB's Python client imports pandas (when it is installed) the
first time any query binds one, and that import was 0.2-0.4 s of a one-shot `moonsearch query`.
So the read queries inline their values, built only here: integers through `int()`, numbers
through a cast of their text, text between single quotes with its quotes doubled. A DuckDB
string literal has no other escape (backslashes are plain characters), so whatever a user types
stays one string value and never becomes SQL. Writes keep bound parameters (indexing imports
pandas-sized libraries anyway).
"""

from __future__ import annotations

from typing import Iterable


def text(value: str) -> str:
    """A string literal. A NUL byte would end the SQL text, so it becomes a space: no stored key
    or value holds one, and the keyword analyser splits words there anyway."""
    return "'" + str(value).replace("\x00", " ").replace("'", "''") + "'"


def texts(values: Iterable[str]) -> str:
    """A list literal of strings, for `x IN (SELECT unnest(...))`."""
    return "[" + ", ".join(text(v) for v in values) + "]"


def integers(values: Iterable[int]) -> str:
    """A list literal of integers (rows), for `row IN (SELECT unnest(...))`."""
    return "[" + ", ".join(str(int(v)) for v in values) + "]"


def number(value: float) -> str:
    """A DOUBLE, inf and nan included (which have no bare SQL spelling)."""
    return f"CAST('{float(value)!r}' AS DOUBLE)"
