"""Catalog reading on real files written into tmp_path (no mocks)."""

from __future__ import annotations

import csv
import inspect
import itertools
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from moonsearch.catalog import Catalog, CatalogScan, Product, Skip, first_image, open_catalog
from moonsearch.errors import CatalogError, MoonsearchError

MYNTRA = Path("/work/shared/data/myntra")


def write_jsonl(path: Path, records: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)
    return path


def make_image(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), color).save(path)
    return path


# --- JSONL -----------------------------------------------------------------


def test_jsonl_fields_nested_attributes_and_paths(tmp_path):
    make_image(tmp_path / "images" / "1.jpg")
    write_jsonl(
        tmp_path / "products.jsonl",
        [
            {
                "id": 1,
                "title": "  Red Shirt ",
                "description": "Cotton shirt",
                "image": "images/1.jpg",
                "brand": "Acme",
                "price": 19.5,
                "attributes": {"Pattern": "Solid", "Fit": {"chest": 40}},
                "tags": ["a", "b"],
            },
            {
                "id": "2",
                "title": "Blue Skirt",
                "descriptors": {"description": "Flowing skirt", "style_note": "Wear it"},
                "image": None,
            },
        ],
    )
    catalog = open_catalog(tmp_path)
    assert isinstance(catalog, Catalog)
    assert catalog.format == "jsonl"
    assert catalog.path == (tmp_path / "products.jsonl").resolve()
    assert catalog.root == tmp_path.resolve()

    first, second = list(catalog.products())
    assert isinstance(first, Product)
    assert first.id == "1"  # ints become strings
    assert first.title == "Red Shirt"
    assert first.description == "Cotton shirt"
    assert first.images == ((tmp_path / "images" / "1.jpg").resolve(),)
    assert first.images[0].is_absolute() and first.images[0].is_file()
    assert first.attributes == {
        "brand": "Acme",
        "price": 19.5,
        "attributes": {"Pattern": "Solid", "Fit": {"chest": 40}},
        "tags": ["a", "b"],
    }
    assert first.source == "products.jsonl:1"

    assert second.id == "2"
    assert second.description == "Flowing skirt"  # from descriptors.description
    assert second.attributes["descriptors"] == {"description": "Flowing skirt", "style_note": "Wear it"}
    assert second.images == ()
    assert second.source == "products.jsonl:2"
    assert catalog.skips == []


def test_jsonl_image_list_and_relative_paths(tmp_path):
    shared = tmp_path / "shared"
    make_image(shared / "a.png")
    catalog_dir = tmp_path / "cat"
    catalog_dir.mkdir()
    abs_image = make_image(tmp_path / "elsewhere" / "b.jpg")
    write_jsonl(
        catalog_dir / "items.jsonl",
        [
            {
                "sku": "S-1",
                "name": "Lamp",
                "images": ["../shared/a.png", str(abs_image), "", "./pics/c.jpg", "https://cdn.example.com/d.jpg"],
            }
        ],
    )
    catalog = open_catalog(catalog_dir)  # the only records file in the directory
    assert catalog.format == "jsonl" and catalog.path.name == "items.jsonl"
    (product,) = catalog.products()
    assert product.id == "S-1" and product.title == "Lamp"
    images = product.images
    assert images[0] == (shared / "a.png").resolve() and images[0].is_file()
    assert images[1] == abs_image
    assert images[2] == (catalog_dir / "pics" / "c.jpg").resolve()
    assert len(images) == 4  # the empty entry is dropped
    assert all(p.is_absolute() for p in images[:3])
    image, reason = first_image(images[3:])
    assert image is None and reason == "not a local file (URL)"


