"""An interrupted `index` never leaves a half-written index that `query` would read."""

import signal
import subprocess
import sys
import time

import pytest

from moonsearch.index.builder import build_index
from moonsearch.search.product_index import ProductIndex

from conftest import REPO, make_tiny_catalog, tiny_records


def test_failed_rebuild_keeps_the_previous_index(tmp_path, encoder):
    old = make_tiny_catalog(tmp_path / "old", tiny_records(6))
    out = tmp_path / "indexes" / "shop"
    build_index(old, out, encoder=encoder, device="cpu")
    new = make_tiny_catalog(tmp_path / "new", tiny_records(40))
    with pytest.raises(RuntimeError, match="simulated"):
        build_index(new, out, encoder=encoder, device="cpu", batch_size=8, fail_after_batches=2)
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    assert index.manifest.counts["products"] == 6
    assert len(index.search(text="red", k=50)) == 6
    leftovers = [p.name for p in out.parent.iterdir() if p.name != "shop"]
    assert leftovers == []


def test_killed_build_leaves_old_index_readable_and_is_cleaned_up_next_time(tmp_path, encoder):
    old = make_tiny_catalog(tmp_path / "old", tiny_records(6))
    out = tmp_path / "indexes" / "shop"
    build_index(old, out, encoder=encoder, device="cpu")
    big = make_tiny_catalog(tmp_path / "big", tiny_records(3000))
    proc = subprocess.Popen([sys.executable, "-m", "moonsearch.cli", "index", str(big), "--out", str(out),
                             "--device", "cpu", "--batch-size", "16"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    staging = []
    while time.time() < deadline and not staging:
        staging = [p for p in out.parent.glob(".shop.building-*") if (p / "metadata.duckdb").exists()]
        time.sleep(0.2)
    assert staging, "the build never started writing"
    time.sleep(2)  # let it write some batches
    assert proc.poll() is None, "the build finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    assert index.manifest.counts["products"] == 6 and len(index.search(text="red", k=10)) == 6
    index.close()
    # the next build removes the dead build's staging folder
    build_index(old, out, encoder=encoder, device="cpu")
    assert not list(out.parent.glob(".shop.building-*"))


def test_refuses_to_replace_a_folder_that_is_not_an_index(tmp_path, encoder):
    from moonsearch.errors import MoonsearchError

    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    with pytest.raises(MoonsearchError, match="not a moonsearch index"):
        build_index(make_tiny_catalog(tmp_path / "c", tiny_records(3)), out, encoder=encoder, device="cpu")
    assert (out / "thesis.txt").read_text() == "do not delete"
    assert not list(tmp_path.glob(".precious.*"))


def test_an_index_retired_by_a_swap_cut_between_its_renames_is_put_back(tmp_path, encoder):
    old = make_tiny_catalog(tmp_path / "old", tiny_records(6))
    out = tmp_path / "indexes" / "shop"
    build_index(old, out, encoder=encoder, device="cpu")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    retired = out.parent / f".shop.old-{dead.stdout.strip()}"
    out.rename(retired)                    # killed after retiring the index, before the new one moved in
    new = make_tiny_catalog(tmp_path / "new", tiny_records(40))
    with pytest.raises(RuntimeError, match="simulated"):
        build_index(new, out, encoder=encoder, device="cpu", batch_size=8, fail_after_batches=2)
    index = ProductIndex.open(out, device="cpu", encoder=encoder)
    assert index.manifest.counts["products"] == 6 and not retired.exists()


def test_the_default_index_ignores_build_folders(tmp_path, monkeypatch, encoder):
    from moonsearch.cli import default_index

    out = tmp_path / "indexes" / "shop"
    build_index(make_tiny_catalog(tmp_path / "c", tiny_records(3)), out, encoder=encoder, device="cpu")
    hidden = out.parent / ".shop.old-1"
    hidden.mkdir()
    (hidden / "manifest.json").write_text((out / "manifest.json").read_text())
    monkeypatch.chdir(tmp_path)
    assert default_index().resolve() == out.resolve()
