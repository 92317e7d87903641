"""`moonsearch index --engine ray` on a real local Ray: a catalog of a few hundred products with
drawn images, encoded by a Ray Data actor pool, makes the single-process build's index: the
same rows, records, skips and report, vectors equal to float rounding, the same top-10."""

import json
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason='Ray Data is in the [scale] extra: pip install -e ".[scale]"')

import moonsearch  # noqa: E402
from moonsearch.encoder.registry import load_encoder  # noqa: E402
from moonsearch.errors import MoonsearchError  # noqa: E402
from moonsearch.index.builder import build_index, encoding_engine  # noqa: E402
from moonsearch.index.ray_engine import RayEngine  # noqa: E402
from moonsearch.store.files import EXTRA_MAP_FILE, SKIPS_FILE, extra_view_file, view_file  # noqa: E402
from moonsearch.store.manifest import MANIFEST_FILE  # noqa: E402

from conftest import COLOURS, draw_product, make_tiny_catalog, tiny_records  # noqa: E402
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


def test_ray_build_equals_the_single_process_build(tmp_path, local_ray, monkeypatch):
    catalog = ray_catalog(tmp_path / "cat")
    encoder = load_encoder("default", device="cpu")
    # chunks of 4 x 32 products, 2 chunks a window: 300 products are 3 chunks in 2 windows
    monkeypatch.setattr("moonsearch.index.ray_engine.WINDOW_CHUNKS_PER_WORKER", 1)
    local = build_index(catalog, tmp_path / "local", encoder=encoder, device="cpu", batch_size=32)
    engine = encoding_engine("ray", None, 2)
    remote = build_index(catalog, tmp_path / "ray", encoder=encoder, device="cpu", batch_size=32, engine=engine)
    a, b = tmp_path / "local", tmp_path / "ray"

    assert engine.plan == "ray: 2 cpu actor(s) x 1 thread(s)"
    assert (engine.stats["chunks"], engine.stats["products"]) == (3, PRODUCTS)
    for field in ("products", "with_image", "text_only", "skipped", "images", "extra_images", "image_failures"):
        assert getattr(remote, field) == getattr(local, field), field
    assert (local.products, local.skipped, local.text_only, local.extra_images) == (PRODUCTS, 2, 2, 3)
    assert remote.report == local.report
    worst, largest = {}, {}
    for view in ("mm", "image", "text"):
        x, y = vectors(b / view_file(view), PRODUCTS), vectors(a / view_file(view), PRODUCTS)
        worst[view], largest[view] = worst_cosine(x, y), float(np.abs(x - y).max())
        assert worst[view] >= 0.9999, (view, worst[view])
    for view in ("mm", "image"):   # further images: the builder's own code, on the driver, either way
        np.testing.assert_array_equal(vectors(b / extra_view_file(view), 3), vectors(a / extra_view_file(view), 3))
    with np.load(a / EXTRA_MAP_FILE) as x, np.load(b / EXTRA_MAP_FILE) as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)
    for name in ("products", "attributes"):
        assert table(a, name) == table(b, name)
    assert (a / SKIPS_FILE).read_text() == (b / SKIPS_FILE).read_text()
    ma, mb = (json.loads((f / MANIFEST_FILE).read_text()) for f in (a, b))
    for manifest in (ma, mb):
        manifest.pop("created"), manifest.pop("files")
    assert ma == mb

    first, second = moonsearch.open_index(a), moonsearch.open_index(b)
    try:
        for query in QUERIES:
            for hybrid in (False, True):
                assert ([h.id for h in first.search(text=query, k=10, hybrid=hybrid)]
                        == [h.id for h in second.search(text=query, k=10, hybrid=hybrid)]), query
        photo = catalog / "images" / "P005.png"
        assert [h.id for h in first.search(image=photo, k=10)] == [h.id for h in second.search(image=photo, k=10)]
    finally:
        first.close(), second.close()
    print("ray vs local: worst cosine, largest difference per view "
          + ", ".join(f"{v} {worst[v]:.7f} {largest[v]:.1e}" for v in worst))


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
