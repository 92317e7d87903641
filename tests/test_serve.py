"""`moonsearch serve`: every endpoint and error through FastAPI's TestClient, against real indexes
(the shipped sample catalog's, and a tiny moon-lite one for explain and writes)."""

from __future__ import annotations

import io
import shutil
from collections import Counter

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import SAMPLE_CATALOG, make_tiny_catalog, tiny_records  # noqa: E402
from moonsearch.serve import ServeConfig, create_app  # noqa: E402
from moonsearch.serve.state import ServedIndex  # noqa: E402
from moonsearch.store.metadata import flatten_attributes  # noqa: E402

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def sample(sample_index, encoder):
    """A client on the sample catalog's index (baseline encoder), and the index for reference."""
    _, index = sample_index
    served = ServedIndex(index.folder, device="cpu", encoder=encoder)
    app = create_app(ServeConfig(index=index.folder, candidates=200), served)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, index
    served.close()


def ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def assert_error(response, status: int, contains: str = ""):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "status"} and body["status"] == status
    assert "Traceback" not in body["error"] and "\n" not in body["error"]
    assert contains.lower() in body["error"].lower(), body["error"]


# ---- service -------------------------------------------------------------------------------

def test_health_and_info(sample):
    client, index = sample
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["products"] == index.store.count() == 120
    info = client.get("/info").json()
    assert info["writes"] is False
    assert {"field": "gender", "products": 120} in info["filterable_fields"]


def test_docs_work_offline(sample):
    client, _ = sample
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text
    assert "http://" not in page.text and "https://" not in page.text   # no CDN
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    assert client.get("/docs-assets/swagger-ui.css").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/search", "/facets", "/products/{product_id}", "/products/{product_id}/similar",
                 "/products/{product_id}/image", "/explain", "/products", "/health"):
        assert path in paths


def test_page_and_assets_are_served_locally(sample):
    client, _ = sample
    page = client.get("/")
    assert page.status_code == 200 and 'id="grid"' in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in ("/static/shop.js", "/static/shop.css"):
        assert client.get(asset).status_code == 200


