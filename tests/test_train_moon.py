"""`train_moon` end to end on a tiny catalog: outputs, seed reproducibility, resume after an
interruption, and the refusal to train on the test split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from moonsearch.errors import MoonsearchError
from moonsearch.train.baseline import load_config
from moonsearch.train.moon import train_moon

from conftest import make_tiny_catalog, tiny_records


def tiny_config(**optim) -> dict:
    config = load_config("moon-lite")
    config["model"].update(dim=32, layers=1, heads=2, experts=2, top_k=1, ffn_hidden=64, dropout=0.0)
    config["data"].update(limit=None, val_fraction=0.25)
    config["optim"].update(epochs=2, batch_size=4, **optim)
    return config


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    records = [{**r, "split": "train"} for r in tiny_records(16)]
    records += [{**r, "id": f"T{i}", "split": "test"} for i, r in enumerate(tiny_records(4))]
    return make_tiny_catalog(tmp_path_factory.mktemp("train-catalog"), records)


def weights_of(out):
    return load_file(str(out.with_suffix(".safetensors")))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_training_writes_weights_config_report_and_curve(catalog, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "moon-lite-tiny"
    report = train_moon(catalog, tiny_config(), out, cache_dir=cache)
    assert report["data"]["products"] == 16                      # the test split was not read
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    assert {"t2mm", "i2mm", "mm2mm", "intra", "total", "val title->mm hit@1", "val shopper P@10"} <= set(report["history"][0])
    saved = json.loads(out.with_suffix(".report.json").read_text())
    assert saved["history"] == report["history"] and saved["wall_seconds"]["total"] > 0
    assert json.loads(out.with_suffix(".json").read_text())["model"]["dim"] == 32
    assert out.with_suffix(".loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not out.with_suffix(".checkpoint.pt").exists()       # removed once the run is complete

    again = tmp_path / "again"
    train_moon(catalog, tiny_config(), again, cache_dir=cache)
    assert same(weights_of(out), weights_of(again))              # one seed, one result
    other = tmp_path / "other-seed"
    train_moon(catalog, {**tiny_config(), "seed": 1}, other, cache_dir=cache)
    assert not same(weights_of(out), weights_of(other))


@pytest.mark.parametrize("queries", ["cached", "live"])
def test_an_interrupted_run_resumes_to_the_same_weights(catalog, tmp_path, queries):
    """Live queries meet the text tower in other batches after a resume; still the same weights."""
    config = tiny_config()
    config["data"]["shopper_queries"] = queries
    cache = tmp_path / "cache"
    straight = tmp_path / "straight"
    train_moon(catalog, config, straight, cache_dir=cache)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_moon(catalog, config, resumed, cache_dir=cache, stop_after_epoch=1)
    assert resumed.with_suffix(".checkpoint.pt").exists() and not resumed.with_suffix(".safetensors").exists()
    first_run_seconds = torch.load(resumed.with_suffix(".checkpoint.pt"), weights_only=False)["seconds"]
    report = train_moon(catalog, config, resumed, cache_dir=cache)
    assert [h["epoch"] for h in report["history"]] == [1, 2]
    # the report's wall time covers the interrupted run too, and says there was a resume
    assert report["wall_seconds"]["resumed_after_epoch"] == 1
    assert report["wall_seconds"]["total"] > first_run_seconds > 0
    assert same(weights_of(straight), weights_of(resumed))


def test_outputs_go_to_a_folder_that_does_not_exist_yet(catalog, tmp_path):
    """The first epoch's checkpoint needs the folder: it is made before any work starts."""
    out = tmp_path / "runs" / "new" / "moon-lite"
    with pytest.raises(KeyboardInterrupt):
        train_moon(catalog, tiny_config(), out, cache_dir=tmp_path / "cache", stop_after_epoch=1)
    assert out.with_suffix(".checkpoint.pt").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(MoonsearchError, match="cannot write training outputs"):
        train_moon(catalog, tiny_config(), blocked / "moon-lite", cache_dir=tmp_path / "cache")


def test_training_on_the_test_split_is_refused(catalog, tmp_path):
    config = tiny_config()
    config["augment"]["split"] = "test"
    with pytest.raises(MoonsearchError, match="test"):
        train_moon(catalog, config, tmp_path / "nope", cache_dir=tmp_path / "cache")


def test_a_trained_models_saved_config_is_a_training_config():
    from moonsearch.encoder.registry import weights_path

    saved = load_config(weights_path("moon-lite").with_suffix(".json"))
    assert saved == json.loads(weights_path("moon-lite").with_suffix(".json").read_text())["training"]
    assert saved["encoder"] == "moon-lite" and {"model", "optim", "loss", "components"} <= set(saved)
    assert load_config("moon-lite")["name"] == "moon-lite"      # plain configs load as they are


def test_training_slices_leave_the_excluded_run_out():
    from moonsearch.train.token_cache import training_slices

    assert training_slices(None, None) == [(0, None)]
    assert training_slices(20, None) == [(0, 20)]
    assert training_slices(None, [5, 8]) == [(0, 5), (8, None)]
    assert training_slices(20, [5, 8]) == [(0, 5), (8, 20)]
    assert training_slices(None, [0, 3]) == [(3, None)]           # nothing before the excluded run
    assert training_slices(6, [5, 8]) == [(0, 5)]                 # the limit falls inside it
    assert training_slices(3, [5, 8]) == [(0, 3)]                 # or before it
    with pytest.raises(MoonsearchError, match="data.exclude"):
        training_slices(None, [8, 5])


