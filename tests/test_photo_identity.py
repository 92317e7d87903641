"""The photo identity channel (issue 16): an index built with it stores each product image's
identity vector, image-only queries rank by it (a mirrored, cropped, tilted or recompressed photo
of a product finds that product), text and text + image queries do not change, live writes keep
it, an index without it still answers image queries, and the trainer runs and resumes."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from moonsearch import photos
from moonsearch.encoder import photo_identity
from moonsearch.errors import MoonsearchError

from conftest import REPO, SAMPLE_CATALOG, write_jsonl

pytestmark = pytest.mark.skipif(photo_identity.shipped() is None, reason="no shipped photo identity weights")


def patterned(path, seed: int):
    """A 60x80 product-like photo on white: a garment silhouette filled with its own stripes and dots."""
    rng = random.Random(seed)
    image = Image.new("RGB", (60, 80), "white")
    mask = Image.new("L", (60, 80), 0)
    shape = ImageDraw.Draw(mask)
    if seed % 2:
        shape.polygon([(22, 8), (38, 8), (52, 74), (8, 74)], fill=255)
    else:
        shape.rectangle([14, 12, 46, 70], fill=255)
        shape.rectangle([3, 12, 14, 34], fill=255)
        shape.rectangle([46, 12, 57, 34], fill=255)
    fabric = Image.new("RGB", (60, 80), tuple(rng.randint(0, 200) for _ in range(3)))
    draw = ImageDraw.Draw(fabric)
    width = rng.randint(3, 8)
    for y in range(-80, 80, width * 2):
        slope = rng.randint(-20, 20)
        draw.line([(0, y), (60, y + slope)], fill=tuple(rng.randint(0, 255) for _ in range(3)), width=width)
    for _ in range(rng.randint(2, 6)):
        x, y, r = rng.randint(0, 60), rng.randint(0, 80), rng.randint(3, 9)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(rng.randint(0, 255) for _ in range(3)))
    image.paste(fabric, (0, 0), mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def make_catalog(folder, n: int = 24, extra: dict | None = None):
    records = []
    for i in range(n):
        patterned(folder / "images" / f"Q{i:03d}.png", seed=i)
        records.append({"id": f"Q{i:03d}", "title": f"patterned {'dress' if i % 2 else 'shirt'} {i}",
                        "articleType": "Dresses" if i % 2 else "Shirts", "price": 500 + i,
                        "image": f"images/Q{i:03d}.png", "split": "train"})
    for key, value in (extra or {}).items():
        records[key].update(value)
    write_jsonl(folder / "products.jsonl", records)
    return folder


SAMPLE = [json.loads(line) for line in (SAMPLE_CATALOG / "products.jsonl").read_text().splitlines() if line.strip()]


def sample_subset(folder, rows) -> "Path":
    """A catalog of some of the shipped sample's products (their drawn photos copied along)."""
    import shutil

    for i in rows:
        (folder / "images").mkdir(parents=True, exist_ok=True)
        if SAMPLE[i].get("image"):   # a few sample products are text-only
            shutil.copy(SAMPLE_CATALOG / SAMPLE[i]["image"], folder / SAMPLE[i]["image"])
    return write_jsonl(folder / "products.jsonl", [SAMPLE[i] for i in rows]).parent


@pytest.fixture(scope="module")
def built(tmp_path_factory, encoder):
    """The sample catalog (120 products, 12 kinds of 10 lookalikes each) with and without the channel."""
    from moonsearch.index.builder import build_index

    folder = tmp_path_factory.mktemp("identity")
    build_index(SAMPLE_CATALOG, folder / "with", encoder=encoder, device="cpu", identity=True)
    build_index(SAMPLE_CATALOG, folder / "without", encoder=encoder, device="cpu", identity=False)
    return {"catalog": SAMPLE_CATALOG, "with": folder / "with", "without": folder / "without", "folder": folder}


def open_index(path, encoder):
    from moonsearch.search.product_index import ProductIndex

    return ProductIndex.open(path, device="cpu", encoder=encoder)


def photo_of(catalog, i: int) -> Image.Image:
    with Image.open(catalog / SAMPLE[i]["image"]) as image:
        return image.convert("RGB")


