"""Keyword search, filters and hit records answered from memory equal the SQL answers.

DuckDB stays the store of record and its SQL (the fts `match_bm25` macro, Filter.to_sql, the
products fetch) is the reference: every in-memory answer is compared with it on real index
files built by the real indexer.
"""

import json
import random
import shutil

import duckdb
import numpy as np
import pytest

from moonsearch.errors import MoonsearchError
from moonsearch.index.builder import build_index
from moonsearch.store.filters import parse_filters
from moonsearch.store.keywords import KEYWORD_SCHEMA, load_fts
from moonsearch.store.metadata import DB_FILE, MetadataStore, MetadataWriter, ProductRow
from moonsearch.store.postings import load_postings, query_terms, tokenize

from conftest import MYNTRA, SHOPPER_QUERIES, make_tiny_catalog, tiny_records

EVERYTHING = 10 ** 9   # a k that keeps every match

QUERIES = [
    "dress", "dresses", "Dresses", "DRESS", "shirts", "shirt", "running", "runs", "sunglasses",   # words, stems
    "red dress", "black jeans", "men formal shirt", "women casual shoes for the office",
    "navy blue canvas lace-up casual shoes", "wayfarer", "sleeve length",
    "Jéans", "drèss", "Café crème", "naïve coöperate", "ÉCHARPE",                                  # accents
    "t-shirt", "men's", "red,dress!!", "(red) [dress]", "lace-ups/sneakers", "uv400", "a_b+c=d",   # punctuation
    "qwertyuiop", "zzzz dress", "xylophone harmonica",                                             # absent words
    "dress dress dress", "red red dress", "shirts shirt SHIRT",                                   # repeated words
    "", "   ", "123 456", "!!!", "-", "'", "the and of",                                            # nothing to match
    "ΣΑΣ", "straße", "emoji 😀 dress", "\tred\ndress ", "dress'); DROP TABLE products; --",
]


def same_ranking(reference, mine, tol=1e-12):
    """Equal rankings, where runs of scores within tol of each other may come in any order:
    DuckDB adds a product's per-word parts in an order of its own (its result changes with its
    thread count), so scores of 3+ word queries can differ in the last bit and such near-ties
    are ordered arbitrarily there; here equal scores are bit-equal and tie by row."""
    if [r for r, _ in reference] == [r for r, _ in mine]:
        return True
    if sorted(r for r, _ in reference) != sorted(r for r, _ in mine):
        return False
    block, blocks, first = -1, [], None
    for _, score in mine:
        if first is None or abs(score - first) > tol * max(1.0, abs(first)):
            block, first = block + 1, score
        blocks.append(block)
    position = {r: i for i, (r, _) in enumerate(mine)}
    return all(blocks[position[r]] == blocks[i] for i, (r, _) in enumerate(reference))


def same_top(reference, mine, tol=1e-12):
    """Top-k lists that agree, but for which of several near-tied products at the cut made it."""
    if len(reference) != len(mine) or not all(
            abs(a - b) <= tol * max(1.0, abs(a)) for (_, a), (_, b) in zip(reference, mine)):
        return False
    last = mine[-1][1] if mine else 0.0
    keep = [i for i, (_, s) in enumerate(mine) if abs(s - last) > tol * max(1.0, abs(last))]
    return same_ranking([reference[i] for i in keep], [mine[i] for i in keep], tol)


def assert_same_keyword_results(reference, mine, query):
    assert same_ranking(reference, mine), query
    ref, got = dict(reference), dict(mine)
    assert ref.keys() == got.keys(), query
    for row, score in ref.items():
        assert got[row] == pytest.approx(score, rel=1e-13, abs=1e-15), (query, row)
    if len(query_terms(query)) <= 2:   # two parts add the same in either order: bit for bit
        assert reference == mine, query


@pytest.fixture(scope="module")
def folder(sample_index):
    summary, _ = sample_index
    return summary.out


