"""A live index (issue 18.3-4): upsert, delete and update on an index the real indexer built,
each write one atomic snapshot, one writer at a time, readers never without an index."""

import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from moonsearch.errors import IndexFormatError, MoonsearchError
from moonsearch.store.backends import open_vectors
from moonsearch.index.builder import build_index
from moonsearch.store.files import view_file
from moonsearch.index.live import lock_path, open_writer
from moonsearch.search.product_index import ProductIndex

from conftest import REPO, SAMPLE_CATALOG, draw_product, make_tiny_catalog, tiny_records, write_jsonl

NEW = {"id": "NEW1", "title": "Zorblax Women Purple Velvet Gown", "gender": "Women", "articleType": "Dresses",
       "price": 4321, "fabricNote": "velvet"}


class CountingEncoder:
    """The session's encoder, counting the products it encodes (further images apart)."""

    def __init__(self, inner):
        self.inner = inner
        self.encoded = 0

    def encode_views(self, texts, images):
        self.encoded += len(texts)
        return self.inner.encode_views(texts, images)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.fixture
def live(sample_index, tmp_path, encoder):
    """A private copy of the sample catalog's index, opened with a counting encoder."""
    summary, _ = sample_index
    folder = tmp_path / "indexes" / "sample"
    shutil.copytree(summary.out, folder)
    counting = CountingEncoder(encoder)
    index = ProductIndex.open(folder, device="cpu", encoder=counting)
    yield index, counting
    index.close()


def cli(*args, cwd=REPO):
    """The CLI in its own process; `.out` is what it printed (progress and errors go to stderr)."""
    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    done.out = " ".join((done.stdout + done.stderr).split())
    return done


def test_upsert_then_query_finds_the_new_product_and_delete_removes_it_everywhere(live):
    index, counting = live
    summary = index.upsert([NEW])
    assert (summary.added, summary.encoded, counting.encoded) == (1, 1, 1)
    assert 0 < summary.encode_seconds < summary.seconds   # the benchmark's "without encoding" split
    assert index.manifest.counts["products"] == 121 and index.manifest.generation == 1
    assert index.search(text="zorblax velvet gown", k=3)[0].id == "NEW1"                    # hybrid
    assert index.search(text="zorblax", k=3, hybrid=False)[0].id == "NEW1"                  # vectors
    assert [h.id for h in index.search(text="gown", k=5, filters=["fabricNote=velvet"])] == ["NEW1"]
    assert ("fabricNote", 1) in index.info()["filterable_fields"]
    assert index.store.keyword_rows("zorblax", 5) == index.store.keyword_rows_sql("zorblax", 5) != []
    key = index.store.row_of("NEW1")
    assert key == 120   # after the build's rows 0..119

    summary = index.delete(["NEW1"])
    assert summary.deleted == 1 and counting.encoded == 1
    assert index.store.row_of("NEW1") is None
    assert "NEW1" not in [h.id for h in index.search(text="zorblax velvet gown", k=10)]
    assert index.store.keyword_rows("zorblax", 5) == [] and index.store.keyword_rows_sql("zorblax", 5) == []
    with pytest.raises(MoonsearchError, match="no attribute 'fabricNote'"):
        index.search(text="gown", filters=["fabricNote=velvet"])
    for view in index.manifest.views:
        assert key not in open_vectors(index.data, view_file(view)).ids()
    assert index.info()["manifest"]["counts"]["products"] == 120
    index.upsert([{**NEW, "id": "NEW2"}])
    assert index.store.row_of("NEW2") == 121   # a deleted product's key is never given to another


def test_replacing_a_product_keeps_its_key_and_re_encodes_it(live):
    index, counting = live
    key = index.store.row_of("S0003")
    summary = index.upsert([{"id": "S0003", "title": "Quuxfrob Unisex Green Rain Boots", "articleType": "Boots"}])
    assert (summary.replaced, summary.added, counting.encoded) == (1, 0, 1)
    assert index.store.row_of("S0003") == key and index.manifest.counts["products"] == 120
    assert index.search(text="quuxfrob", k=1)[0].id == "S0003"
    assert index.store.keyword_rows("wayfarer", 10, np.array([key])) == []


