"""`myntra-val`: the myntra tasks on held-out train products, with attribute-written queries."""

import shutil

import pytest
from conftest import make_tiny_catalog, tiny_records

from moonsearch.errors import MoonsearchError
from moonsearch.eval.protocols.myntra import attribute_queries, load_split, run_validation
from moonsearch.eval.references import System
from moonsearch.shopper import is_relevant


@pytest.fixture(scope="module")
def split_catalog(tmp_path_factory):
    records = tiny_records(120)
    for i, r in enumerate(records):
        r["split"] = "test" if i % 3 == 0 else "train"     # 80 train, 40 test, interleaved
    return make_tiny_catalog(tmp_path_factory.mktemp("split-catalog"), records)


def test_validation_uses_only_train_products_after_the_training_slice(split_catalog, encoder):
    train = load_split(split_catalog, split="train")
    assert len(train) == 80
    result = run_validation(System("baseline", encoder), split_catalog, skip=10, size=60, query_count=20)
    assert result["dataset"] == "myntra-val"
    assert result["counts"]["products"] == 60                  # train products 11..70, no test product
    assert result["counts"]["shopper_queries"] > 0
    shopper = result["metrics"]["shopper"]
    assert 0.0 <= shopper["P@10"] <= 1.0 and 0.0 < shopper["R@100"] <= 1.0   # every query has answers
    assert set(result["metrics"]) >= {"t2mm", "i2mm", "mm2mm", "shopper"}
    rows = result["per_query"]["shopper"]          # one row per query, worst first, means agree
    assert len(rows) == result["counts"]["shopper_queries"]
    assert [r["P@10"] for r in rows] == sorted(r["P@10"] for r in rows)
    assert sum(r["P@10"] for r in rows) / len(rows) == pytest.approx(shopper["P@10"], abs=1e-3)
    attribute = result["metrics"]["attribute"]          # no product has a Pattern: colour alone
    assert attribute["acc:Pattern"] is None and attribute["acc"] == attribute["acc:baseColour"]


def test_attribute_queries_have_many_answers_and_distinct_rules(split_catalog):
    products = load_split(split_catalog, split="train")
    queries = attribute_queries(products, count=50, min_relevant=10)
    assert queries and queries == attribute_queries(products, count=50, min_relevant=10)   # seeded
    assert len({str(sorted(q["match"].items())) for q in queries}) == len(queries)
    for q in queries:
        assert sum(is_relevant(p.attributes, q["match"]) for p in products) >= 10
    assert attribute_queries(products, count=50, min_relevant=1000) == []


def test_too_few_held_out_products_is_a_clear_error(split_catalog, encoder):
    with pytest.raises(MoonsearchError, match="too few"):
        run_validation(System("baseline", encoder), split_catalog, skip=70)


def test_a_trained_weights_file_loads_as_its_encoder(tmp_path):
    from moonsearch.encoder.registry import load_encoder, weights_path

    for suffix in (".safetensors", ".json"):
        shutil.copy(weights_path("baseline").with_suffix(suffix), tmp_path / f"mine{suffix}")
    encoder = load_encoder(str(tmp_path / "mine.safetensors"))
    assert encoder.name == "baseline"
    (tmp_path / "mine.json").unlink()
    with pytest.raises(MoonsearchError, match="config"):
        load_encoder(str(tmp_path / "mine.safetensors"))


