"""Shared fixtures: the shipped encoder, the sample catalog's index, tiny catalogs made on the fly."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

# Indexes built by the tests leave out the photo identity channel (on by default in `moonsearch
# index`) unless a test asks for it: the other tests compare index contents, engines and image
# rankings as the encoder makes them. tests/test_photo_identity.py covers the channel and the default.
os.environ.setdefault("MOONSEARCH_IDENTITY", "0")

REPO = Path(__file__).resolve().parent.parent
SAMPLE_CATALOG = REPO / "catalog"
MYNTRA = REPO.parent / "shared" / "data" / "myntra"
SHOPPER_QUERIES = REPO.parent / "shared" / "data" / "queries" / "shopper_queries.jsonl"

COLOURS = {"Red": (200, 30, 40), "Blue": (30, 60, 200), "Green": (30, 150, 60), "Black": (20, 20, 20)}


def draw_product(path: Path, colour: str, shape: str, seed: int = 0) -> Path:
    """A small product-like picture: a coloured garment shape on white."""
    rng = random.Random(seed)
    image = Image.new("RGB", (60, 80), "white")
    draw = ImageDraw.Draw(image)
    fill = COLOURS[colour]
    dx, dy = rng.randint(-3, 3), rng.randint(-3, 3)
    if shape == "dress":
        draw.polygon([(22 + dx, 10 + dy), (38 + dx, 10 + dy), (50 + dx, 72 + dy), (10 + dx, 72 + dy)], fill=fill)
    else:
        draw.rectangle([14 + dx, 14 + dy, 46 + dx, 66 + dy], fill=fill)
        draw.rectangle([4 + dx, 14 + dy, 14 + dx, 34 + dy], fill=fill)
        draw.rectangle([46 + dx, 14 + dy, 56 + dx, 34 + dy], fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_records(n: int = 12) -> list[dict]:
    """n products cycling through colours and two shapes, each with its own drawn image."""
    records = []
    for i in range(n):
        colour = list(COLOURS)[i % 4]
        shape = "dress" if i % 2 else "tshirt"
        records.append({"id": f"P{i:03d}", "title": f"{colour} cotton {shape}", "gender": "Women" if shape == "dress" else "Men",
                        "baseColour": colour, "articleType": "Dresses" if shape == "dress" else "Tshirts",
                        "price": 300 + 100 * i, "image": f"images/P{i:03d}.png", "_shape": shape})
    return records


def make_tiny_catalog(folder: Path, records: list[dict] | None = None) -> Path:
    records = records if records is not None else tiny_records()
    for i, r in enumerate(records):
        shape = r.pop("_shape", "tshirt")
        if r.get("image") and r.get("baseColour") in COLOURS:
            draw_product(folder / r["image"], r["baseColour"], shape, seed=i)
    write_jsonl(folder / "products.jsonl", records)
    return folder


@pytest.fixture(scope="session")
def encoder():
    from moonsearch.encoder.registry import load_encoder

    return load_encoder("baseline", device="cpu")


@pytest.fixture(scope="session")
def sample_index(tmp_path_factory, encoder):
    from moonsearch.index.builder import build_index
    from moonsearch.search.product_index import ProductIndex

    out = tmp_path_factory.mktemp("indexes") / "sample"
    summary = build_index(SAMPLE_CATALOG, out, encoder=encoder, device="cpu")
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    yield summary, index
    index.close()


@pytest.fixture(scope="session")
def myntra_available():
    if not (MYNTRA / "products.jsonl").exists():
        pytest.skip(f"real catalog not found at {MYNTRA} (../shared/data is absent)")
    return MYNTRA
