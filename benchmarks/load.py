"""Bounded HTTP load on a `moonsearch serve` on 127.0.0.1: latency and throughput per query kind
and client count, and one run with writes going on (issue 19's targets: text p50 <= 15 ms at 1
client, >= 150 requests/s at 8 clients, zero errors).

Every run is bounded twice: a fixed request count and a time limit, whichever comes first; the
server is only ever reached on this machine. By default the script starts its own server on a
copy of the index (writes change the index they run on, so never the original):

    .venv/bin/python benchmarks/load.py --index indexes/myntra --requests 300 --clients 1,4,8
    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:8000 --no-writes   # a running server

Each client is a thread with one keep-alive connection (http.client), sending its next request
when the last one is answered; latency is measured per request on the client, HTTP included.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUERIES = ["red dress", "black leather shoes", "men blue jeans", "white sneakers", "women handbag", "sports watch",
           "cotton shirt", "sunglasses", "printed kurta", "running shoes", "green t-shirt", "formal trousers",
           "black backpack", "silver ring", "pink top", "denim jacket", "floral skirt", "brown belt"]
FILTERS = [["gender=Women", "price<2000"], ["gender=Men"], ["masterCategory=Footwear", "price>=1000"],
           ["baseColour=Black,Blue"]]
TOKEN = "load-test-" + uuid.uuid4().hex


def local_only(url: str) -> tuple[str, int]:
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"load.py only loads servers on this machine (127.0.0.1), not {parsed.hostname}")
    return "127.0.0.1", parsed.port or 80


def multipart(fields: list[tuple[str, str]], photo: tuple[str, bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    name, data = photo
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
                 f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Requests:
    """The request of each kind, cycling through queries, filters and photos."""

    def __init__(self, photos: list[tuple[str, bytes]], limit: int, filters: list[list[str]]):
        self.photos = photos
        self.limit = limit
        self.filters = filters

    def make(self, kind: str, i: int) -> tuple[str, str, bytes | None, dict]:
        q = QUERIES[i % len(QUERIES)]
        if kind == "text":
            return "GET", "/search?" + urllib.parse.urlencode({"q": q, "limit": self.limit}), None, {}
        if kind == "filtered":
            params = [("q", q), ("limit", self.limit)] + [("filter", f) for f in self.filters[i % len(self.filters)]]
            return "GET", "/search?" + urllib.parse.urlencode(params), None, {}
        if kind == "image":
            body, content_type = multipart([("limit", str(self.limit))], self.photos[i % len(self.photos)])
            return "POST", "/search", body, {"Content-Type": content_type}
        raise ValueError(kind)


def run(host: str, port: int, kind: str, clients: int, requests: int, time_limit: float, maker: Requests,
        writer=None) -> dict:
    """`requests` requests of one kind from `clients` threads (or until `time_limit`)."""
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + time_limit

    def client():
        conn = http.client.HTTPConnection(host, port, timeout=60)
        while time.perf_counter() < deadline:
            i = next(counter)
            if i >= requests:
                break
            method, path, body, headers = maker.make(kind, i)
            started = time.perf_counter()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - started
                ok = response.status == 200 and b'"results"' in payload
            except (OSError, http.client.HTTPException) as exc:
                elapsed, ok, payload = time.perf_counter() - started, False, repr(exc).encode()
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=60)
            with lock:
                latencies.append(elapsed)
                if not ok:
                    errors.append(payload[:200].decode(errors="replace"))
        conn.close()

    stop = threading.Event()
    write_stats = {"writes": 0, "write_errors": [], "write_seconds": []}
    write_thread = None
    if writer is not None:
        write_thread = threading.Thread(target=writer, args=(stop, write_stats), daemon=True)
        write_thread.start()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    stop.set()
    if write_thread is not None:
        write_thread.join(timeout=120)
    ms = sorted(x * 1000 for x in latencies)
    out = {"kind": kind + ("+writes" if writer else ""), "clients": clients, "requests": len(ms),
           "p50_ms": round(statistics.median(ms), 2) if ms else None,
           "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2) if ms else None,
           "rps": round(len(ms) / wall, 1) if wall else None, "errors": len(errors), "seconds": round(wall, 2)}
    if writer is not None:
        out.update(writes=write_stats["writes"], write_errors=len(write_stats["write_errors"]),
                   write_p50_s=round(statistics.median(write_stats["write_seconds"]), 2)
                   if write_stats["write_seconds"] else None)
        errors += write_stats["write_errors"]
    if errors:
        out["first_error"] = errors[0]
    return out


def make_writer(host: str, port: int, template: dict):
    """Upsert a new product (a copy of a real record under a fresh id) and delete it, in a loop."""
    def write(stop: threading.Event, stats: dict):
        auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        n = 0
        while not stop.is_set():
            n += 1
            record = {**template, "id": f"load-{uuid.uuid4().hex[:8]}"}
            for method, path, body in (("POST", "/products", json.dumps({"products": [record]}).encode()),
                                       ("DELETE", f"/products/{urllib.parse.quote(record['id'])}", None)):
                conn = http.client.HTTPConnection(host, port, timeout=300)
                started = time.perf_counter()
                try:
                    conn.request(method, path, body=body, headers=auth)
                    response = conn.getresponse()
                    payload = response.read()
                    if response.status != 200:
                        stats["write_errors"].append(f"{method} {response.status} {payload[:200]!r}")
                    else:
                        stats["writes"] += 1
                        stats["write_seconds"].append(time.perf_counter() - started)
                except (OSError, http.client.HTTPException) as exc:
                    stats["write_errors"].append(f"{method} {exc!r}")
                finally:
                    conn.close()
    return write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, token: str | None, workers: int = 1) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MOONSEARCH_SERVE_TOKEN": token or ""}
    proc = subprocess.Popen([sys.executable, "-m", "moonsearch.cli", "serve", "--index", str(index), "--port",
                             str(port), "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit("server did not start:\n" + proc.stdout.read().decode(errors="replace")[-3000:])
        time.sleep(0.5)


def photos_from(folder: Path, n: int = 12) -> list[tuple[str, bytes]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    random.Random(0).shuffle(files)
    return [(p.name, p.read_bytes()) for p in files[:n]]


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", type=Path, help="Index to serve (copied first: the write run changes it).")
    parser.add_argument("--url", help="A running server on 127.0.0.1 instead (its writes need --token).")
    parser.add_argument("--token", help="Write token of the running server given by --url.")
    parser.add_argument("--photos", type=Path, help="Folder of query photos [default: the index's catalog images].")
    parser.add_argument("--requests", type=int, default=300, help="Requests per run.")
    parser.add_argument("--time-limit", type=float, default=30.0, help="Seconds per run at most.")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--kinds", default="text,image,filtered")
    parser.add_argument("--limit", type=int, default=24, help="Page size asked for.")
    parser.add_argument("--no-writes", action="store_true", help="Skip the run with writes going on.")
    parser.add_argument("--write-clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                        help="Worker processes of the server it starts (serve --workers) [default: cores, at most 4].")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "load.json")
    args = parser.parse_args()

    proc = None
    workdir = None
    token = args.token
    try:
        if args.url:
            url = args.url
        else:
            if args.index is None:
                raise SystemExit("give --index (served from a copy) or --url")
            workdir = Path(tempfile.mkdtemp(prefix="moonsearch-load-"))
            served = workdir / args.index.name
            shutil.copytree(args.index, served)
            token = TOKEN
            proc, url = start_server(served, token, args.workers)
        host, port = local_only(url)
        info = json.loads(urllib.request.urlopen(url + "/info", timeout=30).read())
        sample = json.loads(urllib.request.urlopen(url + "/search?limit=1", timeout=30).read())["results"][0]
        product = json.loads(urllib.request.urlopen(f"{url}/products/{urllib.parse.quote(sample['id'])}",
                                                    timeout=30).read())
        photo_dir = args.photos
        if photo_dir is None:
            image = sample.get("image")
            photo_dir = Path(image).parent if image else REPO / "catalog" / "images"
        known = {f["field"] for f in info["filterable_fields"]}
        filters = [fs for fs in FILTERS if all(f.split("=")[0].split("<")[0].split(">")[0] in known for f in fs)]
        maker = Requests(photos_from(photo_dir), args.limit, filters or [[]])
        for kind in ("text", "image", "filtered"):   # warm each path of every worker, outside the measurements
            for i in range(4 * args.workers):
                method, path, body, headers = maker.make(kind, i)
                conn = http.client.HTTPConnection(host, port, timeout=60)
                conn.request(method, path, body=body, headers=headers)
                conn.getresponse().read()
                conn.close()
        load = os.getloadavg()
        runs = []
        for kind in args.kinds.split(","):
            for clients in [int(c) for c in args.clients.split(",")]:
                result = run(host, port, kind, clients, args.requests, args.time_limit, maker)
                print(json.dumps(result), flush=True)
                runs.append(result)
        if not args.no_writes and token:
            template = {"title": product["title"] + " (load test copy)", "description": product.get("description"),
                        **{k: v for k, v in product["attributes"].items() if not isinstance(v, (dict, list))}}
            writer = make_writer(host, port, template)
            result = run(host, port, "text", args.write_clients, args.requests, args.time_limit * 4, maker,
                         writer=writer)
            print(json.dumps(result), flush=True)
            runs.append(result)
        out = {"commit": git_commit(), "index": str(args.index or url), "products": info["products"],
               "machine": {"cores": os.cpu_count(), "load_average_before": [round(x, 2) for x in load],
                           "load_average_after": [round(x, 2) for x in os.getloadavg()]},
               "settings": {"requests_per_run": args.requests, "time_limit_s": args.time_limit, "limit": args.limit,
                            "workers": None if args.url else args.workers},
               "runs": runs}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