def test_delete_by_filter_and_unknown_ids(live):
    index, _ = live
    lumora = {h.id for h in index.search(text="lumora", k=120, filters=["brand=Lumora"])}
    assert lumora
    summary = index.delete(filters=["brand=Lumora"])
    assert summary.deleted == len(lumora) and index.manifest.counts["products"] == 120 - len(lumora)
    assert not lumora & {h.id for h in index.search(text="lumora sunglasses", k=120)}
    with pytest.raises(MoonsearchError, match="no product with id NOPE"):
        index.delete(["NOPE"])


def test_update_encodes_only_new_and_changed_products_and_removes_the_missing(live, tmp_path):
    index, counting = live
    catalog = tmp_path / "catalog"
    shutil.copytree(SAMPLE_CATALOG, catalog)
    records = [json.loads(line) for line in (catalog / "products.jsonl").read_text().splitlines()]
    removed = records.pop(5)["id"]
    records[0]["title"] = "Blorptastic " + records[0]["title"]          # changed text
    changed_image = next(r for r in records[10:] if r.get("image"))
    (catalog / changed_image["image"]).write_bytes((catalog / records[1]["image"]).read_bytes())   # changed photo
    records.append({**NEW, "id": "NEW2"})
    write_jsonl(catalog / "products.jsonl", records)
    with index.writer() as writer:
        summary = writer.update(catalog)
    assert (summary.added, summary.replaced, summary.deleted) == (1, 2, 1)
    assert summary.unchanged == 117 and summary.encoded == 3 and counting.encoded == 3
    index.refresh()
    assert index.store.row_of(removed) is None and index.manifest.counts["products"] == 120
    assert index.search(text="blorptastic", k=1)[0].id == records[0]["id"]
    assert not lock_path(index.folder).exists()


def test_a_write_with_another_encoder_is_refused(live, encoder):
    index, _ = live

    class Other(CountingEncoder):
        encoder_id = "baseline@0000000000000000"

    with pytest.raises(IndexFormatError, match="was built by encoder"):
        open_writer(index.folder, encoder=Other(encoder))
    assert not lock_path(index.folder).exists()


def test_products_with_several_images_get_their_extra_vectors(live, tmp_path):
    index, _ = live
    first = draw_product(tmp_path / "imgs" / "a.png", "Red", "dress", seed=1)
    second = draw_product(tmp_path / "imgs" / "b.png", "Blue", "tshirt", seed=2)
    index.upsert([{"id": "MULTI", "title": "Snarfle two-colour set", "image": [str(first), str(second)]}])
    assert index.manifest.counts["extra_images"] == 1
    hit = index.search(image=second, k=1, view="image")[0]
    assert hit.id == "MULTI" and hit.matched_image_index == 1
    index.delete(["MULTI"])
    assert index.manifest.counts["extra_images"] == 0
    assert "MULTI" not in [h.id for h in index.search(image=second, k=5, view="image")]


def test_cli_add_update_delete(sample_index, tmp_path):
    summary, _ = sample_index
    folder = tmp_path / "idx"
    shutil.copytree(summary.out, folder)
    extra = write_jsonl(tmp_path / "more" / "products.jsonl", [NEW])
    done = cli("add", extra.parent, "--index", folder, "--device", "cpu")
    assert done.returncode == 0 and "1 added" in done.out, done.out
    done = cli("delete", "NEW1", "--index", folder, "--device", "cpu")
    assert done.returncode == 0 and "1 deleted" in done.out
    done = cli("delete", "--index", folder)
    assert done.returncode == 2 and "delete needs product ids" in done.out and "Traceback" not in done.out
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoder"]["id"] = "baseline@0000000000000000"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    done = cli("update", SAMPLE_CATALOG, "--index", folder, "--device", "cpu")
    assert done.returncode == 2 and "was built by encoder" in done.out and "Traceback" not in done.out