def test_an_excluded_run_is_never_cached_and_the_rest_joins_in_order(catalog, tmp_path):
    from moonsearch.train.token_cache import build_training_cache

    config = {**tiny_config()["augment"], "seed": 0}
    whole = build_training_cache(catalog, config, tmp_path / "cache")
    parts = build_training_cache(catalog, config, tmp_path / "cache", exclude=[5, 9])
    keep = [i for i in range(16) if not 5 <= i < 9]
    assert list(parts.ids) == [whole.ids[i] for i in keep]
    assert parts.titles == [whole.titles[i] for i in keep]
    for row, i in enumerate(keep):                                # shifted offsets find each row's own tokens
        for field in ("product", "title"):                        # the fields drawn without randomness
            assert (parts.text(row, field) == whole.text(i, field)).all()
        # the image tower's batched convolutions are not bit-stable across batch sizes (fp16
        # cache): the same photo agrees to ~0.03, different photos differ by whole units
        assert np.abs(parts.image[row].astype(np.float32) - whole.image[i].astype(np.float32)).max() < 0.1
    assert parts.stats["products"] == 12 and len(parts.stats["parts"]) == 2


def test_training_with_an_excluded_run_reports_the_products_it_used(catalog, tmp_path):
    config = tiny_config()
    config["optim"]["epochs"] = 1
    config["data"]["exclude"] = [0, 4]
    report = train_moon(catalog, config, tmp_path / "excluded", cache_dir=tmp_path / "cache")
    assert report["data"]["products"] == 12


def test_a_catalog_smaller_than_one_batch_still_trains(catalog, tmp_path):
    config = tiny_config()
    config["optim"].update(batch_size=128, epochs=1)          # 12 training rows: one step of all of them
    report = train_moon(catalog, config, tmp_path / "small", cache_dir=tmp_path / "cache")
    assert len(report["history"]) == 1 and report["history"][0]["total"] > 0


def test_train_cli_bad_configs_are_clear_errors(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    broken = tmp_path / "broken.json"
    broken.write_text('{"encoder": "moon-lite", ')
    other = tmp_path / "other.json"
    other.write_text('{"dataset": "myntra"}')
    for config, message in [(tmp_path / "absent.json", "training config: no file at"),
                            (broken, "is not valid JSON"), (other, "trains 'None', which this version cannot train")]:
        done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "train", "--data", str(tmp_path), "--config", str(config)],
                              capture_output=True, text=True, cwd=REPO, timeout=120, env={**os.environ, "COLUMNS": "400"})
        assert done.returncode != 0 and message in done.stderr + done.stdout
        assert "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "train", "--data", str(tmp_path), "--config", "baseline",
                           "--init", "moon-lite"], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, "COLUMNS": "400"})
    assert done.returncode != 0 and "--init is for moon-lite and photo-identity configs" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_a_run_can_start_from_trained_weights(catalog, tmp_path):
    """`init`: fine-tuning starts from the given weights, and the report names them with their cost."""
    cache = tmp_path / "cache"
    first = tmp_path / "first"
    train_moon(catalog, tiny_config(), first, cache_dir=cache)
    config = tiny_config(lr=0.0)                                  # lr 0: the weights must stay the loaded ones
    config["optim"]["epochs"] = 1
    config["init"] = str(first.with_suffix(".safetensors"))
    report = train_moon(catalog, config, tmp_path / "continued", cache_dir=cache)
    assert same(weights_of(tmp_path / "continued"), weights_of(first))
    assert report["init"]["weights"].startswith("first@") and report["init"]["epochs"] == 2
    assert report["init"]["wall_seconds"] > 0
    fresh = tiny_config(lr=0.0)
    fresh["optim"]["epochs"] = 1
    train_moon(catalog, fresh, tmp_path / "fresh", cache_dir=cache)
    assert not same(weights_of(tmp_path / "fresh"), weights_of(first))   # without init: random weights


def test_init_weights_of_another_shape_or_kind_are_refused(catalog, tmp_path):
    from moonsearch.encoder.registry import weights_path

    config = tiny_config()
    for init, message in [("moon-lite", "has the model"),                       # shipped: dim 192, not 32
                          (str(weights_path("baseline")), "is not a moon-lite model"),
                          (str(tmp_path / "absent.safetensors"), "no weights at")]:
        with pytest.raises(MoonsearchError, match=message):
            train_moon(catalog, {**config, "init": init}, tmp_path / "nope", cache_dir=tmp_path / "cache")


def test_photo_views_train_the_image_query_on_changed_photos(catalog, tmp_path):
    """config "photo": photo-like views of every training photo are cached beside the token cache,
    the i2mm query is one of them, and the photo term and its validation hit@1 are reported."""
    cache = tmp_path / "cache"
    config = {**tiny_config(), "photo": {"views": 2, "weight": 1.0}}
    report = train_moon(catalog, config, tmp_path / "photo", cache_dir=cache)
    record = report["history"][0]
    assert record["photo"] > 0 and 0.0 <= record["val photo->mm hit@1"] <= 1.0
    views = list((cache / "photo-views").glob("*-photo2-*.npy"))
    assert len(views) == 1
    stored = np.load(views[0])
    assert stored.shape == (16, 2, 12, 1280)
    assert (np.abs(stored).reshape(16, -1).sum(1) > 0).all()                   # every product has its views
    assert not np.array_equal(stored[:, 0], stored[:, 1])                      # two different photos
    plain = train_moon(catalog, tiny_config(), tmp_path / "plain", cache_dir=cache)
    assert "photo" not in plain["history"][0]
