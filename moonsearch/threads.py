"""One thread policy for every runtime moonsearch drives: torch, ONNX Runtime, FAISS and DuckDB.

Why one place: each runtime starts one thread per core by default, and several of them in one
process (or a query beside a training job) oversubscribe the cores. On a 2-core machine a thread
that waits for a preempted sibling at every parallel step costs far more than it gains: measured
beside another job, the indexer ran 5.4 products/s with 2 torch threads and 15/s with 1; a warm
text query took 480 ms with 2 threads and 12 ms with 1 (benchmarks/speed/README.md).

Defaults, picked from measurements on this 2-core machine (2026-12-03, with a training job and
other work keeping the load average at 5-9; figures also in benchmarks/results/speed.md):

- queries: 1 thread for every runtime. Warm query p50 on the sample index with 1 vs 2 threads
  (two rounds each): vectors text 18.5/17.5 vs 19.0/17.3 ms, image 22.4/22.1 vs 21.2/20.5 ms,
  hybrid text 24.2/20.0 vs 11.6/22.5 ms: no gain from a second thread, so one query never takes
  a core from whatever else runs (a server answers several queries at once instead). The
  exception is a query that embeds a batch (an image query's views): up to 2 ONNX Runtime
  threads, see `query_batch_threads`.
- indexing: one intra-op thread per core (at most 8) for the encoder and FAISS, plus one
  background thread decoding the next images (PIL releases the GIL). On ONNX Runtime, which
  does not spin-wait here, 2 threads beat 1: 1,024 Myntra products through build_index ran
  14.1 products/s with 2 threads vs 10.3 with 1 (256 products: 11.7 and 13.7 vs 4.5 and 8.1).
  torch's OpenMP threads are the exception: beside another job, 2 torch threads indexed 5.4
  products/s vs 15 with 1 (issue 17), so the torch path (MOONSEARCH_ONNX=0) on a busy machine
  wants MOONSEARCH_INDEX_THREADS=1.

Overrides, strongest first: an explicit `threads=` argument to `for_queries` / `for_indexing`;
`set_threads(queries=..., indexing=...)` from Python; the environment (MOONSEARCH_QUERY_THREADS,
MOONSEARCH_INDEX_THREADS, or MOONSEARCH_THREADS for both); the defaults above.

Torch is only configured when something already imported it: the query path must not import
torch just to set its threads. Until then OMP_NUM_THREADS carries the count, which torch reads
when it loads. ONNX Runtime sessions are made by the encoder, which reads
`onnx_threads()` (or builds its options with `onnx_session_options()`); DuckDB connections read
`duckdb_threads()` or are passed to `configure_duckdb`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

QUERY, INDEXING = "query", "indexing"
ENV_BOTH = "MOONSEARCH_THREADS"
ENV_BY_MODE = {QUERY: "MOONSEARCH_QUERY_THREADS", INDEXING: "MOONSEARCH_INDEX_THREADS"}
MAX_INDEXING_THREADS = 8   # past this the towers' small matrices stop scaling
MAX_QUERY_BATCH_THREADS = 2   # a query's batch (an image query's views) is small: 2 threads at most


def default_threads(mode: str) -> int:
    """Queries: 1. Indexing: one per core, at most MAX_INDEXING_THREADS (see the module docstring)."""
    return 1 if mode == QUERY else max(1, min(MAX_INDEXING_THREADS, usable_cores()))


@dataclass(frozen=True)
class Policy:
    mode: str             # QUERY or INDEXING
    threads: int          # intra-op threads of torch, ONNX Runtime, FAISS (OpenMP) and DuckDB
    decode_workers: int   # indexing: threads decoding images beside the encoder (0: in line)
    source: str           # where `threads` came from: argument, api, env NAME, default

    def describe(self) -> str:
        extra = f", {self.decode_workers} image-decoding" if self.mode == INDEXING else ""
        return f"{self.mode}: {self.threads} thread(s){extra} ({self.source})"


_api: dict[str, int] = {}
_current: Policy | None = None


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _positive(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        from moonsearch.errors import MoonsearchError

        raise MoonsearchError(f"{name} must be a whole number of threads >= 1, not {value!r}")
    return number


def set_threads(queries: int | None = None, indexing: int | None = None) -> None:
    """Python override of the defaults and the environment; None leaves a mode as it is.
    Takes effect at the next `for_queries` / `for_indexing` (open_index, build_index)."""
    for mode, value in ((QUERY, queries), (INDEXING, indexing)):
        if value is not None:
            _api[mode] = _positive(value, f"threads for {mode}")


def reset() -> None:
    """Forget Python overrides and the applied policy (tests)."""
    global _current
    _api.clear()
    _current = None


def resolve(mode: str, threads: int | None = None) -> Policy:
    """The policy for `mode` without applying it."""
    if mode not in (QUERY, INDEXING):
        raise ValueError(f"unknown thread policy mode {mode!r}")
    if threads is not None:
        count, source = _positive(threads, "threads"), "argument"
    elif mode in _api:
        count, source = _api[mode], "api"
    elif os.environ.get(ENV_BY_MODE[mode], "").strip():
        count, source = _positive(os.environ[ENV_BY_MODE[mode]], ENV_BY_MODE[mode]), f"env {ENV_BY_MODE[mode]}"
    elif os.environ.get(ENV_BOTH, "").strip():
        count, source = _positive(os.environ[ENV_BOTH], ENV_BOTH), f"env {ENV_BOTH}"
    else:
        count, source = default_threads(mode), "default"
    # Decoding gets the cores the encoder leaves; at least one thread, so the next batch is
    # read while this one encodes even when the encoder asked for every core.
    decode = max(1, min(4, usable_cores() - count)) if mode == INDEXING else 0
    return Policy(mode, count, decode, source)


def apply(policy: Policy) -> Policy:
    """Set torch (if already imported) and FAISS to the policy; remember it for ONNX Runtime
    and DuckDB, which read it when they open a session or a connection."""
    global _current
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        if torch.get_num_threads() != policy.threads:
            torch.set_num_threads(policy.threads)
    else:
        # torch takes its thread count from OMP_NUM_THREADS when it loads, so an encoder that
        # imports it later starts under the policy without this module importing it now.
        os.environ["OMP_NUM_THREADS"] = str(policy.threads)
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss is a dependency; a partial install still queries nothing
        faiss = None
    if faiss is not None:
        faiss.omp_set_num_threads(policy.threads)
    _current = policy
    return policy


def for_queries(threads: int | None = None) -> Policy:
    """Apply the query policy (CLI query/explain, open_index)."""
    return apply(resolve(QUERY, threads))


def for_indexing(threads: int | None = None) -> Policy:
    """Apply the indexing policy (CLI index/eval, build_index)."""
    return apply(resolve(INDEXING, threads))


def current() -> Policy:
    """The policy applied last; the query policy (unapplied) when none was."""
    return _current if _current is not None else resolve(QUERY)


@contextlib.contextmanager
def using(policy: Policy):
    """Apply `policy` for a block, then put back what was there: build_index inside a program
    that queries afterwards should leave the program's thread counts as they were."""
    global _current
    previous = _current
    omp_before = os.environ.get("OMP_NUM_THREADS")
    torch_before = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None
    try:
        import faiss

        faiss_before = faiss.omp_get_max_threads()
    except ImportError:  # pragma: no cover
        faiss, faiss_before = None, None
    apply(policy)
    try:
        yield policy
    finally:
        if torch_before is not None and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(torch_before)
        if faiss is not None:
            faiss.omp_set_num_threads(faiss_before)
        if omp_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = omp_before
        _current = previous


