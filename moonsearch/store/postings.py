"""BM25 keyword search from postings held in memory, scored exactly as DuckDB's fts extension.

DuckDB's `match_bm25` macro re-reads the index tables on every query (35 ms on 40k products);
the same postings in numpy arrays answer in under a millisecond. The index DuckDB built
stays the store of record: `load_postings` reads its tables once and checks that its macros are
the ones this module reproduces (tokeniser, stemmer, formula); anything else is refused with
`KeywordIndexMismatch` so the caller can keep using the SQL macro.

Scores equal DuckDB's to the last bit for one- and two-word queries; with three or more words
DuckDB adds the per-word parts in an order of its own (it changes with its thread count), so
sums can differ in the last bit (~1e-16) and DuckDB's own order of such near-ties is arbitrary.
Here the parts are always added in the same order, so equal scores are bit-equal and tie by row.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from moonsearch.errors import MoonsearchError

# DuckDB's match_bm25 defaults (k := 1.2, b := 0.75), as the searcher calls it.
K1, B = "1.2", "0.75"

# The fts `tokenize` macro: strip_accents, lower, this character class to a space, split on \s.
_IGNORED = re.compile(r"""[0-9!@#$%^&*()_+={}\[\]:;<>,.?~\\/|'"`-]+""")
_SPACE = re.compile(r"[\t\n\f\r ]+")   # RE2's \s: ASCII space, tab, newline, form feed, return
_MARKS = {"Mn", "Mc", "Me"}            # what utf8proc's STRIPMARK removes

# The macro text DuckDB 1.5 writes for an index of table `products` (stemmer english, lower=1);
# an index whose macros differ is not scored here.
EXPECTED_TOKENIZE = (
    "string_split_regex(regexp_replace(lower(strip_accents(CAST(s AS VARCHAR))), "
    "'[0-9!@#$%^&*()_+={}\\[\\]:;<>,.?~\\\\/\\|''''\"`-]+', ' ', 'g'), '\\s+')"
)
EXPECTED_BM25_PARTS = (
    "SELECT DISTINCT stem(unnest({schema}.tokenize(query_string)), 'english') AS t",
    "(log((((((SELECT num_docs FROM {schema}.stats) - df) + 0.5) / (df + 0.5)) + 1)) * "
    "((tf * (k + 1)) / (tf + (k * ((1 - b) + (b * (len / (SELECT avgdl FROM {schema}.stats))))))))",
    "sum(subscore) AS score",
)


class KeywordIndexMismatch(MoonsearchError):
    """The DuckDB fts index is not one this module scores identically (the SQL path still works)."""


def _lower(text: str) -> str:
    # DuckDB lowers code point by code point; str.lower() would turn a final sigma into 'ς'.
    if text.isascii():
        return text.lower()
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


def _strip_accents(text: str) -> str:
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if unicodedata.category(c) not in _MARKS))


def tokenize(text: str) -> list[str]:
    """The fts `tokenize` macro in Python (empty strings included, as `string_split_regex` gives)."""
    return _SPACE.split(_IGNORED.sub(" ", _lower(_strip_accents(text))))


class _Stemmer:
    """English Snowball stems, memoised. snowballstemmer 2.2.0 is the Snowball release whose
    English stemmer gives DuckDB 1.5's stems (3.x stems 'evening', 'organic' differently); the
    pure-Python class is used directly so an installed PyStemmer of another release cannot swap in."""

    MAX_CACHED = 200_000

    def __init__(self):
        from snowballstemmer.english_stemmer import EnglishStemmer

        self._stemmer = EnglishStemmer()
        self._cache: dict[str, str] = {}

    def __call__(self, word: str) -> str:
        stem = self._cache.get(word)
        if stem is None:
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            stem = self._cache[word] = self._stemmer.stemWord(word)
        return stem


_stem = None


