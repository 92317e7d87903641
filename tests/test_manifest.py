import json

import pytest

from moonsearch.errors import IndexFormatError
from moonsearch.store.manifest import FORMAT_VERSION, Manifest


def manifest():
    return Manifest(encoder={"name": "baseline", "id": "baseline@abc", "weights": None}, dim=8,
                    index_type="flat", views=["mm", "image", "text"],
                    counts={"products": 3, "with_image": 2, "text_only": 1, "skipped": 0},
                    source={"catalog": "/c", "layout": "jsonl"}, created="2026-01-01T00:00:00+00:00",
                    moonsearch_version="0.1.0")


def test_round_trip(tmp_path):
    manifest().write(tmp_path)
    assert Manifest.read(tmp_path) == manifest()


def test_other_format_version_is_refused(tmp_path):
    manifest().write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexFormatError, match="format version"):
        Manifest.read(tmp_path)


def test_other_encoder_is_refused(tmp_path):
    with pytest.raises(IndexFormatError, match="baseline@abc"):
        manifest().check_encoder("baseline@def", tmp_path)
    manifest().check_encoder("baseline@abc", tmp_path)


def test_unfinished_or_missing_index(tmp_path):
    with pytest.raises(IndexFormatError, match="no index"):
        Manifest.read(tmp_path / "nope")
    with pytest.raises(IndexFormatError, match="not a finished"):
        Manifest.read(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(IndexFormatError, match="unreadable"):
        Manifest.read(tmp_path)
