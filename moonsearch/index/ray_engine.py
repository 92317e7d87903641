"""Reading and encoding on Ray Data (`moonsearch index --engine ray`): the catalog's records files
are read by Ray tasks, one task a file, in pieces of whole batches; an actor pool decodes each
product's images and runs the encoder; the driver records what comes back.

Parsing and skip rules are moonsearch's own: each read task runs the catalog reader's
`file_items` (moonsearch.catalog.reader) on its file, so a row becomes the same product or skip
as in a single-process build. Before encoding, a scan on Ray (the same reading, no images)
counts products, gathers skips and checks ids across files, as `Catalog.scan` does. Each actor
loads the encoder once (and, for a build with the photo identity channel, the identity model
once, wrapping the encoder in `WithIdentity` as the builder does), decodes a piece's first images
(`model_input`), encodes them (`builder._encode_chunk`) and embeds the piece's further images
(`embed_batch_further`); the vectors (identity vectors among them), products and what the record
store needs come back in catalog order and the builder records them exactly as its own loop does
(`_build_locked`'s `engine`). Records files and images must be readable at the same paths on
every node (a shared file system).

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
from pathlib import Path

from moonsearch.catalog.images import ImageError, LoadedImage
from moonsearch.catalog.inputs import ModelInput, model_input
from moonsearch.catalog.models import CatalogScan, Skip
from moonsearch.catalog.reader import file_items
from moonsearch.encoder.photo_identity import PhotoIdentity, WithIdentity
from moonsearch.encoder.registry import load_encoder, weights_path
from moonsearch.index.further_images import embed_batch_further
from moonsearch.errors import CatalogError, MoonsearchError
from moonsearch import threads as thread_policy

INSTALL = 'pip install -e ".[scale]"'
# Read tasks at a time per encoder actor (at least one): reading and parsing a product costs a
# small fraction of encoding it, so a few readers keep many actors fed. Read tasks ask for no
# CPU of their own: the actors hold the CPUs, and a reader waiting for one would stall them.
WORKERS_PER_READER = 8
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


def _file_rows(parts) -> list[dict]:
    """One Ray row per records file: its index, path, the name its sources use, its image root."""
    return [{"file": i, "path": str(path), "name": name, "root": str(root)} for i, (path, name, root) in enumerate(parts)]


def _scan_file(batch: dict, format: str) -> dict:
    """A Ray task: one records file read as Catalog.scan reads it (no images): its row count,
    skips, and each product's (id, line, source) for the driver's duplicate check."""
    out = []
    for path, name, root in zip(batch["path"], batch["name"], batch["root"]):
        rows, skips, ids = 0, [], []
        for number, source, item in file_items(Path(path), str(name), format, Path(root)):
            rows += 1
            if isinstance(item, Skip):
                skips.append(item)
            else:
                ids.append((item.id, number, source))
        out.append(pickle.dumps((rows, skips, ids), protocol=5))
    return {"file": batch["file"], "scanned": out}


def _read_pieces(batch: dict, format: str, size: int) -> Iterator[dict]:
    """A Ray read task: one records file, parsed by the catalog reader, as pieces of `size`
    products (the file's last piece shorter) with the skips read since the previous piece. Each
    piece is one Ray block, so pieces spread over the actors; a file yields at least one piece
    (its last says so), so the driver can tell a whole file arrived."""
    for index, path, name, root in zip(batch["file"], batch["path"], batch["name"], batch["root"]):
        products, skips, piece = [], [], 0
        for _, _, item in file_items(Path(path), str(name), format, Path(root)):
            if isinstance(item, Skip):
                skips.append(item)
                continue
            products.append(item)
            if len(products) == size:
                yield {"file": [index], "piece": [piece], "last": [False],
                       "items": [pickle.dumps((products, skips), protocol=5)]}
                products, skips, piece = [], [], piece + 1
        yield {"file": [index], "piece": [piece], "last": [True], "items": [pickle.dumps((products, skips), protocol=5)]}


class _ChunkEncoder:
    """A Ray Data actor: loads the encoder once (with the photo identity model, once, where the
    build has the channel), then for each piece decodes the products' first images, encodes them
    and embeds their further images."""

    def __init__(self, spec: str, device: str, threads: int, batch_size: int, by_length: bool,
                 identity: dict | None = None):
        from moonsearch.index.builder import _encode_chunk

        thread_policy.apply(thread_policy.resolve(thread_policy.INDEXING, threads))
        self.encode = _encode_chunk
        self.encoder = load_encoder(spec, device=device)
        self.identity_id = None
        if identity:   # the driver's model's spec(): its weights, None for this node's shipped ones
            model = PhotoIdentity.load(identity["weights"])
            self.encoder, self.identity_id = WithIdentity(self.encoder, model), model.id   # as build_index wraps it
        self.batch_size = batch_size
        self.by_length = by_length

    def __call__(self, batch: dict) -> dict:
        encoded = []
        for blob in batch["items"]:
            cpu = time.process_time()
            products, _ = pickle.loads(blob)
            inputs = [model_input(product) for product in products]
            views = further = None
            if products:
                views = self.encode(self.encoder, [g.text for g in inputs], [g.image for g in inputs],
                                    self.batch_size, self.by_length)
                size = self.batch_size   # the builder records a piece in batches: their further images, keyed by row in the piece
                further = [embed_batch_further(self.encoder, start, products[start:start + size],
                                               inputs[start:start + size], size)
                           for start in range(0, len(products), size)]
            # ImageError does not survive pickling (its reason is an argument): sent as parts
            rows = [(g.text, g.loaded.position, [(p, e.reason, e.path, e.detail) for p, e in g.loaded.failures])
                    for g in inputs]
            del inputs
            cpu = time.process_time() - cpu   # this actor's CPU seconds for the piece (all its threads)
            encoded.append(pickle.dumps(((self.encoder.encoder_id, self.identity_id), rows, views, further, cpu),
                                        protocol=5))
        return {"file": batch["file"], "piece": batch["piece"], "last": batch["last"], "items": batch["items"],
                "encoded": encoded}


def _model_inputs(rows) -> list[ModelInput]:
    """The driver's ModelInputs of an encoded chunk: no image (it stayed on the actor), only
    which one loaded and why the ones before it did not."""
    return [ModelInput(text, LoadedImage(position, None, [(p, ImageError(reason, path, detail))
                                                          for p, reason, path, detail in failures]))
            for text, position, failures in rows]


def _cause(text: str) -> tuple[str, str]:
    """(exception class, message) of what failed inside a Ray task or actor, from the text of
    the error Ray raises (the original exception does not come back as an object): the last
    moonsearch error in it, else the last other exception line that is not Ray's own."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [(m[1], m[2]) for m in (re.match(r"^([A-Za-z_][\w.]*): (.+)$", line) for line in lines)
              if m and not m[1].startswith("ray.")]
    ours = [found for found in raised if found[0].startswith("moonsearch.errors.")]
    if ours or raised:
        return (ours or raised)[-1]
    return "", lines[-1] if lines else "an unknown error"