READER = r"""
import json, sys
from pathlib import Path
import numpy as np
from moonsearch.search.product_index import ProductIndex

folder, stop, out = map(Path, sys.argv[1:4])
rng = np.random.default_rng(int(sys.argv[4]))
stats = {"reads": 0, "missing": 0, "errors": [], "states": []}
while not stop.exists():
    if not (folder / "manifest.json").exists():
        stats["missing"] += 1
        continue
    try:
        index = ProductIndex.open(folder, device="cpu")
        products = index.manifest.counts["products"]
        vectors = index._view("mm")
        _, keys = vectors.search(rng.normal(size=(1, index.manifest.dim)).astype("float32"), 10)
        index.store.products([int(k) for k in keys[0] if k >= 0])     # every key found has its record
        index.store.products([row for row, _ in index.store.keyword_rows("cotton", 50)])
        if not index.store.count() == products == vectors.size:
            stats["errors"].append(f"mixed state: {products} {index.store.count()} {vectors.size}")
        stats["states"].append(products)
        stats["reads"] += 1
        index.close()
    except Exception as exc:
        stats["errors"].append(repr(exc)[:300])
out.write_text(json.dumps(stats))
"""


def test_readers_see_whole_states_and_never_a_missing_index_during_rebuilds_and_writes(tmp_path, encoder):
    out = tmp_path / "indexes" / "shop"
    build_index(make_tiny_catalog(tmp_path / "c6", tiny_records(6)), out, encoder=encoder, device="cpu")
    script = tmp_path / "reader.py"
    script.write_text(READER)
    stop = tmp_path / "stop"
    readers = [subprocess.Popen([sys.executable, str(script), str(out), str(stop), str(tmp_path / f"r{i}.json"), str(i)],
                                cwd=REPO) for i in range(2)]
    time.sleep(4)   # imports
    build_index(make_tiny_catalog(tmp_path / "c12", tiny_records(12)), out, encoder=encoder, device="cpu")
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    for round in range(3):   # a writer adding and deleting while the readers query
        index.upsert([{**NEW, "id": f"NEW{round}"}])
        index.delete([f"P00{round}"])
    index.close()
    build_index(make_tiny_catalog(tmp_path / "c6b", tiny_records(6)), out, encoder=encoder, device="cpu")
    time.sleep(1)
    stop.touch()
    for reader in readers:
        assert reader.wait(timeout=60) == 0
    for i in range(2):
        stats = json.loads((tmp_path / f"r{i}.json").read_text())
        assert stats["errors"] == [] and stats["missing"] == 0
        assert stats["reads"] > 0 and set(stats["states"]) <= {6, 12, 13}
        print(f"reader {i}: {stats['reads']} reads, states {sorted(set(stats['states']))}")
    assert ProductIndex.open(out, device="cpu").manifest.generation == 8
    assert not lock_path(out).exists()


def test_a_second_writer_is_refused_with_the_pid_and_a_dead_writer_s_lock_is_taken_over(live, tmp_path, encoder):
    index, _ = live
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from moonsearch.index.snapshots import WriteLock; "
         "held = WriteLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)", str(index.folder)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MoonsearchError, match=f"being written by PID {holder.pid}"):
            index.upsert([NEW])
        with pytest.raises(MoonsearchError, match=f"being written by PID {holder.pid}"):
            build_index(SAMPLE_CATALOG, index.folder, encoder=encoder, device="cpu")
        done = cli("delete", "S0001", "--index", index.folder, "--device", "cpu")
        assert done.returncode == 2 and f"being written by PID {holder.pid}" in done.out
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_path(index.folder).exists()   # left by the killed holder: stale, free to take
    assert index.upsert([NEW]).added == 1
    assert not lock_path(index.folder).exists() and index.store.row_of("NEW1") is not None



