import duckdb
import pytest

from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.store.filters import parse_filters
from moonsearch.store.metadata import MetadataStore, MetadataWriter, ProductRow, flatten_attributes


def make_store(folder):
    rows = [
        ProductRow(0, "a", "Red Dress", None, ["/x/a.jpg"], True,
                   {"gender": "Women", "articleType": "Dresses", "baseColour": "Red", "price": 999,
                    "attributes": {"Pattern": "Solid"}, "tags": ["party", "summer"]}, "p.jsonl:1"),
        ProductRow(1, "b", "Blue Shirt", "cotton", [], False,
                   {"gender": "Men", "articleType": "Shirts", "baseColour": "Blue", "price": 1500.5,
                    "attributes": {"Pattern": "Striped"}}, "p.jsonl:2"),
        ProductRow(2, "c", "Red Shirt", None, ["/x/c.jpg"], True,
                   {"gender": "Men", "articleType": "Shirts", "baseColour": "Red", "price": "450"}, "p.jsonl:3"),
    ]
    writer = MetadataWriter(folder)
    writer.add(rows[:2])
    writer.add(rows[2:])
    writer.close()
    return MetadataStore(folder)


@pytest.fixture
def store(tmp_path):
    s = make_store(tmp_path)
    yield s
    s.close()


def rows(store, *texts):
    return store.allowed_rows(parse_filters(list(texts))).tolist()


def test_flatten_nested_and_lists():
    pairs = list(flatten_attributes({"a": {"b": 1, "c": None}, "t": ["x", "y"], "e": ""}))
    assert pairs == [("a.b", 1), ("t", "x"), ("t", "y")]


def test_products_come_back_in_requested_order(store):
    records = store.products([2, 0])
    assert [r["id"] for r in records] == ["c", "a"]
    assert records[1]["attributes"]["attributes"]["Pattern"] == "Solid"
    assert records[1]["images"] == ["/x/a.jpg"]
    assert store.count() == 3
    assert store.row_of("b") == 1 and store.row_of("zzz") is None
    assert store.rows_with_image().tolist() == [0, 2]


def test_equality_is_case_insensitive_and_multi_valued(store):
    assert rows(store, "gender=men") == [1, 2]
    assert rows(store, "baseColour=Red,Blue") == [0, 1, 2]
    assert rows(store, "tags=party") == [0]


def test_numeric_comparisons_read_numbers_from_text_too(store):
    assert rows(store, "price<1000") == [0, 2]
    assert rows(store, "price>=1500.5") == [1]
    assert rows(store, "price>100", "price<=450") == [2]


def test_nested_keys_and_conjunction(store):
    assert rows(store, "attributes.Pattern=Striped") == [1]
    assert rows(store, "gender=Men", "baseColour=Red") == [2]
    assert rows(store, "gender=Women", "baseColour=Blue") == []


def test_not_equal_keeps_products_without_the_field(store):
    assert rows(store, "attributes.Pattern!=Solid") == [1, 2]


def test_unknown_field_is_a_clear_error(store):
    with pytest.raises(MoonsearchError, match="did you mean gender"):
        rows(store, "Gender=Men")


def test_hostile_values_are_data_not_sql(store, tmp_path):
    assert rows(store, "gender=Men' OR '1'='1") == []
    assert store.count() == 3


def test_missing_database_is_a_format_error(tmp_path):
    with pytest.raises(IndexFormatError):
        MetadataStore(tmp_path / "nowhere")


def test_file_is_a_real_duckdb_database(tmp_path):
    make_store(tmp_path).close()
    con = duckdb.connect(str(tmp_path / "metadata.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM attributes WHERE key = 'attributes.Pattern'").fetchone()[0] == 2


def live_keys_and_values(path):
    """What the summary tables stand for, grouped from every attribute row."""
    con = duckdb.connect(str(path), read_only=True)
    keys = con.execute("SELECT key, count(DISTINCT row) AS n FROM attributes GROUP BY key ORDER BY n DESC, key").fetchall()
    values = con.execute("SELECT key, value, count(DISTINCT row) FROM attributes WHERE value IS NOT NULL "
                         "GROUP BY key, value ORDER BY ALL").fetchall()
    con.close()
    return keys, values


def summary_answers(folder):
    s = MetadataStore(folder)
    try:
        keys = s.attribute_keys()
        counts = s.value_counts([k for k, _ in keys])
        return s._summarised(), keys, sorted((k, v, n) for k, found in counts.items() for v, n in found.items())
    finally:
        s.close()


def test_attribute_summaries_answer_as_the_attribute_rows_after_build_and_writes(tmp_path):
    make_store(tmp_path).close()
    path = tmp_path / "metadata.duckdb"
    summarised, keys, values = summary_answers(tmp_path)
    assert summarised and (keys, values) == live_keys_and_values(path)
    assert ("tags", "party", 1) in values and dict(keys)["gender"] == 3
    # attributes are stored ordered by key (what lets a key's first read skip other keys' row groups)
    con = duckdb.connect(str(path), read_only=True)
    stored = [k for (k,) in con.execute("SELECT key FROM attributes").fetchall()]
    con.close()
    assert stored == sorted(stored)

    writer = MetadataStore(tmp_path, writable=True)
    assert not writer._summarised()      # a writable store reads the rows it is changing
    writer.delete([1])
    writer.upsert([ProductRow(7, "g", "Green Skirt", None, [], False,
                              {"gender": "Women", "articleType": "Skirts", "fit": "Flared"}, "p.jsonl:4")])
    assert dict(writer.attribute_keys())["fit"] == 1
    writer.close()
    summarised, keys, values = summary_answers(tmp_path)
    assert summarised and (keys, values) == live_keys_and_values(path)
    assert dict(keys)["fit"] == 1 and ("articleType", "Shirts", 1) in values

    # a file from before the summaries answers the same from its attribute rows
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE attribute_keys")
    con.execute("DROP TABLE attribute_values")
    con.close()
    summarised, old_keys, old_values = summary_answers(tmp_path)
    assert not summarised and (old_keys, old_values) == (keys, values)