def test_no_cors_headers_by_default(sample):
    client, _ = sample
    response = client.get("/search", params={"q": "shirt"}, headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in response.headers


# ---- search --------------------------------------------------------------------------------

def test_search_ranks_as_the_library_does(sample):
    client, index = sample
    expected = [h.id for h in index.search(text="red dress", k=10)]
    response = client.get("/search", params={"q": "red dress", "limit": 10})
    assert ids(response) == expected
    body = response.json()
    assert body["ranking"]["kind"] == "hybrid" and body["results"][0]["image_url"].endswith("/image")
    vectors = [h.id for h in index.search(text="red dress", k=5, hybrid=False)]
    assert ids(client.get("/search", params={"q": "red dress", "k": 5, "hybrid": "false"})) == vectors


def test_pages_are_stable_and_cover_the_ranking(sample):
    client, index = sample
    expected = [h.id for h in index.search(text="black shoes", k=40)]
    seen = []
    offset = 0
    while offset is not None and offset < 40:
        body = client.get("/search", params={"q": "black shoes", "limit": 8, "offset": offset}).json()
        seen += [r["id"] for r in body["results"]]
        assert [r["position"] for r in body["results"]] == list(range(offset + 1, offset + 1 + len(body["results"])))
        offset = body["next_offset"]
    assert seen == expected and len(set(seen)) == len(seen)
    # a page far past the cached list still never repeats a product already shown
    deep = client.get("/search", params={"q": "black shoes", "limit": 50, "offset": 100}).json()
    assert not set(r["id"] for r in deep["results"]) & set(seen)


def test_sort_by_price(sample):
    client, _ = sample
    for sort, order in (("price_asc", 1), ("price_desc", -1)):
        body = client.get("/search", params={"q": "shirt", "sort": sort, "limit": 30}).json()
        prices = [r["attributes"]["price"] for r in body["results"]]
        assert len(prices) == 30 and prices == sorted(prices, key=lambda p: order * p)
        assert body["total"] == 120   # the candidate set: the whole sample here
    browse = client.get("/search", params={"sort": "price_asc", "limit": 5, "filter": "gender=Men"}).json()
    prices = [r["attributes"]["price"] for r in browse["results"]]
    assert prices == sorted(prices) and all(r["attributes"]["gender"] == "Men" for r in browse["results"])


def test_min_score_cuts_on_the_cosine(sample):
    client, index = sample
    everything = client.get("/search", params={"q": "red dress", "limit": 100, "min_score": -1}).json()
    cosines = sorted(r["similarity"] for r in everything["results"])
    threshold = cosines[len(cosines) // 2]
    cut = client.get("/search", params={"q": "red dress", "limit": 100, "min_score": threshold}).json()
    assert 0 < cut["total"] < everything["total"]
    assert all(r["similarity"] >= threshold for r in cut["results"])
    # the cosine is the vector score: the same as a vectors-only search reports
    vector_scores = {h.id: h.score for h in index.search(text="red dress", k=120, hybrid=False)}
    for r in cut["results"]:
        assert r["similarity"] == pytest.approx(vector_scores[r["id"]], abs=1e-4)
    nothing = client.get("/search", params={"q": "red dress", "min_score": 0.9999}).json()
    assert nothing["results"] == [] and nothing["total"] == 0


def test_filters_and_their_errors(sample):
    client, _ = sample
    body = client.get("/search", params={"q": "dress", "filter": ["gender=Women", "price<2000"], "limit": 50}).json()
    assert body["results"]
    assert all(r["attributes"]["gender"] == "Women" and r["attributes"]["price"] < 2000 for r in body["results"])
    assert_error(client.get("/search", params={"q": "dress", "filter": "colour=Red"}), 400, "no attribute 'colour'")
    assert_error(client.get("/search", params={"q": "dress", "filter": "price<cheap"}), 400, "needs a number")
    assert_error(client.get("/search", params={"q": "dress", "filter": "gender"}), 400, "cannot read filter")
    assert_error(client.get("/search", params={"q": "dress", "sort": "cheapest"}), 422, "sort")
    assert_error(client.get("/search", params={"q": "dress", "limit": 0}), 422, "limit")
    assert_error(client.get("/search", params={"q": "dress", "limit": 100, "offset": 950}), 400, "offset + limit")
    assert_error(client.get("/search", params={"q": "dress", "view": "audio"}), 422, "view")


def test_browse_without_a_query(sample):
    client, _ = sample
    body = client.get("/search", params={"filter": "masterCategory=Footwear", "limit": 50}).json()
    assert body["total"] == 20 and len(body["results"]) == 20 and body["ranking"] is None


# ---- facets --------------------------------------------------------------------------------

def counts_of(records, field):
    counts = Counter()
    for rec in records:
        counts.update({str(v) for k, v in flatten_attributes(rec["attributes"]) if k == field})
    return counts


def test_facets_count_the_whole_filtered_catalog(sample):
    client, index = sample
    body = client.get("/facets", params={"filter": "gender=Women"}).json()
    rows = index.store.allowed_rows(__import__("moonsearch.store.filters", fromlist=["x"]).parse_filters(["gender=Women"]))
    records = index.store.products(rows.tolist())
    assert body["candidates"] == len(rows) == 69
    facets = {f["field"]: {v["value"]: v["count"] for v in f["values"]} for f in body["facets"]}
    expected = counts_of(records, "baseColour")
    assert len(facets["baseColour"]) == min(12, len(expected))
    assert all(expected[value] == count for value, count in facets["baseColour"].items())
    assert min(facets["baseColour"].values()) >= max(n for v, n in expected.items() if v not in facets["baseColour"]) \
        if len(expected) > 12 else True
    assert facets["gender"] == {"Women": 69}   # a filtered key stays, with its one value


def test_facets_of_a_query_cover_its_candidates_not_one_page(sample, encoder):
    client, index = sample
    body = client.get("/facets", params={"q": "leather", "filter": "price>=1000", "field": ["articleType", "brand"]}).json()
    hits = index.search(text="leather", k=200, filters=["price>=1000"])
    assert body["candidates"] == len(hits) > 24
    got = {f["field"]: {v["value"]: v["count"] for v in f["values"]} for f in body["facets"]}
    assert [f["field"] for f in body["facets"]] == ["articleType", "brand"]
    expected = counts_of(index.store.products([h.row for h in hits]), "articleType")
    assert all(expected[value] == count for value, count in got["articleType"].items())
    assert sum(got["articleType"].values()) == sum(sorted(expected.values(), reverse=True)[:12])
    assert_error(client.get("/facets", params={"q": "leather", "field": "colour"}), 400, "no attribute 'colour'")


# ---- images --------------------------------------------------------------------------------

def png_bytes(size=(40, 60), colour=(200, 30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_search_matches_the_library(sample):
    client, index = sample
    photo = SAMPLE_CATALOG / "images" / "S0001.jpg"
    expected = [h.id for h in index.search(image=photo, k=5)]
    response = client.post("/search", files={"image": ("S0001.jpg", photo.read_bytes(), "image/jpeg")},
                           data={"limit": "5"})
    assert ids(response) == expected
    both = client.post("/search", files={"image": ("S0001.jpg", photo.read_bytes(), "image/jpeg")},
                       data={"q": "shirt", "limit": "5", "filter": "gender=Men"})
    assert ids(both) == [h.id for h in index.search(text="shirt", image=photo, k=5, filters=["gender=Men"])]
    facets = client.post("/facets", files={"image": ("S0001.jpg", photo.read_bytes(), "image/jpeg")})
    assert facets.status_code == 200 and facets.json()["candidates"] > 0


def test_bad_and_oversized_images_are_4xx(sample_index, encoder):
    _, index = sample_index
    served = ServedIndex(index.folder, device="cpu", encoder=encoder)
    app = create_app(ServeConfig(index=index.folder, max_upload_bytes=20_000, max_image_pixels=50_000), served)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert_error(client.post("/search", files={"image": ("x.jpg", b"not an image at all", "image/jpeg")}),
                     400, "cannot use query image 'x.jpg'")
        assert_error(client.post("/search", files={"image": ("big.png", png_bytes((300, 300)), "image/png")}),
                     413, "300x300 pixels")
        noise = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noise).save(buffer, format="BMP")   # ~43 kB: over the 20 kB body limit
        assert_error(client.post("/search", files={"image": ("noise.bmp", buffer.getvalue(), "image/bmp")}), 413,
                     "over the limit")
        assert_error(client.post("/search", files={"image": ("tiny.png", png_bytes((2, 2)), "image/png")}), 400,
                     "tiny.png")
        ok = client.post("/search", files={"image": ("red.png", png_bytes(), "image/png")})
        assert ok.status_code == 200 and ok.json()["results"]
    served.close()


# ---- products --------------------------------------------------------------------------------

def test_product_similar_and_image(sample):
    client, index = sample
    product = client.get("/products/S0001").json()
    assert product["title"].startswith("Saffron Lane") and product["images"] == ["/products/S0001/image?n=0"]
    similar = client.get("/products/S0001/similar", params={"k": 5}).json()["results"]
    assert len(similar) == 5 and "S0001" not in [r["id"] for r in similar]
    scores = [r["score"] for r in similar]
    assert scores == sorted(scores, reverse=True)
    only_men = client.get("/products/S0001/similar", params={"k": 5, "filter": "gender=Men"}).json()["results"]
    assert all(r["attributes"]["gender"] == "Men" for r in only_men)
    image = client.get("/products/S0001/image")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == (SAMPLE_CATALOG / "images" / "S0001.jpg").read_bytes()
    assert_error(client.get("/products/NOPE"), 404, "no product with id 'NOPE'")
    assert_error(client.get("/products/NOPE/similar"), 404, "NOPE")
    assert_error(client.get("/products/S0001/image", params={"n": 3}), 404, "has 1 image")
    assert_error(client.get("/products/S0058/image"), 404, "has 0 image")   # a text-only product


def test_explain_is_refused_clearly_for_the_baseline_encoder(sample):
    client, _ = sample
    assert_error(client.get("/explain", params={"id": "S0001", "q": "shirt"}), 400, "cannot be explained")
    assert_error(client.get("/explain", params={"id": "S0001"}), 422, "q")


# ---- a tiny moon-lite index: explain, writes, images outside the catalog -----------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from moonsearch.index.builder import build_index

    root = tmp_path_factory.mktemp("serve-tiny")
    records = tiny_records(8)
    make_tiny_catalog(root / "catalog", records)
    # one product whose image lies outside the catalog folder: indexed, but never served
    shutil.copy(root / "catalog" / "images" / "P000.png", root / "outside.png")
    extra = {"id": "OUT1", "title": "Red cotton tshirt from elsewhere", "gender": "Men", "baseColour": "Red",
             "price": 999, "image": "../outside.png"}
    with open(root / "catalog" / "products.jsonl", "a", encoding="utf-8") as f:
        f.write(__import__("json").dumps(extra) + "\n")
    build_index(root / "catalog", root / "index", encoder="moon-lite", device="cpu")
    served = ServedIndex(root / "index", device="cpu", warm_text="red")
    app = create_app(ServeConfig(index=root / "index", write_token=TOKEN), served)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, root
    served.close()


def test_image_outside_the_catalog_is_refused(tiny):
    client, _ = tiny
    assert client.get("/products/P001/image").status_code == 200
    assert_error(client.get("/products/OUT1/image"), 403, "outside the catalog folder")


def test_explain_words_and_heatmap(tiny):
    client, _ = tiny
    body = client.get("/explain", params={"id": "P001", "q": "red dress", "top": 5}).json()
    assert body["product"] == "P001" and body["method"] == "occlusion" and len(body["words"]) == 5
    assert body["heatmap"].startswith("data:image/png;base64,")
    png = client.get("/explain", params={"id": "P001", "q": "red dress", "format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size[0] > 0
    photo = client.post("/explain", data={"id": "P001"}, files={"image": ("q.png", png_bytes(), "image/png")})
    assert photo.status_code == 200 and photo.json()["score"] != 0
    assert_error(client.get("/explain", params={"id": "NOPE", "q": "red"}), 404, "NOPE")


def test_writes_need_the_token(tiny):
    client, _ = tiny
    record = {"id": "NEW1", "title": "Green cotton dress", "gender": "Women", "baseColour": "Green", "price": 1234,
              "image": "images/P002.png"}
    assert_error(client.post("/products", json={"products": [record]}), 401, "bearer token")
    assert_error(client.post("/products", json={"products": [record]}, headers={"Authorization": "Bearer wrong"}),
                 401, "bearer token")
    assert_error(client.delete("/products/P001", headers={"Authorization": f"Basic {TOKEN}"}), 401, "bearer")


def test_upsert_and_delete(tiny):
    client, _ = tiny
    auth = {"Authorization": f"Bearer {TOKEN}"}
    before = client.get("/health").json()["generation"]
    record = {"id": "NEW1", "title": "Zebrastripe velvet gown", "gender": "Women", "baseColour": "Green",
              "price": 1234, "image": "images/P002.png"}
    done = client.post("/products", json={"products": [record]}, headers=auth)
    assert done.status_code == 200, done.text
    assert done.json()["added"] == 1 and client.get("/health").json()["generation"] == before + 1
    assert "NEW1" in ids(client.get("/search", params={"q": "zebrastripe velvet gown", "limit": 3}))
    assert client.get("/products/NEW1").json()["attributes"]["price"] == 1234
    assert client.get("/products/NEW1/image").status_code == 200
    assert_error(client.post("/products", json={"products": [{**record, "image": "../outside.png"}]}, headers=auth),
                 400, "leaves the catalog folder")
    assert_error(client.post("/products", json={"products": [{**record, "image": "/etc/passwd"}]}, headers=auth),
                 400, "leaves the catalog folder")
    assert_error(client.post("/products", json={"products": [{"title": "no id"}]}, headers=auth), 400, "record 1")
    assert_error(client.post("/products", json={"products": []}, headers=auth), 422, "products")
    gone = client.delete("/products/NEW1", headers=auth)
    assert gone.status_code == 200 and gone.json()["deleted"] == 1
    assert_error(client.get("/products/NEW1"), 404, "NEW1")
    assert "NEW1" not in ids(client.get("/search", params={"q": "zebrastripe velvet gown", "limit": 3}))
    assert_error(client.delete("/products/NEW1", headers=auth), 404, "NEW1")


def test_writes_are_off_without_a_token(sample):
    client, _ = sample
    assert_error(client.post("/products", json={"products": [{"id": "x", "title": "y"}]},
                 headers={"Authorization": "Bearer anything"}), 403, "writes are off")
    assert_error(client.delete("/products/S0001", headers={"Authorization": "Bearer anything"}), 403, "writes are off")


def test_read_token(tmp_path, monkeypatch):
    from moonsearch.errors import MoonsearchError
    from moonsearch.serve.config import TOKEN_ENV, read_token

    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert read_token(None) is None
    monkeypatch.setenv(TOKEN_ENV, " abc ")
    assert read_token(None) == "abc"
    (tmp_path / "t").write_text("from-file\n")
    assert read_token(tmp_path / "t") == "from-file"
    (tmp_path / "empty").write_text("")
    with pytest.raises(MoonsearchError, match="empty"):
        read_token(tmp_path / "empty")