def test_a_writer_may_wait_for_the_lock_instead_of_being_refused(tmp_path):
    from moonsearch.index.snapshots import WriteLock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from moonsearch.index.snapshots import WriteLock; "
         "held = WriteLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(0.8); held.release()",
         str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(MoonsearchError, match=f"being written by PID {holder.pid}"):
            WriteLock(tmp_path).acquire(wait_s=0.1)        # waits a little, then refuses
        lock = WriteLock(tmp_path).acquire(wait_s=30)     # waits for the holder to finish
        assert lock_path(tmp_path).read_text() == str(__import__("os").getpid())
        lock.release()
    finally:
        holder.kill()
        holder.wait()

WRITER = r"""
import sys
from moonsearch.encoder.registry import load_encoder
from moonsearch.index.live import open_writer

folder, op, arg = sys.argv[1:4]
writer = open_writer(folder, encoder=load_encoder("baseline", device="cpu"))
print("ready", flush=True)
if op == "add":
    writer.upsert([{"id": f"{arg}-{i}", "title": f"Crashproof cotton shirt {arg} {i}", "price": i} for i in range(3)])
elif op == "update":
    writer.update(arg)
elif op == "compact":
    writer.compact(arg)
else:
    writer.delete([arg])
print("done", flush=True)
"""


def check_whole(folder):
    """The index opens and its stores agree: the same keys in records and every view."""
    from moonsearch.store.backends import open_records

    index = ProductIndex.open(folder, device="cpu")
    index.verify()   # every file matches the checksums its manifest recorded
    keys = set(index.store.allowed_rows([]).tolist())
    assert len(keys) == index.store.count() == index.manifest.counts["products"]
    for view in index.manifest.views:
        assert set(index._view(view).ids().tolist()) == keys
    assert {r for r, _ in index.store.keyword_rows("cotton", 1000)} <= keys
    ids = [p["id"] for p in index.store.products(sorted(keys))]
    assert len(ids) == len(set(ids))
    records = open_records(index.data)
    records.close()
    generation = index.manifest.generation
    index.close()
    return generation, set(ids)


def test_a_writer_killed_at_random_points_leaves_a_whole_index_and_the_write_can_be_retried(live, tmp_path, encoder):
    import random

    index, _ = live
    folder = index.folder
    index.close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(18)
    ops = ["add", "update", "delete", "compact"] * 6   # 24 kills
    committed_seen = 0
    for trial, op in enumerate(ops):
        generation, ids = check_whole(folder)
        if op == "add":
            arg, expect_new, expect_gone = f"K{trial}", {f"K{trial}-{i}" for i in range(3)}, set()
        elif op == "delete":
            arg = sorted(ids)[trial]
            expect_new, expect_gone = set(), {arg}
        elif op == "compact":
            arg, expect_new, expect_gone = ("hnsw", "flat")[trial // 4 % 2], set(), set()
        else:
            catalog = tmp_path / f"catalog{trial}"
            records = [{"id": i, "title": f"Crashproof cotton item {i}"} for i in sorted(ids)[1:]]
            records.append({"id": f"U{trial}", "title": "Crashproof cotton update"})
            arg = str(write_jsonl(catalog / "products.jsonl", records).parent)
            expect_new, expect_gone = {f"U{trial}"}, {sorted(ids)[0]}
        child = subprocess.Popen([sys.executable, str(script), str(folder), op, arg], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 1.5))
        child.send_signal(signal.SIGKILL)
        child.wait()
        after, now = check_whole(folder)
        if after > generation:   # the write committed before the kill: all of it is there
            committed_seen += 1
            assert expect_new <= now and not expect_gone & now
        else:                    # it did not: none of it is
            assert after == generation and now == ids
        with open_writer(folder, encoder=encoder) as writer:   # the retry completes
            if op == "add":
                writer.upsert([{"id": f"{arg}-{i}", "title": f"Crashproof cotton shirt {arg} {i}", "price": i}
                               for i in range(3)])
            elif op == "update":
                writer.update(arg)
            elif op == "compact":
                writer.compact(arg)
            elif arg in now:
                writer.delete([arg])
        _, final = check_whole(folder)
        assert expect_new <= final and not expect_gone & final
        if op == "compact":
            assert final == now and ProductIndex.open(folder, device="cpu").manifest.index_type == arg
    snapshots = sorted(p.name for p in folder.iterdir() if p.name.startswith("snap-"))
    assert snapshots[-1] == f"snap-{check_whole(folder)[0]:06d}"
    print(f"{len(ops)} kills, {committed_seen} after the commit")


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_writes_on_ann_indexes(tmp_path, encoder, index_type):
    out = tmp_path / index_type
    build_index(make_tiny_catalog(tmp_path / "c", tiny_records(12)), out, encoder=encoder, device="cpu",
                index_type=index_type)
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    index.upsert([NEW])
    index.delete(["P003"])
    assert index.search(text="zorblax velvet gown", k=1, hybrid=False)[0].id == "NEW1"
    found = [h.id for h in index.search(text="cotton", k=20, hybrid=False)]
    assert len(found) == 12 and "P003" not in found
    assert {h.id for h in index.search(text="dress", k=3, filters=["price>1300"])} == {"NEW1", "P011"}
    index.close()


