"""Photo changes, the plain-frame trim, the ONNX image tower and the robustness task, on real
images drawn with Pillow."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from moonsearch import photos
from moonsearch.eval import robustness

from conftest import COLOURS, draw_product


def catalog_photo(tmp_path, i: int = 0) -> Image.Image:
    colour = list(COLOURS)[i % 4]
    return Image.open(draw_product(tmp_path / f"p{i}.png", colour, "dress" if i % 2 else "tshirt", seed=i)).convert("RGB")


def test_named_changes_do_what_their_names_say(tmp_path):
    image = catalog_photo(tmp_path)
    assert photos.transform(image, "exact").tobytes() == image.tobytes()
    assert photos.transform(image, "crop12").size == (60 - 2 * 7, 80 - 2 * 10)
    mirrored = photos.transform(image, "mirror+crop6")
    assert mirrored.size == (60 - 2 * 4, 80 - 2 * 5)
    # mirrored: the cropped photo's left column is the original's right column, cut the same way
    expected = image.transpose(Image.FLIP_LEFT_RIGHT).crop((4, 5, 56, 75))
    assert mirrored.tobytes() == expected.tobytes()
    padded = photos.transform(image, "pad-grey")
    assert padded.size == (84, 112) and padded.getpixel((0, 0)) == photos.GREY
    assert photos.transform(image, "upscale3x+blur").size == (180, 240)
    assert photos.transform(image, "rotate8").getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ValueError, match="unknown photo transform"):
        photos.transform(image, "sepia")


def test_photo_mix_is_seeded_per_product(tmp_path):
    image = catalog_photo(tmp_path)
    first = photos.transform(image, "photo-mix", key="P1")
    assert first.tobytes() == photos.transform(image, "photo-mix", key="P1").tobytes()
    others = {photos.transform(image, "photo-mix", key=f"P{i}").tobytes() for i in range(2, 8)}
    assert len(others | {first.tobytes()}) >= 5     # different products, different photos
    assert photos.transform(image, "photo-mix", key="P1", seed=1).tobytes() != first.tobytes()
    views = [photos.random_photo(image, random.Random(i)) for i in range(6)]
    assert len({v.tobytes() for v in views}) == 6


def test_trim_takes_a_plain_canvas_away_and_leaves_white_and_busy_frames(tmp_path):
    image = catalog_photo(tmp_path)
    on_grey = photos.on_canvas(image, 1.4, photos.GREY, (0.3, 0.7))
    assert photos.trim_plain_frame(on_grey).tobytes() == image.tobytes()     # exactly the photo again
    assert photos.trim_plain_frame(image).tobytes() == image.tobytes()       # catalog white stays
    noise = np.random.default_rng(0).integers(0, 255, (80, 60, 3), dtype=np.uint8)
    busy = Image.fromarray(noise)
    assert photos.trim_plain_frame(busy).tobytes() == busy.tobytes()


def test_a_dimmed_photo_gets_its_white_background_back(tmp_path):
    image = catalog_photo(tmp_path)
    dimmed = photos.lighting(image, 0.82, 1.0)
    restored = np.asarray(photos.restore_white(dimmed), dtype=np.int16)
    assert (restored[0] >= 253).all() and (restored[:, 0] >= 253).all()        # white again, so not trimmed
    assert np.abs(restored - np.asarray(image, dtype=np.int16)).mean() < 3   # and the product's colours back
    assert photos.trim_plain_frame(photos.restore_white(dimmed)).size == image.size
    # left alone: a white background, a photo on a canvas (its own white is brighter), a dark frame
    for same in (image, photos.on_canvas(image, 1.4, (200, 200, 200)), photos.on_canvas(image, 1.4, (90, 90, 90))):
        assert photos.restore_white(same) is same
    # a dimmed photo on a darker canvas: the canvas goes, then the photo's grey background turns white
    inside = np.asarray(photos.restore_white_inside(photos.on_canvas(dimmed, 1.4, (120, 110, 100))), dtype=np.int16)
    assert inside.shape == restored.shape and np.abs(inside - restored).mean() < 3


def test_onnx_image_tower_matches_torch_and_is_cached(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from moonsearch.encoder.towers import Towers, image_to_tensor

    monkeypatch.setenv("MOONSEARCH_CACHE", str(tmp_path / "cache"))
    towers = Towers()
    assert towers.uses_onnx
    pixels = torch.stack([image_to_tensor(catalog_photo(tmp_path, i)) for i in range(4)])
    fast = towers.image_maps(pixels)
    exact = towers.image.feature_maps(pixels).numpy()
    assert fast.shape == exact.shape == (4, 1280, 4, 3)
    a, b = fast.reshape(4, -1), exact.reshape(4, -1)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9999
    exported = list((tmp_path / "cache" / "onnx").glob("*.onnx"))
    assert len(exported) == 1
    stamp = exported[0].stat().st_mtime_ns
    Towers().image_maps(pixels[:1])               # a second process-like start reuses the file
    assert exported[0].stat().st_mtime_ns == stamp

    monkeypatch.setenv("MOONSEARCH_ONNX", "0")   # the torch path stays available
    assert not Towers().uses_onnx


def test_robustness_task_scores_changed_photos_and_the_frozen_tower(tmp_path, encoder):
    images = [catalog_photo(tmp_path, i) for i in range(8)]
    texts = [f"product {i}" for i in range(8)]
    candidates = encoder.encode_views(texts, images).mm
    result = robustness.run(encoder, images, [f"P{i}" for i in range(8)], candidates, list(range(8)),
                            transforms=("exact", "pad-grey", "photo-mix"))
    assert result["queries"] == 8 and result["candidates"] == 8
    assert set(result["transforms"]) == set(result["reference"]) == {"exact", "pad-grey", "photo-mix"}
    for metrics in [*result["transforms"].values(), *result["reference"].values()]:
        assert 0.0 <= metrics["R@1"] <= metrics["R@10"] <= 1.0
    # the same photo against itself, and on a canvas that the trim takes away: found first
    assert result["reference"]["exact"]["R@1"] == 1.0
    assert result["reference"]["pad-grey"]["R@1"] == 1.0
    flat = robustness.flat_metrics(result)
    assert flat["exact R@1"] == result["transforms"]["exact"]["R@1"] and len(flat) == 6
    assert "| pad-grey |" in robustness.table(result)
