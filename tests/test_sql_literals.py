"""SQL literals (moonsearch.store.sql_literals) read back by DuckDB as exactly the value given."""

import duckdb
import pytest

from moonsearch.store import sql_literals

AWKWARD = ["", "plain", "it's", "''", "'; DROP TABLE t; --", "back\\slash\\'", "$$dollar$$", "?", "$1",
           "new\nline\ttab", "ünïcödé ΣΑΣ 😀", "E'x'", "a\"b"]


@pytest.mark.parametrize("value", AWKWARD)
def test_text_reads_back_as_itself(value):
    assert duckdb.connect().execute(f"SELECT {sql_literals.text(value)}").fetchone()[0] == value


def test_a_nul_byte_becomes_a_space():
    literal = sql_literals.text("red\x00dress")
    assert duckdb.connect().execute(f"SELECT {literal}").fetchone()[0] == "red dress"


def test_lists_and_numbers_read_back():
    con = duckdb.connect()
    assert con.execute(f"SELECT {sql_literals.texts(AWKWARD)}").fetchone()[0] == AWKWARD
    assert con.execute(f"SELECT {sql_literals.integers([3, 0, 2 ** 40])}").fetchone()[0] == [3, 0, 2 ** 40]
    assert con.execute(f"SELECT count(*) FROM (SELECT unnest({sql_literals.texts([])}))").fetchone()[0] == 0
    for x in (1.5, -2e-7, float("inf"), 1000):
        assert con.execute(f"SELECT {sql_literals.number(x)}").fetchone()[0] == x
    with pytest.raises(ValueError):
        sql_literals.integers(["1; DROP TABLE t"])