def test_case_insensitive_columns_and_alias_priority(tmp_path):
    write_jsonl(
        tmp_path / "p.jsonl",
        [{"ID": 5, "Product_Id": "other", "NAME": "Mug", "Image_Path": "m.jpg", "Description": " "}],
    )
    (product,) = open_catalog(tmp_path / "p.jsonl").products()
    assert product.id == "5"
    assert product.title == "Mug"
    assert product.description is None  # blank description is no description
    assert product.images == ((tmp_path / "m.jpg").resolve(),)
    assert product.attributes == {"Product_Id": "other"}


def test_jsonl_skips_missing_id_title_and_invalid_json(tmp_path):
    path = write_jsonl(
        tmp_path / "products.jsonl",
        [
            {"id": 1, "title": "ok"},
            {"title": "no id"},
            {"id": 3, "title": "   "},
            '{"id": 4, "title": "broken"',
            "",  # blank lines are not records
            {"id": None, "title": "null id"},
            {"id": 7},
            "[1, 2]",
            {"id": 9, "title": "ok too"},
        ],
    )
    catalog = open_catalog(path)
    scan = catalog.scan()
    assert isinstance(scan, CatalogScan)
    assert scan.rows == 8
    assert scan.products == 2
    by_source = {s.source: s for s in scan.skips}
    assert set(by_source) == {f"products.jsonl:{n}" for n in (2, 3, 4, 6, 7, 8)}
    assert by_source["products.jsonl:2"] == Skip("products.jsonl:2", None, "missing id")
    assert by_source["products.jsonl:3"] == Skip("products.jsonl:3", "3", "missing title")
    assert by_source["products.jsonl:4"].reason.startswith("invalid JSON")
    assert by_source["products.jsonl:6"].reason == "missing id"
    assert by_source["products.jsonl:7"] == Skip("products.jsonl:7", "7", "missing title")
    assert "not a JSON object" in by_source["products.jsonl:8"].reason

    products = list(catalog.products())
    assert [p.id for p in products] == ["1", "9"]
    assert [p.source for p in products] == ["products.jsonl:1", "products.jsonl:9"]
    assert catalog.skips == scan.skips


# --- CSV -------------------------------------------------------------------


def test_csv_strings_empty_cells_and_pipe_images(tmp_path):
    make_image(tmp_path / "img" / "a.jpg")
    make_image(tmp_path / "img" / "b.jpg")
    path = write_csv(
        tmp_path / "products.csv",
        [
            ["Product_ID", "Title", "Description", "Image", "color", "price", "note"],
            ["101", "Desk", "Oak desk,\nwith drawers", "img/a.jpg|img/b.jpg", "brown", "120", ""],
            ["102", "Chair", "", "", "black", "", ""],
        ],
        encoding="utf-8-sig",  # spreadsheet exports start with a BOM
    )
    catalog = open_catalog(tmp_path)
    assert catalog.format == "csv" and catalog.path == path.resolve()
    desk, chair = catalog.products()
    assert desk.id == "101" and desk.title == "Desk"
    assert desk.description == "Oak desk,\nwith drawers"
    assert desk.images == ((tmp_path / "img" / "a.jpg").resolve(), (tmp_path / "img" / "b.jpg").resolve())
    assert desk.attributes == {"color": "brown", "price": "120"}  # strings, empty cells dropped
    assert desk.source == "products.csv:2"
    assert chair.source == "products.csv:4"  # the quoted newline took a line
    assert chair.description is None and chair.images == ()
    assert chair.attributes == {"color": "black"}


def test_csv_skips_with_line_numbers(tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        [
            ["id", "title", "brand"],
            ["1", "Good", "x"],
            ["", "No id", "x"],
            ["3", "", "x"],
            ["4", "Too", "many", "fields"],
            ["5", "Fine", "y"],
        ],
    )
    catalog = open_catalog(path)
    scan = catalog.scan()
    assert (scan.rows, scan.products) == (5, 2)
    assert [(s.source, s.product_id, s.reason.split(" ")[0]) for s in scan.skips] == [
        ("c.csv:3", None, "missing"),
        ("c.csv:4", "3", "missing"),
        ("c.csv:5", None, "4"),
    ]
    assert scan.skips[0].reason == "missing id"
    assert scan.skips[1].reason == "missing title"
    assert "unquoted comma" in scan.skips[2].reason
    assert [p.id for p in catalog.products()] == ["1", "5"]
    assert catalog.skips == scan.skips


