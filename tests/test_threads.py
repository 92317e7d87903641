"""The thread policy: one place sets torch, ONNX Runtime, FAISS and DuckDB, overridable."""

import subprocess
import sys

import duckdb
import faiss
import pytest

from moonsearch import threads
from moonsearch.errors import MoonsearchError

from conftest import REPO


@pytest.fixture(autouse=True)
def clean(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")   # monkeypatch puts the real value back afterwards
    for name in (threads.ENV_BOTH, *threads.ENV_BY_MODE.values()):
        monkeypatch.delenv(name, raising=False)
    threads.reset()
    before = faiss.omp_get_max_threads()
    yield
    threads.reset()
    faiss.omp_set_num_threads(before)


def test_defaults_one_thread_for_queries_and_one_per_core_when_indexing(monkeypatch):
    assert threads.resolve(threads.QUERY) == threads.Policy(threads.QUERY, 1, 0, "default")
    for cores, expected in ((1, 1), (2, 2), (4, 4), (64, threads.MAX_INDEXING_THREADS)):
        monkeypatch.setattr(threads, "usable_cores", lambda: cores)
        indexing = threads.resolve(threads.INDEXING)
        assert (indexing.threads, indexing.source) == (expected, "default") and indexing.decode_workers >= 1


def test_a_query_batch_gets_two_threads_unless_the_query_count_was_set(monkeypatch):
    for cores, expected in ((1, 1), (2, 2), (16, threads.MAX_QUERY_BATCH_THREADS)):
        monkeypatch.setattr(threads, "usable_cores", lambda: cores)
        assert threads.query_batch_threads() == expected
    monkeypatch.setenv(threads.ENV_BY_MODE[threads.QUERY], "1")
    assert threads.query_batch_threads() == 1
    threads.set_threads(queries=3)
    assert threads.query_batch_threads() == 3
    threads.for_queries(4)   # open_index(threads=4)
    assert threads.query_batch_threads() == 4


def test_the_query_policy_reaches_faiss_duckdb_and_onnxruntime():
    threads.for_queries(2)
    assert faiss.omp_get_max_threads() == 2
    assert threads.onnx_threads() == 2 and threads.duckdb_threads() == 2
    options = threads.onnx_session_options()
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    # workers wait without spinning, but for a query's batch (an image query's views)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert threads.onnx_session_options(spin=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"
    con = threads.configure_duckdb(duckdb.connect())
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 2
    con = duckdb.connect(config=threads.duckdb_config())
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 2

    threads.for_queries()
    assert faiss.omp_get_max_threads() == 1 and threads.onnx_session_options().intra_op_num_threads == 1


def test_torch_follows_the_policy_when_it_is_loaded():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    try:
        threads.for_indexing(2)
        assert torch.get_num_threads() == 2
        threads.for_queries()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_environment_and_python_overrides(monkeypatch):
    monkeypatch.setenv(threads.ENV_BOTH, "3")
    assert threads.resolve(threads.QUERY).threads == 3 and threads.resolve(threads.INDEXING).threads == 3
    monkeypatch.setenv(threads.ENV_BY_MODE[threads.INDEXING], "2")
    policy = threads.resolve(threads.INDEXING)
    assert (policy.threads, policy.source) == (2, "env MOONSEARCH_INDEX_THREADS")
    threads.set_threads(queries=4)          # Python beats the environment
    assert threads.resolve(threads.QUERY).threads == 4
    assert threads.resolve(threads.QUERY, threads=1).threads == 1   # an explicit argument beats both
    threads.for_queries()
    assert faiss.omp_get_max_threads() == 4 and threads.onnx_threads() == 4


def test_bad_values_are_one_clear_error(monkeypatch):
    monkeypatch.setenv(threads.ENV_BOTH, "many")
    with pytest.raises(MoonsearchError, match="MOONSEARCH_THREADS"):
        threads.resolve(threads.QUERY)
    with pytest.raises(MoonsearchError):
        threads.set_threads(indexing=0)


def test_using_puts_the_previous_counts_back():
    threads.for_queries(1)
    with threads.using(threads.resolve(threads.INDEXING, 2)):
        assert faiss.omp_get_max_threads() == 2 and threads.current().mode == threads.INDEXING
    assert faiss.omp_get_max_threads() == 1 and threads.current().mode == threads.QUERY


def test_the_policy_does_not_import_torch_but_a_later_torch_follows_it():
    code = ("import sys, moonsearch.threads as t; t.for_indexing(2); t.for_queries(); "
            "print('torch' in sys.modules); import torch; print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "1"]