def test_the_manifest_names_the_identity_model_and_the_files_exist(built):
    manifest = json.loads((built["with"] / "manifest.json").read_text())
    model = photo_identity.PhotoIdentity.load()
    assert manifest["identity"]["id"] == model.id and manifest["identity"]["dim"] == model.dim
    assert (built["with"] / "vectors-identity.faiss").is_file()
    assert json.loads((built["without"] / "manifest.json").read_text())["identity"] is None
    assert not (built["without"] / "vectors-identity.faiss").exists()


# (change, how many of the 12 must rank first, the rank all must reach). The sample's photos are
# flat drawings, unlike the Myntra photos the network was trained on, and each kind has 9
# lookalikes (two handbags differ only in a clasp). Measured with the shipped network (5,150
# steps, white point on): 12/12 first for exact, jpeg-q30, upscale, pad-grey and crop12; 10/12
# for mirror+crop6 (all in the top 2), 8/12 for photo-mix (top 2) and 7/12 for rotate8 (top 5;
# the 2,150-step network had 9/12 on these drawings while its test rotate8 R@1 was 0.961, the
# shipped one's 0.972). The thresholds leave a little room for another machine's float rounding.
CHANGES = [("exact", 12, 1), ("jpeg-q30", 11, 2), ("upscale3x+blur", 12, 1), ("pad-grey", 12, 1),
           ("mirror+crop6", 9, 3), ("crop12", 10, 3), ("rotate8", 6, 6), ("photo-mix", 7, 3)]


@pytest.mark.parametrize("change,first,within", CHANGES)
def test_a_changed_photo_of_a_product_finds_it(built, encoder, change, first, within):
    """One product of each of the 12 kinds, among its 9 lookalikes and the rest of the catalog."""
    index = open_index(built["with"], encoder)
    ranks = []
    for i in range(3, 120, 10):
        query = photos.transform(photo_of(built["catalog"], i), change, key=SAMPLE[i]["id"])
        hits = index.search(image=query, k=50)
        assert hits[0].ranking == "photo" and hits[0].matched_image_index == 0
        ids = [h.id for h in hits]
        ranks.append(ids.index(SAMPLE[i]["id"]) + 1 if SAMPLE[i]["id"] in ids else 99)
    assert sum(r == 1 for r in ranks) >= first and max(ranks) <= within, f"{change}: ranks {ranks}"


