"""Damaged index files (issue 18, item 7): checksums recorded at every build and write, a size
check when an index opens, hashes of the files a query reads whole, and `info --check` over
every byte; each damage is one line naming the file, exit code 2, no traceback."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from moonsearch.errors import IndexDamagedError, IndexFormatError
from moonsearch.search.product_index import ProductIndex
from moonsearch.store.integrity import state_files

REPO = Path(__file__).resolve().parent.parent
VECTOR_FILES = ["vectors-mm.faiss", "vectors-text.faiss", "vectors-image.faiss"]


def cli(*args):
    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    done.out = " ".join((done.stdout + done.stderr).split())
    return done


@pytest.fixture
def copy(sample_index, tmp_path):
    summary, _ = sample_index
    folder = tmp_path / "sample"
    shutil.copytree(summary.out, folder)
    return folder


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble(path: Path, where: float = 0.5) -> None:
    """Flip 64 bytes at a relative position: the size stays, the content does not."""
    data = bytearray(path.read_bytes())
    start = min(int(len(data) * where), max(0, len(data) - 64))
    for i in range(start, min(start + 64, len(data))):
        data[i] ^= 0xA5
    path.write_bytes(bytes(data))


def search_all_views(folder: Path, encoder) -> None:
    index = ProductIndex.open(folder, device="cpu", encoder=encoder)
    try:
        for view in ("mm", "text", "image"):
            index.search(text="cotton shirt", view=view, hybrid=False)
        index.search(text="cotton shirt")   # hybrid: the keyword index too
    finally:
        index.close()


def test_builds_and_writes_record_every_file_s_size_and_checksum(copy, encoder):
    manifest = json.loads((copy / "manifest.json").read_text())
    names = state_files(copy)
    assert set(manifest["files"]) == set(names) and "metadata.duckdb" in names
    for name in names:
        data = (copy / name).read_bytes()
        assert manifest["files"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    index = ProductIndex.open(copy, device="cpu", encoder=encoder)
    index.delete(["S0001"])   # a write: a new snapshot, some files linked, some new
    check = index.verify()
    index.close()
    manifest = json.loads((copy / "manifest.json").read_text())
    data = copy / manifest["snapshot"]
    assert set(manifest["files"]) == set(state_files(data))
    for name, entry in manifest["files"].items():
        assert hashlib.sha256((data / name).read_bytes()).hexdigest() == entry["sha256"]
    assert check["checksums"] and check["files_verified"] == len(manifest["files"])
    assert check["records"] == manifest["counts"]["products"] == 119


@pytest.mark.parametrize("name", VECTOR_FILES + ["metadata.duckdb", "skipped.jsonl"])
def test_a_truncated_file_of_any_kind_is_named_when_the_index_opens(copy, name):
    truncate(copy / name)
    with pytest.raises(IndexDamagedError, match=rf"{name} is truncated .*rebuild it with `moonsearch index`"):
        ProductIndex.open(copy, device="cpu")


@pytest.mark.parametrize("name", VECTOR_FILES)
def test_a_garbled_vector_file_is_caught_by_the_query_that_reads_it(copy, name, encoder):
    garble(copy / name, 0.7)   # inside the vectors: FAISS alone would serve garbage scores
    with pytest.raises(IndexDamagedError, match=f"{name} does not match its checksum"):
        search_all_views(copy, encoder)


@pytest.mark.parametrize("name", VECTOR_FILES + ["metadata.duckdb", "skipped.jsonl"])
def test_info_check_finds_garbled_bytes_in_every_kind_of_file(copy, name):
    garble(copy / name, 0.6)
    with pytest.raises(IndexDamagedError, match=f"{name} does not match its checksum"):
        ProductIndex.open(copy, device="cpu").verify()


def test_without_recorded_checksums_a_garbled_header_is_still_one_clear_error(copy):
    """An index written before checksums: the parsers' own errors, turned into one line."""
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"] = None
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert ProductIndex.open(copy, device="cpu").verify()["checksums"] is False
    garble(copy / "vectors-mm.faiss", 0.0)
    with pytest.raises(IndexDamagedError, match="vectors-mm.faiss cannot be read"):
        ProductIndex.open(copy, device="cpu").verify()


def test_cli_query_and_info_on_damaged_files_print_one_line_and_exit_2(copy):
    healthy = cli("info", "--index", copy, "--check")
    assert healthy.returncode == 0, healthy.out
    assert "files match their checksums" in healthy.out

    garble(copy / "vectors-text.faiss", 0.8)
    plain = cli("info", "--index", copy)      # the quick check passes: same size
    assert plain.returncode == 0, plain.out
    checked = cli("info", "--index", copy, "--check")
    assert checked.returncode == 2
    assert "vectors-text.faiss does not match its checksum" in checked.out and "Traceback" not in checked.out
    assert len(checked.stderr.strip().splitlines()) == 1

    truncate(copy / "metadata.duckdb")
    for args in (("query", "red dress", "--index", copy), ("info", "--index", copy)):
        done = cli(*args)
        assert done.returncode == 2, done.out
        assert "metadata.duckdb is truncated" in done.out and "restore" in done.out
        assert "Traceback" not in done.out and len(done.stderr.strip().splitlines()) == 1


def test_a_garbled_manifest_is_one_clear_error(copy):
    (copy / "manifest.json").write_text('{"encoder": ')
    with pytest.raises(IndexFormatError, match="manifest.json is unreadable"):
        ProductIndex.open(copy, device="cpu")