# --- Parquet ---------------------------------------------------------------


def test_parquet_nested_and_list_images(tmp_path):
    make_image(tmp_path / "p" / "1.jpg")
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "title": ["Sofa", None, "Bed"],
            "images": [["p/1.jpg", "p/2.jpg"], None, []],
            "specs": [{"legs": 4, "color": "grey"}, {"legs": 0, "color": None}, {"legs": 2, "color": "red"}],
            "rating": [4.5, None, None],
        }
    )
    pq.write_table(table, tmp_path / "products.parquet", row_group_size=2)
    catalog = open_catalog(tmp_path)
    assert catalog.format == "parquet"
    sofa, bed = catalog.products()
    assert sofa.id == "1" and sofa.title == "Sofa"
    assert sofa.images == ((tmp_path / "p" / "1.jpg").resolve(), (tmp_path / "p" / "2.jpg").resolve())
    assert sofa.attributes == {"specs": {"legs": 4, "color": "grey"}, "rating": 4.5}
    assert sofa.source == "products.parquet:1"
    assert bed.source == "products.parquet:3" and bed.images == ()
    assert bed.attributes == {"specs": {"legs": 2, "color": "red"}}  # null cells dropped
    assert catalog.skips == [Skip("products.parquet:2", "2", "missing title")]
    assert catalog.scan().rows == 3


