"""The indexing pipeline (images decoded in the background, batches sorted by text length)
writes the same index as the plain serial loop: same rows and metadata, vectors equal to float
rounding."""

import json

import duckdb
import faiss
import numpy as np
import pytest

from moonsearch.index.builder import build_index
from moonsearch.store.files import EXTRA_MAP_FILE, SKIPS_FILE, extra_view_file, view_file
from moonsearch.store.manifest import MANIFEST_FILE

from conftest import COLOURS, draw_product, write_jsonl

WORDS = ["cotton", "slim", "fit", "printed", "casual", "round", "neck", "solid", "regular", "summer"]


def varied_catalog(folder):
    """Titles from 2 to 20 words (so sorting by length reorders batches), some products with a
    second image, a missing image and no image at all."""
    records = []
    for i in range(23):
        colour = list(COLOURS)[i % 4]
        shape = "dress" if i % 3 else "tshirt"
        draw_product(folder / "images" / f"{i}.png", colour, shape, seed=i)
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range((i * 5) % 19)]
        record = {"id": f"V{i}", "title": " ".join([colour, *words, shape]), "baseColour": colour,
                  "price": 100 + 37 * i, "image": f"images/{i}.png"}
        if i % 5 == 1:
            draw_product(folder / "images" / f"{i}b.png", list(COLOURS)[(i + 1) % 4], "dress", seed=100 + i)
            record["image"] = [f"images/{i}.png", f"images/{i}b.png"]
        records.append(record)
    records[4]["image"] = "images/missing.png"
    records[9]["image"] = None
    records[11]["image"] = ["images/gone.png", "images/11.png"]
    write_jsonl(folder / "products.jsonl", records)
    return folder


def vectors(path, n):
    index = faiss.read_index(str(path))
    return index.reconstruct_n(0, n)


def table(folder, name):
    con = duckdb.connect(str(folder / "metadata.duckdb"), read_only=True)
    try:
        return con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
    finally:
        con.close()


@pytest.mark.parametrize("threads", [1, 2])
def test_overlapped_sorted_build_equals_the_serial_one(tmp_path, encoder, threads):
    catalog = varied_catalog(tmp_path / "cat")
    serial = build_index(catalog, tmp_path / "serial", encoder=encoder, device="cpu", batch_size=4,
                         overlap=False, sort_by_length=False)
    piped = build_index(catalog, tmp_path / "piped", encoder=encoder, device="cpu", batch_size=4,
                        threads=threads)
    a, b = tmp_path / "serial", tmp_path / "piped"
    for field in ("products", "with_image", "text_only", "images", "extra_images", "image_failures"):
        assert getattr(serial, field) == getattr(piped, field)
    assert serial.extra_images > 0 and serial.text_only == 2
    for view in ("mm", "image", "text"):
        np.testing.assert_allclose(vectors(b / view_file(view), piped.products),
                                   vectors(a / view_file(view), serial.products), atol=1e-5)
    for view in ("mm", "image"):
        np.testing.assert_allclose(vectors(b / extra_view_file(view), piped.extra_images),
                                   vectors(a / extra_view_file(view), serial.extra_images), atol=1e-5)
    with np.load(a / EXTRA_MAP_FILE) as x, np.load(b / EXTRA_MAP_FILE) as y:
        assert all(np.array_equal(x[k], y[k]) for k in x.files)
    for name in ("products", "attributes"):
        assert table(a, name) == table(b, name)
    assert (a / SKIPS_FILE).read_text() == (b / SKIPS_FILE).read_text()
    ma, mb = (json.loads((f / MANIFEST_FILE).read_text()) for f in (a, b))
    ma.pop("created"), mb.pop("created")
    assert ma.pop("files").keys() == mb.pop("files").keys()   # the same files; their bytes differ in float noise
    assert ma == mb


def test_a_reader_error_reaches_the_caller_and_leaves_no_index(tmp_path, encoder, monkeypatch):
    """An error in the background decoding thread is raised in the building one."""
    import moonsearch.index.builder as builder

    catalog = varied_catalog(tmp_path / "cat")
    real = builder.model_input
    calls = {"n": 0}

    def flaky(product):
        calls["n"] += 1
        if calls["n"] > 6:
            raise RuntimeError("disk went away")
        return real(product)

    monkeypatch.setattr(builder, "model_input", flaky)
    with pytest.raises(RuntimeError, match="disk went away"):
        build_index(catalog, tmp_path / "idx", encoder=encoder, device="cpu", batch_size=4)
    assert not (tmp_path / "idx").exists()
    assert not list(tmp_path.glob(".idx.building-*"))