def test_an_index_built_before_keys_and_hashes_takes_writes(tmp_path, encoder):
    import duckdb
    import faiss

    from moonsearch.store import faiss_vectors

    out = tmp_path / "old"
    catalog = make_tiny_catalog(tmp_path / "c", tiny_records(8))
    build_index(catalog, out, encoder=encoder, device="cpu")
    for view in ("mm", "image", "text"):   # vectors by position, as before stable keys
        keyed = faiss.read_index(str(out / view_file(view)))
        faiss.write_index(faiss_vectors.build(keyed.reconstruct_n(0, keyed.ntotal), "flat"), str(out / view_file(view)))
    con = duckdb.connect(str(out / "metadata.duckdb"))
    con.execute("DROP TABLE hashes")
    con.close()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = None   # nor checksums
    (out / "manifest.json").write_text(json.dumps(manifest))
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    index.delete(["P002"])
    assert index.search(text="blue cotton dress", k=10, hybrid=False)[0].id != "P002"
    assert "P002" not in [h.id for h in index.search(text="cotton", k=10, hybrid=False)]
    with index.writer() as writer:
        first = writer.update(catalog)     # no hashes stored: every product counts as changed once
        second = writer.update(catalog)
    assert (first.added, first.replaced) == (1, 7) and (second.unchanged, second.encoded) == (8, 0)
    index.close()


def test_compact_rebuilds_the_vectors_without_encoding(live):
    index, counting = live
    index.delete(["S0001", "S0002"])
    before = [h.id for h in index.search(text="red dress", k=10, hybrid=False)]
    counting.encoded = 0
    with index.writer() as writer:
        summary = writer.compact("hnsw")
    index.refresh()
    assert summary.compacted and counting.encoded == 0
    assert index.manifest.index_type == "hnsw" and index._view("mm").kind == "hnsw"
    assert [h.id for h in index.search(text="red dress", k=10, hybrid=False)] == before
    done = cli("compact", "--index", index.folder)
    assert done.returncode == 0 and "compacted" in done.out and "flat vectors rebuilt" in done.out
    index.refresh()
    assert index.manifest.index_type == "flat" and index.manifest.counts["products"] == 118


def test_update_from_a_catalog_without_products_is_refused(live, tmp_path):
    index, _ = live
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "products.jsonl").write_text('{"title": "no id"}\n')
    with index.writer() as writer, pytest.raises(MoonsearchError, match="would empty the index"):
        writer.update(tmp_path / "empty")
    assert index.manifest.counts["products"] == 120