def test_broken_parquet_is_catalog_error(tmp_path):
    (tmp_path / "products.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(CatalogError, match="Parquet"):
        open_catalog(tmp_path).scan()


# --- Kaggle styles.csv -----------------------------------------------------

KAGGLE_HEADER = "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName"


def test_kaggle_layout_derives_images_and_joins_extra_commas(tmp_path):
    make_image(tmp_path / "images" / "15970.jpg")
    text = "\n".join(
        [
            KAGGLE_HEADER,
            "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt",
            "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans",
            "12345,Women,Accessories,Bags,Handbags,Black,Fall,2011,Casual,Lino Perros Women, Black, Handbag",
            "22222,Women,Apparel,Topwear,Tops,White,Summer,2012,Casual,",
        ]
    )
    (tmp_path / "styles.csv").write_text(text + "\n", encoding="utf-8")
    catalog = open_catalog(tmp_path)
    assert catalog.format == "kaggle-styles"
    shirt, jeans, bag = catalog.products()
    assert shirt.title == "Turtle Check Men Navy Blue Shirt"
    assert shirt.images == ((tmp_path / "images" / "15970.jpg").resolve(),)
    assert shirt.images[0].is_file()
    assert jeans.images == ((tmp_path / "images" / "39386.jpg").resolve(),)  # derived even if absent
    assert shirt.attributes == {
        "gender": "Men",
        "masterCategory": "Apparel",
        "subCategory": "Topwear",
        "articleType": "Shirts",
        "baseColour": "Navy Blue",
        "season": "Fall",
        "year": "2011",
        "usage": "Casual",
    }
    assert bag.title == "Lino Perros Women, Black, Handbag"
    assert bag.attributes["usage"] == "Casual" and bag.source == "styles.csv:4"
    assert catalog.skips == [Skip("styles.csv:5", "22222", "missing title")]
    # Naming styles.csv directly gives the same layout.
    assert open_catalog(tmp_path / "styles.csv").format == "kaggle-styles"


def test_products_file_wins_over_styles_csv(tmp_path):
    (tmp_path / "styles.csv").write_text(KAGGLE_HEADER + "\n", encoding="utf-8")
    write_jsonl(tmp_path / "products.jsonl", [{"id": 1, "title": "x"}])
    write_csv(tmp_path / "products.csv", [["id", "title"], ["1", "x"]])
    assert open_catalog(tmp_path).path.name == "products.jsonl"


# --- whole-catalog errors --------------------------------------------------


def test_duplicate_ids_are_a_catalog_error_naming_them(tmp_path):
    path = write_jsonl(
        tmp_path / "products.jsonl",
        [
            {"id": 1, "title": "a"},
            {"id": 2, "title": "b"},
            {"id": "1", "title": "c"},
            {"id": 2, "title": "d"},
            {"id": 3, "title": "e"},
            {"id": 1, "title": "f"},
        ],
    )
    catalog = open_catalog(path)
    with pytest.raises(CatalogError) as info:
        catalog.scan()
    message = str(info.value)
    assert "'1' (lines 1, 3, 6)" in message
    assert "'2' (lines 2, 4)" in message
    assert "'3'" not in message
    with pytest.raises(CatalogError, match="duplicate product id '1' on lines 1 and 3"):
        list(catalog.products())


def test_duplicate_message_lists_at_most_twenty(tmp_path):
    records = [{"id": i, "title": "t"} for i in range(30)] * 2
    catalog = open_catalog(write_jsonl(tmp_path / "p.jsonl", records))
    with pytest.raises(CatalogError) as info:
        catalog.scan()
    message = str(info.value)
    assert "30 product id(s)" in message
    assert "'19' (lines 20, 50)" in message and "'20'" not in message
    assert "and 10 more" in message


@pytest.mark.parametrize("name", ["products.jsonl", "products.csv"])
def test_non_utf8_is_a_catalog_error_naming_the_line(tmp_path, name):
    good = '{"id": 1, "title": "ok"}' if name.endswith("jsonl") else "id,title\n1,ok"
    bad = '{"id": 2, "title": "caf\xe9"}' if name.endswith("jsonl") else "2,caf\xe9"
    (tmp_path / name).write_bytes((good + "\n" + bad + "\n").encode("latin-1"))
    catalog = open_catalog(tmp_path)
    line = 2 if name.endswith("jsonl") else 3
    for run in (catalog.scan, lambda: list(catalog.products())):
        with pytest.raises(CatalogError) as info:
            run()
        message = str(info.value)
        assert f"line {line}" in message
        assert "not valid UTF-8" in message
        assert "re-save" in message and name in message


def test_unknown_directory_is_a_catalog_error(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data.json").write_text("{}")
    (tmp_path / "images").mkdir()
    with pytest.raises(CatalogError) as info:
        open_catalog(tmp_path)
    message = str(info.value)
    assert "no catalog found" in message
    assert "data.json" in message and "notes.txt" in message and "images/" in message
    assert isinstance(info.value, MoonsearchError)


def test_several_record_files_is_ambiguous(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"id": 1, "title": "x"}])
    write_csv(tmp_path / "b.csv", [["id", "title"]])
    with pytest.raises(CatalogError, match=r"a\.jsonl, b\.csv"):
        open_catalog(tmp_path)


