"""`moonsearch index --engine ray` on a real local Ray: a catalog of a few hundred products with
drawn images, read by Ray tasks and encoded by a Ray Data actor pool, makes the single-process
build's index: the same rows, records, skips and report, vectors equal to float rounding, the
same top-10. One records file, and a catalog cut into three files in two subfolders as JSONL,
Parquet and CSV (bad rows in one file, products with several images in two)."""

import csv
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='Ray Data is in the [scale] extra: pip install -e ".[scale]"')

import moonsearch  # noqa: E402
from moonsearch.catalog import Catalog  # noqa: E402
from moonsearch.encoder.registry import load_encoder  # noqa: E402
from moonsearch.errors import CatalogError, MoonsearchError  # noqa: E402
from moonsearch.index.builder import build_index, encoding_engine  # noqa: E402
from moonsearch.index.ray_engine import RayEngine  # noqa: E402
from moonsearch.store.files import EXTRA_MAP_FILE, SKIPS_FILE, extra_view_file, view_file  # noqa: E402
from moonsearch.store.manifest import MANIFEST_FILE  # noqa: E402

from conftest import COLOURS, draw_product, make_tiny_catalog, tiny_records, write_jsonl  # noqa: E402
from test_index_pipeline import table, vectors  # noqa: E402

PRODUCTS = 300
QUERIES = ["red cotton dress", "blue tshirt", "black dress for women", "green cotton tshirt men"]


