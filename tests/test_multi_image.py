"""Products with several images: every image embedded, an image query matches a product through
its best image, one row per product, and each hit names the image that matched."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from rich.console import Console

from moonsearch.catalog import load_image, open_catalog
from moonsearch.catalog.inputs import product_text
from moonsearch.errors import IndexFormatError
from moonsearch.store import faiss_vectors
from moonsearch.index.builder import build_index
from moonsearch.store.files import EXTRA_MAP_FILE, SKIPS_FILE, extra_view_file, view_file
from moonsearch.search.product_index import ProductIndex

from conftest import REPO, draw_product, write_jsonl


def draw_shape(path, fill, shape):
    """A second product photo unlike every first one: a circle or a triangle, in its own colour."""
    image = Image.new("RGB", (60, 80), "white")
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([8, 18, 52, 62], fill=fill)
    else:
        draw.polygon([(30, 6), (56, 74), (4, 74)], fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_catalog(folder):
    images = folder / "images"
    draw_product(images / "A0.png", "Red", "tshirt", seed=1)
    draw_shape(images / "A1.png", (240, 140, 20), "circle")
    draw_product(images / "B0.png", "Blue", "dress", seed=2)
    draw_shape(images / "B1.png", (130, 40, 160), "triangle")
    draw_product(images / "C0.png", "Green", "tshirt", seed=3)
    draw_product(images / "D0.png", "Black", "dress", seed=4)
    draw_product(images / "E0.png", "Red", "dress", seed=5)
    draw_product(images / "G1.png", "Blue", "tshirt", seed=6)
    records = [
        {"id": "A", "title": "Red cotton tshirt", "brand": "Acme", "image": ["images/A0.png", "images/A1.png"]},
        {"id": "B", "title": "Blue cotton dress", "brand": "Bolt", "image": "images/B0.png|images/B1.png"},
        {"id": "C", "title": "Green cotton tshirt", "brand": "Bolt", "image": "images/C0.png"},
        {"id": "D", "title": "Black cotton dress", "brand": "Bolt", "image": "images/D0.png"},
        {"id": "E", "title": "Red cotton dress", "brand": "Bolt", "image": ["images/E0.png", "images/missing.png"]},
        {"id": "F", "title": "Plain cotton scarf", "brand": "Bolt"},
        {"id": "G", "title": "Blue cotton tshirt", "brand": "Bolt", "image": ["images/gone.png", "images/G1.png"]},
    ]
    write_jsonl(folder / "products.jsonl", records)
    return folder


@pytest.fixture(scope="module")
def multi(tmp_path_factory, encoder):
    root = tmp_path_factory.mktemp("multi")
    catalog = make_catalog(root / "cat")
    summary = build_index(catalog, root / "idx", encoder=encoder, device="cpu", batch_size=3)
    index = ProductIndex.open(root / "idx", device="cpu", encoder=encoder)
    yield catalog, summary, index
    index.close()


def ids(hits):
    return [h.id for h in hits]


def test_pipe_strings_are_several_images_in_jsonl_and_csv(tmp_path):
    (tmp_path / "j").mkdir()
    write_jsonl(tmp_path / "j" / "products.jsonl", [{"id": "1", "title": "Desk", "image": "a.jpg| b.jpg"}])
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "products.csv").write_text("id,title,images\n1,Desk,a.jpg|b.jpg\n", encoding="utf-8")
    for folder in (tmp_path / "j", tmp_path / "c"):
        (product,) = open_catalog(folder).products()
        assert product.images == ((folder / "a.jpg").resolve(), (folder / "b.jpg").resolve())


def test_every_image_is_embedded_and_failures_reported(multi):
    _, summary, index = multi
    assert (summary.products, summary.with_image, summary.text_only) == (7, 6, 1)
    assert (summary.images, summary.extra_images, summary.image_failures) == (8, 2, 2)
    counts = index.manifest.counts
    assert (counts["images"], counts["extra_images"], counts["image_failures"]) == (8, 2, 2)
    report = [json.loads(line) for line in (summary.out / SKIPS_FILE).read_text().splitlines()]
    failed = {(e["id"], e["image"].rsplit("/", 1)[-1]) for e in report if e["kind"] == "image"}
    assert failed == {("E", "missing.png"), ("G", "gone.png")}
    assert [e["id"] for e in report if e["kind"] == "text_only"] == ["F"]
    for view in ("mm", "image"):
        assert faiss_vectors.load(summary.out / extra_view_file(view)).ntotal == 2
        assert faiss_vectors.load(summary.out / view_file(view)).ntotal == 7


def test_product_vectors_stay_those_of_the_first_image(multi, encoder):
    catalog, summary, index = multi
    stored = faiss_vectors.load(summary.out / view_file("mm")).reconstruct(index.store.row_of("A"))
    expected = encoder.encode_views([product_text("Red cotton tshirt", {"brand": "Acme"})],
                                    [load_image(catalog / "images" / "A0.png")]).mm[0]
    np.testing.assert_allclose(stored, expected, atol=1e-5)


@pytest.mark.parametrize("view", ["image", "mm"])
def test_a_second_image_finds_its_product_first(multi, view):
    catalog, _, index = multi
    for pid, name in (("A", "A1.png"), ("B", "B1.png")):
        hits = index.search(image=catalog / "images" / name, k=7, view=view)
        assert hits[0].id == pid, (view, name, [(h.id, round(h.score, 3)) for h in hits])
        assert hits[0].matched_image_index == 1
        assert hits[0].matched_image == str((catalog / "images" / name).resolve())
        assert hits[0].image.endswith(f"{pid}0.png")   # the product's own (first) image is unchanged
        assert len(set(ids(hits))) == len(hits)         # one row per product
    assert index.search(image=catalog / "images" / "A1.png", k=7, view="image")[0].score == pytest.approx(1.0, abs=1e-4)


def test_first_image_and_a_failed_first_image(multi):
    catalog, _, index = multi
    hit = index.search(image=catalog / "images" / "A0.png", k=1, view="image")[0]
    assert (hit.id, hit.matched_image_index) == ("A", 0)
    hit = index.search(image=catalog / "images" / "G1.png", k=1, view="image")[0]   # gone.png did not load
    assert (hit.id, hit.matched_image_index, hit.matched_image.rsplit("/", 1)[-1]) == ("G", 1, "G1.png")
    hits = index.search(image=catalog / "images" / "A1.png", k=7, view="mm")
    assert len(hits) == 7 and sorted(ids(hits)) == list("ABCDEFG")
    assert next(h for h in hits if h.id == "F").matched_image_index is None   # text-only: no image to name
    assert all(h.matched_image is None for h in index.search(text="red tshirt", k=7))


def test_a_filter_excludes_a_product_matched_through_an_extra_image(multi):
    catalog, _, index = multi
    for view in ("image", "mm"):
        hits = index.search(image=catalog / "images" / "A1.png", k=7, view=view, filters=["brand!=Acme"])
        assert "A" not in ids(hits) and hits and len(set(ids(hits))) == len(hits)
    hits = index.search(image=catalog / "images" / "B1.png", k=3, view="image", filters=["brand=Bolt"])
    assert hits[0].id == "B" and hits[0].matched_image_index == 1


def test_cli_json_and_table_name_the_matched_image(multi):
    from moonsearch.cli import _hits_table

    catalog, summary, index = multi
    query = catalog / "images" / "B1.png"
    result = subprocess.run([sys.executable, "-m", "moonsearch.cli", "query", "--image", str(query), "--index",
                             str(summary.out), "--json", "--k", "3", "--view", "image", "--device", "cpu"],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert hits[0]["id"] == "B" and hits[0]["matched_image"] == {"index": 1, "path": str(query.resolve())}
    console = Console(record=True, width=400)
    console.print(_hits_table(index.search(image=query, k=3, view="image"), []))
    table = console.export_text()
    assert "matched image" in table and f"1: {query.resolve()}" in table
    console.print(_hits_table(index.search(text="dress", k=3), []))
    assert "matched image" not in console.export_text()


def test_an_index_without_extra_files_still_searches(multi, tmp_path, encoder):
    catalog, summary, _ = multi
    old = tmp_path / "old"
    shutil.copytree(summary.out, old)
    for name in (EXTRA_MAP_FILE, extra_view_file("mm"), extra_view_file("image")):
        (old / name).unlink()
    with pytest.raises(IndexFormatError, match=f"{EXTRA_MAP_FILE} is missing"):   # the manifest says there were extras
        ProductIndex.open(old, device="cpu", encoder=encoder)
    manifest = json.loads((old / "manifest.json").read_text())
    for key in ("images", "extra_images", "image_failures"):   # as an index built before them
        del manifest["counts"][key]
    manifest["files"] = None   # ... and before checksums
    (old / "manifest.json").write_text(json.dumps(manifest))
    index = ProductIndex.open(old, device="cpu", encoder=encoder)
    hits = index.search(image=catalog / "images" / "A0.png", k=7, view="image")
    assert hits[0].id == "A" and hits[0].matched_image_index == 0 and len(set(ids(hits))) == 6
    assert len(index.search(text="cotton", k=7)) == 7
    index.close()
