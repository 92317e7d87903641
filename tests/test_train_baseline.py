"""`train_baseline` on a tiny catalog: its outputs, and `data.exclude` keeping products unseen."""

from __future__ import annotations

import json

import pytest

from moonsearch.train.baseline import load_config, train_baseline

from conftest import make_tiny_catalog, tiny_records


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return make_tiny_catalog(tmp_path_factory.mktemp("baseline-catalog"),
                             [{**r, "split": "train"} for r in tiny_records(16)])


def tiny_config() -> dict:
    config = load_config("baseline")
    config["model"].update(dim=16, image_hidden=32)
    config["data"]["val_fraction"] = 0.25
    config["optim"].update(epochs=2, batch_size=4)
    return config


def test_training_writes_weights_config_and_report(catalog, tmp_path):
    out = tmp_path / "baseline-tiny"
    report = train_baseline(catalog, tiny_config(), out, cache_dir=tmp_path / "cache")
    assert report["data"]["products"] == 16
    assert report["data"]["train_rows"] + report["data"]["val_rows"] == 16
    assert len(report["history"]) == 2
    assert out.with_suffix(".safetensors").exists()
    assert json.loads(out.with_suffix(".json").read_text())["model"]["dim"] == 16


def test_excluded_products_are_neither_trained_nor_validated_on(catalog, tmp_path):
    config = tiny_config()
    config["data"]["exclude"] = [4, 10]
    report = train_baseline(catalog, config, tmp_path / "excluded", cache_dir=tmp_path / "cache")
    assert report["data"]["train_rows"] + report["data"]["val_rows"] == 10
    assert report["data"]["exclude"] == [4, 10]