def ray_catalog(folder):
    """PRODUCTS drawn products, plus what the report records: a missing image, no image, a
    first image that fails before one that loads, second images, and two rows skipped."""
    records = tiny_records(PRODUCTS)
    make_tiny_catalog(folder, records)
    for i in (7, 150, 290):
        draw_product(folder / "images" / f"extra{i}.png", list(COLOURS)[(i + 1) % 4], "dress", seed=500 + i)
        records[i]["image"] = [records[i]["image"], f"images/extra{i}.png"]
    records[3]["image"] = "images/missing.png"
    records[40]["image"] = None
    records[77]["image"] = ["images/gone.png", records[77]["image"]]
    records.insert(100, {"id": "NOTITLE", "baseColour": "Red"})
    records.insert(200, {"title": "no id here"})
    with open(folder / "products.jsonl", "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return folder


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


def worst_cosine(a, b):
    """The lowest row cosine; rows that are zero (text-only products' image view) must be zero
    in both."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    assert np.array_equal(na == 0, nb == 0)
    kept = na > 0
    return float((np.sum(a[kept] * b[kept], axis=1) / (na[kept] * nb[kept])).min())


def compare_builds(a, b, local, remote, queries, photos):
    """Two builds of one catalog agree: summary, report, skips file, rows, attributes, manifest,
    every vector (cosine >= 0.9999; the worst and the largest difference returned per view),
    further images and their map, and the top-10 of text (vector and hybrid) and photo queries."""
    for field in ("products", "with_image", "text_only", "skipped", "images", "extra_images", "image_failures"):
        assert getattr(remote, field) == getattr(local, field), field
    assert remote.report == local.report
    worst, largest = {}, {}
    for view in ("mm", "image", "text"):
        x, y = vectors(b / view_file(view), local.products), vectors(a / view_file(view), local.products)
        worst[view], largest[view] = worst_cosine(x, y), float(np.abs(x - y).max())
        assert worst[view] >= 0.9999, (view, worst[view])
    for view in ("mm", "image"):   # further images: embedded by the actors on Ray, by the builder locally
        x, y = vectors(b / extra_view_file(view), local.extra_images), vectors(a / extra_view_file(view), local.extra_images)
        worst["extra " + view], largest["extra " + view] = worst_cosine(x, y), float(np.abs(x - y).max())
        assert worst["extra " + view] >= 0.9999, (view, worst["extra " + view])
    with np.load(a / EXTRA_MAP_FILE) as x, np.load(b / EXTRA_MAP_FILE) as y:
        assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    for name in ("products", "attributes"):
        assert table(a, name) == table(b, name)
    assert (a / SKIPS_FILE).read_text() == (b / SKIPS_FILE).read_text()
    ma, mb = (json.loads((f / MANIFEST_FILE).read_text()) for f in (a, b))
    for manifest in (ma, mb):
        manifest.pop("created"), manifest.pop("files")
    assert ma == mb

    first, second = moonsearch.open_index(a), moonsearch.open_index(b)
    try:
        for query in queries:
            for hybrid in (False, True):
                assert ([h.id for h in first.search(text=query, k=10, hybrid=hybrid)]
                        == [h.id for h in second.search(text=query, k=10, hybrid=hybrid)]), query
        for photo in photos:
            assert [h.id for h in first.search(image=photo, k=10)] == [h.id for h in second.search(image=photo, k=10)]
    finally:
        first.close(), second.close()
    return ", ".join(f"{v} {worst[v]:.7f} {largest[v]:.1e}" for v in worst)


def test_ray_build_equals_the_single_process_build(tmp_path, local_ray):
    catalog = ray_catalog(tmp_path / "cat")
    encoder = load_encoder("default", device="cpu")
    # chunks of 4 x 32 products: 300 products are 3 pieces of the one file, the last partial
    local = build_index(catalog, tmp_path / "local", encoder=encoder, device="cpu", batch_size=32)
    engine = encoding_engine("ray", None, 2)
    remote = build_index(catalog, tmp_path / "ray", encoder=encoder, device="cpu", batch_size=32, engine=engine)

    assert engine.plan == "ray: 2 cpu actor(s) x 1 thread(s)"
    assert (engine.stats["files"], engine.stats["chunks"], engine.stats["products"]) == (1, 3, PRODUCTS)
    assert (local.products, local.skipped, local.text_only, local.extra_images) == (PRODUCTS, 2, 2, 3)
    found = compare_builds(tmp_path / "local", tmp_path / "ray", local, remote, QUERIES, [catalog / "images" / "P005.png"])
    assert ray.is_initialized()   # the test's Ray: the engine did not start it, so it leaves it running
    print("ray vs local: worst cosine, largest difference per view " + found)


# A catalog cut into three records files in two subfolders: 40, 36 and 20 products. The first
# two files' image paths are relative to 2026-01/ (../images/...), the third's to 2026-02/
# (photos/...), each file's own folder.
SPLIT = (("2026-01/part-0", 40), ("2026-01/part-1", 36), ("2026-02/part-0", 20))
SPLIT_PRODUCTS = sum(n for _, n in SPLIT)
SPLIT_BATCH = 8   # pieces of 4 x 8 products: 32 + 8, 32 + 4, 20


def split_records(folder):
    """(file stem, records) for SPLIT, images drawn: a missing image, none, a first image that
    fails before one that loads, a second image that fails, and second images (P005, P080)."""
    records, at = tiny_records(SPLIT_PRODUCTS), 0
    files = []
    for stem, count in SPLIT:
        part = records[at:at + count]
        for i, record in enumerate(part, at):
            shape = record.pop("_shape")
            if stem.startswith("2026-02"):
                record["image"] = f"photos/P{i:03d}.png"
                draw_product(folder / "2026-02" / record["image"], record["baseColour"], shape, seed=i)
            else:
                draw_product(folder / "images" / f"P{i:03d}.png", record["baseColour"], shape, seed=i)
                record["image"] = f"../images/P{i:03d}.png"
        files.append((stem, part))
        at += count
    draw_product(folder / "images" / "extra5.png", "Green", "dress", seed=505)
    draw_product(folder / "2026-02" / "photos" / "extra80.png", "Red", "tshirt", seed=580)
    records[5]["image"] = [records[5]["image"], "../images/extra5.png"]
    records[80]["image"] = [records[80]["image"], "photos/extra80.png"]
    records[10]["image"] = "../images/missing.png"
    records[20]["image"] = None
    records[45]["image"] = ["../images/gone.png", records[45]["image"]]
    records[50]["image"] = [records[50]["image"], "../images/gone-too.png"]
    return files


def split_catalog(folder, fmt):
    """SPLIT as JSONL, Parquet or CSV files, with rows that file 2026-01/part-1 skips: in every
    format a row without a title and one without an id; JSONL adds a line that is not JSON and
    one that is not an object, CSV a row with more fields than its header."""
    files = split_records(folder)
    bad = [{"id": "NOTITLE", "baseColour": "Red"}, {"title": "no id here"}]
    for stem, records in files:
        path = folder / f"{stem}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = list(records)
        if stem == "2026-01/part-1":
            rows[3:3] = bad[:1]
            rows[20:20] = bad[1:]
        if fmt == "jsonl":
            lines = [json.dumps(r) for r in rows]
            if stem == "2026-01/part-1":
                lines[7:7] = ["{not json", "[1, 2]", ""]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            listed = [{**r, "image": [r["image"]] if isinstance(r.get("image"), str) else r.get("image")} for r in rows]
            pq.write_table(pa.Table.from_pylist(listed), path)
        else:
            header = ["id", "title", "gender", "baseColour", "articleType", "price", "image"]
            cells = [[("|".join(v) if isinstance(v, list) else "" if v is None else str(v))
                      for v in (r.get(k) for k in header)] for r in rows]
            text = io.StringIO()
            csv.writer(text, lineterminator="\n").writerows([header] + cells)
            lines = text.getvalue().splitlines()
            if stem == "2026-01/part-1":
                lines[10:10] = ["P900,an, unquoted, comma,Men,Red,Tshirts,300,x.png"]
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


SKIPPED = {   # the rows 2026-01/part-1 skips, by format: (reason starts with, ...)
    "jsonl": ("missing title", "invalid JSON", "not a JSON object", "missing id"),
    "parquet": ("missing title", "missing id"),
    "csv": ("missing title", "9 fields but the header has 7", "missing id"),
}


@pytest.fixture(scope="module")
def split_encoder():
    return load_encoder("default", device="cpu")


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "csv"])
def test_a_catalog_of_several_files_read_on_ray_equals_the_single_process_build(tmp_path, local_ray, split_encoder, fmt,
                                                                                monkeypatch):
    catalog = split_catalog(tmp_path / "cat", fmt)
    local = build_index(catalog, tmp_path / "local", encoder=split_encoder, device="cpu", batch_size=SPLIT_BATCH)
    engine = encoding_engine("ray", None, 2)
    with monkeypatch.context() as patch:   # the driver reads no records: Ray's tasks do
        for name in ("scan", "products", "products_by_file"):
            patch.setattr(Catalog, name, lambda *args: pytest.fail("the driver read the catalog"))
        remote = build_index(catalog, tmp_path / "ray", encoder=split_encoder, device="cpu", batch_size=SPLIT_BATCH,
                             engine=engine)
    # three files read by Ray tasks, as five pieces: 40 = 32 + 8, 36 = 32 + 4, 20
    assert (engine.stats["files"], engine.stats["chunks"], engine.stats["products"]) == (3, 5, SPLIT_PRODUCTS)

    # bad rows in one file: skipped, counted and reported as the single-process build does
    skipped = [e for e in remote.report if e["kind"] == "skipped"]
    assert remote.skipped == len(skipped) == len(SKIPPED[fmt])
    assert [e["reason"].startswith(r) for e, r in zip(skipped, SKIPPED[fmt])] == [True] * len(skipped), skipped
    assert all(e["source"].startswith(f"2026-01/part-1.{fmt}:") for e in skipped)
    # every image embedded: P005's and P080's second images (P080's relative to 2026-02/), P045's
    # second after its first failed; P050's missing second image reported
    assert (remote.products, remote.text_only, remote.extra_images) == (SPLIT_PRODUCTS, 2, 2)
    with np.load(tmp_path / "ray" / EXTRA_MAP_FILE) as extras:
        assert (list(extras["rows"]), list(extras["positions"])) == ([5, 80], [1, 1])
    failures = [(e["id"], e["reason"]) for e in remote.report if e["kind"] != "skipped"]
    assert [pid for pid, _ in failures] == ["P010", "P020", "P045", "P050"], failures

    found = compare_builds(tmp_path / "local", tmp_path / "ray", local, remote, QUERIES,
                           [catalog / "images" / "P005.png", catalog / "2026-02" / "photos" / "extra80.png"])
    first = moonsearch.open_index(tmp_path / "ray")
    try:   # P080's second photo finds P080 through its further-image vector
        assert first.search(image=catalog / "2026-02" / "photos" / "extra80.png", k=1)[0].id == "P080"
    finally:
        first.close()
    print(f"{fmt}: ray vs local: worst cosine, largest difference per view " + found)


def test_the_photo_identity_channel_built_on_ray_equals_the_single_process_build(tmp_path, local_ray, split_encoder):
    """With the channel on, the actors embed each first and further image's identity vector with
    the same model as the local build: the same identity files, manifest entry and photo top-10."""
    from moonsearch.encoder import photo_identity

    if photo_identity.shipped() is None:
        pytest.skip(f"no photo identity weights at {photo_identity.WEIGHTS} (the channel needs them)")
    catalog = split_catalog(tmp_path / "cat", "jsonl")
    local = build_index(catalog, tmp_path / "local", encoder=split_encoder, device="cpu", batch_size=SPLIT_BATCH,
                        identity=True)
    engine = encoding_engine("ray", None, 2)
    remote = build_index(catalog, tmp_path / "ray", encoder=split_encoder, device="cpu", batch_size=SPLIT_BATCH,
                         identity=True, engine=engine)
    assert engine.stats["chunks"] == 5 and (remote.products, remote.extra_images) == (SPLIT_PRODUCTS, 2)

    manifest = json.loads((tmp_path / "ray" / MANIFEST_FILE).read_text())
    assert manifest["identity"] == photo_identity.PhotoIdentity.load().spec()   # and equal to local's: compare_builds
    worst = {}
    for name, count in ((view_file("identity"), local.products), (extra_view_file("identity"), local.extra_images)):
        x, y = vectors(tmp_path / "ray" / name, count), vectors(tmp_path / "local" / name, count)
        assert x.shape == (count, manifest["identity"]["dim"]) and np.abs(x).sum() > 0, name
        worst[name] = worst_cosine(x, y)
        assert worst[name] >= 0.9999, (name, worst[name])
    photos = [catalog / "images" / "P005.png", catalog / "2026-02" / "photos" / "extra80.png"]
    found = compare_builds(tmp_path / "local", tmp_path / "ray", local, remote, QUERIES, photos)
    index = moonsearch.open_index(tmp_path / "ray")
    try:   # image-only queries rank by the channel; P080's second photo finds it through its extra identity vector
        hits = index.search(image=photos[1], k=10)
        assert hits[0].ranking == "photo" and hits[0].id == "P080"
    finally:
        index.close()
    print("identity: ray vs local: worst cosine " + ", ".join(f"{k} {v:.7f}" for k, v in worst.items()) + "; " + found)


def test_the_identity_default_is_the_same_for_both_engines(monkeypatch):
    from moonsearch.encoder import photo_identity
    from moonsearch.index.builder import _identity_model

    monkeypatch.delenv("MOONSEARCH_IDENTITY", raising=False)
    on = photo_identity.shipped() is not None   # on where the weights ship, whichever engine builds
    assert (_identity_model(None) is not None) == on
    assert _identity_model(False) is None
    monkeypatch.setenv("MOONSEARCH_IDENTITY", "0")
    assert _identity_model(None) is None


def test_a_ray_worker_without_the_identity_weights_fails_in_one_line(tmp_path, local_ray, split_encoder, monkeypatch):
    from moonsearch.encoder import photo_identity

    if photo_identity.shipped() is None:
        pytest.skip(f"no photo identity weights at {photo_identity.WEIGHTS}")
    catalog = make_tiny_catalog(tmp_path / "cat", tiny_records(4))
    missing = tmp_path / "nowhere" / "photo-identity.safetensors"   # what the driver tells the actors to load
    spec = photo_identity.PhotoIdentity.spec
    monkeypatch.setattr(photo_identity.PhotoIdentity, "spec", lambda self: {**spec(self), "weights": str(missing)})
    with pytest.raises(MoonsearchError, match="^encoding on Ray failed: no photo identity weights at " + re.escape(str(missing))):
        build_index(catalog, tmp_path / "index", encoder=split_encoder, device="cpu", identity=True,
                    engine=encoding_engine("ray", None, 1))
    assert not (tmp_path / "index").exists()


def test_duplicate_ids_across_files_and_unreadable_files_fail_on_ray_as_locally(tmp_path, local_ray):
    catalog = tmp_path / "cat"
    write_jsonl(catalog / "part-0.jsonl", [{"id": "A", "title": "red dress"}, {"id": "B", "title": "blue shirt"}])
    write_jsonl(catalog / "part-1.jsonl", [{"id": "C", "title": "green top"}, {"id": "A", "title": "red dress again"}])
    errors = []
    for engine in (None, encoding_engine("ray", None, 1)):
        with pytest.raises(CatalogError) as info:
            build_index(catalog, tmp_path / "index", device="cpu", engine=engine)
        errors.append(str(info.value))
    assert errors[0] == errors[1] == ("cat: 1 product id(s) used more than once: 'A' (at part-0.jsonl:1, "
                                      "part-1.jsonl:2). Product ids must be unique.")
    (catalog / "part-1.jsonl").write_bytes(b'{"id": "C", "title": "caf\xe9"}\n')
    errors = []
    for engine in (None, encoding_engine("ray", None, 1)):
        with pytest.raises(CatalogError) as info:
            build_index(catalog, tmp_path / "index", device="cpu", engine=engine)
        errors.append(str(info.value))
    assert errors[0] == errors[1] and "part-1.jsonl line 1: not valid UTF-8" in errors[0]
    assert not (tmp_path / "index").exists()


def test_a_failure_on_ray_is_one_line_and_leaves_no_index(tmp_path, local_ray, monkeypatch):
    catalog = make_tiny_catalog(tmp_path / "cat", tiny_records(8))
    monkeypatch.setattr("moonsearch.index.ray_engine.encoder_spec", lambda encoder: "no-such-encoder")
    with pytest.raises(MoonsearchError, match="^encoding on Ray failed: no weights for encoder 'no-such-encoder'"):
        build_index(catalog, tmp_path / "index", device="cpu", engine=encoding_engine("ray", None, 1))
    assert not (tmp_path / "index").exists()
    assert ray.is_initialized()   # a Ray the engine did not start is left running


def test_engine_choices_are_checked_in_one_line():
    with pytest.raises(MoonsearchError, match="unknown engine 'spark'"):
        encoding_engine("spark")
    with pytest.raises(MoonsearchError, match="are for --engine ray"):
        encoding_engine("local", address="127.0.0.1:6379")
    with pytest.raises(MoonsearchError, match="expected host:port"):
        RayEngine(address="not an address")
    with pytest.raises(MoonsearchError, match="no Ray cluster answers there"):
        RayEngine(address="127.0.0.1:1")    # refused at once, not after ray.init's minutes of retries
    with pytest.raises(MoonsearchError, match="at least 1"):
        RayEngine(workers=0)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(MoonsearchError, match=r'pip install -e "\.\[scale\]"'):
        RayEngine()


class _Cluster:
    def __init__(self, resources):
        self.resources = resources

    def cluster_resources(self):
        return self.resources


@pytest.mark.parametrize("resources,workers,plan", [
    ({"CPU": 16.0}, None, "ray: 16 cpu actor(s) x 1 thread(s)"),
    ({"CPU": 16.0}, 4, "ray: 4 cpu actor(s) x 4 thread(s)"),
    ({"CPU": 2.0}, 2, "ray: 2 cpu actor(s) x 1 thread(s)"),
    ({"CPU": 32.0, "GPU": 4.0}, None, "ray: 4 cuda actor(s), 1 GPU each"),
])
def test_actors_follow_the_cluster(resources, workers, plan):
    engine = RayEngine(workers=workers)
    engine.ray = _Cluster(resources)
    engine._actors()
    assert engine.plan == plan


def test_more_workers_than_the_cluster_holds_is_refused():
    engine = RayEngine(workers=3)
    engine.ray = _Cluster({"CPU": 16.0, "GPU": 2.0})
    with pytest.raises(MoonsearchError, match="has 2 GPU"):
        engine._actors()


def test_cli_refuses_an_unknown_engine_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "index", str(tmp_path), "--engine", "spark"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["error: unknown engine 'spark' (choose from local, ray)"]