@pytest.fixture
def store(folder):
    """A store of its own on the sample index, answering from memory from the first use."""
    s = MetadataStore(folder)
    s.memory_after = 0
    yield s
    s.close()


@pytest.fixture(scope="module")
def postings(folder):
    con = duckdb.connect(str(folder / DB_FILE), read_only=True)
    yield load_postings(con)
    con.close()


def vocabulary_queries(folder, n_random=60, single_words=True):
    """Every word of the sample titles, and random 2-5 word queries from them."""
    con = duckdb.connect(str(folder / DB_FILE), read_only=True)
    titles = [t for (t,) in con.execute("SELECT title FROM products ORDER BY row").fetchall()]
    con.close()
    words = sorted({w for t in titles for w in t.split()})
    rng = random.Random(17)
    combined = [" ".join(rng.sample(words, rng.randint(2, 5))) for _ in range(n_random)]
    return (words if single_words else []) + combined


# ---- keyword search -------------------------------------------------------------------------

def test_tokenizer_and_stems_are_duckdbs(folder):
    con = duckdb.connect(str(folder / DB_FILE), read_only=True)
    load_fts(con)
    texts = [t for (t,) in con.execute("SELECT text FROM products").fetchall()] + QUERIES
    for text in texts:
        assert tokenize(text) == con.execute(f"SELECT {KEYWORD_SCHEMA}.tokenize(?)", [text]).fetchone()[0], text
    words = sorted({w for text in texts for w in tokenize(text)} | {
        "evening", "organic", "organizer", "universal", "university", "generously", "dying", "skies", "news",
        "knitted", "kurtas", "heeled", "sleeveless", "running", "cycling", "flops", "watches", "jeans"})
    stems = dict(con.execute("SELECT w, stem(w, 'english') FROM (SELECT unnest(?) AS w)", [words]).fetchall())
    con.close()
    mismatched = {w: (stems[w], query_terms(w)) for w in words
                  if query_terms(w) and query_terms(w) != [stems[w]]}
    assert not mismatched


def test_bm25_scores_and_rankings_equal_duckdbs(store, postings, folder):
    for query in QUERIES + vocabulary_queries(folder):
        reference = store.keyword_rows_sql(query, EVERYTHING)
        mine = postings.search(query, None)
        assert_same_keyword_results(reference, mine, query)
        for k in (1, 3, 10, 100):
            top = postings.search(query, k)
            assert top == mine[:k], (query, k)
            assert same_top(store.keyword_rows_sql(query, k), top), (query, k)


