"""moon-lite on ONNX Runtime: the same vectors as torch, a query path without torch, and cached
graphs that are rebuilt or refused when damaged. Real models throughout (the graphs are exported
into the user cache once, like any first query)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, SAMPLE_CATALOG

from moonsearch.encoder.registry import load_encoder, weights_path
from moonsearch.errors import MoonsearchError

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.skipif(os.environ.get("MOONSEARCH_ONNX", "1") == "0", reason="MOONSEARCH_ONNX=0")

QUERIES = ["red dress", "men black running shoes", "blue denim jacket for women", "watch"]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.astype(np.float64) * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def encoders():
    from moonsearch.encoder.moon import MoonEncoder
    from moonsearch.encoder.onnx_moon import OnnxMoonEncoder

    onnx, torch_encoder = load_encoder("default"), load_encoder("default", runtime="torch")
    assert isinstance(onnx, OnnxMoonEncoder) and isinstance(torch_encoder, MoonEncoder)
    return onnx, torch_encoder


@pytest.fixture(scope="module")
def products():
    """Sample products as the index builder embeds them: product text and first image."""
    from moonsearch.catalog import first_image, open_catalog
    from moonsearch.catalog.inputs import product_text

    items = list(open_catalog(SAMPLE_CATALOG).products())
    texts = [product_text(p.title, p.attributes) for p in items]
    images = [first_image(p.images)[0] for p in items]
    chosen = list(range(16)) + [i for i, im in enumerate(images) if im is None]   # text-only products too
    return [texts[i] for i in chosen], [images[i] for i in chosen]


def test_tokenizers_ids_equal_transformers(encoders):
    from transformers import AutoTokenizer

    from moonsearch.encoder.onnx_moon import Tokenizer, minilm_dir

    texts = ["red dress", "Men's  BLACK running-shoes, size 10!", "café crème naïve façade", "",
             " ".join(f"word{i} colour" for i in range(80)), "Tonga Women Printed Red Dress Dresses women summer"]
    expected = AutoTokenizer.from_pretrained(str(minilm_dir()))(texts, padding=True, truncation=True, max_length=64,
                                                               return_tensors="np")
    got = Tokenizer(minilm_dir())(texts)
    assert got["input_ids"].shape[1] == 64   # the long text is cut at 64 pieces, [SEP] kept
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert np.array_equal(got[key], expected[key]), key
    assert np.array_equal(encoders[0].tokenizer(texts)["input_ids"], expected["input_ids"])


def test_same_name_dim_and_id_as_torch(encoders):
    onnx, torch_encoder = encoders
    assert (onnx.name, onnx.dim, onnx.encoder_id) == (torch_encoder.name, torch_encoder.dim, torch_encoder.encoder_id)


def test_encode_matches_torch_for_every_input_form(encoders, products):
    onnx, torch_encoder = encoders
    texts, images = products
    with_image = [i for i, im in enumerate(images) if im is not None]
    forms = {"text": (texts + QUERIES, [None] * (len(texts) + len(QUERIES))),
             "image": ([None] * len(with_image), [images[i] for i in with_image]),
             "image+text": (texts, images),
             "query text+image": (["red", "blue dress"], [images[0], images[1]])}
    for form, (t, im) in forms.items():
        a, b = onnx.encode(t, im), torch_encoder.encode(t, im)
        assert a.shape == b.shape and a.dtype == np.float32
        assert cosines(a, b).min() >= 0.999, form


def test_encode_views_matches_torch(encoders, products):
    onnx, torch_encoder = encoders
    texts, images = products
    ours, theirs = onnx.encode_views(texts, images), torch_encoder.encode_views(texts, images)
    no_image = [i for i, im in enumerate(images) if im is None]
    assert no_image and not np.any(ours.image[no_image]) and not np.any(theirs.image[no_image])
    has_image = [i for i, im in enumerate(images) if im is not None]
    for view, rows in (("mm", slice(None)), ("text", slice(None)), ("image", has_image)):
        assert cosines(ours[view][rows], theirs[view][rows]).min() >= 0.999, view
    # and each view is what encode gives for that input form alone
    assert cosines(ours.text, onnx.encode(texts, [None] * len(texts))).min() >= 0.99999


def test_masked_tokens_change_nothing(encoders, products):
    """A text-only query passes an all-false image mask and an image-only one an all-false text
    segment; whatever those masked tokens hold, the vector is that of the segment absent."""
    onnx, torch_encoder = encoders
    texts, images = products
    tokens = onnx.image_tokens([images[0]])
    rng = np.random.default_rng(0)
    short = onnx.fuse(np.zeros((1, 1, 384), np.float32), np.zeros((1, 1), bool), tokens, np.ones((1, 12), bool))
    noisy = onnx.fuse(rng.normal(size=(1, 9, 384)).astype(np.float32), np.zeros((1, 9), bool), tokens,
                      np.ones((1, 12), bool))
    absent = torch_encoder.encode([None], [images[0]])
    assert cosines(short, noisy)[0] >= 0.99999 and cosines(short, absent)[0] >= 0.999
    states, mask = onnx.text_states(["red dress"])
    a = onnx.fuse(states, mask, rng.normal(size=(1, 12, 1280)).astype(np.float32), np.zeros((1, 12), bool))
    assert cosines(a, torch_encoder.encode(["red dress"], [None]))[0] >= 0.999


def test_bad_input_is_refused_clearly(encoders):
    onnx = encoders[0]
    with pytest.raises(ValueError, match="parallel"):
        onnx.encode(["a"], [])
    with pytest.raises(ValueError, match="neither"):
        onnx.encode(["a", None], [None, None])
    assert onnx.encode([], []).shape == (0, onnx.dim)
    with pytest.raises(MoonsearchError, match="unknown runtime"):
        load_encoder("default", runtime="tensorflow")
    with pytest.raises(MoonsearchError, match="CPU"):
        load_encoder("default", device="cuda", runtime="onnx")


def test_onnx_can_be_switched_off(monkeypatch):
    from moonsearch.encoder.moon import MoonEncoder

    monkeypatch.setenv("MOONSEARCH_ONNX", "0")
    assert isinstance(load_encoder("default"), MoonEncoder)


# -- the query path -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def onnx_index(tmp_path_factory, encoders):
    from moonsearch.index.builder import build_index

    out = tmp_path_factory.mktemp("onnx-index") / "sample"
    build_index(SAMPLE_CATALOG, out, encoder=encoders[0], device="cpu")
    return out


QUERY_SCRIPT = r"""
import json, sys
import moonsearch
HEAVY = ("torch", "transformers", "pandas", "pyarrow")
index = moonsearch.open_index(sys.argv[1])
hits = {"text": [h.id for h in index.search(text="red dress", k=10)]}
cold = [m for m in HEAVY if m in sys.modules]
hits["vectors"] = [h.id for h in index.search(text="blue shirt", k=10, hybrid=False)]
hits["image"] = [h.id for h in index.search(image=sys.argv[2], k=10)]
print(json.dumps({"hits": hits, "cold": cold, "loaded": [m for m in HEAVY if m in sys.modules]}))
"""


def run_python(code: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=600)


def test_a_query_in_a_fresh_process_imports_neither_torch_nor_transformers(onnx_index, encoders, products):
    """torch and transformers are training's. The first query also goes without pandas (which
    DuckDB imports on the first bound parameter, moonsearch.store.sql_literals) and pyarrow (0.3 s
    together); later ones may read the hit records into Arrow (moonsearch.store.records)."""
    from moonsearch.search.product_index import ProductIndex

    image = next(p for p in sorted((SAMPLE_CATALOG / "images").iterdir()))
    done = run_python(QUERY_SCRIPT, onnx_index, image)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["cold"] == []
    assert "torch" not in result["loaded"] and "transformers" not in result["loaded"]
    torch_index = ProductIndex.open(onnx_index, device="cpu", encoder=encoders[1])
    expected = {"text": torch_index.search(text="red dress", k=10),
                "vectors": torch_index.search(text="blue shirt", k=10, hybrid=False),
                "image": torch_index.search(image=str(image), k=10)}
    for kind, hits in expected.items():
        assert result["hits"][kind][0] == hits[0].id, kind
        assert len(set(result["hits"][kind]) & {h.id for h in hits}) >= 9, kind


CLI_SCRIPT = r"""
import sys
from moonsearch.cli import main
sys.argv = ["moonsearch", "query", "red dress", "--json", "--index", sys.argv[1]]
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("MODULES", [m for m in ("torch", "transformers", "pandas", "pyarrow") if m in sys.modules], file=sys.stderr)
sys.exit(code)
"""


def test_the_cli_query_imports_no_torch_transformers_pandas_or_pyarrow(onnx_index):
    done = run_python(CLI_SCRIPT, onnx_index)
    assert done.returncode == 0, done.stderr
    assert "MODULES []" in done.stderr
    assert "Traceback" not in done.stderr and '"id"' in done.stdout


# -- damaged caches -------------------------------------------------------------------------------

def private_cache(tmp_path: Path, monkeypatch, weights: Path) -> dict:
    """A cache folder of this test's own holding copies of the shared graphs of `weights`."""
    from moonsearch.encoder.onnx_moon import OnnxMoonEncoder, graph_paths

    shared = OnnxMoonEncoder.load(weights).paths    # exported into the user cache if needed
    monkeypatch.setenv("MOONSEARCH_CACHE", str(tmp_path / "cache"))
    paths = graph_paths(weights)
    folder = paths["fusion"].parent
    paths.update({kind: folder / path.name for kind, path in shared.items() if kind.endswith("-query")})  # query heads
    for kind, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared[kind], path)
    return paths


