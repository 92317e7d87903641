import duckdb
import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.store.filters import Filter, parse_filter


@pytest.mark.parametrize("text, expected", [
    ("gender=Men", Filter("gender", "=", ("Men",))),
    ("baseColour=Red,Blue", Filter("baseColour", "=", ("Red", "Blue"))),
    ("price<1000", Filter("price", "<", ("1000",))),
    ("price <= 999.5", Filter("price", "<=", ("999.5",))),
    ("price>=10", Filter("price", ">=", ("10",))),
    ("year>2011", Filter("year", ">", ("2011",))),
    ("usage!=Sports", Filter("usage", "!=", ("Sports",))),
    ("attributes.Sleeve Length=Short Sleeves", Filter("attributes.Sleeve Length", "=", ("Short Sleeves",))),
])
def test_parse_filter(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize("text", ["gender", "=Men", "price<", "price<cheap", "colour=,", ""])
def test_bad_filters_are_clear_errors(text):
    with pytest.raises(MoonsearchError):
        parse_filter(text)


def test_user_text_in_a_filter_stays_a_value():
    """Filters are SQL with quoted literals (moonsearch.store.sql_literals): text built to break
    out of the quotes is matched as a value, and the statement it tried to add never runs."""
    nasty = "x'); DROP TABLE products; --"
    con = duckdb.connect()
    con.execute("CREATE TABLE products (row BIGINT)")
    con.execute("CREATE TABLE attributes (row BIGINT, key VARCHAR, value_lower VARCHAR, value_num DOUBLE)")
    con.execute("INSERT INTO products VALUES (0), (1), (2)")
    con.executemany("INSERT INTO attributes VALUES (?, ?, ?, ?)", [
        [0, "title", nasty.lower(), None], [1, "title", "x", None], [2, "it's", "a\\b", 3.5]])

    def rows(f):
        return sorted(r for (r,) in con.execute(f.to_sql()).fetchall())

    assert rows(parse_filter(f"title={nasty}")) == [0]
    assert rows(parse_filter(f"title!={nasty}")) == [1, 2]
    assert rows(Filter("it's", "=", ("A\\b",))) == [2]
    assert rows(Filter("it's", "<", ("inf",))) == [2] and rows(Filter("it's", ">", ("3.5",))) == []
    assert con.execute("SELECT count(*) FROM products").fetchone()[0] == 3