def query_terms(text: str) -> list[str]:
    """Distinct stems of a query, in first-seen order (the macro's `SELECT DISTINCT stem(...)`)."""
    global _stem
    if _stem is None:
        _stem = _Stemmer()
    return list(dict.fromkeys(_stem(word) for word in tokenize(text)))


def _k1_plus_one_times(tf: np.ndarray, k1: str) -> np.ndarray:
    """tf * (k1 + 1) as DuckDB computes it: k1 is a DECIMAL literal, so the product is exact and
    then rounded once to a double; (tf * numerator) / denominator is that same single rounding."""
    ratio = Fraction(k1) + 1
    return (tf * float(ratio.numerator)) / float(ratio.denominator)


@dataclass
class Postings:
    """CSR postings by term: rows `rows[offsets[t]:offsets[t+1]]` hold term t, with their BM25
    term-frequency part `weights` (everything but the term's idf) precomputed at load."""

    vocabulary: dict[str, int]
    df: np.ndarray             # documents per term
    offsets: np.ndarray        # int64, len(vocabulary) + 1
    rows: np.ndarray           # int64 product rows, ascending within a term
    weights: np.ndarray        # float64 tf part of each posting
    num_docs: int
    avgdl: float
    size: int                  # 1 + the largest product row
    _idf: dict = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, terms: list[str], df: np.ndarray, term_ids: np.ndarray, rows: np.ndarray, tf: np.ndarray,
              doc_rows: np.ndarray, doc_lens: np.ndarray, num_docs: int, avgdl: float,
              k1: str = K1, b: str = B) -> "Postings":
        """From postings sorted by (term id, row) with their term frequencies, and each document's
        row and length; term ids index `terms` and `df`."""
        size = int(doc_rows.max()) + 1 if len(doc_rows) else 0
        length = np.zeros(size, np.float64)
        length[doc_rows] = doc_lens
        # Operation for operation the macro's (tf * (k + 1)) / (tf + (k * ((1 - b) + (b * (len / avgdl))))),
        # with (1 - b) exact as DuckDB's DECIMAL arithmetic makes it.
        tf = tf.astype(np.float64)
        norm = float(Fraction(k1)) * (float(1 - Fraction(b)) + float(Fraction(b)) * (length[rows] / avgdl))
        weights = _k1_plus_one_times(tf, k1) / (tf + norm)
        offsets = np.zeros(len(terms) + 1, np.int64)
        np.cumsum(np.bincount(term_ids, minlength=len(terms)), out=offsets[1:])
        return cls(vocabulary={t: i for i, t in enumerate(terms)}, df=np.asarray(df, np.int64), offsets=offsets,
                   rows=rows.astype(np.int64), weights=weights, num_docs=int(num_docs), avgdl=float(avgdl), size=size)

    def idf(self, term: int) -> float:
        """log10(((N - df) + 0.5) / (df + 0.5) + 1): DuckDB's log() is base 10; math.log10 is libm's, as DuckDB's."""
        value = self._idf.get(term)
        if value is None:
            df = int(self.df[term])
            value = self._idf[term] = math.log10(((self.num_docs - df) + 0.5) / (df + 0.5) + 1)
        return value

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every row (0 where no query word matches); the rarest word is added first."""
        ids = [self.vocabulary[t] for t in query_terms(query) if t in self.vocabulary]
        scores = np.zeros(self.size, np.float64)
        for term in sorted(ids, key=lambda t: (self.df[t], t)):
            start, stop = self.offsets[term], self.offsets[term + 1]
            scores[self.rows[start:stop]] += self.idf(term) * self.weights[start:stop]
        return scores

    def search(self, query: str, k: int | None, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """(row, score) of the k best matches (all if k is None), best first, ties by row, among
        `allowed` rows if given: what `ORDER BY score DESC, row LIMIT k` over the macro returns."""
        scores = self.scores(query)
        matched = scores > 0   # every part is positive: idf > 0 since df <= N, and tf >= 1
        if allowed is not None:
            keep = np.zeros(self.size, bool)
            allowed = np.asarray(allowed, np.int64)
            keep[allowed[(allowed >= 0) & (allowed < self.size)]] = True
            matched &= keep
        rows = np.flatnonzero(matched)          # ascending
        values = scores[rows]
        if k is not None and len(rows) > k:
            if k <= 0:
                return []
            cut = np.partition(values, len(values) - k)[len(values) - k]   # the k-th best score
            above = values > cut
            tied = np.flatnonzero(values == cut)[: k - int(above.sum())]   # the lowest rows first
            pick = np.flatnonzero(above)
            pick = np.concatenate([pick, tied])
            rows, values = rows[pick], values[pick]
        order = np.lexsort((rows, -values))
        return [(int(r), float(s)) for r, s in zip(rows[order], values[order])]


def _check_macros(con, schema: str) -> None:
    found = dict(con.execute(
        "SELECT function_name, macro_definition FROM duckdb_functions() "
        "WHERE schema_name = ? AND function_type = 'macro'", [schema]).fetchall())
    bm25 = found.get("match_bm25") or ""
    if found.get("tokenize") != EXPECTED_TOKENIZE or not all(p.format(schema=schema) in bm25 for p in EXPECTED_BM25_PARTS):
        raise KeywordIndexMismatch(f"the keyword index in {schema} is not the one DuckDB 1.5 builds "
                                   "(stemmer english, lower=1): scored by its SQL macro instead")


def load_postings(con, schema: str = "fts_main_products") -> Postings:
    """The one DuckDB-facing piece: read the fts tables of `schema` into a Postings."""
    _check_macros(con, schema)
    num_docs, avgdl = con.execute(f"SELECT num_docs, avgdl FROM {schema}.stats").fetchone()
    vocab = con.execute(f"SELECT termid, term, df FROM {schema}.dict ORDER BY termid").fetchnumpy()
    if len(vocab["termid"]) and not np.array_equal(vocab["termid"], np.arange(len(vocab["termid"]))):
        raise KeywordIndexMismatch(f"{schema}.dict term ids are not 0..n-1: scored by its SQL macro instead")
    docs = con.execute(f"SELECT docid, name, len FROM {schema}.docs").fetchnumpy()
    doc_row = np.full(int(docs["docid"].max()) + 1 if len(docs["docid"]) else 0, -1, np.int64)
    doc_row[docs["docid"]] = docs["name"]
    occurrences = con.execute(f"SELECT termid, docid FROM {schema}.terms").fetchnumpy()
    term_ids, doc_ids = occurrences["termid"], occurrences["docid"]
    # One row per word occurrence; group by (term, document) to count tf. Sorting by term keeps
    # each term's documents in table order, which is document order when DuckDB wrote them so.
    if len(doc_ids) and np.all(doc_ids[1:] >= doc_ids[:-1]):
        order = np.argsort(term_ids.astype(np.uint16) if len(vocab["termid"]) <= 65536 else term_ids, kind="stable")
    else:
        order = np.lexsort((doc_ids, term_ids))
    term_ids, doc_ids = term_ids[order], doc_ids[order]
    starts = np.ones(len(term_ids), bool)
    starts[1:] = (term_ids[1:] != term_ids[:-1]) | (doc_ids[1:] != doc_ids[:-1])
    starts = np.flatnonzero(starts)
    tf = np.diff(np.concatenate([starts, [len(term_ids)]]))
    rows = doc_row[doc_ids[starts]]
    term_of = term_ids[starts]
    if not np.all(np.diff(doc_row) > 0):   # rows ascending within a term, whatever the document order
        order = np.lexsort((rows, term_of))
        term_of, rows, tf = term_of[order], rows[order], tf[order]
    return Postings.build(list(vocab["term"]), vocab["df"], term_of, rows, tf,
                          docs["name"].astype(np.int64), docs["len"].astype(np.float64), num_docs, avgdl)
