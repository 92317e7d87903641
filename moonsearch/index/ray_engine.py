"""Encoding on Ray Data (`moonsearch index --engine ray`): the slow part of a build, decoding
each product's first image and running the encoder, spread over an actor pool on a Ray cluster
(a local one by default).

Only that part moves. The driver reads the catalog with moonsearch's own reader (the same
parsing, skips and duplicate checks as every build), cuts it into the chunks a single-process
build encodes (whole batches, so every encoder call sees the same products), and hands them to
Ray Data as rows, a window of chunks at a time. Each actor loads the encoder once, decodes its
chunk's images (`model_input`) and encodes it (`builder._encode_chunk`); the vectors and what
the record store needs (text, which image loaded, why others did not) come back in catalog
order, and the builder records them exactly as its own loop does (`_build_locked`'s `engine`).
Images must be readable at the same paths on every node (a shared file system).

Ray is imported here only, and only when asked for.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import socket
import time
from collections.abc import Iterator
from itertools import islice

from moonsearch.catalog.images import ImageError, LoadedImage
from moonsearch.catalog.inputs import ModelInput, model_input
from moonsearch.encoder.registry import load_encoder, weights_path
from moonsearch.errors import MoonsearchError
from moonsearch import threads as thread_policy

INSTALL = 'pip install -e ".[scale]"'
# Chunks per actor in one Ray dataset. The driver holds a window's products; each window starts
# its actors (and loads their encoders) again, so a window is minutes of work per actor.
WINDOW_CHUNKS_PER_WORKER = 256
# Default CPU actor size: one thread. Measured (benchmarks/results/ray_scaling.json), one actor
# of 1 thread encoded 143.7 products per CPU-second, one of 2 threads 119.4: on CPUs, more
# single-thread actors beat fewer multi-thread ones (each holds its own encoder in memory).
CPUS_PER_WORKER = 1
_ADDRESS = re.compile(r"^(?:ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


def _ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise MoonsearchError(f"--engine ray needs Ray Data, which is not installed: {INSTALL}") from None
    return ray


def check_address(address: str | None) -> str | None:
    """None (start a local Ray), "auto" (the cluster this machine is part of), or host:port /
    ray://host:port that answers on TCP: ray.init waits minutes on an address nobody serves."""
    if address is None or address == "auto":
        return address
    match = _ADDRESS.match(address.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        raise MoonsearchError(f"--address {address!r}: expected host:port, ray://host:port or auto")
    host = match["host"].strip("[]")
    try:
        socket.create_connection((host, int(match["port"])), timeout=5).close()
    except OSError as exc:
        raise MoonsearchError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc})") from None
    return address.strip()


def encoder_spec(encoder) -> str:
    """What an actor passes to load_encoder to get the driver's encoder: a shipped encoder's
    name, else the weights (a .safetensors file or an MLLM folder) by absolute path."""
    shipped = getattr(encoder, "weights_path", None)
    if shipped is None or str(shipped) == str(weights_path(encoder.name)):
        return encoder.name
    return str(os.path.abspath(shipped))


class _ChunkEncoder:
    """A Ray Data actor: loads the encoder once, then decodes and encodes one chunk per row."""

    def __init__(self, spec: str, device: str, threads: int, batch_size: int, by_length: bool):
        from moonsearch.index.builder import _encode_chunk

        thread_policy.apply(thread_policy.resolve(thread_policy.INDEXING, threads))
        self.encode = _encode_chunk
        self.encoder = load_encoder(spec, device=device)
        self.batch_size = batch_size
        self.by_length = by_length

    def __call__(self, batch: dict) -> dict:
        encoded = []
        for blob in batch["products"]:
            cpu = time.process_time()
            inputs = [model_input(product) for product in pickle.loads(blob)]
            views = self.encode(self.encoder, [g.text for g in inputs], [g.image for g in inputs],
                                self.batch_size, self.by_length)
            # ImageError does not survive pickling (its reason is an argument): sent as parts
            rows = [(g.text, g.loaded.position, [(p, e.reason, e.path, e.detail) for p, e in g.loaded.failures])
                    for g in inputs]
            cpu = time.process_time() - cpu   # this actor's CPU seconds for the chunk (all its threads)
            encoded.append(pickle.dumps((self.encoder.encoder_id, rows, views, cpu), protocol=5))
        return {"chunk": batch["chunk"], "encoded": encoded}


def _model_inputs(rows) -> list[ModelInput]:
    """The driver's ModelInputs of an encoded chunk: no image (it stayed on the actor), only
    which one loaded and why the ones before it did not."""
    return [ModelInput(text, LoadedImage(position, None, [(p, ImageError(reason, path, detail))
                                                          for p, reason, path, detail in failures]))
            for text, position, failures in rows]


