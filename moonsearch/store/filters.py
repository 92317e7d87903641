"""Metadata filters: `field=value`, `field=a,b`, `field!=value`, `field<n`, `field>=n`, ...

A filter becomes a SQL fragment with placeholders; keys and values are always bound
parameters, so nothing a user types is ever formatted into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from moonsearch.errors import MoonsearchError

# Longest operators first so that "<=" is not read as "<".
_PATTERN = re.compile(r"^\s*(?P<key>[^<>=!]+?)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.*?)\s*$")
NUMERIC_OPS = {"<", "<=", ">", ">="}


@dataclass(frozen=True)
class Filter:
    key: str
    op: str
    values: tuple[str, ...]

    def to_sql(self) -> tuple[str, list]:
        """-> (SELECT of matching rows, parameters)."""
        if self.op in NUMERIC_OPS:
            return (f"SELECT row FROM attributes WHERE key = ? AND value_num {self.op} ?",
                    [self.key, float(self.values[0])])
        lowered = [v.lower() for v in self.values]
        matching = "SELECT row FROM attributes WHERE key = ? AND value_lower IN (SELECT unnest(?))"
        if self.op == "=":
            return matching, [self.key, lowered]
        return f"SELECT row FROM products WHERE row NOT IN ({matching})", [self.key, lowered]


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
