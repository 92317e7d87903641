"""Metadata filters: `field=value`, `field=a,b`, `field!=value`, `field<n`, `field>=n`, ...

A filter becomes a SQL fragment whose keys and values are literals built by
`moonsearch.store.sql_literals` (quoted, so whatever a user types stays a value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moonsearch.errors import MoonsearchError
from moonsearch.store import sql_literals

# Longest operators first so that "<=" is not read as "<".
_PATTERN = re.compile(r"^\s*(?P<key>[^<>=!]+?)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.*?)\s*$")
NUMERIC_OPS = {"<", "<=", ">", ">="}


@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    values: tuple[str, ...]

    def to_sql(self) -> str:
        """-> the SELECT of matching rows."""
        key = sql_literals.text(self.key)
        if self.op in NUMERIC_OPS:
            bound = sql_literals.number(self.values[0])
            return f"SELECT row FROM attributes WHERE key = {key} AND value_num {self.op} {bound}"
        lowered = sql_literals.texts(v.lower() for v in self.values)
        matching = f"SELECT row FROM attributes WHERE key = {key} AND value_lower IN (SELECT unnest({lowered}))"
        if self.op == "=":
            return matching
        return f"SELECT row FROM products WHERE row NOT IN ({matching})"


def parse_filter(text: str) -> Filter:
    """Parse one `--filter` argument; a clear error says what shape is expected."""
    match = _PATTERN.match(text or "")
    if not match or not match["value"]:
        raise MoonsearchError(
            f"cannot read filter '{text}': expected field=value, field=a,b, field!=value, "
            "field<n, field<=n, field>n or field>=n (e.g. gender=Men, price<1000)"
        )
    key, op, value = match["key"].strip(), match["op"], match["value"]
    if op in NUMERIC_OPS:
        try:
            float(value)
        except ValueError:
            raise MoonsearchError(f"filter '{text}': '{op}' needs a number, got '{value}'") from None
        return Filter(key, op, (value,))
    values = tuple(v.strip() for v in value.split(",") if v.strip())
    if not values:
        raise MoonsearchError(f"filter '{text}' has no value")
    return Filter(key, op, values)


def parse_filters(texts: list[str] | tuple[str, ...] | None) -> list[Filter]:
    return [parse_filter(t) for t in texts or []]
