"""MBE2.0, M5Product and Fashion200k: small fixtures in each loader's layout, run end to end.

The fixtures are drawn with Pillow; Fashion200k uses real annotation rows from
../shared/data/fashion200k/labels_sample.jsonl when it is there (read, never copied into the
repo). Every run uses the real encoder; checks are on shapes, counts, ranges and properties
that hold whatever the encoder's quality (identical items rank first, k >= candidates finds
everything, excluded queries are not counted).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw

from moonsearch.errors import MoonsearchError
from moonsearch.eval.datasets import load_fashion200k, load_m5product, load_mbe2
from moonsearch.eval.datasets.fashion200k import first_products
from moonsearch.eval.protocols import PROTOCOLS, fashion200k, m5product, mbe2, run_protocol

F200K_SAMPLE = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "fashion200k" / "labels_sample.jsonl"
PALETTE = [(200, 30, 40), (30, 60, 200), (30, 150, 60), (20, 20, 20), (230, 200, 40), (150, 60, 170), (240, 130, 30)]
COLOUR_NAMES = ["red", "blue", "green", "black", "yellow", "purple", "orange"]


def draw(path: Path, colour: int, shape: str = "rect", shift: int = 0) -> str:
    """A small product-like picture: one coloured shape on white."""
    image = Image.new("RGB", (48, 64), "white")
    pen = ImageDraw.Draw(image)
    fill = PALETTE[colour % len(PALETTE)]
    if shape == "triangle":
        pen.polygon([(24, 6 + shift), (44, 58), (4, 58)], fill=fill)
    elif shape == "ellipse":
        pen.ellipse([6 + shift, 10, 42, 54], fill=fill)
    else:
        pen.rectangle([10 + shift, 10, 38, 54], fill=fill)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return str(path)


def write_jsonl(path: Path, rows: list, extra_lines: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in rows] + list(extra_lines)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def assert_unit(value: float) -> None:
    assert isinstance(value, float) and 0.0 <= value <= 1.0


def assert_recall_task(metrics: dict, ks) -> None:
    assert set(metrics) == {f"R@{k}" for k in ks} | {"MRR"}
    for value in metrics.values():
        assert_unit(value)
    values = [metrics[f"R@{k}"] for k in ks]
    assert values == sorted(values)  # R@k can only grow with k
    assert metrics["MRR"] >= metrics["R@1"]  # every hit at rank 1 adds 1 to the MRR sum


# --- MBE2.0 --------------------------------------------------------------------------


MBE2_TITLES = ["red cotton dress", "blue denim jacket", "green linen skirt", "black wool coat", "yellow silk top", "purple knit sweater"]
SHAPES = ["triangle", "rect", "ellipse"]


def mbe2_triplets(root: Path) -> list[dict]:
    """Six triplets whose query is identical to its positive; negatives are other products."""
    rows = []
    for n, title in enumerate(MBE2_TITLES):
        image = draw(root / "images" / f"p{n}.png", n, SHAPES[n % 3])
        m = (n + 3) % len(MBE2_TITLES)
        negative_image = draw(root / "images" / f"n{n}.png", m, SHAPES[(n + 1) % 3], shift=3)
        element = {"text": title, "image": f"images/p{n}.png"}
        rows.append({"query": element, "positive": dict(element), "negative": {"text": f"{MBE2_TITLES[m]} sale", "image": f"images/n{n}.png"}})
        assert Path(image).exists() and Path(negative_image).exists()
    # The last negative's image is corrupt, the fifth's is missing: counted, never a traceback.
    (root / "images" / "n5.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "images" / "n4.png").unlink()
    return rows


def mbe2_labels(root: Path) -> None:
    write_jsonl(
        root / "classification.jsonl",
        [{"text": t, "image": f"images/p{n}.png", "label": t.split()[-1]} for n, t in enumerate(MBE2_TITLES)],
    )
    write_jsonl(
        root / "attributes.jsonl",
        [{"product": {"text": t, "image": f"images/p{n}.png"}, "attribute": "colour", "value": t.split()[0]} for n, t in enumerate(MBE2_TITLES)]
        + [{"text": t, "attribute": "material", "value": t.split()[1]} for t in MBE2_TITLES[:3]],
    )


@pytest.fixture(scope="module")
def mbe2_nested(tmp_path_factory):
    root = tmp_path_factory.mktemp("mbe2_nested")
    rows = mbe2_triplets(root)
    write_jsonl(root / "test.jsonl", rows, ["{not json", json.dumps({"query": {"text": "x"}, "positive": {}, "negative": {"text": "y"}})])
    mbe2_labels(root)
    return root


@pytest.fixture(scope="module")
def mbe2_result(mbe2_nested, encoder):
    return mbe2.run(encoder, mbe2_nested)


def test_mbe2_loader_reads_nested_rows_and_skips_bad_ones(mbe2_nested):
    ds = load_mbe2(mbe2_nested)
    assert len(ds.triplets) == 6
    assert [reason for _, reason in ds.skipped][0].startswith("invalid JSON")
    assert ds.skipped[1][1] == "positive has neither text nor image"
    assert ds.triplets[0].query.image == mbe2_nested / "images" / "p0.png"
    assert len(ds.classification) == 6 and len(ds.attributes) == 9
    assert len(load_mbe2(mbe2_nested / "test.jsonl", limit=2).triplets) == 2


def test_mbe2_protocol_shape_counts_and_identity(mbe2_result):
    result = mbe2_result
    assert set(result) == {"t2mm", "i2mm", "mm2mm", "t2i", "i2t", "classification", "attribute", "counts"}
    for task in ("t2mm", "i2mm", "mm2mm", "t2i", "i2t"):
        assert_recall_task(result[task], (1, 5, 10))
    counts = result["counts"]
    assert counts["triplets"] == 6 and counts["skipped_rows"] == 2
    assert counts["bad_images"] == 2
    assert counts["bad_image_reasons"] == {"missing file": 1, "corrupt or truncated image": 1}
    # 6 positives + 6 negatives; the two negatives with bad images leave the image forms.
    assert counts["t2mm_candidates"] == 10 and counts["t2i_candidates"] == 10 and counts["i2t_candidates"] == 12
    assert all(counts[f"{t}_queries"] == 6 for t in ("t2mm", "i2mm", "mm2mm", "t2i", "i2t"))
    # Every query is identical to its positive: in the same form it must rank first.
    assert result["mm2mm"]["R@1"] == 1.0 and result["mm2mm"]["MRR"] == 1.0
    # At most 10 candidates in the image form: R@10 finds every positive.
    assert result["t2i"]["R@10"] == 1.0
    assert_unit(result["classification"]["acc"])
    assert_unit(result["attribute"]["acc"])
    assert counts["classification_items"] == 6 and counts["classification_labels"] == 6
    assert counts["attribute_items"] == 9 and counts["attribute_names"] == 2


def test_mbe2_flat_parquet_layout_gives_the_same_numbers(mbe2_nested, mbe2_result, encoder, tmp_path):
    rows = [json.loads(line) for line in (mbe2_nested / "test.jsonl").read_text().splitlines()[:6]]
    flat = {
        f"{role}_{part}": [row[role][part] for row in rows]
        for role in ("query", "positive", "negative")
        for part in ("text", "image")
    }
    pq.write_table(pa.table(flat), tmp_path / "test.parquet")
    (tmp_path / "images").symlink_to(mbe2_nested / "images", target_is_directory=True)
    result = mbe2.run(encoder, tmp_path)
    for task in ("t2mm", "i2mm", "mm2mm", "t2i", "i2t"):
        assert result[task] == pytest.approx(mbe2_result[task])
    assert "classification" not in result and "attribute" not in result  # no label files here
    assert result["counts"]["bad_images"] == 2


def test_mbe2_bad_path_is_a_clear_error(tmp_path):
    with pytest.raises(MoonsearchError, match="no MBE2.0 triplet file"):
        load_mbe2(tmp_path / "nowhere")
    with pytest.raises(MoonsearchError, match="test.jsonl"):
        load_mbe2(tmp_path)  # exists but holds no triplet file


# --- M5Product ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def m5_folder(tmp_path_factory):
    """Categories of 4, 4 and 3 identical products (shared title and image), one lone product,
    one product whose image is missing, and a row without category."""
    root = tmp_path_factory.mktemp("m5")
    groups = [("dress", "red chiffon maxi dress", 0, "triangle", 4), ("shoes", "blue leather running shoes", 1, "ellipse", 4),
              ("bag", "green canvas tote bag", 2, "rect", 3), ("watch", "black steel wrist watch", 3, "ellipse", 1)]
    lines = ["id,title,image,category"]
    n = 0
    for category, title, colour, shape, size in groups:
        draw(root / "img" / f"{category}.jpg", colour, shape)
        for _ in range(size):
            lines.append(f"m{n},{title},img/{category}.jpg,{category}")
            n += 1
    lines.append(f"m{n},yellow silk scarf,img/missing.jpg,scarf")
    lines.append("m99,purple hat,img/bag.jpg,")
    (root / "test.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_m5product_protocol(m5_folder, encoder):
    result = m5product.run(encoder, m5_folder)
    assert set(result) == {"t2mm", "i2mm", "mm2mm", "classification", "counts"}
    ks = (1, 5, 10, 50, 100)
    for task in ("t2mm", "i2mm", "mm2mm"):
        assert set(result[task]) == {f"{m}@{k}" for k in ks for m in ("mAP", "P")}
        for value in result[task].values():
            assert_unit(value)
    counts = result["counts"]
    assert counts["products"] == 13 and counts["skipped_rows"] == 1 and counts["usable_products"] == 12
    assert counts["bad_images"] == 1 and counts["bad_image_reasons"] == {"missing file": 1}
    assert counts["categories"] == 4
    # The lone watch has nothing relevant once it is removed from its own ranking.
    assert counts["t2mm_queries"] == 11 and counts["t2mm_queries_without_relevant"] == 1
    # Identical products of a category rank first for each other in the mm form...
    assert result["mm2mm"]["P@1"] == 1.0 and result["mm2mm"]["mAP@5"] == 1.0
    # ...and with 11 candidates left every relevant one is in the top 100, whatever the encoder:
    # (4 queries x 3 + 4 x 3 + 3 x 2) hits / 11 queries / 100.
    for task in ("t2mm", "i2mm", "mm2mm"):
        assert result[task]["P@100"] == pytest.approx(30 / 11 / 100)
    assert_unit(result["classification"]["acc"])
    assert counts["classification_items"] == 12


def test_m5product_limit_and_formats(m5_folder, tmp_path):
    assert len(load_m5product(m5_folder, limit=5).products) == 5
    rows = [{"product_id": "a", "text": "red dress", "image_path": "x.jpg", "label": "dress"}]
    write_jsonl(tmp_path / "products.jsonl", rows)
    product = load_m5product(tmp_path).products[0]
    assert (product.id, product.title, product.image, product.category) == ("a", "red dress", tmp_path / "x.jpg", "dress")
    with pytest.raises(MoonsearchError, match="no M5Product product table"):
        load_m5product(tmp_path / "absent")


# --- Fashion200k -----------------------------------------------------------------------

F200K_FOLDERS = {"dress": "dresses/casual_and_day_dresses", "jacket": "jackets/coats", "pants": "pants/wide-leg",
                 "skirt": "skirts/mini", "top": "tops/blouses"}


def f200k_rows() -> dict[str, list[tuple[str, str]]]:
    """Per category, 2 products x 2 images as (path, description), plus one single-image product.

    Real test rows of the sample when it is present, otherwise made-up ones in the same shape.
    """
    per_category: dict[str, list[tuple[str, str]]] = {}
    if F200K_SAMPLE.exists():
        products: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for line in F200K_SAMPLE.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row["split"] == "test":
                products.setdefault((row["category"], row["path"].split("/")[-2]), []).append((row["path"], row["description"]))
        for category in F200K_FOLDERS:
            pairs = [rows for (c, _), rows in products.items() if c == category and len(rows) == 2][:2]
            single = [rows for (c, _), rows in products.items() if c == category and len(rows) == 1][:1]
            per_category[category] = [r for rows in pairs + single for r in rows]
    else:
        for c, (category, folder) in enumerate(F200K_FOLDERS.items()):
            rows = []
            for p in range(3):
                pid = f"{1000 + 10 * c + p}"
                text = f"{COLOUR_NAMES[(c + p) % 7]} {category} style {p}"
                rows += [(f"women/{folder}/{pid}/{pid}_{i}.jpeg", text) for i in range(2 if p < 2 else 1)]
            per_category[category] = rows
    return per_category


@pytest.fixture(scope="module")
def f200k_root(tmp_path_factory):
    """The five test label files; every image drawn except the single-image top's (missing)."""
    root = tmp_path_factory.mktemp("fashion200k")
    shapes = {"dress": "triangle", "jacket": "rect", "pants": "rect", "skirt": "triangle", "top": "ellipse"}
    for c, (category, rows) in enumerate(f200k_rows().items()):
        lines = []
        for n, (path, description) in enumerate(rows):
            lines.append(f"{path}\t0.{90 - n}\t{description}")
            if not (category == "top" and n == len(rows) - 1):
                draw(root / path, (c + n // 2) % 7, shapes[category], shift=n % 2)
        if category == "dress":
            lines.append("women/dresses/broken_line_without_description")
        labels = root / "labels" / f"{category}_test_detect_all.txt"
        labels.parent.mkdir(parents=True, exist_ok=True)
        labels.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def test_fashion200k_loader(f200k_root):
    ds = load_fashion200k(f200k_root)
    assert len(ds.images) == 25 and ds.products == 15
    assert len(ds.skipped) == 1 and ds.missing_files == []
    first = ds.images[0]
    assert first.category == "dress" and first.path.parent.name == first.product
    assert first.path.is_relative_to(f200k_root)
    limited = load_fashion200k(f200k_root, limit=3)
    assert limited.products == 3
    assert [im.category for im in limited.images] == ["dress", "dress", "jacket", "jacket", "pants", "pants"]
    assert first_products(ds, 3).images == limited.images  # the same cut on already loaded data


def test_fashion200k_protocol(f200k_root, encoder):
    result = fashion200k.run(encoder, f200k_root)
    assert set(result) == {"t2i", "i2t", "classification", "counts"}
    assert_recall_task(result["t2i"], (1, 10))
    assert_recall_task(result["i2t"], (1, 10))
    assert_unit(result["classification"]["acc"])
    counts = result["counts"]
    assert counts["images"] == 25 and counts["usable_images"] == 24 and counts["products"] == 15
    assert counts["bad_images"] == 1 and counts["bad_image_reasons"] == {"missing file": 1}
    assert counts["skipped_lines"] == 1 and counts["missing_label_files"] == 0
    # One text query per (product, description); the top whose only image is missing has no answer.
    pairs = {(path.split("/")[-2], text) for rows in f200k_rows().values() for path, text in rows}
    assert counts["t2i_queries"] + counts["t2i_queries_without_relevant"] == len(pairs)
    assert counts["t2i_queries_without_relevant"] == 1
    assert counts["t2i_candidates"] == 24 and counts["i2t_candidates"] == len({t for _, t in pairs})
    assert counts["i2t_queries"] == 24 and counts["classification_items"] == 24
    # A first relevant rank is at worst (candidates - positives + 1).
    assert result["t2i"]["MRR"] >= 1 / 24 and result["i2t"]["MRR"] >= 1 / counts["i2t_candidates"]


class ColourEncoder:
    """Text -> one-hot of the first colour word in it; image -> one-hot of its centre pixel's
    colour. Exact matches between a description and its product's images, nothing else."""

    name = "colour"
    dim = len(PALETTE)
    encoder_id = "colour"

    def encode(self, texts, images):
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, (text, image) in enumerate(zip(texts, images)):
            if text is not None:
                hits = [COLOUR_NAMES.index(w) for w in text.split() if w in COLOUR_NAMES]
                if hits:
                    out[row, hits[0]] = 1.0
            if image is not None:  # nearest palette colour: JPEG shifts pixels a little
                pixel = np.array(image.getpixel((24, 32)), np.float32)
                out[row, int(np.argmin(((np.array(PALETTE) - pixel) ** 2).sum(axis=1)))] = 1.0
        return out


def test_fashion200k_ground_truth_wiring(tmp_path):
    """With an encoder that matches each description to exactly its product's images, every
    retrieval direction is perfect; the colourless prompts all tie, so class 0 (dress) wins."""
    for c, (category, folder) in enumerate(F200K_FOLDERS.items()):
        pid = f"{2000 + c}"
        lines = []
        for i in range(2):
            path = f"women/{folder}/{pid}/{pid}_{i}.jpeg"
            draw(tmp_path / path, c, "rect", shift=i)
            lines.append(f"{path}\t0.9\t{COLOUR_NAMES[c]} {category} number {c}")
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"{category}_test_detect_all.txt").write_text("\n".join(lines) + "\n")
    result = fashion200k.run(ColourEncoder(), tmp_path)
    for task in ("t2i", "i2t"):
        assert result[task] == {"R@1": 1.0, "R@10": 1.0, "MRR": 1.0}
    assert result["counts"]["t2i_queries"] == 5 and result["counts"]["i2t_queries"] == 10
    assert result["classification"]["acc"] == pytest.approx(2 / 10)


def test_fashion200k_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MoonsearchError, match="not a Fashion200k folder"):
        load_fashion200k(tmp_path)
    (tmp_path / "labels").mkdir()
    with pytest.raises(MoonsearchError, match="no Fashion200k label files"):
        load_fashion200k(tmp_path)


def test_every_benchmark_module_has_load():
    """The runner loads any benchmark as `moonsearch.eval.datasets.<name>.load(path)`."""
    for name in PROTOCOLS:
        assert callable(importlib.import_module(f"moonsearch.eval.datasets.{name}").load)


def test_run_protocol_by_name(tmp_path, encoder):
    with pytest.raises(MoonsearchError, match="unknown benchmark"):
        run_protocol("imagenet", encoder, tmp_path)
    with pytest.raises(MoonsearchError):
        run_protocol("fashion200k", encoder, tmp_path / "absent")
