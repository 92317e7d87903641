"""Bad catalogs: counted, reported skips or one clear error line; never a traceback."""

import json
import os
import subprocess
import sys

import pytest

from moonsearch.errors import CatalogError
from moonsearch.index.builder import build_index
from moonsearch.store.files import SKIPS_FILE
from moonsearch.search.product_index import ProductIndex

from conftest import REPO, make_tiny_catalog, tiny_records, write_jsonl


def run_cli(*args, cwd=None):
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "moonsearch.cli", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, env=env, timeout=600)


@pytest.fixture
def flawed_catalog(tmp_path):
    records = tiny_records(8)
    records[1]["image"] = "images/missing.png"             # missing file
    records[2]["image"] = "images/corrupt.jpg"             # corrupt bytes
    records[3]["image"] = "images/notes.jpg"               # text, not an image
    records[4]["image"] = None                             # no image at all
    records.append({"title": "no id here", "baseColour": "Red"})          # skipped: no id
    records.append({"id": "X1", "title": "   ", "baseColour": "Red"})     # skipped: empty title
    folder = make_tiny_catalog(tmp_path / "cat", records)
    (folder / "images" / "missing.png").unlink()
    (folder / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(300))
    (folder / "images" / "notes.jpg").write_text("<html>not found</html>")
    with open(folder / "products.jsonl", "a") as handle:
        handle.write("{not json\n")                                       # skipped: invalid JSON
    return folder


def test_flawed_rows_are_counted_reported_and_the_rest_indexed(flawed_catalog, tmp_path, encoder):
    summary = build_index(flawed_catalog, tmp_path / "idx", encoder=encoder, device="cpu")
    assert (summary.products, summary.text_only, summary.skipped) == (8, 4, 3)
    assert summary.with_image == 4
    report = [json.loads(line) for line in (tmp_path / "idx" / SKIPS_FILE).read_text().splitlines()]
    by_kind = {}
    for entry in report:
        by_kind.setdefault(entry["kind"], []).append(entry)
    assert sorted(e["source"] for e in by_kind["skipped"]) == ["products.jsonl:10", "products.jsonl:11",
                                                               "products.jsonl:9"]
    reasons = {e["id"]: e["reason"] for e in by_kind["text_only"]}
    assert reasons["P001"] == "missing file"
    assert reasons["P002"] == "corrupt or truncated image"
    assert reasons["P003"] == "unsupported format"
    assert "P004" in reasons
    # text-only products are searchable (multimodal and text views) but not in the image view
    index = ProductIndex.open(tmp_path / "idx", device="cpu", encoder=encoder)
    ids = [h.id for h in index.search(text="cotton", k=20)]
    assert {"P001", "P002", "P003", "P004"} <= set(ids) and len(ids) == 8
    image_ids = [h.id for h in index.search(text="cotton", k=20, view="image")]
    assert len(image_ids) == 4 and not {"P001", "P002", "P003", "P004"} & set(image_ids)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["counts"] == {"products": 8, "with_image": 4, "text_only": 4, "skipped": 3,
                                  "images": 4, "extra_images": 0, "image_failures": 3}


def test_cli_summary_names_the_counts_and_report(flawed_catalog, tmp_path):
    result = run_cli("index", str(flawed_catalog), "--out", str(tmp_path / "idx"), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "8 products" in result.stderr and "4 text-only" in result.stderr and "3 skipped" in result.stderr
    assert SKIPS_FILE in result.stderr
    assert "Traceback" not in result.stderr


def test_duplicate_ids_fail_before_encoding_and_name_the_ids(tmp_path):
    records = tiny_records(4)
    records[3]["id"] = records[0]["id"]
    folder = make_tiny_catalog(tmp_path / "dup", records)
    with pytest.raises(CatalogError, match="P000"):
        build_index(folder, tmp_path / "idx", encoder="baseline", device="cpu")
    assert not (tmp_path / "idx").exists()
    result = run_cli("index", str(folder), "--out", str(tmp_path / "idx"))
    assert result.returncode == 2
    assert "P000" in result.stderr and "Traceback" not in result.stderr


def test_undecodable_text_is_one_clear_error(tmp_path):
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "products.jsonl").write_bytes('{"id": "1", "title": "Caf\u00e9 shirt"}\n'.encode("latin-1"))
    result = run_cli("index", str(folder), "--out", str(tmp_path / "idx"))
    assert result.returncode == 2
    assert "UTF-8" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["query", "red", "--index", "does/not/exist"], "no index"),
    (["query", "--index", "catalog"], "not a finished moonsearch index"),
    (["index", "no/such/catalog"], "catalog not found"),
])
def test_user_errors_are_one_line_without_traceback(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_catalog_with_no_valid_product(tmp_path):
    write_jsonl(tmp_path / "c" / "products.jsonl", [{"title": "no id"}])
    result = run_cli("index", str(tmp_path / "c"), "--out", str(tmp_path / "idx"))
    assert result.returncode == 2 and "no valid products" in result.stderr