class RayEngine:
    """The `engine` of build_index that encodes on Ray: `encoded_chunks` yields what the local
    loop makes, (chunk, views) in catalog order. Ray is connected to when encoding starts and
    let go of when it ends (a local Ray started here is shut down)."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        if workers is not None and workers < 1:
            raise MoonsearchError(f"--ray-workers must be at least 1, got {workers}")
        self.ray = _ray()
        self.address = check_address(address)
        self.workers = workers
        self.plan = ""
        # what the last build's encoding cost: actors' CPU seconds (decode + encode, all their
        # threads) and the wall time from connecting to the last chunk; benchmarks/ray_scaling.py
        self.stats = {"chunks": 0, "products": 0, "actor_cpu_s": 0.0, "wall_s": 0.0}

    def _connect(self) -> bool:
        """True when this call started Ray (a local one), so it is the one to shut it down."""
        if self.ray.is_initialized():
            return False
        options = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
        if self.address is None:
            self.ray.init(num_cpus=os.cpu_count(), **options)
        else:
            self.ray.init(address=self.address, **options)
        return True

    def _actors(self) -> dict:
        """Actor pool size and resources from what the cluster has: one GPU per actor where
        there are GPUs, else CPU actors of CPUS_PER_WORKER threads (or the CPUs / --ray-workers)."""
        resources = self.ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
        if gpus:
            workers = self.workers or gpus
            if workers > gpus:
                raise MoonsearchError(f"--ray-workers {workers}: the Ray cluster has {gpus} GPU(s), one per worker")
            plan = {"workers": workers, "num_gpus": 1, "num_cpus": 1, "device": "cuda", "threads": 1}
        else:
            workers = self.workers or max(1, cpus // CPUS_PER_WORKER)
            if workers > cpus:
                raise MoonsearchError(f"--ray-workers {workers}: the Ray cluster has {cpus} CPU(s), one at least per worker")
            threads = max(1, min(thread_policy.MAX_INDEXING_THREADS, cpus // workers))
            plan = {"workers": workers, "num_gpus": 0, "num_cpus": threads, "device": "cpu", "threads": threads}
        self.plan = (f"ray: {plan['workers']} {plan['device']} actor(s)"
                     + (f" x {plan['threads']} thread(s)" if plan["device"] == "cpu" else ", 1 GPU each"))
        return plan

    def _rows(self, dataset) -> Iterator[dict]:
        """The dataset's rows; a failure on Ray (an actor that cannot load the encoder, a node
        lost) is one line naming its cause, not Ray's traceback."""
        try:
            yield from dataset.iter_rows()
        except self.ray.exceptions.RayError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            cause = lines[-1].removeprefix("moonsearch.errors.MoonsearchError: ") if lines else type(exc).__name__
            raise MoonsearchError(f"encoding on Ray failed: {cause}") from None

    def encoded_chunks(self, catalog, encoder, batch_size: int, chunk_batches: int,
                       by_length: bool) -> Iterator[tuple]:
        """(chunk, views) for the whole catalog in order, chunks of `chunk_batches` batches as
        the local loop cuts them; `catalog.skips` is complete once this is exhausted."""
        from moonsearch.index.builder import _Chunk

        began = time.perf_counter()
        started = self._connect()
        self.stats = {"chunks": 0, "products": 0, "actor_cpu_s": 0.0, "wall_s": 0.0}
        try:
            plan = self._actors()
            context = self.ray.data.DataContext.get_current()
            context.execution_options.preserve_order = True   # rows come back in catalog order
            context.enable_progress_bars = False              # the builder has its own
            logging.getLogger("ray.data").setLevel(logging.WARNING)   # not a line per window started
            chunk_size = batch_size * chunk_batches
            window = plan["workers"] * WINDOW_CHUNKS_PER_WORKER
            products = catalog.products()
            number = 0
            while True:
                chunks = []
                for _ in range(window):
                    chunk = list(islice(products, chunk_size))
                    if not chunk:
                        break
                    chunks.append(chunk)
                if not chunks:
                    return
                rows = [{"chunk": number + i, "products": pickle.dumps(chunk, protocol=5)}
                        for i, chunk in enumerate(chunks)]
                dataset = self.ray.data.from_items(rows).map_batches(
                    _ChunkEncoder, batch_size=1,
                    fn_constructor_kwargs={"spec": encoder_spec(encoder), "device": plan["device"],
                                           "threads": plan["threads"], "batch_size": batch_size,
                                           "by_length": by_length},
                    compute=self.ray.data.ActorPoolStrategy(size=min(plan["workers"], len(rows))),
                    num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"])
                first = number
                for row in self._rows(dataset):
                    if row["chunk"] != number:
                        raise MoonsearchError(f"Ray returned chunk {row['chunk']} where chunk {number} was due")
                    encoder_id, inputs, views, cpu = pickle.loads(row["encoded"])
                    if encoder_id != encoder.encoder_id:
                        raise MoonsearchError(
                            f"a Ray worker's encoder is {encoder_id}, this machine's {encoder.encoder_id}: "
                            "install the same moonsearch and weights on every node")
                    self.stats["chunks"] += 1
                    self.stats["products"] += len(inputs)
                    self.stats["actor_cpu_s"] += cpu
                    self.stats["wall_s"] = time.perf_counter() - began
                    yield _Chunk(chunks[number - first], _model_inputs(inputs)), views
                    number += 1
                if number != first + len(chunks):
                    raise MoonsearchError(f"Ray returned {number - first} of {len(chunks)} chunks")
                if len(chunks) < window:
                    return
        finally:
            if started:
                self.ray.shutdown()