def test_bm25_with_allowed_rows_equals_duckdbs(store, postings, folder):
    rng = np.random.default_rng(3)
    count = store.count()
    allowed_sets = [
        store.allowed_rows(parse_filters(["gender=Women"])),
        store.allowed_rows(parse_filters(["price<1000"])),
        np.sort(rng.choice(count, size=count // 3, replace=False)),
        np.array([], np.int64),
        np.array([0, 5, count - 1, count + 50]),     # a row past the end matches nothing
    ]
    for query in QUERIES + vocabulary_queries(folder, n_random=25, single_words=False):
        for allowed in allowed_sets:
            for k in (5, 100):
                reference = store.keyword_rows_sql(query, k, allowed)
                mine = postings.search(query, k, allowed)
                assert set(r for r, _ in mine) <= set(allowed.tolist())
                assert same_top(reference, mine), (query, k)
            full = store.keyword_rows_sql(query, EVERYTHING, allowed)
            assert_same_keyword_results(full, postings.search(query, None, allowed), query)


def test_store_answers_by_sql_first_then_from_memory(folder):
    s = MetadataStore(folder)
    try:
        assert s.memory_after == 1
        first = s.keyword_rows("red dress", 10)
        assert s._postings is None and s._records is None
        assert s.products([r for r, _ in first]) == s.products_sql([r for r, _ in first])
        second = s.keyword_rows("red dress", 10)
        assert s._postings and first == second
        s.products([0])
        assert s._records is not None
        # a filter key: its first use by SQL, the next loads its values; each key on its own
        red, men = parse_filters(["baseColour=Red"]), parse_filters(["gender=Men"])
        by_sql = s.allowed_rows(red)
        assert s._attributes is None or not s._attributes.has("baseColour")
        assert s.allowed_rows(red).tolist() == by_sql.tolist() == s.allowed_rows_sql(red).tolist()
        assert s._attributes.has("baseColour") and not s._attributes.has("gender")
        assert s.allowed_rows(red + men).tolist() == s.allowed_rows_sql(red + men).tolist()
        assert not s._attributes.has("gender")   # gender's first use: SQL
    finally:
        s.close()


def test_opening_reads_nothing_and_vectors_queries_load_no_postings(folder, encoder):
    from moonsearch.search.product_index import ProductIndex

    index = ProductIndex.open(folder, device="cpu", encoder=encoder)
    try:
        store = index.store
        assert (store._postings, store._records, store._attributes) == (None, None, None)
        for _ in range(3):
            index.search(text="red dress", k=5, hybrid=False)
        assert store._postings is None and store._records is not None and store._attributes is None
        for _ in range(2):   # the filter key's first use by SQL, the second loads its values
            index.search(text="red dress", k=5, filters=["gender=Women"], hybrid=False)
        assert store._attributes.has("gender") and store._postings is None
    finally:
        index.close()


def test_an_fts_index_built_otherwise_is_scored_by_its_sql_macro(folder, tmp_path):
    shutil.copy(folder / DB_FILE, tmp_path / DB_FILE)
    con = duckdb.connect(str(tmp_path / DB_FILE))
    load_fts(con)
    con.execute("PRAGMA create_fts_index('products', 'row', 'text', stemmer='porter', overwrite=1)")
    con.close()
    s = MetadataStore(tmp_path)
    s.memory_after = 0
    try:
        assert s.keyword_rows("running shoes", 10) == s.keyword_rows_sql("running shoes", 10)
        assert s._postings is False
    finally:
        s.close()


# ---- filters --------------------------------------------------------------------------------

SAMPLE_FILTERS = [
    [], ["gender=Men"], ["gender=men"], ["gender=WOMEN"], ["baseColour=Red,Blue"], ["baseColour=navy blue,BLACK"],
    ["baseColour=Nope"], ["gender!=Men"], ["gender!=men,women"], ["baseColour!=Red,Black,Nope"],
    ["price<1000"], ["price<=1249"], ["price>1249"], ["price>=1249"], ["price<0"], ["price>=0"],
    ["price<999.5"], ["price>1e9"], ["price<inf"], ["price>-inf"], ["price<nan"], ["price<=nan"],
    ["price>nan"], ["price>=nan"], ["gender=Women", "price<1500"], ["gender=Men", "baseColour=Red"],
    ["gender=Women", "baseColour=Blue", "usage!=Casual"], ["price>500", "price<=1399", "gender!=Unisex"],
    ["attributes.Pattern=Solid"], ["attributes.Pattern!=Solid"], ["attributes.Sleeve Length=Long Sleeves"],
    ["attributes.Frame Shape!=Wayfarer", "gender=Women"], ["brand=saffron lane,LUMORA"],
]


@pytest.mark.parametrize("texts", SAMPLE_FILTERS, ids=lambda t: "&".join(t) or "none")
def test_every_filter_form_equals_the_sql_on_the_sample(store, texts):
    filters = parse_filters(texts)
    expected = store.allowed_rows_sql(filters)
    got = store.allowed_rows(filters)
    assert got.dtype == expected.dtype and got.tolist() == expected.tolist()


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory, encoder):
    """A tiny catalog built by the indexer with the awkward attribute shapes: lists of values,
    numbers written as text, keys some products lack, nested keys, values that are not numbers."""
    records = tiny_records(12)
    for i, r in enumerate(records):
        if i % 3 == 0:
            r["tags"] = ["party", "Summer"] if i % 2 else ["summer"]
        if i % 4 == 1:
            r["size"] = [str(38 + i), 40 + i]          # several numbers, one as text
        if i % 5 == 2:
            del r["baseColour"]
        if i % 2:
            r["price"] = str(r["price"])               # a number as text
        r["details"] = {"Fit": "Slim" if i % 3 else "Regular", "rating": "4.5" if i % 2 else "n/a"}
    folder = tmp_path_factory.mktemp("edge")
    make_tiny_catalog(folder / "catalog", records)
    build_index(folder / "catalog", folder / "index", encoder=encoder, device="cpu")
    s = MetadataStore(folder / "index")
    yield s
    s.close()


EDGE_FILTERS = [
    ["tags=party"], ["tags=SUMMER"], ["tags=party,summer"], ["tags!=party"], ["tags!=party,summer"],
    ["baseColour!=Red"], ["baseColour=Red,Green"], ["size<45"], ["size>=45"], ["size=39"], ["size!=39"],
    ["price<800"], ["price>=800", "price<=1100"], ["price>700", "tags=summer", "baseColour!=Black"],
    ["details.Fit=slim"], ["details.Fit!=Slim", "gender=Men"], ["details.rating>4"], ["details.rating<=4.5"],
    ["details.rating=N/A"], ["details.rating!=n/a"], ["gender=Women", "gender=Men"],
]


@pytest.mark.parametrize("texts", EDGE_FILTERS, ids=lambda t: "&".join(t))
def test_lists_missing_keys_and_numbers_as_text_equal_the_sql(edge_store, texts):
    filters = parse_filters(texts)
    assert edge_store.allowed_rows(filters).tolist() == edge_store.allowed_rows_sql(filters).tolist()


def test_edge_catalog_has_what_the_filters_probe(edge_store):
    keys = dict(edge_store.attribute_keys())
    assert keys["tags"] < keys["gender"] and keys["baseColour"] < keys["gender"]
    assert edge_store.allowed_rows_sql(parse_filters(["tags!=party"])).size > 0


def test_unknown_keys_fail_the_same_way(store):
    for texts in (["Gender=Men"], ["gender=Men", "colour=Red"]):
        with pytest.raises(MoonsearchError) as sql_error:
            store.allowed_rows_sql(parse_filters(texts))
        with pytest.raises(MoonsearchError) as memory_error:
            store.allowed_rows(parse_filters(texts))
        assert str(sql_error.value) == str(memory_error.value)


# ---- hit records ----------------------------------------------------------------------------

def test_products_equal_the_sql_records(store):
    rows = list(range(store.count()))
    random.Random(5).shuffle(rows)
    assert store.products(rows) == store.products_sql(rows)
    assert store.products([3, 3, 0]) == store.products_sql([3, 3, 0])
    assert store.products(np.array([7, 1])) == store.products_sql(np.array([7, 1]))
    assert store.products([]) == []
    with pytest.raises(KeyError):
        store.products([store.count() + 5])


def test_a_callers_change_to_a_record_does_not_stick(store):
    first = store.products([0])[0]
    first["attributes"]["gender"] = "changed"
    first["images"].append("x")
    assert store.products([0]) == store.products_sql([0])


# ---- real products --------------------------------------------------------------------------

SLICE = 3000


@pytest.fixture(scope="module")
def myntra_store(tmp_path_factory):
    """The store of the first 3,000 Myntra `test` products, written as the indexer writes it
    (the vectors are not needed to compare keyword rankings)."""
    if not (MYNTRA / "products.jsonl").exists() or not SHOPPER_QUERIES.exists():
        pytest.skip(f"real catalog or shopper queries not found under {MYNTRA.parent} (../shared/data is absent)")
    from moonsearch.catalog.reader import open_catalog
    from moonsearch.catalog.inputs import product_text

    folder = tmp_path_factory.mktemp("myntra-store")
    writer, rows = MetadataWriter(folder), []
    for product in open_catalog(MYNTRA).products():
        if product.attributes.get("split") != "test":
            continue
        rows.append(ProductRow(row=len(rows), id=product.id, title=product.title, description=product.description,
                               images=[str(p) for p in product.images], has_image=bool(product.images),
                               attributes=product.attributes, source=product.source,
                               text=product_text(product.title, product.attributes)))
        if len(rows) == SLICE:
            break
    writer.add(rows)
    writer.close()
    s = MetadataStore(folder)
    s.memory_after = 0
    yield folder, s
    s.close()


@pytest.mark.slow
def test_shopper_queries_rank_as_duckdb_on_real_products(myntra_store):
    folder, myntra_store = myntra_store
    queries = [json.loads(line)["query"] for line in SHOPPER_QUERIES.read_text().splitlines() if line.strip()]
    assert len(queries) >= 50
    con = duckdb.connect(str(folder / DB_FILE), read_only=True)
    postings = load_postings(con)
    con.close()
    women = myntra_store.allowed_rows(parse_filters(["gender=Women"]))
    for query in queries:
        assert_same_keyword_results(myntra_store.keyword_rows_sql(query, EVERYTHING), postings.search(query, None), query)
        assert same_ranking(myntra_store.keyword_rows_sql(query, EVERYTHING, women),
                            postings.search(query, None, women)), query
        assert myntra_store.keyword_rows(query, 100) == postings.search(query, 100)
    for texts in (["gender=Women"], ["articleType=Tshirts,Shirts"], ["price<1000"], ["baseColour!=Black"],
                  ["gender=Men", "price>=1500", "usage!=Sports"], ["attributes.Pattern=Solid", "season=Summer"]):
        filters = parse_filters(texts)
        assert myntra_store.allowed_rows(filters).tolist() == myntra_store.allowed_rows_sql(filters).tolist()
    rows = list(range(0, SLICE, 7))
    assert myntra_store.products(rows) == myntra_store.products_sql(rows)


# ---- many threads -----------------------------------------------------------------------------

def test_first_uses_from_many_threads_at_once_equal_the_sql(folder):
    """A server's threads share one store. Their first uses of filter keys, records and keyword
    postings reach DuckDB at the same moment; each must get its own answer (on one shared
    connection, threads read each other's results: a server's intermittent 500)."""
    import threading

    keys = ["gender=Men", "baseColour=Red", "usage!=Casual", "price<1000", "attributes.Pattern=Solid",
            "brand=saffron lane", "attributes.Sleeve Length=Long Sleeves",
            "attributes.Frame Shape!=Wayfarer"]
    reference = MetadataStore(folder)
    expected = {text: reference.allowed_rows_sql(parse_filters([text])).tolist() for text in keys}
    expected_words = reference.keyword_rows_sql("red dress", 20)
    expected_records = reference.products_sql([0, 1, 2])
    reference.close()
    for _ in range(12):   # a fresh store each round: every round's uses are first uses
        s = MetadataStore(folder)
        start = threading.Barrier(len(keys) + 2)
        got, errors = {}, []

        def run(name, call):
            start.wait()
            try:
                got[name] = call()
            except Exception as exc:   # recorded: the assertion below names it
                errors.append(f"{name}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=run, args=(t, lambda t=t: s.allowed_rows(parse_filters([t])).tolist()))
                   for t in keys]
        threads.append(threading.Thread(target=run, args=("words", lambda: s.keyword_rows("red dress", 20))))
        threads.append(threading.Thread(target=run, args=("records", lambda: s.products([0, 1, 2]))))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        s.close()
        assert not errors, errors
        assert {t: got[t] for t in keys} == expected
        assert same_ranking(expected_words, got["words"])
        assert got["records"] == expected_records