def test_a_damaged_cached_graph_is_rebuilt(tmp_path, monkeypatch, encoders):
    from moonsearch.encoder.onnx_moon import OnnxMoonEncoder

    paths = private_cache(tmp_path, monkeypatch, weights_path("moon-lite"))
    fusion = paths["fusion"]
    fusion.write_bytes(fusion.read_bytes()[:5000])     # a truncated file, as a full disk leaves one
    encoder = OnnxMoonEncoder.load(weights_path("moon-lite"))
    vector = encoder.encode(["red dress"], [None])
    assert fusion.stat().st_size > 5000
    assert cosines(vector, encoders[0].encode(["red dress"], [None]))[0] >= 0.99999
    assert not list(fusion.parent.glob("*.tmp"))


def test_a_damaged_graph_in_a_cli_query_is_rebuilt_without_a_traceback(tmp_path, monkeypatch, onnx_index):
    paths = private_cache(tmp_path, monkeypatch, weights_path("moon-lite"))
    graph = "text-query" if "text-query" in paths else "fusion"   # the graph a text query runs (its head's, if any)
    paths[graph].write_bytes(b"not an onnx graph")
    done = run_python(CLI_SCRIPT, onnx_index, env={"MOONSEARCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert '"id"' in done.stdout and paths[graph].stat().st_size > 1000


def test_a_damaged_graph_that_cannot_be_rebuilt_is_refused_in_one_line(tmp_path, monkeypatch):
    from moonsearch.encoder.onnx_moon import OnnxMoonEncoder

    weights = tmp_path / "mine" / "moon-lite.safetensors"
    weights.parent.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(weights_path("moon-lite").with_suffix(suffix), weights.with_suffix(suffix))
    paths = private_cache(tmp_path, monkeypatch, weights)
    encoder = OnnxMoonEncoder.load(weights)
    paths["fusion"].write_bytes(b"\x08garbage")
    weights.write_bytes(weights.read_bytes()[:100])     # and the weights it would be rebuilt from
    with pytest.raises(MoonsearchError) as caught:
        encoder.encode(["red dress"], [None])
    message = str(caught.value)
    assert "\n" not in message and "fusion" in message and len(message) < 600
