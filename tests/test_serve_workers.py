"""`moonsearch serve --workers N`, and a server serving writes other processes make.

Real processes on a free 127.0.0.1 port over a tiny index of real images: two workers both
answer, a write made through one reaches the other, and a single-worker server picks up a write
made by the library in another process (the follower thread), all within a bounded wait.
"""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import make_tiny_catalog, tiny_records
from test_serve_browser import free_port

TOKEN = "workers-test-token"
WAIT_S = 60   # generous: a 2-core CI machine running other tests starts two workers slowly


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post(url: str, body: dict):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return json.loads(response.read())


def delete(url: str):
    request = urllib.request.Request(url, method="DELETE", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=WAIT_S) as response:
        return json.loads(response.read())


def start(index, workers: int):
    port = free_port()
    env = {**os.environ, "MOONSEARCH_SERVE_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "moonsearch.cli", "serve", "--index", str(index), "--port", str(port),
                             "--workers", str(workers)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def until(what, check, proc):
    """Poll `check()` until it returns a true value (bounded by WAIT_S)."""
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the server exited: {proc.stdout.read().decode(errors='replace')[-2000:]}")
        try:
            found = check()
        except (OSError, urllib.error.URLError):
            found = None
        if found:
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def index(tmp_path):
    from moonsearch.index.builder import build_index

    make_tiny_catalog(tmp_path / "catalog", tiny_records(8))
    build_index(tmp_path / "catalog", tmp_path / "index", encoder="moon-lite", device="cpu")
    return tmp_path / "index"


def record(product_id: str, title: str) -> dict:
    return {"id": product_id, "title": title, "gender": "Women", "baseColour": "Green", "price": 777,
            "image": "images/P002.png"}


def found_by_every_worker(url: str, workers: set, product_id: str, query: str) -> bool:
    """True once each of `workers` has answered /health with the newest generation and a search
    finds the product (requests go to whichever worker accepts first, so ask many times)."""
    seen = {}
    for _ in range(40):
        health = get(f"{url}/health")
        seen[health["worker"]] = health["generation"]
        if set(seen) >= workers:
            break
    if set(seen) < workers or min(seen.values()) < 1:
        return False
    hits = [get(f"{url}/search?q={urllib.parse.quote(query)}&limit=3") for _ in range(6)]
    return all(product_id in [r["id"] for r in h["results"]] for h in hits)


def test_two_workers_answer_and_a_write_through_one_reaches_both(index):
    proc, url = start(index, workers=2)
    try:
        workers = until("two workers", lambda: (lambda pids: pids if len(pids) == 2 else None)(
            {get(f"{url}/health")["worker"] for _ in range(30)}), proc)
        assert proc.pid not in workers     # the parent only holds the socket; the workers answer
        summary = post(f"{url}/products", {"products": [record("NEWW", "Zebrastripe velvet gown")]})
        assert summary["added"] == 1
        until("the write in every worker", lambda: found_by_every_worker(url, workers, "NEWW", "zebrastripe velvet gown"),
              proc)
        # a delete right after an upsert may reach the worker that has not followed it yet
        for i in range(4):
            assert post(f"{url}/products", {"products": [record(f"TMP{i}", "Checkered wool scarf")]})["added"] == 1
            assert delete(f"{url}/products/TMP{i}")["deleted"] == 1
        with pytest.raises(urllib.error.HTTPError) as missing:
            delete(f"{url}/products/NEVER")
        assert missing.value.code == 404
    finally:
        stop(proc)


def test_a_server_serves_a_write_another_process_made(index):
    proc, url = start(index, workers=1)
    try:
        worker = until("the server", lambda: get(f"{url}/health")["worker"], proc)
        assert get(f"{url}/health")["generation"] == 0
        # the write: this test's own process, through the library, while the server runs
        from moonsearch.index.live import open_writer

        with open_writer(index, encoder="moon-lite", device="cpu") as writer:
            writer.upsert([record("LIB1", "Polkadot linen kaftan")], root=index.parent / "catalog")
        until("the server to follow the write",
              lambda: found_by_every_worker(url, {worker}, "LIB1", "polkadot linen kaftan"), proc)
    finally:
        stop(proc)