def test_a_folder_of_several_files_of_one_format_is_one_catalog(tmp_path):
    """Read in name order (subfolders too when the top holds no records file), sources name each
    file by its path in the folder, image paths resolve against each file's own folder, and
    hidden or underscore files (Spark's _SUCCESS) are left out."""
    for folder in ("2026-01", "2026-02", "images"):
        (tmp_path / folder).mkdir()
    write_jsonl(tmp_path / "2026-02" / "part-0.jsonl", [{"id": "C", "title": "green top", "image": "img/c.png"}])
    write_jsonl(tmp_path / "2026-01" / "part-1.jsonl", [{"title": "no id"}, {"id": "B", "title": "blue shirt"}])
    write_jsonl(tmp_path / "2026-01" / "part-0.jsonl", [{"id": "A", "title": "red dress", "image": "../images/a.png"}])
    write_jsonl(tmp_path / "2026-01" / "_temporary.jsonl", [{"id": "X", "title": "not read"}])
    (tmp_path / "2026-01" / "_SUCCESS").write_text("")
    catalog = open_catalog(tmp_path)
    assert (catalog.path, catalog.format) == (tmp_path.resolve(), "jsonl")
    scan = catalog.scan()
    assert (scan.rows, scan.products) == (4, 3)
    assert [(s.source, s.reason) for s in scan.skips] == [("2026-01/part-1.jsonl:1", "missing id")]
    products = list(catalog.products())
    assert [(p.id, p.source) for p in products] == [
        ("A", "2026-01/part-0.jsonl:1"), ("B", "2026-01/part-1.jsonl:2"), ("C", "2026-02/part-0.jsonl:1")]
    assert products[0].images == (tmp_path.resolve() / "images" / "a.png",)
    assert products[2].images == (tmp_path.resolve() / "2026-02" / "img" / "c.png",)
    assert [[p.id for p in file] for file in catalog.products_by_file()] == [["A"], ["B"], ["C"]]

    write_jsonl(tmp_path / "2026-02" / "part-1.jsonl", [{"id": "A", "title": "red dress again"}])
    with pytest.raises(CatalogError, match=r"^[^:]+: 1 product id\(s\) used more than once: 'A' "
                                           r"\(at 2026-01/part-0\.jsonl:1, 2026-02/part-1\.jsonl:1\)"):
        open_catalog(tmp_path).scan()
    write_csv(tmp_path / "2026-02" / "part-2.csv", [["id", "title"]])
    with pytest.raises(CatalogError, match="record files of several formats"):
        open_catalog(tmp_path)


def test_missing_path_and_unsupported_suffix(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        open_catalog(tmp_path / "nope")
    (tmp_path / "products.xlsx").write_bytes(b"PK")
    with pytest.raises(CatalogError, match="unsupported"):
        open_catalog(tmp_path / "products.xlsx")


# --- streaming -------------------------------------------------------------


def test_products_is_a_lazy_generator(tmp_path):
    # Line 3 is undecodable: a reader that loaded the file first would fail before yielding.
    path = tmp_path / "products.jsonl"
    path.write_bytes(b'{"id": 1, "title": "a"}\n{"title": "no id"}\n\xff\xfe garbage\n')
    catalog = open_catalog(path)
    stream = catalog.products()
    assert inspect.isgenerator(stream)
    first = next(stream)
    assert first.id == "1"
    with pytest.raises(CatalogError, match="line 3"):
        next(stream)
    assert catalog.skips == [Skip("products.jsonl:2", None, "missing id")]


def test_skips_reset_between_passes(tmp_path):
    catalog = open_catalog(write_jsonl(tmp_path / "p.jsonl", [{"id": 1}, {"id": 2, "title": "x"}]))
    list(catalog.products())
    list(catalog.products())
    assert len(catalog.skips) == 1
    assert catalog.scan().skips == catalog.skips


# --- the real Myntra export (only where it is present) -----------------------


@pytest.mark.slow
def test_real_myntra_first_200_rows():
    path = MYNTRA / "products.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    catalog = open_catalog(MYNTRA)
    assert catalog.format == "jsonl" and catalog.path == path
    products = list(itertools.islice(catalog.products(), 200))
    assert len(products) == 200
    assert len({p.id for p in products}) == 200
    with_images = [p for p in products if p.images]
    assert len(with_images) > 150
    for product in products:
        assert product.id.isdigit() and product.title
        assert isinstance(product.attributes["attributes"], dict)
        assert isinstance(product.attributes["descriptors"], dict)
        assert product.attributes["split"] in {"train", "test"}
    for product in with_images:
        (image,) = product.images
        assert image == MYNTRA / "images" / f"{product.id}.jpg"
        assert image.is_file()
