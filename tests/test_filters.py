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


def test_sql_keeps_user_text_out_of_the_statement():
    f = parse_filter("title=x'); DROP TABLE products; --")
    sql, params = f.to_sql()
    assert "DROP" not in sql and "x'" not in sql
    assert params[0] == "title"