def test_eval_cli_per_query_shows_each_query_and_keeps_it_only_when_asked(split_catalog, tmp_path):
    import json
    import subprocess
    import sys

    from conftest import REPO

    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        {"query": "black dress", "match": {"articleType": ["Dresses"], "baseColour": ["Black"]}},
        {"query": "red tshirt", "match": {"articleType": ["Tshirts"], "baseColour": ["Red"]}},
        {"query": "purple saree", "match": {"articleType": ["Sarees"]}}]) + "\n")

    def run(*extra):
        out = tmp_path / "results"
        done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "eval", "myntra", "--data", str(split_catalog),
                               "--queries", str(queries), "--encoder", "bm25-title", "--results-dir", str(out), *extra],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
        assert done.returncode == 0, done.stderr
        return done.stdout, json.loads((out / "myntra-bm25-title.json").read_text())

    stdout, written = run()
    assert "per_query" not in written and "worst first" not in stdout
    stdout, written = run("--per-query")
    rows = written["per_query"]["shopper"]
    assert [r["query"] for r in rows][0] == "purple saree"          # no relevant product: listed first, unscored
    assert rows[0]["relevant"] == 0 and rows[0]["P@10"] is None
    assert {r["query"] for r in rows[1:]} == {"black dress", "red tshirt"} and all(r["relevant"] > 0 for r in rows[1:])
    assert rows[1]["P@10"] <= rows[2]["P@10"]
    assert "worst first" in stdout and "red tshirt" in stdout


def test_an_index_built_with_renamed_trained_weights_is_searchable_from_anywhere(split_catalog, tmp_path, monkeypatch):
    """The weights' kind comes from their saved config, not their file name, and the manifest
    keeps their absolute path: `query` from another folder loads the same encoder."""
    from moonsearch.encoder.registry import weights_path
    from moonsearch.index.builder import build_index
    from moonsearch.search.product_index import ProductIndex

    runs = tmp_path / "runs"
    runs.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(weights_path("moon-lite").with_suffix(suffix), runs / f"shoes{suffix}")
    monkeypatch.chdir(tmp_path)
    build_index(split_catalog, tmp_path / "index", encoder="runs/shoes.safetensors", device="cpu")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    index = ProductIndex.open(tmp_path / "index", device="cpu")
    assert index.manifest.encoder["weights"] == str(runs / "shoes.safetensors")
    hits = index.search(text="black dress", k=3)
    assert index.encoder.encoder_id.startswith("shoes@") and len(hits) == 3
    assert all(h.attributes["articleType"] == "Dresses" for h in hits)


def test_eval_with_a_mistyped_queries_file_fails_instead_of_dropping_the_task(split_catalog, tmp_path):
    import os
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "eval", "myntra", "--data", str(split_catalog),
                           "--queries", str(tmp_path / "typo.jsonl"), "--encoder", "bm25-title",
                           "--results-dir", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ, "COLUMNS": "400"})
    assert done.returncode == 2 and "shopper queries: no file at" in done.stdout + done.stderr
    assert not (tmp_path / "results" / "myntra-bm25-title.json").exists()


@pytest.mark.parametrize("ranking", ["--hybrid", "--vectors"])
def test_eval_ranking_outside_shopper_is_refused_before_any_work(split_catalog, tmp_path, ranking):
    import subprocess
    import sys

    from conftest import REPO

    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "eval", "myntra", "--data", str(split_catalog),
                           "--encoder", "bm25-title", ranking, "--results-dir", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2 and "eval shopper" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "results").exists()


def test_eval_refuses_two_encoders_that_would_share_a_results_file(tmp_path):
    """The shipped default and a trained runs/.../moon-lite.safetensors are both "moon-lite": the
    second result would overwrite the first, so the run is refused before any work."""
    import subprocess
    import sys

    from conftest import REPO
    from moonsearch.eval.runner import check_distinct_labels, result_label

    trained = tmp_path / "run" / "moon-lite.safetensors"
    assert result_label("default") == result_label(str(trained)) == "moon-lite"
    assert result_label(str(tmp_path / "candidate.safetensors")) == "candidate"
    check_distinct_labels("myntra-val", ["default", str(tmp_path / "candidate.safetensors"), "baseline"])
    with pytest.raises(MoonsearchError, match="myntra-val-moon-lite.json"):
        check_distinct_labels("myntra-val", ["default", str(trained)])
    done = subprocess.run([sys.executable, "-m", "moonsearch.cli", "eval", "myntra-val", "--data", str(tmp_path),
                           "--encoder", "default", "--encoder", str(trained), "--results-dir", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 2 and "own name" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results").exists()