def onnx_threads() -> int:
    """intra_op_num_threads for an ONNX Runtime session made now."""
    return current().threads


def query_batch_threads() -> int:
    """ONNX Runtime threads for a query that embeds a batch at once (an image query's six views
    of the photo): up to 2, where a single input gains nothing from a second thread but a batch
    does (six views through the photo identity network, p50: 17.2 ms on 1 thread, 11.2 on 2,
    without spin-waiting; benchmarks/speed/query_latency.py's image parts). A query thread count
    set by argument, `set_threads` or the environment wins."""
    policy = current() if current().mode == QUERY else resolve(QUERY)
    if policy.source != "default":
        return policy.threads
    return max(1, min(MAX_QUERY_BATCH_THREADS, usable_cores()))


def onnx_session_options(threads: int | None = None, spin: bool = False):
    """ort.SessionOptions under the policy: intra-op threads from it, one inter-op thread
    (the graphs are sequential), and no spin-waiting when there are several threads, since a
    spinning worker takes the core the other runtimes (or another job) need. `spin`: the
    exception for a query's batch (query_batch_threads), whose one call is the query's wait:
    six views, 11.3 -> 10.1 ms p50 on 2 threads (latency.json's image_parts_p50_ms)."""
    import onnxruntime as ort

    count = threads or onnx_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = count
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3   # warnings only from our own code, not per-graph notices
    if count > 1:
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


def duckdb_threads() -> int:
    """DuckDB's `threads` setting for a connection opened now."""
    return current().threads


def duckdb_config() -> dict:
    """The `config=` of a `duckdb.connect` made now."""
    return {"threads": duckdb_threads()}


def configure_duckdb(con, threads: int | None = None):
    """`SET threads` on an open DuckDB connection; returns it. The setting's scope is the
    database instance the connection opened (DuckDB's threads option is GLOBAL)."""
    con.execute(f"SET threads = {int(threads or duckdb_threads())}")
    return con