def test_a_query_photo_is_also_matched_shrunk_onto_white_and_mirrored():
    """A tight crop of a catalog photo is matched as the catalog shows it: smaller, on white."""
    photo = Image.new("RGB", (30, 40), (200, 30, 30))
    on_grey = photos.on_canvas(photo, 1.5)   # the trimmed frame must not be shrunk with it
    views = [view[0] for view in photo_identity.query_views([on_grey])]
    assert len(views) == 2 * (1 + len(photo_identity.ZOOM_OUT))
    half = len(views) // 2
    assert views[0] is on_grey
    for scale, view in zip(photo_identity.ZOOM_OUT, views[1:half]):
        assert view.size == (round(30 * scale), round(40 * scale))
        pixels = np.asarray(view)
        assert (pixels[0] == 255).all() and (pixels[:, 0] == 255).all()   # a white margin, no grey
        assert tuple(pixels[view.height // 2, view.width // 2]) == (200, 30, 30)
    for view, mirrored in zip(views[:half], views[half:]):
        assert np.array_equal(np.asarray(ImageOps.mirror(view)), np.asarray(mirrored))
    assert photo_identity.query_views([None]) == [[None]] * len(views)
    # a phone-sized photo's views all come from a working copy, not 12 MP images
    big = Image.new("RGB", (3000, 4000), (30, 30, 200))
    big_views = [view[0] for view in photo_identity.query_views([big])]
    assert big_views[0].size == big_views[half].size == photo_identity.WORKING_SIZE
    assert all(v.width <= photo_identity.WORKING_SIZE[0] * 1.31 and v.height <= photo_identity.WORKING_SIZE[1] * 1.31
               for v in big_views)


def test_query_views_in_one_batch_equal_each_view_embedded_alone(built):
    """embed_query_views runs every view of every query as one batch: row (v, q) is query q's
    view v, the same vector as that view embedded on its own; a None query gets zero rows."""
    model = photo_identity.PhotoIdentity.load()
    queries = [photo_of(built["catalog"], 0), None, photos.on_canvas(photo_of(built["catalog"], 1), 1.4)]
    batched = model.embed_query_views(queries)
    views = photo_identity.query_views(queries)
    assert batched.shape == (len(views), len(queries), model.dim)
    for v, view in enumerate(views):
        alone = model.embed(view, whiten=False)
        assert np.allclose(batched[v], alone, atol=1e-5)
    assert not batched[:, 1].any() and np.allclose(np.linalg.norm(batched[:, 0], axis=1), 1.0, atol=1e-5)


def test_the_shrunk_views_find_tight_crops_the_plain_views_miss(built, encoder, monkeypatch):
    index = open_index(built["with"], encoder)

    def ranks():
        found = []
        for i in range(3, 120, 10):
            query = photos.transform(photo_of(built["catalog"], i), "crop12")
            ids = [h.id for h in index.search(image=query, k=10)]
            found.append(ids.index(SAMPLE[i]["id"]) + 1 if SAMPLE[i]["id"] in ids else 11)
        return found
    with_zoom = ranks()
    monkeypatch.setattr(photo_identity, "ZOOM_OUT", ())
    without = ranks()
    assert sum(with_zoom) < sum(without), (with_zoom, without)


def test_a_dimmed_photo_is_matched_with_its_white_background_restored(built, encoder, monkeypatch):
    """An under-exposed photo's grey background would be trimmed away as a canvas, and the
    product's colours are off: photos.restore_white undoes both before the views are made."""
    index = open_index(built["with"], encoder)

    def ranks():
        found = []
        for i in range(3, 120, 10):
            query = photos.lighting(photo_of(built["catalog"], i), 0.8, 0.9)
            ids = [h.id for h in index.search(image=query, k=10)]
            found.append(ids.index(SAMPLE[i]["id"]) + 1 if SAMPLE[i]["id"] in ids else 11)
        return found
    restored = ranks()
    monkeypatch.setattr(photo_identity, "WHITE_POINT", False)
    dimmed = ranks()
    assert sum(restored) < sum(dimmed), (restored, dimmed)


def test_the_evaluation_ranks_photo_queries_as_the_index_does(built, encoder):
    """The benchmark's numbers are the index's: same views, penalties, re-scoring and order."""
    from moonsearch.eval.robustness import PhotoChannel

    index = open_index(built["with"], encoder)
    photos_of = [photo_of(built["catalog"], i) if SAMPLE[i].get("image") else None for i in range(len(SAMPLE))]
    channel = PhotoChannel.of(photo_identity.PhotoIdentity.load(), photos_of)
    queries = [photos.transform(photos_of[i], change, key=SAMPLE[i]["id"])
               for i in range(3, 120, 10) for change in ("crop12", "photo-mix")]
    ranked = channel.ranked(encoder, queries, None)
    for query, rows in zip(queries, ranked):
        assert [h.id for h in index.search(image=query, k=10)] == [SAMPLE[r]["id"] for r in rows[:10]]


def test_the_channel_finds_mirrored_photos_the_encoder_alone_misses(built, encoder):
    with_channel, without = open_index(built["with"], encoder), open_index(built["without"], encoder)
    found = {"with": 0, "without": 0}
    for i in range(3, 120, 10):
        query = photos.transform(photo_of(built["catalog"], i), "mirror+crop6")
        found["with"] += with_channel.search(image=query, k=1)[0].id == SAMPLE[i]["id"]
        found["without"] += without.search(image=query, k=1)[0].id == SAMPLE[i]["id"]
    assert found["with"] > found["without"], found   # 9 vs 7 of 12 with the tests' baseline encoder


def test_a_build_embeds_identity_vectors_by_default(tmp_path, encoder, monkeypatch):
    from moonsearch.index.builder import build_index

    monkeypatch.delenv("MOONSEARCH_IDENTITY", raising=False)
    catalog = make_catalog(tmp_path / "catalog", n=4)
    build_index(catalog, tmp_path / "index", encoder=encoder, device="cpu")
    assert json.loads((tmp_path / "index" / "manifest.json").read_text())["identity"]["name"] == "photo-identity"
    monkeypatch.setenv("MOONSEARCH_IDENTITY", "0")
    build_index(catalog, tmp_path / "off", encoder=encoder, device="cpu")
    assert json.loads((tmp_path / "off" / "manifest.json").read_text())["identity"] is None


def test_text_and_text_plus_image_queries_are_unchanged(built, encoder):
    with_channel, without = open_index(built["with"], encoder), open_index(built["without"], encoder)
    query = ImageOps.mirror(photo_of(built["catalog"], 4))
    for kwargs in ({"text": "red dress"}, {"text": "shirt", "image": query}, {"text": "jeans", "hybrid": False}):
        a, b = with_channel.search(k=10, **kwargs), without.search(k=10, **kwargs)
        assert [(h.id, round(h.score, 5)) for h in a] == [(h.id, round(h.score, 5)) for h in b]
        assert a[0].ranking != "photo"


def test_an_index_without_identity_vectors_still_answers_image_queries(built, encoder):
    index = open_index(built["without"], encoder)
    hits = index.search(image=photo_of(built["catalog"], 7), k=3)
    assert hits[0].id == SAMPLE[7]["id"] and hits[0].ranking == "vectors"


def test_filters_and_min_score_apply_to_photo_queries(built, encoder):
    index = open_index(built["with"], encoder)
    query = ImageOps.mirror(photo_of(built["catalog"], 5))
    other = "Jeans" if SAMPLE[5]["articleType"] != "Jeans" else "Shirts"
    hits = index.search(image=query, k=10, filters=[f"articleType={other}"])
    assert len(hits) == 10 and all(h.attributes["articleType"] == other for h in hits)
    assert SAMPLE[5]["id"] not in [h.id for h in hits]
    best = index.search(image=photos.transform(photo_of(built["catalog"], 5), "crop12"), k=3)
    assert best[0].similarity == pytest.approx(best[0].score)
    assert best[0].similarity < 0.999
    assert not index.search(image=photos.transform(photo_of(built["catalog"], 5), "crop12"), k=3,
                            min_score=best[0].similarity + 1e-4)


def test_live_writes_keep_the_identity_channel(built, encoder, tmp_path):
    from moonsearch.catalog import open_catalog
    from moonsearch.index.builder import build_index

    first = sample_subset(tmp_path / "first", [i for i in range(120) if i % 10 != 7])
    build_index(first, tmp_path / "live", encoder=encoder, device="cpu", identity=True)
    index = open_index(tmp_path / "live", encoder)
    later = sample_subset(tmp_path / "later", [17, 27])
    index.upsert(list(open_catalog(later).products()))
    hits = index.search(image=photos.transform(photo_of(SAMPLE_CATALOG, 27), "mirror+crop6"), k=3)
    assert hits[0].id == SAMPLE[27]["id"] and hits[0].ranking == "photo"
    index.delete([SAMPLE[27]["id"]])
    assert SAMPLE[27]["id"] not in [h.id for h in index.search(image=photo_of(SAMPLE_CATALOG, 27), k=5)]
    assert index.verify()["vectors"]["identity"] == index.manifest.counts["products"] == 109


def test_an_index_of_another_identity_model_is_refused_in_one_line(built, encoder, tmp_path):
    import shutil

    folder = tmp_path / "other"
    shutil.copytree(built["with"], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["identity"]["id"] = "photo-identity@0000000000000000"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MoonsearchError, match="rebuild the index") as caught:
        open_index(folder, encoder).search(image=photo_of(built["catalog"], 1), k=3)
    assert "\n" not in str(caught.value)


def test_multi_image_products_match_through_their_best_image(tmp_path, encoder):
    from moonsearch.index.builder import build_index

    patterned(tmp_path / "catalog" / "images" / "second.png", seed=99)
    catalog = make_catalog(tmp_path / "catalog", n=6, extra={3: {"image": ["images/Q003.png", "images/second.png"]}})
    build_index(catalog, tmp_path / "index", encoder=encoder, device="cpu", identity=True)
    index = open_index(tmp_path / "index", encoder)
    with Image.open(catalog / "images" / "second.png") as second:
        query = photos.transform(second.convert("RGB"), "mirror+crop6")
    hits = index.search(image=query, k=3)
    assert hits[0].id == "Q003" and hits[0].matched_image_index == 1
    assert len({h.id for h in hits}) == len(hits)


QUERY_SCRIPT = r"""
import json, sys
import moonsearch
index = moonsearch.open_index(sys.argv[1])
hits = index.search(image=sys.argv[2], k=3)
print(json.dumps({"first": hits[0].id, "ranking": hits[0].ranking, "torch": "torch" in sys.modules}))
"""


def test_a_photo_query_in_a_fresh_process_does_not_import_torch(built):
    photo_identity.PhotoIdentity.load().embed([photo_of(built["catalog"], 0)])   # the graph is cached now
    query = built["folder"] / "query.jpg"
    photos.transform(photo_of(built["catalog"], 10), "mirror+crop6").save(query)
    expected = SAMPLE[10]["id"]
    done = subprocess.run([sys.executable, "-c", QUERY_SCRIPT, str(built["with"]), str(query)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ}, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"first": expected, "ranking": "photo", "torch": False}


def test_onnx_and_torch_identity_vectors_agree(built, monkeypatch):
    model = photo_identity.PhotoIdentity.load()
    images = [photo_of(built["catalog"], i) for i in range(4)]
    onnx = model.embed(images)
    monkeypatch.setenv("MOONSEARCH_ONNX", "0")
    torch_vectors = photo_identity.PhotoIdentity.load().embed(images)
    assert np.min(np.sum(onnx * torch_vectors, axis=1)) > 0.9999


def test_the_trainer_runs_and_resumes_on_a_tiny_catalog(tmp_path):
    from moonsearch.train.baseline import load_config
    from moonsearch.train.photo_identity import train_photo_identity

    catalog = make_catalog(tmp_path / "catalog", n=12)
    config = load_config("photo-identity")
    config["optim"].update(steps=2, batch_size=4, checkpoint_every=1)
    work = tmp_path / "work"
    out = tmp_path / "weights" / "tiny-identity"
    with pytest.raises(RuntimeError, match="simulated"):
        train_photo_identity(catalog, config, out, work=work, fail_after_steps=1)
    report = train_photo_identity(catalog, config, out, work=work)   # resumes after step 1
    assert [r["step"] for r in report["history"]] == [1, 2]
    assert report["wall_seconds"]["total"] >= report["wall_seconds"]["training"]   # what `moonsearch train` prints
    assert not (work / "tiny-identity.checkpoint.pt").exists()
    model = photo_identity.PhotoIdentity.load(out.with_suffix(".safetensors"))
    with Image.open(catalog / "images" / "Q000.png") as photo:
        vectors = model.embed([photo.convert("RGB"), None])
    assert vectors.shape == (2, model.dim) and abs(np.linalg.norm(vectors[0]) - 1) < 1e-4 and not vectors[1].any()


def test_a_continued_run_starts_from_the_given_weights(tmp_path):
    from moonsearch.encoder.base import read_weights
    from moonsearch.train.baseline import load_config
    from moonsearch.train.photo_identity import train_photo_identity

    catalog = make_catalog(tmp_path / "catalog", n=12)
    config = load_config("photo-identity")
    config["optim"].update(steps=2, batch_size=4, checkpoint_every=1)
    first = tmp_path / "weights" / "first"
    train_photo_identity(catalog, config, first, work=tmp_path / "work")
    # learning rates of zero: what comes out is exactly what went in, so the start was `first`
    frozen = {**config, "init": str(first.with_suffix(".safetensors")),
              "optim": {**config["optim"], "lr": 0.0, "head_lr": 0.0, "weight_decay": 0.0}}
    second = tmp_path / "weights" / "second"
    report = train_photo_identity(catalog, frozen, second, work=tmp_path / "work")
    assert report["started_from"]["weights"] == photo_identity.identity_id(first.with_suffix(".safetensors"))
    assert report["started_from"]["steps"] == 2
    _, before = read_weights(first.with_suffix(".safetensors"))
    _, after = read_weights(second.with_suffix(".safetensors"))
    assert before.keys() == after.keys()
    assert all(np.array_equal(np.asarray(before[k]), np.asarray(after[k])) for k in before)

    for wrong, message in (("moon-lite", "not a photo identity model"), (str(tmp_path / "none.safetensors"), "no photo identity weights")):
        with pytest.raises(MoonsearchError, match=message):
            train_photo_identity(catalog, {**config, "init": wrong}, tmp_path / "weights" / "third", work=tmp_path / "work")
    shape = {**config, "init": str(first.with_suffix(".safetensors")), "model": {**config["model"], "dim": 128}}
    with pytest.raises(MoonsearchError, match="cut/dim"):
        train_photo_identity(catalog, shape, tmp_path / "weights" / "third", work=tmp_path / "work")