class RayEngine:
    """The `engine` of build_index that reads and encodes on Ray: `scan` stands for
    Catalog.scan, `encoded_chunks` yields what the local loop makes, (chunk, views) in catalog
    order. Ray is connected to by the first of them and let go of by `close` (a local Ray
    started here is shut down)."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        if workers is not None and workers < 1:
            raise MoonsearchError(f"--ray-workers must be at least 1, got {workers}")
        self.ray = _ray()
        self.address = check_address(address)
        self.workers = workers
        self.plan = ""
        self.started = False   # this engine started the Ray it uses (a local one): close shuts it down
        self._saved: dict | None = None
        # what the last build's encoding cost: actors' CPU seconds (decode + encode, all their
        # threads), the scan's and the encoding's wall time; benchmarks/ray_scaling.py
        self.stats = {"files": 0, "chunks": 0, "products": 0, "actor_cpu_s": 0.0, "scan_s": 0.0, "wall_s": 0.0}

    def _connect(self) -> None:
        if not self.ray.is_initialized():
            options = {"include_dashboard": False, "logging_level": "WARNING", "log_to_driver": False}
            try:
                if self.address is None:
                    self.ray.init(num_cpus=os.cpu_count(), **options)
                else:
                    self.ray.init(address=self.address, **options)
            except Exception as exc:   # Ray raises plain Exceptions (a node that timed out starting, ...)
                where = "start a local Ray" if self.address is None else f"connect to Ray at {self.address}"
                lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                raise MoonsearchError(f"could not {where}: {lines[0] if lines else type(exc).__name__}") from None
            self.started = True   # this process connected: close() disconnects (and stops a local Ray)
        if self._saved is None:
            context = self.ray.data.DataContext.get_current()
            self._saved = {"preserve_order": context.execution_options.preserve_order,
                           "enable_progress_bars": context.enable_progress_bars,
                           "target_max_block_size": context.target_max_block_size}
            context.execution_options.preserve_order = True   # rows come back in catalog order
            context.enable_progress_bars = False              # the builder has its own
            context.target_max_block_size = 1                 # every piece its own block: pieces spread over actors
            logging.getLogger("ray.data").setLevel(logging.WARNING)   # not a line per dataset started

    def close(self) -> None:
        """Give Ray Data's settings back and shut down a Ray this engine started."""
        if self._saved is not None and self.ray.is_initialized():
            context = self.ray.data.DataContext.get_current()
            context.execution_options.preserve_order = self._saved["preserve_order"]
            context.enable_progress_bars = self._saved["enable_progress_bars"]
            context.target_max_block_size = self._saved["target_max_block_size"]
        self._saved = None
        if self.started:
            self.ray.shutdown()
            self.started = False

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

    def _rows(self, dataset, doing: str) -> Iterator[dict]:
        """The dataset's rows; a failure on Ray (a records file that cannot be read, an actor
        that cannot load the encoder, a node lost) is one line naming its cause, not Ray's
        traceback. A catalog's own error (CatalogError) reads as in a single-process build."""
        try:
            yield from dataset.iter_rows()
        except self.ray.exceptions.RayError as exc:
            kind, cause = _cause(str(exc))
            if kind == "moonsearch.errors.CatalogError":
                raise CatalogError(cause) from None
            raise MoonsearchError(f"{doing} on Ray failed: {cause}") from None

    def _files(self, catalog):
        parts = catalog.parts()
        return self.ray.data.from_items(_file_rows(parts), override_num_blocks=len(parts)), len(parts)

    def scan(self, catalog) -> CatalogScan:
        """Catalog.scan on Ray: every records file read by a task (text only, no images); the
        driver adds up rows and skips in catalog order and checks ids across files with the
        reader's own IdCheck (duplicate ids fail here, before any encoding)."""
        began = time.perf_counter()
        self._connect()
        files, count = self._files(catalog)
        scanned = files.map_batches(_scan_file, batch_size=1, fn_kwargs={"format": catalog.format})
        tally = CatalogScan(rows=0, products=0, skips=[])
        ids = catalog.id_check(collect=True)
        done = 0
        for row in self._rows(scanned, "reading the catalog"):
            if row["file"] != done:
                raise MoonsearchError(f"Ray returned file {row['file']} where file {done} was due")
            rows, skips, found = pickle.loads(row["scanned"])
            tally.rows += rows
            tally.skips += skips
            tally.products += sum(ids.add(pid, number, source) for pid, number, source in found)
            done += 1
        if done != count:
            raise MoonsearchError(f"Ray returned {done} of {count} records files")
        catalog.skips = tally.skips
        ids.check()
        self.stats["files"], self.stats["scan_s"] = count, time.perf_counter() - began
        return tally

    def encoded_chunks(self, catalog, encoder, batch_size: int, chunk_batches: int,
                       by_length: bool) -> Iterator[tuple]:
        """(chunk, views) for the whole catalog in order: each records file read by a Ray task
        in pieces of `chunk_batches` batches (the chunks a single-process build cuts), encoded
        by the actor pool; `catalog.skips` is complete once this is exhausted."""
        from moonsearch.index.builder import _Chunk

        began = time.perf_counter()
        self._connect()
        self.stats.update(chunks=0, products=0, actor_cpu_s=0.0, wall_s=0.0)
        plan = self._actors()
        photo = getattr(encoder, "identity_model", None)   # the build's photo identity model (WithIdentity), or None
        photo_id = None if photo is None else photo.id
        files, count = self._files(catalog)
        readers = max(1, min(count, -(-plan["workers"] // WORKERS_PER_READER)))
        pieces = files.map_batches(_read_pieces, batch_size=1, num_cpus=0,
                                   compute=self.ray.data.TaskPoolStrategy(size=readers),
                                   fn_kwargs={"format": catalog.format, "size": batch_size * chunk_batches})
        dataset = pieces.map_batches(
            _ChunkEncoder, batch_size=1,
            fn_constructor_kwargs={"spec": encoder_spec(encoder), "device": plan["device"],
                                   "threads": plan["threads"], "batch_size": batch_size, "by_length": by_length,
                                   "identity": None if photo is None else photo.spec()},
            compute=self.ray.data.ActorPoolStrategy(size=plan["workers"]),
            num_cpus=plan["num_cpus"], num_gpus=plan["num_gpus"])
        catalog.skips = []
        due = (0, 0)   # (file, piece) expected next
        for row in self._rows(dataset, "encoding"):
            if (row["file"], row["piece"]) != due:
                raise MoonsearchError(f"Ray returned piece {row['piece']} of file {row['file']} "
                                      f"where piece {due[1]} of file {due[0]} was due")
            due = (due[0] + 1, 0) if row["last"] else (due[0], due[1] + 1)
            products, skips = pickle.loads(row["items"])
            (encoder_id, identity_id), inputs, views, further, cpu = pickle.loads(row["encoded"])
            if encoder_id != encoder.encoder_id:
                raise MoonsearchError(
                    f"a Ray worker's encoder is {encoder_id}, this machine's {encoder.encoder_id}: "
                    "install the same moonsearch and weights on every node")
            if identity_id != photo_id:
                raise MoonsearchError(
                    f"a Ray worker's photo identity model is {identity_id}, this machine's {photo_id}: "
                    "install the same moonsearch and weights on every node")
            catalog.skips += skips
            self.stats["actor_cpu_s"] += cpu
            self.stats["wall_s"] = time.perf_counter() - began
            if products:
                self.stats["chunks"] += 1
                self.stats["products"] += len(products)
                yield _Chunk(products, _model_inputs(inputs), further), views
        if due != (count, 0):
            raise MoonsearchError(f"Ray returned {due[0]} of {count} records files")
